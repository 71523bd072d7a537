//! Instances as Incus describes them: the instance, with its state, snapshots and backups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{null_as_default, zero_time};

/// An instance (Incus `api.Instance`, embedding `api.InstancePut`): an element of
/// `GET /1.0/instances?recursion=1` and the body of `GET /1.0/instances/NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Instance {
    /// Architecture name (`x86_64`).
    pub architecture: String,
    /// The instance's own configuration.
    #[serde(deserialize_with = "null_as_default")]
    pub config: BTreeMap<String, String>,
    /// The instance's own devices: device name to its configuration.
    #[serde(deserialize_with = "null_as_default")]
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    /// Whether the instance is deleted when it stops.
    pub ephemeral: bool,
    /// Profiles applied, in order.
    #[serde(deserialize_with = "null_as_default")]
    pub profiles: Vec<String>,
    /// Whether the instance has saved state on disk.
    pub stateful: bool,
    /// Description.
    pub description: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Configuration with the profiles' merged in (left out when empty, as Go's `omitempty`).
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub expanded_config: BTreeMap<String, String>,
    /// Devices with the profiles' merged in (left out when empty). `incus list` reads the root
    /// disk's `pool` here; `incus create` warns about a missing network unless a `nic` is here.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub expanded_devices: BTreeMap<String, BTreeMap<String, String>>,
    /// Name.
    pub name: String,
    /// Status name (`Running`, `Stopped`, ...), upper-cased by `incus list`.
    pub status: String,
    /// Status code: 102 stopped, 103 running, 106 starting, 107 stopping, 110 frozen, 112
    /// error. The client counts every code but 102 and 112 as active (and `incus delete`
    /// refuses an instance whose code is neither 0 nor 102 without `--force`).
    pub status_code: i32,
    /// When it was last started ([`ZERO_TIME`](super::ZERO_TIME) if never).
    pub last_used_at: String,
    /// Cluster member it is on (`none` on a standalone server).
    pub location: String,
    /// `virtual-machine` or `container` (the client shows an empty one as a container).
    #[serde(rename = "type")]
    pub kind: String,
    /// Project (`default`).
    pub project: String,
}

impl Default for Instance {
    fn default() -> Self {
        Self {
            architecture: String::new(),
            config: BTreeMap::new(),
            devices: BTreeMap::new(),
            ephemeral: false,
            profiles: Vec::new(),
            stateful: false,
            description: String::new(),
            created_at: zero_time(),
            expanded_config: BTreeMap::new(),
            expanded_devices: BTreeMap::new(),
            name: String::new(),
            status: String::new(),
            status_code: 0,
            last_used_at: zero_time(),
            location: String::new(),
            kind: String::new(),
            project: String::new(),
        }
    }
}

/// An instance with its state, snapshots and backups (Incus `api.InstanceFull`): an element of
/// `GET /1.0/instances?recursion=2` (`incus list`) and the body of
/// `GET /1.0/instances/NAME?recursion=1` (`incus info`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceFull {
    /// The instance itself, written first as Go does.
    #[serde(flatten)]
    pub instance: Instance,
    /// Backups.
    #[serde(deserialize_with = "null_as_default")]
    pub backups: Vec<InstanceBackup>,
    /// Current state. Must be present for `incus info` (6.0.4 reads `state.pid` without a nil
    /// check, so `null` crashes it); `incus list` tolerates `null`.
    pub state: Option<InstanceState>,
    /// Snapshots (`incus list` counts them).
    #[serde(deserialize_with = "null_as_default")]
    pub snapshots: Vec<InstanceSnapshot>,
}

/// The state of an instance (Incus `api.InstanceState`): `GET /1.0/instances/NAME/state`, and
/// `state` of [`InstanceFull`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceState {
    /// Status name, as [`Instance::status`].
    pub status: String,
    /// Status code, as [`Instance::status_code`].
    pub status_code: i32,
    /// Disk usage by disk device name; `incus list` reads the root disk's `usage`.
    pub disk: Option<BTreeMap<String, InstanceStateDisk>>,
    /// Memory usage.
    pub memory: InstanceStateMemory,
    /// Network interfaces by guest name; `null` when not running. `incus list` shows the
    /// `inet`/`inet6` addresses of non-loopback interfaces not of scope `link` or `local`.
    pub network: Option<BTreeMap<String, InstanceStateNetwork>>,
    /// PID of the main process (QEMU's for a VM; 0 when stopped). `incus info` shows the
    /// resources section only when it is not 0.
    pub pid: i64,
    /// Number of processes; -1 for a VM whose guest agent does not answer.
    pub processes: i64,
    /// CPU usage.
    pub cpu: InstanceStateCpu,
    /// When the instance started ([`ZERO_TIME`](super::ZERO_TIME) when stopped).
    pub started_at: String,
    /// Guest OS information (from the guest agent), or `null`.
    pub os_info: Option<InstanceStateOsInfo>,
}

impl Default for InstanceState {
    fn default() -> Self {
        Self {
            status: String::new(),
            status_code: 0,
            disk: None,
            memory: InstanceStateMemory::default(),
            network: None,
            pid: 0,
            processes: 0,
            cpu: InstanceStateCpu::default(),
            started_at: zero_time(),
            os_info: None,
        }
    }
}

/// Usage of one disk (Incus `api.InstanceStateDisk`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceStateDisk {
    /// Bytes used.
    pub usage: i64,
    /// Bytes available in total (0 if unknown).
    pub total: i64,
}

/// Memory usage (Incus `api.InstanceStateMemory`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceStateMemory {
    /// Bytes used.
    pub usage: i64,
    /// Peak bytes used.
    pub usage_peak: i64,
    /// Bytes available in total.
    pub total: i64,
    /// Swap bytes used.
    pub swap_usage: i64,
    /// Peak swap bytes used.
    pub swap_usage_peak: i64,
}

/// CPU usage (Incus `api.InstanceStateCPU`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceStateCpu {
    /// CPU time used, in nanoseconds.
    pub usage: i64,
    /// CPU time available per second, in nanoseconds (extension `instance_state_cpu_time`).
    pub allocated_time: i64,
}

/// One network interface (Incus `api.InstanceStateNetwork`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceStateNetwork {
    /// Addresses.
    #[serde(deserialize_with = "null_as_default")]
    pub addresses: Vec<InstanceStateNetworkAddress>,
    /// Traffic counters.
    pub counters: InstanceStateNetworkCounters,
    /// MAC address.
    pub hwaddr: String,
    /// Name of the interface on the host.
    pub host_name: String,
    /// MTU.
    pub mtu: i64,
    /// `up` or `down`.
    pub state: String,
    /// `broadcast`, `loopback`, `point-to-point`, ... (`incus list` skips `loopback`).
    #[serde(rename = "type")]
    pub kind: String,
}

/// One address of an interface (Incus `api.InstanceStateNetworkAddress`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceStateNetworkAddress {
    /// `inet` or `inet6`.
    pub family: String,
    /// The address.
    pub address: String,
    /// Prefix length, as a string (`24`).
    pub netmask: String,
    /// `global`, `link` or `local`.
    pub scope: String,
}

/// Traffic counters of an interface (Incus `api.InstanceStateNetworkCounters`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceStateNetworkCounters {
    /// Bytes received.
    pub bytes_received: i64,
    /// Bytes sent.
    pub bytes_sent: i64,
    /// Packets received.
    pub packets_received: i64,
    /// Packets sent.
    pub packets_sent: i64,
    /// Receive errors.
    pub errors_received: i64,
    /// Send errors.
    pub errors_sent: i64,
    /// Outbound packets dropped.
    pub packets_dropped_outbound: i64,
    /// Inbound packets dropped.
    pub packets_dropped_inbound: i64,
}

/// Guest OS information (Incus `api.InstanceStateOSInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceStateOsInfo {
    /// OS name.
    pub os: String,
    /// OS version.
    pub os_version: String,
    /// Kernel version.
    pub kernel_version: String,
    /// Host name.
    pub hostname: String,
    /// Fully qualified domain name.
    pub fqdn: String,
}

/// A snapshot of an instance (Incus `api.InstanceSnapshot`, embedding
/// `api.InstanceSnapshotPut`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceSnapshot {
    /// When it expires ([`ZERO_TIME`](super::ZERO_TIME) if never).
    pub expires_at: String,
    /// Architecture name.
    pub architecture: String,
    /// Configuration.
    #[serde(deserialize_with = "null_as_default")]
    pub config: BTreeMap<String, String>,
    /// When it was taken.
    pub created_at: String,
    /// Devices.
    #[serde(deserialize_with = "null_as_default")]
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    /// Whether the instance was ephemeral.
    pub ephemeral: bool,
    /// Expanded configuration (left out when empty).
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub expanded_config: BTreeMap<String, String>,
    /// Expanded devices (left out when empty).
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub expanded_devices: BTreeMap<String, BTreeMap<String, String>>,
    /// When it was last used.
    pub last_used_at: String,
    /// Name (`instance/snapshot`).
    pub name: String,
    /// Profiles.
    #[serde(deserialize_with = "null_as_default")]
    pub profiles: Vec<String>,
    /// Whether it includes the running state.
    pub stateful: bool,
    /// Size in bytes.
    pub size: i64,
}

impl Default for InstanceSnapshot {
    fn default() -> Self {
        Self {
            expires_at: zero_time(),
            architecture: String::new(),
            config: BTreeMap::new(),
            created_at: zero_time(),
            devices: BTreeMap::new(),
            ephemeral: false,
            expanded_config: BTreeMap::new(),
            expanded_devices: BTreeMap::new(),
            last_used_at: zero_time(),
            name: String::new(),
            profiles: Vec::new(),
            stateful: false,
            size: 0,
        }
    }
}

/// A backup of an instance (Incus `api.InstanceBackup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InstanceBackup {
    /// Name.
    pub name: String,
    /// When it was made.
    pub created_at: String,
    /// When it expires.
    pub expires_at: String,
    /// Whether it leaves out the snapshots.
    pub instance_only: bool,
    /// Whether it is in the storage driver's own format.
    pub optimized_storage: bool,
}

impl Default for InstanceBackup {
    fn default() -> Self {
        Self {
            name: String::new(),
            created_at: zero_time(),
            expires_at: zero_time(),
            instance_only: false,
            optimized_storage: false,
        }
    }
}

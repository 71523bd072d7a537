//! The JSON bodies of the Incus API that vgashot serves, as plain serde structs.
//!
//! Field names and JSON keys follow Incus's `shared/api` Go structs (6.0.x), field by field and in
//! the same order, so that what we write reads like incusd's output and what the `incus` client
//! sends parses here. Go writes the fields of an embedded struct first: where a Go struct embeds
//! another (`Instance` embeds `InstancePut`), the fields come first here too.
//!
//! Conventions:
//! - Maps are [`BTreeMap`]s: Go's encoder writes map keys sorted, and so does a `BTreeMap`.
//! - Timestamps are RFC 3339 strings (`2026-11-25T03:06:29.912394528Z`). The Go client parses
//!   every one of them into a `time.Time`: an empty string fails the whole response, so an unset
//!   time must be Go's zero time, [`ZERO_TIME`].
//! - The key `type` is the Rust field `kind`.
//! - Response structs are lenient (`#[serde(default)]`: a missing key is its zero value, as for
//!   Go's decoder). Request bodies refuse unknown keys (`#[serde(deny_unknown_fields)]`): a key
//!   Incus does not define is a 400 naming it. They accept `null` wherever Go does (Go's client
//!   sends `"profiles": null`), and they never use `#[serde(flatten)]`, which would silently
//!   disable `deny_unknown_fields`: fields Go shares through embedding are repeated instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Go's zero `time.Time` as its JSON encoder writes it: the value of a time that is not set
/// (`last_used_at` of an instance never started, `started_at` of a stopped one).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Reads `null` as the type's default, as Go's decoder does for maps, lists, strings and numbers.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The default of a timestamp field: [`ZERO_TIME`].
fn zero_time() -> String {
    ZERO_TIME.to_owned()
}

// ---------------------------------------------------------------------------------------------
// GET /1.0
// ---------------------------------------------------------------------------------------------

/// `GET /1.0` for a client that is not trusted (Incus `api.ServerUntrusted`, which embeds
/// `api.ServerPut`). Also the first part of [`Server`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ServerUntrusted {
    /// Server configuration; for an untrusted client only the `user.ui.*` keys.
    #[serde(deserialize_with = "null_as_default")]
    pub config: BTreeMap<String, String>,
    /// The API extensions, in the order they were added. Clients test membership by name: the
    /// 6.0.4 client needs `container_full` and `api_filtering` (`incus list`),
    /// `instance_get_full` (`incus info`), `console` (`incus console --show-log`) and
    /// `projects` (its first-run check).
    #[serde(deserialize_with = "null_as_default")]
    pub api_extensions: Vec<String>,
    /// `stable`.
    pub api_status: String,
    /// `1.0`.
    pub api_version: String,
    /// `trusted` or `untrusted`.
    pub auth: String,
    /// Whether the server is public (an image server): `false`.
    pub public: bool,
    /// Authentication methods the server supports: `["tls"]`.
    #[serde(deserialize_with = "null_as_default")]
    pub auth_methods: Vec<String>,
}

/// `GET /1.0` for a trusted client, as on the Unix socket (Incus `api.Server`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Server {
    /// The fields an untrusted client sees too, written first as Go does.
    #[serde(flatten)]
    pub untrusted: ServerUntrusted,
    /// The user name the client authenticated as: `root` on the Unix socket, the certificate's
    /// SHA-256 fingerprint over TLS.
    pub auth_user_name: String,
    /// How the client authenticated: `unix` on the Unix socket, `tls` with a trusted
    /// certificate.
    pub auth_user_method: String,
    /// The server's environment.
    pub environment: ServerEnvironment,
}

/// The environment of the server in `GET /1.0` (Incus `api.ServerEnvironment`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ServerEnvironment {
    /// Network addresses the TLS listener is reached at, `HOST:PORT` (`[]`: only the Unix
    /// socket).
    #[serde(deserialize_with = "null_as_default")]
    pub addresses: Vec<String>,
    /// Architectures the server can run instances of, e.g. `["x86_64", "i686"]`.
    #[serde(deserialize_with = "null_as_default")]
    pub architectures: Vec<String>,
    /// The server's certificate, PEM. The Go client computes the fingerprint from it when
    /// `certificate_fingerprint` is empty and fails the connection if it is not a valid PEM
    /// certificate: send a real one, or leave both empty.
    pub certificate: String,
    /// SHA-256 of the certificate, hex.
    pub certificate_fingerprint: String,
    /// Instance drivers, ` | `-separated (`qemu`).
    pub driver: String,
    /// Their versions, ` | `-separated, in the same order.
    pub driver_version: String,
    /// Firewall driver (`nftables`, `xtables`, or empty).
    pub firewall: String,
    /// Kernel name (`Linux`).
    pub kernel: String,
    /// Kernel architecture (`x86_64`).
    pub kernel_architecture: String,
    /// Kernel features detected, each `"true"` or `"false"`.
    #[serde(deserialize_with = "null_as_default")]
    pub kernel_features: BTreeMap<String, String>,
    /// Kernel version.
    pub kernel_version: String,
    /// LXC features detected, each `"true"` or `"false"` (empty without LXC).
    #[serde(deserialize_with = "null_as_default")]
    pub lxc_features: BTreeMap<String, String>,
    /// OS name (`Debian GNU/Linux`).
    pub os_name: String,
    /// OS version (`12`).
    pub os_version: String,
    /// The project the request was for (`default`).
    pub project: String,
    /// The server's kind: `incus`. (`incus-agent` would make the client treat us as the
    /// in-guest agent and ask `/1.0/state` instead of `/1.0/instances/NAME/state`.)
    pub server: String,
    /// Whether the server is in a cluster; `true` makes `incus list` add a LOCATION column.
    pub server_clustered: bool,
    /// How events are distributed in a cluster: `full-mesh` for a standalone server.
    pub server_event_mode: String,
    /// The server's name (its host name; `none` in operations of a standalone server).
    pub server_name: String,
    /// The daemon's process id.
    pub server_pid: i64,
    /// The daemon's version (`6.0.4` for the oracle).
    pub server_version: String,
    /// Storage drivers in use, ` | `-separated. Empty makes the client's first run print
    /// "you should also run: incus admin init" (on stderr only).
    pub storage: String,
    /// Their versions, ` | `-separated.
    pub storage_version: String,
    /// Storage drivers the server supports.
    #[serde(deserialize_with = "null_as_default")]
    pub storage_supported_drivers: Vec<ServerStorageDriverInfo>,
}

/// A storage driver the server supports (Incus `api.ServerStorageDriverInfo`). Its Go struct has
/// no JSON tags, so the keys are capitalized: `Name`, `Version`, `Remote`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ServerStorageDriverInfo {
    /// The driver's name (`dir`).
    #[serde(rename = "Name")]
    pub name: String,
    /// The driver's version (`1`).
    #[serde(rename = "Version")]
    pub version: String,
    /// Whether the driver is remote (shared by a cluster).
    #[serde(rename = "Remote")]
    pub remote: bool,
}

// ---------------------------------------------------------------------------------------------
// Instances
// ---------------------------------------------------------------------------------------------

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
    /// When it was last started ([`ZERO_TIME`] if never).
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
    /// When the instance started ([`ZERO_TIME`] when stopped).
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
    /// When it expires ([`ZERO_TIME`] if never).
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

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// The body of `POST /1.0/instances` (Incus `api.InstancesPost`, embedding `api.InstancePut`,
/// whose fields are repeated here first, in Go's order). Unknown keys are refused.
///
/// What `incus init --empty --vm v2` (6.0.4) sends:
/// `{"architecture":"","config":{},"devices":{},"ephemeral":false,"profiles":null,
/// "stateful":false,"description":"","name":"v2","source":{"type":"none","certificate":"",
/// "allow_inconsistent":false},"instance_type":"","type":"virtual-machine","start":false}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstancesPost {
    /// Architecture name (empty: the server's, the only one: `x86_64`).
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable, pattern = "^(x86_64)?$")]
    pub architecture: String,
    /// The instance's configuration.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub config: BTreeMap<String, String>,
    /// The instance's devices.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    /// Whether the instance is deleted when it stops.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub ephemeral: bool,
    /// Profiles to apply. `null` (what the client sends without `-p`) means `["default"]`;
    /// `[]` (`--no-profiles`) means none. Only `default` exists.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::openapi::ProfileName>>)]
    pub profiles: Option<Vec<String>>,
    /// Snapshot to restore (only meaningful for PUT; Go's `omitempty`): none, snapshots are
    /// not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 0)]
    pub restore: Option<String>,
    /// Whether the instance has saved state.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub stateful: bool,
    /// Description.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub description: String,
    /// Name: required (this server does not pick one); 1 to 63 letters, digits and hyphens,
    /// starting with a letter and not ending with a hyphen (a DNS label, as Incus).
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(
        required = true,
        pattern = "^[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
    )]
    pub name: String,
    /// Where the instance comes from: required.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(required = true)]
    pub source: InstanceSource,
    /// Cloud instance type (`t2.micro`, `c2-m4`) to derive limits from: not supported, so empty.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable, max_length = 0)]
    pub instance_type: String,
    /// `virtual-machine`: required, as the default (`container`, as incusd) is refused.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    #[schema(required = true, pattern = "^virtual-machine$")]
    pub kind: String,
    /// Whether to start the instance once created (`incus launch`).
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub start: bool,
}

impl InstancesPost {
    /// The writable part of the request, as the `InstancePut` Go embeds in it.
    pub fn instance_put(&self) -> InstancePut {
        InstancePut {
            architecture: Some(self.architecture.clone()),
            config: Some(self.config.clone()),
            devices: Some(self.devices.clone()),
            ephemeral: Some(self.ephemeral),
            profiles: self.profiles.clone(),
            restore: self.restore.clone(),
            stateful: Some(self.stateful),
            description: Some(self.description.clone()),
        }
    }
}

/// Where a new instance comes from (Incus `api.InstanceSource`). Unknown keys are refused; every
/// field is optional. vgashot supports `type: "none"` (an empty instance); the others are
/// defined so that a well-formed request for them gets a clear 400, not "unknown field".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSource {
    /// `none`, `image`, `migration` or `copy`. incusd answers anything else (empty included)
    /// with 400 `Unknown source type X`; this server supports `none` only.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    #[schema(required = true, pattern = "^none$")]
    pub kind: String,
    /// Certificate of the remote server (image or migration source).
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub certificate: String,
    /// Image alias to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Image fingerprint to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Image properties to select an image by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, String>>,
    /// Remote image server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Secret for a private image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Protocol of the image server (`incus`, `simplestreams`, `oci`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Base image fingerprint (migration, for faster transfers).
    #[serde(
        rename = "base-image",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub base_image: Option<String>,
    /// Migration mode (`pull`, `push`, `relay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Remote operation URL (migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Websocket secrets of the migration (Go field `Websockets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BTreeMap<String, String>>,
    /// Source instance name (copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Whether the migration is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    /// Whether to copy without the snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_only: Option<bool>,
    /// Whether to refresh an existing copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<bool>,
    /// Whether a refresh excludes snapshots older than the target's latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_exclude_older: Option<bool>,
    /// Source project (copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Whether to copy a running instance without stopping it (the Go field has no `omitempty`:
    /// the client always sends it).
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub allow_inconsistent: bool,
}

/// The body of `PUT` and `PATCH /1.0/instances/NAME` (Incus `api.InstancePut`). Unknown keys are
/// refused. Every field is an `Option` so that `PATCH` can tell a key left out (`None`: keep the
/// current value) from one given; for `PUT`, `None` is the zero value. The Go client always
/// sends every key but `restore`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstancePut {
    /// Architecture name (`x86_64`, the only one, or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(x86_64)?$")]
    pub architecture: Option<String>,
    /// Configuration (replaces the instance's own configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// Devices (replace the instance's own devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Whether the instance is deleted when it stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<bool>,
    /// Profiles to apply, in order (only `default` exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::openapi::ProfileName>>)]
    pub profiles: Option<Vec<String>>,
    /// Name of a snapshot to restore: none, snapshots are not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 0)]
    pub restore: Option<String>,
    /// Whether the instance has saved state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful: Option<bool>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The body of `PUT /1.0/instances/NAME/state` (Incus `api.InstanceStatePut`). Unknown keys are
/// refused.
///
/// What the 6.0.4 client sends: `incus start v2` → `{"action":"start","timeout":0,
/// "force":false,"stateful":false}`; `incus stop v2 --force` → `{"action":"stop","timeout":-1,
/// "force":true,"stateful":false}` (and so does `incus delete --force` on a running instance).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceStatePut {
    /// `start`, `stop`, `restart`, `freeze` or `unfreeze`: required.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(required = true, pattern = "^(start|stop|restart|freeze|unfreeze)$")]
    pub action: String,
    /// Seconds to wait for a clean shutdown; more than 300 is cut to 300, and -1 ("forever",
    /// the client's default for `stop`) waits one minute; 0 is what `start` sends. A forced stop
    /// cuts a clean one in progress short.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable, minimum = -1)]
    pub timeout: i64,
    /// Whether to stop at once, without a clean shutdown.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub force: bool,
    /// Whether to save (stop) or restore (start) the running state.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub stateful: bool,
}

// ---------------------------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------------------------

/// A profile (Incus `api.Profile`, embedding `api.ProfilePut`): `GET /1.0/profiles/NAME`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Profile {
    /// Configuration.
    #[serde(deserialize_with = "null_as_default")]
    pub config: BTreeMap<String, String>,
    /// Description (`Default Incus profile`).
    pub description: String,
    /// Devices.
    #[serde(deserialize_with = "null_as_default")]
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    /// Name.
    pub name: String,
    /// URLs of the instances and profiles using it.
    #[serde(deserialize_with = "null_as_default")]
    pub used_by: Vec<String>,
    /// Project.
    pub project: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// `metadata` of the oracle's `get-1.0` (incusd 6.0.4 on the Unix socket), with
    /// `api_extensions` cut to its first and last entries (the full list is 450 names).
    const ORACLE_GET_1_0: &str = r#"{
        "config": {},
        "api_extensions": ["storage_zfs_remove_snapshots", "container_host_shutdown_timeout",
            "instance_console_screenshot", "instance_state_cpu_time", "network_io_bus",
            "disk_io_bus_usb"],
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "trusted",
        "public": false,
        "auth_methods": ["tls"],
        "auth_user_name": "root",
        "auth_user_method": "unix",
        "environment": {
            "addresses": [],
            "architectures": ["x86_64", "i686"],
            "certificate": "<PEM certificate of the server>",
            "certificate_fingerprint": "<sha256 hex>",
            "driver": "lxc",
            "driver_version": "5.0.2",
            "firewall": "nftables",
            "kernel": "Linux",
            "kernel_architecture": "x86_64",
            "kernel_features": {"idmapped_mounts": "true", "netnsid_getifaddrs": "true",
                "seccomp_listener": "true", "seccomp_listener_continue": "true",
                "uevent_injection": "true", "unpriv_binfmt": "true", "unpriv_fscaps": "true"},
            "kernel_version": "6.18.44-fc-v669",
            "lxc_features": {"cgroup2": "true", "core_scheduling": "true", "devpts_fd": "true",
                "idmapped_mounts_v2": "true", "mount_injection_file": "true",
                "network_gateway_device_route": "true", "network_ipvlan": "true",
                "network_l2proxy": "true", "network_phys_macvlan_mtu": "true",
                "network_veth_router": "true", "pidfd": "true",
                "seccomp_allow_deny_syntax": "true", "seccomp_notify": "true",
                "seccomp_proxy_send_notify_fd": "true"},
            "os_name": "Debian GNU/Linux",
            "os_version": "12",
            "project": "default",
            "server": "incus",
            "server_clustered": false,
            "server_event_mode": "full-mesh",
            "server_name": "<hostname>",
            "server_pid": 12345,
            "server_version": "6.0.4",
            "storage": "",
            "storage_version": "",
            "storage_supported_drivers": [{"Name": "dir", "Version": "1", "Remote": false}]
        }
    }"#;

    /// `metadata` of the oracle's `get-profile-default`.
    const ORACLE_PROFILE_DEFAULT: &str = r#"{"config": {}, "description": "Default Incus profile",
        "devices": {}, "name": "default", "used_by": [], "project": "default"}"#;

    /// A VM as `GET /1.0/instances/v1?recursion=1` of incusd 6.0.x shows it, running.
    const FULL_VM: &str = r#"{
        "architecture": "x86_64",
        "config": {"volatile.uuid": "8b7e2f0c-1f5e-4d2a-9c1e-2b4f5a6d7e8f"},
        "devices": {},
        "ephemeral": false,
        "profiles": ["default"],
        "stateful": false,
        "description": "",
        "created_at": "2026-11-25T03:06:29.912394528Z",
        "expanded_config": {"volatile.uuid": "8b7e2f0c-1f5e-4d2a-9c1e-2b4f5a6d7e8f"},
        "expanded_devices": {"root": {"path": "/", "pool": "default", "type": "disk"}},
        "name": "v1",
        "status": "Running",
        "status_code": 103,
        "last_used_at": "2026-11-25T03:07:01.5Z",
        "location": "none",
        "type": "virtual-machine",
        "project": "default",
        "backups": [],
        "state": {
            "status": "Running",
            "status_code": 103,
            "disk": {"root": {"usage": 4096, "total": 0}},
            "memory": {"usage": 0, "usage_peak": 0, "total": 0, "swap_usage": 0,
                "swap_usage_peak": 0},
            "network": {"eth0": {"addresses": [{"family": "inet", "address": "10.0.0.2",
                "netmask": "24", "scope": "global"}], "counters": {"bytes_received": 1,
                "bytes_sent": 2, "packets_received": 3, "packets_sent": 4, "errors_received": 0,
                "errors_sent": 0, "packets_dropped_outbound": 0, "packets_dropped_inbound": 0},
                "hwaddr": "00:16:3e:00:00:01", "host_name": "tap0", "mtu": 1500, "state": "up",
                "type": "broadcast"}},
            "pid": 4242,
            "processes": -1,
            "cpu": {"usage": 0, "allocated_time": 1000000000},
            "started_at": "2026-11-25T03:07:01.5Z",
            "os_info": null
        },
        "snapshots": []
    }"#;

    /// Where each key first appears in the JSON text `text` (serde_json's `Value` keeps no order
    /// without `preserve_order`, so the order is read from the text).
    fn key_order(text: &str, keys: &[&str]) -> Vec<usize> {
        keys.iter()
            .map(|k| {
                text.find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("no key {k} in {text}"))
            })
            .collect()
    }

    fn assert_in_order(text: &str, keys: &[&str]) {
        let positions = key_order(text, keys);
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "keys out of order: {keys:?} in {text}"
        );
    }

    #[test]
    fn server_round_trips_the_oracle() {
        let expected: Value = serde_json::from_str(ORACLE_GET_1_0).unwrap();
        let server: Server = serde_json::from_str(ORACLE_GET_1_0).unwrap();
        assert_eq!(server.untrusted.auth, "trusted");
        assert_eq!(server.environment.server_pid, 12345);
        assert_eq!(server.environment.storage_supported_drivers[0].name, "dir");
        let text = serde_json::to_string(&server).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        assert_in_order(
            &text,
            &[
                "config",
                "api_extensions",
                "api_status",
                "api_version",
                "auth",
                "public",
                "auth_methods",
                "auth_user_name",
                "auth_user_method",
                "environment",
            ],
        );
        assert_in_order(
            &text,
            &[
                "addresses",
                "certificate",
                "kernel_features",
                "os_name",
                "server_event_mode",
                "storage_supported_drivers",
            ],
        );
    }

    /// The whole oracle, where this checkout has it next to the repository.
    #[test]
    fn server_round_trips_the_full_oracle_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/incus-oracle/incus-6.0.4.json"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("skipped: no oracle at {path}");
            return;
        };
        let oracle: Value = serde_json::from_str(&text).unwrap();
        for (name, check) in [
            ("get-1.0", round_trip::<Server> as fn(&Value) -> Value),
            ("get-profile-default", round_trip::<Profile>),
            ("get-instances-r1", round_trip::<Vec<Instance>>),
        ] {
            let metadata = &oracle[name]["body"]["metadata"];
            assert_eq!(&check(metadata), metadata, "{name}");
        }
    }

    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(value: &Value) -> Value {
        let parsed: T = serde_json::from_value(value.clone()).unwrap();
        serde_json::to_value(parsed).unwrap()
    }

    #[test]
    fn untrusted_server_round_trips() {
        let body = json!({"config": {}, "api_extensions": ["instance_console_screenshot"],
            "api_status": "stable", "api_version": "1.0", "auth": "untrusted", "public": false,
            "auth_methods": ["tls"]});
        assert_eq!(round_trip::<ServerUntrusted>(&body), body);
    }

    #[test]
    fn profile_round_trips_the_oracle() {
        let expected: Value = serde_json::from_str(ORACLE_PROFILE_DEFAULT).unwrap();
        let profile: Profile = serde_json::from_str(ORACLE_PROFILE_DEFAULT).unwrap();
        let text = serde_json::to_string(&profile).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        assert_in_order(
            &text,
            &[
                "config",
                "description",
                "devices",
                "name",
                "used_by",
                "project",
            ],
        );
    }

    #[test]
    fn full_instance_round_trips_in_go_order() {
        let expected: Value = serde_json::from_str(FULL_VM).unwrap();
        let full: InstanceFull = serde_json::from_str(FULL_VM).unwrap();
        assert_eq!(full.instance.kind, "virtual-machine");
        assert_eq!(full.state.as_ref().unwrap().pid, 4242);
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        assert_in_order(
            &text,
            &[
                "architecture",
                "ephemeral",
                "profiles",
                "stateful",
                "description",
                "created_at",
                "expanded_config",
                "expanded_devices",
                "name",
                "status_code",
                "last_used_at",
                "location",
                "project",
                "backups",
                "state",
                "snapshots",
            ],
        );
    }

    #[test]
    fn unset_times_are_go_zero_times_and_empty_expansions_are_left_out() {
        let value = serde_json::to_value(Instance::default()).unwrap();
        assert_eq!(value["created_at"], ZERO_TIME);
        assert_eq!(value["last_used_at"], ZERO_TIME);
        assert!(value.get("expanded_config").is_none());
        assert!(value.get("expanded_devices").is_none());
        assert_eq!(
            serde_json::to_value(InstanceState::default()).unwrap()["started_at"],
            ZERO_TIME
        );
        let stopped = serde_json::to_value(InstanceState::default()).unwrap();
        assert_eq!(stopped["network"], Value::Null);
        assert_eq!(stopped["os_info"], Value::Null);
    }

    #[test]
    fn go_nulls_read_as_empty() {
        let full: InstanceFull = serde_json::from_value(json!({"name": "v1", "config": null,
            "devices": null, "profiles": null, "backups": null, "snapshots": null, "state": null}))
        .unwrap();
        assert!(
            full.instance.config.is_empty() && full.snapshots.is_empty() && full.state.is_none()
        );
    }

    /// The body `incus init --empty --vm v2` (6.0.4) sends, byte for byte (Go's encoder).
    const CLIENT_INIT_EMPTY_VM: &str = r#"{"architecture":"","config":{},"devices":{},"ephemeral":false,"profiles":null,"stateful":false,"description":"","name":"v2","source":{"type":"none","certificate":"","allow_inconsistent":false},"instance_type":"","type":"virtual-machine","start":false}"#;

    #[test]
    fn the_clients_create_request_parses() {
        let req: InstancesPost = serde_json::from_str(CLIENT_INIT_EMPTY_VM).unwrap();
        assert_eq!(req.name, "v2");
        assert_eq!(req.kind, "virtual-machine");
        assert_eq!(req.source.kind, "none");
        assert_eq!(req.profiles, None);
        assert!(!req.start);
        // And we write it back as the client wrote it.
        assert_eq!(serde_json::to_string(&req).unwrap(), CLIENT_INIT_EMPTY_VM);
        assert_eq!(req.instance_put().profiles, None);
    }

    #[test]
    fn create_requests_of_other_shapes_parse() {
        // `incus launch --no-profiles -c limits.cpu=2 --vm` with a description: `[]` stays `[]`.
        let req: InstancesPost = serde_json::from_value(json!({"architecture": "", "config":
            {"limits.cpu": "2"}, "devices": {}, "ephemeral": false, "profiles": [],
            "stateful": false, "description": "d", "name": "v3", "source": {"type": "none",
            "certificate": "", "allow_inconsistent": false}, "instance_type": "",
            "type": "virtual-machine", "start": true}))
        .unwrap();
        assert_eq!(req.profiles, Some(vec![]));
        assert!(req.start);
        // An image source, as the client sends it for `incus launch images:debian/12`.
        let req: InstancesPost = serde_json::from_value(json!({"name": "c1", "source": {"type":
            "image", "certificate": "", "alias": "debian/12", "server":
            "https://images.linuxcontainers.org", "protocol": "simplestreams", "mode": "pull",
            "allow_inconsistent": false}, "type": "container"}))
        .unwrap();
        assert_eq!(req.source.alias.as_deref(), Some("debian/12"));
        // A minimal hand-written one: every key is optional, and Go-style nulls are accepted.
        let req: InstancesPost =
            serde_json::from_str(r#"{"name":"v4","source":{"type":"none"},"config":null}"#)
                .unwrap();
        assert_eq!(req.kind, "");
    }

    #[test]
    fn the_clients_state_requests_parse() {
        let start: InstanceStatePut = serde_json::from_str(
            r#"{"action":"start","timeout":0,"force":false,"stateful":false}"#,
        )
        .unwrap();
        assert_eq!(start.action, "start");
        let stop: InstanceStatePut =
            serde_json::from_str(r#"{"action":"stop","timeout":-1,"force":true,"stateful":false}"#)
                .unwrap();
        assert_eq!((stop.timeout, stop.force), (-1, true));
    }

    #[test]
    fn the_clients_put_request_parses_and_patch_sees_what_is_missing() {
        // `incus config edit` sends the instance's writable part.
        let put: InstancePut = serde_json::from_str(r#"{"architecture":"x86_64","config":{"limits.cpu":"2"},"devices":{},"ephemeral":false,"profiles":["default"],"stateful":false,"description":""}"#).unwrap();
        assert_eq!(put.profiles.as_deref(), Some(&["default".to_owned()][..]));
        let patch: InstancePut = serde_json::from_str(r#"{"description":"x"}"#).unwrap();
        assert_eq!(patch.config, None);
        assert_eq!(patch.description.as_deref(), Some("x"));
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        for (body, field) in [
            (r#"{"name":"v2","bogus":1}"#, "bogus"),
            (
                r#"{"name":"v2","source":{"type":"none","nope":true}}"#,
                "nope",
            ),
        ] {
            let err = serde_json::from_str::<InstancesPost>(body)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("unknown field `{field}`")), "{err}");
        }
        let err = serde_json::from_str::<InstancePut>(r#"{"config":{},"x":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `x`"), "{err}");
        let err = serde_json::from_str::<InstanceStatePut>(r#"{"action":"start","wait":true}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `wait`"), "{err}");
    }

    #[test]
    fn wrong_types_are_refused() {
        assert!(
            serde_json::from_str::<InstanceStatePut>(r#"{"action":"stop","timeout":"10"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<InstancesPost>(r#"{"config":{"limits.cpu":2}}"#).is_err());
    }

    #[test]
    fn schemas_name_the_wire_keys() {
        use utoipa::PartialSchema;
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::Schema;
        let RefOr::T(Schema::Object(object)) = InstancesPost::schema() else {
            panic!("InstancesPost is not an object schema");
        };
        assert!(object.properties.contains_key("type"));
        assert!(object.properties.contains_key("instance_type"));
        assert!(!object.properties.contains_key("kind"));
        let RefOr::T(Schema::Object(object)) = ServerStorageDriverInfo::schema() else {
            panic!("ServerStorageDriverInfo is not an object schema");
        };
        assert!(object.properties.contains_key("Name"));
    }
}

//! The request bodies of the instance endpoints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::null_as_default;

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
    #[schema(value_type = Option<Vec<crate::ProfileName>>)]
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
    /// A virtual machine named `name` with `config` and `devices`, from no image (the only
    /// source this server has), started at once if `start`.
    pub fn virtual_machine(
        name: &str,
        config: BTreeMap<String, String>,
        devices: BTreeMap<String, BTreeMap<String, String>>,
        start: bool,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind: "virtual-machine".to_owned(),
            source: InstanceSource {
                kind: "none".to_owned(),
                ..InstanceSource::default()
            },
            config,
            devices,
            start,
            ..Self::default()
        }
    }

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
    #[schema(value_type = Option<Vec<crate::ProfileName>>)]
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

impl InstanceStatePut {
    /// A stop at once, without a clean shutdown (`incus stop --force`).
    pub fn forced_stop() -> Self {
        Self {
            action: "stop".to_owned(),
            timeout: -1,
            force: true,
            stateful: false,
        }
    }
}

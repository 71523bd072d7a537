//! `GET /1.0`: the server, for trusted and untrusted clients.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::null_as_default;

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

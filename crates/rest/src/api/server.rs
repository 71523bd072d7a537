//! `/` and `/1.0`: the API versions, and what this server is and implements.

use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use crate::extensions::API_EXTENSIONS;
use crate::model::{Server, ServerEnvironment, ServerUntrusted};
use crate::request::DEFAULT_PROJECT;

/// List the supported API versions
#[utoipa::path(
    get,
    path = "/",
    operation_id = "api_get",
    tag = "server",
    responses((status = 200, description = "`[\"/1.0\"]`", body = crate::envelope::SyncEnvelope<Vec<String>>)),
)]
pub fn root() -> ApiResponse {
    envelope::sync(["/1.0"])
}

/// Get the server's information and API extensions
///
/// The Unix socket is trusted, so it answers with the environment too. `api_extensions` lists, in
/// order, exactly the extensions this server implements.
#[utoipa::path(
    get,
    path = "/1.0",
    operation_id = "server_get",
    tag = "server",
    responses((status = 200, description = "The server", body = crate::envelope::SyncEnvelope<Server>)),
)]
pub fn get(context: &Context) -> ApiResponse {
    envelope::sync(server(context))
}

/// The server as a trusted client (the Unix socket's) sees it.
fn server(context: &Context) -> Server {
    let identity = &context.identity;
    Server {
        untrusted: ServerUntrusted {
            config: Default::default(),
            api_extensions: API_EXTENSIONS.iter().map(|name| name.to_string()).collect(),
            api_status: "stable".into(),
            api_version: "1.0".into(),
            auth: "trusted".into(),
            public: false,
            auth_methods: vec!["tls".into()],
        },
        auth_user_name: "root".into(),
        auth_user_method: "unix".into(),
        environment: ServerEnvironment {
            addresses: Vec::new(),
            architectures: vec!["x86_64".into()],
            // No TLS listener yet: no certificate (an empty one is what the client accepts).
            certificate: String::new(),
            certificate_fingerprint: String::new(),
            driver: "qemu".into(),
            driver_version: identity.driver_version.clone(),
            firewall: String::new(),
            kernel: "Linux".into(),
            kernel_architecture: std::env::consts::ARCH.into(),
            kernel_features: Default::default(),
            kernel_version: identity.kernel_version.clone(),
            lxc_features: Default::default(),
            os_name: identity.os_name.clone(),
            os_version: identity.os_version.clone(),
            project: DEFAULT_PROJECT.into(),
            server: "incus".into(),
            server_clustered: false,
            server_event_mode: "full-mesh".into(),
            server_name: identity.server_name.clone(),
            server_pid: i64::from(identity.server_pid),
            server_version: env!("CARGO_PKG_VERSION").into(),
            storage: String::new(),
            storage_version: String::new(),
            storage_supported_drivers: Vec::new(),
        },
    }
}

//! `/` and `/1.0`: the API versions, and what this server is and implements.

use crate::auth::trust::Caller;
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
/// Trusted clients (the Unix socket, and TLS clients whose certificate is in the trust store) see
/// the environment too; untrusted TLS clients see only what incusd shows them (`auth:
/// "untrusted"`, no environment). `api_extensions` lists, in order, exactly the extensions this
/// server implements.
#[utoipa::path(
    get,
    path = "/1.0",
    operation_id = "server_get",
    tag = "server",
    responses((status = 200, description = "The server (for an untrusted client, only the fields of `ServerUntrusted`, with `auth: \"untrusted\"`)", body = crate::envelope::SyncEnvelope<Server>)),
)]
pub fn get(context: &Context, caller: &Caller) -> ApiResponse {
    let (user_name, method) = match caller {
        Caller::Untrusted => return envelope::sync(untrusted("untrusted")),
        // incusd names a Unix client by its user, and a TLS one by its certificate.
        Caller::Unix => ("root".to_owned(), "unix"),
        Caller::TrustedCertificate(fingerprint) => (fingerprint.clone(), "tls"),
    };
    envelope::sync(server(context, user_name, method))
}

/// What every client sees: `auth` is `trusted` or `untrusted`.
fn untrusted(auth: &str) -> ServerUntrusted {
    ServerUntrusted {
        // incusd shows its `user.ui.*` keys here; vgashot has no server config.
        config: Default::default(),
        api_extensions: API_EXTENSIONS.iter().map(|name| name.to_string()).collect(),
        api_status: "stable".into(),
        api_version: "1.0".into(),
        auth: auth.into(),
        public: false,
        auth_methods: vec!["tls".into()],
    }
}

/// The server as a trusted client sees it.
fn server(context: &Context, auth_user_name: String, auth_user_method: &str) -> Server {
    let identity = &context.identity;
    // Without a TLS listener there is no certificate: empty ones are what the client accepts.
    let network = context.network.as_deref().cloned().unwrap_or_default();
    Server {
        untrusted: untrusted("trusted"),
        auth_user_name,
        auth_user_method: auth_user_method.into(),
        environment: ServerEnvironment {
            addresses: network.addresses,
            architectures: vec!["x86_64".into()],
            certificate: network.certificate,
            certificate_fingerprint: network.certificate_fingerprint,
            driver: identity.driver.clone(),
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

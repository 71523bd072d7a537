//! vgashot's REST API: Incus's instance API, wire-compatible, with `instance_console_screenshot`.
//!
//! How a request is served:
//! 1. [`server::serve`] accepts connections on the Unix socket (`$VGASHOT_DIR/unix.socket`,
//!    trusted, as incusd's) and runs each on hyper's HTTP/1 with upgrades (for `/1.0/events`).
//! 2. [`router::Route::parse`] turns the path into a typed route, with names percent-decoded;
//!    the method then picks the handler in [`api`], one small module per resource.
//! 3. Handlers parse the query ([`request::Query`]: `project`, `recursion`, `type`) and JSON
//!    bodies ([`request::json_body`]: bounded, unknown fields refused) into typed values, act
//!    through the driver, and answer with an Incus envelope ([`envelope`]). Long actions (create,
//!    start, stop, delete) run as [`operations`] and answer 202 at once; listeners of
//!    `/1.0/events` ([`events`]) hear them finish.
//! 4. Every failure is an [`ApiError`]; [`ApiError::status`] is the one place where errors get
//!    their HTTP status, and every error leaves as Incus's error envelope.
//! 5. [`openapi::ApiDoc`] gathers the handlers' annotations into the OpenAPI document that
//!    `cargo xtask swagger` writes to `swagger/`.

pub mod api;
pub mod client;
pub mod context;
pub mod envelope;
pub mod error;
pub mod events;
pub mod extensions;
pub mod filter;
pub mod model;
pub mod openapi;
pub mod operations;
pub mod request;
pub mod router;
pub mod server;

use std::path::Path;
use std::sync::Arc;

use vgashot_instance_drivers::QemuDriver;

pub use context::{Context, ServerIdentity};
pub use error::{ApiError, with_causes as describe};
pub use server::ServeError;

/// The API server over one driver.
#[derive(Debug, Clone)]
pub struct Daemon {
    context: Arc<Context>,
}

impl Daemon {
    /// A server for the VMs of `driver`, describing this machine in `GET /1.0`.
    pub fn new(driver: QemuDriver) -> Self {
        // One hub: operations publish where `/1.0/events` listens.
        let events = events::EventHub::new();
        Self {
            context: Arc::new(Context {
                driver,
                operations: operations::Operations::new(events.clone()),
                events,
                identity: Arc::new(ServerIdentity::gather()),
            }),
        }
    }

    /// Serves the API on the Unix socket at `path` until `shutdown` resolves.
    pub async fn serve_unix(
        &self,
        path: &Path,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let listener = server::bind_unix(path).await?;
        server::serve(listener, self.context.clone(), shutdown).await;
        let _ = std::fs::remove_file(path);
        Ok(())
    }
}

//! vgashot's REST API: Incus's instance API, wire-compatible, with `instance_console_screenshot`.
//!
//! How a request is served:
//! 1. [`server::serve`] accepts connections on the Unix socket (`$VGASHOT_DIR/unix.socket`,
//!    trusted, as incusd's) and, when asked, on TCP with TLS ([`auth::tls`]), where the client's
//!    certificate decides at each request whether it is trusted ([`auth::Caller`]); each
//!    connection runs on hyper's HTTP/1 with upgrades (for `/1.0/events`).
//! 2. A request a browser sent on behalf of another web site is refused first
//!    ([`same_origin`]). [`router::Route::parse`] turns the path into a typed route, with names
//!    percent-decoded; an untrusted caller gets only `GET /` and `GET /1.0` and a 403 for any
//!    other route; a body that is not `application/json` is a 415; the method then picks the
//!    handler in [`api`], one small module per resource.
//! 3. Handlers parse the query ([`request::Query`]: `project`, `recursion`, `type`) and JSON
//!    bodies ([`request::json_body`]: bounded, unknown fields refused) into typed values, act
//!    through the driver, and answer with an Incus envelope ([`envelope`]). Long actions (create,
//!    start, stop, delete) run as [`operations`] and answer 202 at once; listeners of
//!    `/1.0/events` ([`events`]) hear them finish, and every start and end of an instance,
//!    whatever caused it, as a lifecycle event ([`transitions`]).
//! 4. Every failure is an [`ApiError`]; [`ApiError::status`] is the one place where errors get
//!    their HTTP status, and every error leaves as Incus's error envelope.
//! 5. Screenshots go through [`screens`]: one capture serves every viewer of a screen for a
//!    while, with strong `ETag`s, thumbnails, other formats and a live stream.
//! 6. [`api::ui`] serves the web page at `/ui/` (three files compiled in), which drives this same
//!    API from a browser and so obeys the same certificate trust.
//! 7. [`openapi::ApiDoc`] gathers the handlers' annotations into the OpenAPI document that
//!    `cargo xtask swagger` writes to `swagger/`.

pub mod api;
pub mod auth;
pub mod connection;
pub mod console;
pub mod context;
pub mod envelope;
pub mod error;
pub mod events;
pub mod extensions;
pub mod filter;
pub mod history;
pub mod limits;
pub mod openapi;
pub mod operations;
pub mod request;
pub mod router;
pub mod same_origin;
pub mod screen_events;
pub mod screen_interest;
pub mod screens;
pub mod server;
pub mod transitions;
pub mod urls;

/// The wire model: the JSON bodies of Incus's API ([`vgashot_incus_wire`]).
pub use vgashot_incus_wire as model;

use std::path::Path;
use std::sync::Arc;

use vgashot_instance_drivers::Driver;

pub use auth::{Caller, HttpsListener, TlsError, TrustStore};
pub use context::{Context, NetworkIdentity, ServerIdentity};
pub use error::{ApiError, with_causes as describe};
pub use history::ScreenHistory;
pub use server::ServeError;

/// The API server over one driver.
#[derive(Debug, Clone)]
pub struct Daemon {
    context: Arc<Context>,
}

impl Daemon {
    /// A server for the VMs of `driver`, describing this machine in `GET /1.0`.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        // One hub: operations publish where `/1.0/events` listens.
        let events = events::EventHub::new();
        Self {
            context: Arc::new(Context {
                screens: Arc::default(),
                identity: Arc::new(ServerIdentity::gather(driver.as_ref())),
                driver,
                operations: operations::Operations::new(events.clone()),
                events,
                network: None,
                history: None,
            }),
        }
    }

    /// This server with a screen history: its API serves `/1.0/instances/NAME/screenshots`,
    /// and while it serves, the recorder follows every running VM's screen into it.
    pub fn with_history(mut self, history: Arc<ScreenHistory>) -> Self {
        Arc::make_mut(&mut self.context).history = Some(history);
        self
    }

    /// Serves the API on the Unix socket at `path` until `shutdown` resolves.
    pub async fn serve_unix(
        &self,
        path: &Path,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        self.serve(path, None, shutdown).await
    }

    /// Serves the API on the Unix socket at `path` and, when given, on the TLS listener `https`,
    /// until `shutdown` resolves; both stop together.
    pub async fn serve(
        &self,
        path: &Path,
        https: Option<HttpsListener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let listener = server::bind_unix(path).await?;
        // `GET /1.0` reports the listener's certificate and addresses to trusted clients.
        let context = match &https {
            Some(https) => Arc::new(Context {
                network: Some(Arc::new(https.identity().clone())),
                ..(*self.context).clone()
            }),
            None => self.context.clone(),
        };
        // Starts and ends of instances, whatever caused them, as lifecycle events.
        let final_screens = context
            .history
            .clone()
            .map(|history| transitions::FinalScreens {
                history,
                driver: context.driver.clone(),
            });
        let bridge = tokio::spawn(transitions::forward(
            context.driver.transitions(),
            context.events.clone(),
            final_screens,
        ));
        let recorder = context
            .history
            .is_some()
            .then(|| tokio::spawn(history::recorder::supervise(context.clone())));
        // Screen changes as `screen` events, followed only while somebody listens.
        let screen_events = tokio::spawn(screen_events::supervise(context.clone()));
        server::serve(listener, https, context, shutdown).await;
        screen_events.abort();
        bridge.abort();
        if let Some(recorder) = recorder {
            recorder.abort();
        }
        let _ = std::fs::remove_file(path);
        Ok(())
    }
}

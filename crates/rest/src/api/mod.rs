//! The handlers, one module per resource. Each parses its request into typed values, acts, and
//! answers an Incus envelope; errors are returned, never rendered here.

pub mod console;
pub mod console_session;
pub mod events;
pub mod instance_rename;
pub mod instance_state;
pub mod instances;
pub mod lifecycle;
pub mod metrics;
pub mod operations;
pub mod profiles;
pub mod screenshots;
pub mod server;
pub mod ui;

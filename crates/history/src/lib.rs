//! The screen history of vgashot's VMs: what each screen showed over time, and the last screen
//! before a VM stopped, kept as evidence.
//!
//! 1. One SQLite database per daemon (`$VGASHOT_DIR/history.sqlite`, WAL: see [`schema`]), so a
//!    daemon killed at any point keeps every screenshot it committed.
//! 2. Each instance's distinct frames are stored once, compressed ([`STORED_FORMAT`]), keyed by
//!    the pixel hash the screens engine already computes; a screenshot is a row that points at
//!    one ([`History::record`]).
//! 3. Rows say when and why ([`Reason`]), whether they are pinned, and a note; they are found by
//!    time range, reason, id, or the time the screen showed them ([`History::at`]).
//! 4. Retention by age and bytes per instance, and a daemon-wide byte cap, never take a pinned
//!    row ([`retention`]); an instance's history goes with it ([`History::forget_instance`]).
//! 5. [`History::record_final`] pins the last screen before a VM stopped, shut down, panicked
//!    or crashed ([`final_screen`]).
//! 6. [`timelapse`] turns a range of rows into an animated PNG with each frame's real duration.
//!
//! Every call blocks (SQLite does): callers on an async runtime use `spawn_blocking`.

mod error;
pub mod final_screen;
pub mod retention;
pub mod schema;
mod shot;
mod store;
pub mod timelapse;

#[cfg(test)]
mod tests;

pub use error::{HistoryError, Result};
pub use final_screen::FinalReason;
pub use retention::Retention;
pub use shot::{InstanceRef, Reason, Shot};
pub use store::{Filter, History, Limits, MAX_NOTE_BYTES, NewShot, STORED_FORMAT};

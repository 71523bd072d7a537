//! A small RFB (VNC) 3.8 client that keeps a copy of one server's screen, bounded against a
//! server that lies.
//!
//! Made for QEMU's own VNC server reached through a socket passed to it (`add_client`), where
//! security is None and QEMU tracks what changed:
//! 1. [`Session::handshake`] opens the session (security None, shared, 32-bit true colour; Raw,
//!    CopyRect and DesktopSize).
//! 2. [`Session::request_update`] asks for the screen; incremental requests are answered only
//!    when something changes, so a still screen costs neither side anything.
//! 3. [`Session::next_event`] applies the server's next message to our [`Screen`] (packed RGB),
//!    following resolution changes; every size is checked before anything is allocated or read
//!    for it, and every breach is an [`RfbError`] that ends the session, never a panic.
//!
//! Why our own rather than `vnc-rs` (0.6): it runs its own event loop and sends update requests
//! on a timer of its own, where we need requests paced by demand; it hands each rectangle over
//! as a fresh allocation sized by the server, with no caller bound on the screen's size; it
//! brings a dozen dependencies (futures, tokio-util, async_io_stream, flate2, wasm glue) for
//! encodings QEMU on a local socket does not need, and documents about 40% of its API. The part
//! of RFB we use is small and is tested here against a scripted server and real QEMU.

mod error;
mod screen;
mod session;

#[cfg(test)]
mod tests;

pub use error::RfbError;
pub use screen::{Rect, Screen};
pub use session::{Event, Limits, MAX_CUT_TEXT_BYTES, MAX_REASON_BYTES, Session};

//! Input sent to a VM's keyboard through QMP, to wake its screen before a capture.
//!
//! How a screen is woken:
//! 1. A guest that blanks its screen after a while without input (the Linux console's
//!    `consoleblank`, a screensaver) unblanks it on any key event, a modifier included.
//! 2. So we press and release Shift (`input-send-event` with two `qcode` key events): no
//!    character reaches a program, no shortcut fires, and a pointer is left where it was.

use serde_json::json;
use vgashot_qmp::Qmp;

use crate::error::{DriverError, Result};

/// The harmless key pressed and released.
const WAKE_KEY: &str = "shift";

/// Presses and releases [`WAKE_KEY`] on the VM behind `qmp`.
pub(crate) async fn press_wake_key(qmp: &Qmp) -> Result<()> {
    let key = |down: bool| json!({"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": WAKE_KEY}}});
    qmp.execute(
        "input-send-event",
        Some(json!({"events": [key(true), key(false)]})),
    )
    .await
    .map(|_| ())
    .map_err(|source| DriverError::Qmp {
        operation: "send a key to wake the screen",
        source,
    })
}

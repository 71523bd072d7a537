//! `wake=true`: a screenshot of a screen woken first, as EC2's and Alibaba's `WakeUp` and
//! KubeVirt's `moveCursor` do.
//!
//! How a woken screenshot is taken:
//! 1. The screen is captured as usual (which also fails early, for a stopped VM or a missing
//!    screen, before anything is sent to the guest).
//! 2. The driver presses and releases a modifier key in the guest ([`Instance::wake_screen`]),
//!    which a blanked console or screensaver takes as activity.
//! 3. The screen is captured again every [`WAKE_POLL`] until its pixels differ from step 1's,
//!    for at most [`WAKE_WAIT`]: a blanked screen is repainted within that time, and a screen
//!    that was not blank (or that the key does not wake) is served as it is after the wait.

use std::sync::Arc;
use std::time::Duration;

use vgashot_instance_drivers::Instance;
use vgashot_screens::{Answer, ScreenId};

use super::Screens;
use crate::error::ApiError;

/// The longest a woken screenshot waits for the screen to change: the Linux console repaints
/// within a few tens of milliseconds of the key even under TCG, and a screen that does not
/// change costs its viewer no more than this.
pub const WAKE_WAIT: Duration = Duration::from_secs(1);

/// How often the screen is captured again while waiting (the instance's
/// `console.screenshot.min_interval` still applies: a capture younger than it is reused).
pub const WAKE_POLL: Duration = Duration::from_millis(100);

/// Steps 1 to 3 for `screen` of `vm`.
pub async fn capture(
    screens: &Screens,
    vm: &Arc<dyn Instance>,
    screen: &ScreenId,
) -> Result<Answer, ApiError> {
    let before = screens.capture(vm, screen).await?;
    vm.wake_screen().await?;
    let deadline = tokio::time::Instant::now() + WAKE_WAIT;
    loop {
        tokio::time::sleep(WAKE_POLL).await;
        let answer = screens.capture(vm, screen).await?;
        if answer.capture.hash() != before.capture.hash() || tokio::time::Instant::now() >= deadline
        {
            return Ok(answer);
        }
    }
}

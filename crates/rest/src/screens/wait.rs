//! Following a screen from the REST layer: [`Screens::follow`] for streams and events, and
//! `wait=DURATION` on a screenshot (openQA's `wait_screen_change`).
//!
//! How `GET …/console?type=vga&wait=DURATION` with `If-None-Match` is answered:
//! 1. `wait` is a duration (`500ms`, `10s`, or whole seconds) of at most [`MAX_WAIT`]; more, or
//!    not a duration, is a 400 that names the bound.
//! 2. The request takes a waiter's slot: at most [`MAX_WAITERS_PER_INSTANCE`] per instance and
//!    [`MAX_WAITERS`] in all; one more is a 503 envelope (try again), never a queue.
//! 3. It follows the screen ([`vgashot_screens::Follower`], pushed by the VNC mirror, polled at
//!    the instance's minimum interval otherwise) and answers with the first capture whose
//!    `ETag` (for the rendering asked for) is not one `If-None-Match` names: at once if the
//!    screen already differs, else as soon as it changes.
//! 4. When the duration ends first, the answer is the screen as it is, which `If-None-Match`
//!    names: a `304 Not Modified`, as without `wait`.
//! 5. Without `If-None-Match` there is nothing to differ from: `wait` is ignored and the
//!    screenshot answers at once.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde::{Deserialize, Deserializer};
use vgashot_instance_drivers::Instance;
use vgashot_screens::{Answer, Follower, FrameSource, ScreenId, Variant};

use super::Screens;
use crate::api::console::if_none_match;
use crate::error::ApiError;
use crate::limits::{LimitError, Quota, Refused};
use crate::request::invalid;

/// The longest `wait`: 30 s, below the idle timeouts proxies commonly put on a response
/// (60 s in nginx), so a waiting client is answered (a 304) before anything in between gives
/// up on it; a client that wants longer asks again.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// The most requests waiting on one instance's screens at once: 64, more than any sensible set
/// of test runners watching one VM, and each costs only a task and a follower.
pub const MAX_WAITERS_PER_INSTANCE: usize = 64;
/// The most requests waiting at once: 256, four instances' worth of
/// [`MAX_WAITERS_PER_INSTANCE`], far below the connection bound so waiters cannot crowd out
/// other requests.
pub const MAX_WAITERS: usize = 256;

/// The waiters' slots, per instance (project, name) and in all.
#[derive(Debug)]
pub(crate) struct WaitSlots(Quota<(String, String)>);

impl Default for WaitSlots {
    fn default() -> Self {
        Self(Quota::new(MAX_WAITERS_PER_INSTANCE, MAX_WAITERS))
    }
}

/// Reads the `wait` parameter (step 1).
pub(crate) fn parameter<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let value = String::deserialize(deserializer)?;
    let accepted = "a duration of at most 30s, e.g. 500ms or 10s";
    let parsed = match value.trim().parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(value.trim()).ok(),
    };
    parsed
        .filter(|wait| *wait <= MAX_WAIT)
        .map(Some)
        .ok_or_else(|| invalid("wait", &value, Some(accepted)))
}

impl Screens {
    /// A follower of `screen` of `vm` that captures at most once per `at_most_every`, or per
    /// the instance's minimum interval if that is longer.
    pub fn follow(
        &self,
        vm: &Arc<dyn Instance>,
        screen: &ScreenId,
        at_most_every: Duration,
    ) -> Result<Follower<'_>, ApiError> {
        let min_interval = vm.screenshot_min_interval()?;
        let source: Arc<dyn FrameSource> = vm.clone();
        Ok(self.engine.follow(
            &super::instance_key(vm),
            &source,
            screen,
            min_interval.max(at_most_every),
        )?)
    }

    /// The first capture of `screen` whose `ETag` for `variant` is not one of `headers`'
    /// `If-None-Match`, or the screen as it is once `wait` has passed (steps 2 to 5).
    pub async fn changed_from(
        &self,
        vm: &Arc<dyn Instance>,
        screen: &ScreenId,
        variant: &Variant,
        headers: &HeaderMap,
        wait: Duration,
    ) -> Result<Answer, ApiError> {
        if !headers.contains_key(http::header::IF_NONE_MATCH) {
            return self.capture(vm, screen).await;
        }
        let _slot = self
            .waiters
            .0
            .try_acquire((vm.project().to_owned(), vm.name().to_owned()))
            .map_err(|refused| match refused {
                Refused::Total(limit) => LimitError::Waiters { limit },
                Refused::PerKey(limit) => LimitError::InstanceWaiters { limit },
            })?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut follower = self.follow(vm, screen, Duration::ZERO)?;
        let mut current = follower.changed().await?;
        loop {
            if !if_none_match(headers, &current.capture.etag(variant)) {
                return Ok(current);
            }
            match tokio::time::timeout_at(deadline, follower.changed()).await {
                Ok(answer) => current = answer?,
                Err(_) => return Ok(current),
            }
        }
    }
}

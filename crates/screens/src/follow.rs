//! Following a screen: a capture each time its pixels change, for everything that watches a
//! screen rather than asking for it once (MJPEG streams, `wait=`, screen-change events, the
//! history recorder).
//!
//! How a follower works:
//! 1. [`Screens::follow`] checks the screen as a capture does (no state for screens that cannot
//!    exist) and asks the source for a [`ChangeFeed`]. The [`Follower`] holds the feed's
//!    interest: while any follower of a screen lives, a pushing source (the VNC mirror) keeps
//!    its picture current; when the last one is dropped the source may let go (after a linger
//!    of its own).
//! 2. [`Follower::changed`] yields the screen as it is at the first call, and afterwards only a
//!    capture whose pixel hash differs from the last one it yielded. Captures go through the
//!    engine ([`Screens::capture`]) with the follower's `interval` as the minimum interval, so
//!    followers and plain requests share captures (single flight), and N followers of a screen
//!    cost one capture per interval, not N.
//! 3. Pushed (the source gave a feed): it waits for the feed to move, then captures. A capture
//!    taken before the push (a request's, still within the interval) shows the old picture:
//!    the follower waits until that capture has aged past the interval and captures again, so
//!    a change is never lost, only delayed by at most one interval. A still screen costs no
//!    capture at all.
//! 4. Polled (no feed, or the feed closed because the source stopped pushing): it captures
//!    every `interval` and yields only changes.
//! 5. Paced: a follower never takes two captures less than `interval` apart, so a guest that
//!    repaints constantly costs at most one capture per interval per screen, whatever it does.
//! 6. Cancel-safe: `changed()` may be dropped at any await (a `wait=` that timed out, a stream
//!    whose viewer left); a push it had seen is remembered and answered by the next call.
//! 7. Errors are the engine's ([`ScreensError`]): a stopped instance is
//!    [`ScreensError::NotRunning`]; the caller decides whether to end.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use vgashot_framebuffer::PixelHash;

use crate::engine::{Answer, InstanceKey, Screens};
use crate::error::ScreensError;
use crate::source::{ChangeFeed, FrameSource, ScreenId};

/// One follower of one screen; see the [module](self). Counts as a viewer of the screen (keeps a
/// pushing source connected) for as long as it lives.
pub struct Follower<'a> {
    screens: &'a Screens,
    key: InstanceKey,
    source: Arc<dyn FrameSource>,
    screen: ScreenId,
    interval: Duration,
    feed: Option<ChangeFeed>,
    /// The hash of the last capture yielded.
    last: Option<PixelHash>,
    /// No capture before this (the last capture's time plus the interval).
    next_at: Option<Instant>,
    /// When a change was announced (pushed, or a poll is due) that no capture has answered yet.
    owed_since: Option<Instant>,
}

impl std::fmt::Debug for Follower<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("key", &self.key)
            .field("screen", &self.screen)
            .field("pushed", &self.pushed())
            .finish_non_exhaustive()
    }
}

impl Screens {
    /// A follower of `screen` of `source` (the instance `key`) that captures at most once per
    /// `interval` (give it the instance's minimum interval, or a stream's frame period if
    /// longer). Fails as a capture would for a screen that does not exist.
    pub fn follow(
        &self,
        key: &InstanceKey,
        source: &Arc<dyn FrameSource>,
        screen: &ScreenId,
        interval: Duration,
    ) -> Result<Follower<'_>, ScreensError> {
        if !source.running() {
            return Err(ScreensError::NotRunning);
        }
        // Makes (and checks) the screen's state before the source is asked for anything.
        self.changes(key, source, screen)?;
        Ok(Follower {
            screens: self,
            key: key.clone(),
            source: source.clone(),
            screen: screen.clone(),
            interval,
            feed: source.change_feed(screen),
            last: None,
            next_at: None,
            owed_since: None,
        })
    }
}

impl Follower<'_> {
    /// The screen as it is at the first call; afterwards, the next capture whose pixels differ
    /// from the last one yielded (steps 2 to 6 of the [module](self)).
    pub async fn changed(&mut self) -> Result<Answer, ScreensError> {
        loop {
            if self.last.is_some() && self.owed_since.is_none() {
                self.wait_for_change().await;
            }
            if let Some(next_at) = self.next_at {
                tokio::time::sleep_until(next_at).await;
            }
            let answer = self
                .screens
                .capture(&self.key, &self.source, &self.screen, self.interval)
                .await?;
            let taken = answer.capture.taken;
            self.next_at = Some(taken + self.interval);
            // A capture that did not start after the announcement may show the old picture: it
            // answers nothing, and the next round captures again once it has aged.
            if self.owed_since.is_none_or(|since| taken > since) {
                self.owed_since = None;
            }
            let hash = answer.capture.hash();
            if self.last != Some(hash) {
                self.last = Some(hash);
                self.owed_since = None;
                return Ok(answer);
            }
        }
    }

    /// Whether the source pushes changes to this follower (it polls otherwise).
    pub fn pushed(&self) -> bool {
        self.feed.is_some()
    }

    /// Waits until a change is announced: pushed by the feed, or at once when polling (the
    /// pacing in [`Self::changed`] is the polling period).
    async fn wait_for_change(&mut self) {
        if let Some(feed) = &mut self.feed {
            if feed.changes.changed().await.is_err() {
                // The source stopped pushing: poll from now on.
                self.feed = None;
            }
        }
        self.owed_since = Some(Instant::now());
    }
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;

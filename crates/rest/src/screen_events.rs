//! Screen-change events on `/1.0/events` (type `screen`, the `instance_console_screen_events`
//! extension): monitors subscribe to screens instead of polling them.
//!
//! 1. Nobody listens, nothing runs: [`supervise`] waits on the hub's [`ScreenInterest`] and
//!    holds no follower (so no capture is taken and no mirror is held for events) while no
//!    listener of `screen` events is connected: one that names the type, or names none (every
//!    type, as upstream; `incus monitor --type=screen` is one, as it filters on its side). A
//!    listener that names other types only (the page names `lifecycle`) costs nothing. The
//!    `incus` client's listener while it waits for an operation names none: it follows the
//!    running VMs' screens for the seconds the command runs (a still mirrored screen costs
//!    nothing, a changing one a capture a second).
//! 2. While somebody listens, every [`SWEEP`] (and at once when listeners come or go) it
//!    starts one follower ([`vgashot_screens::Follower`], through [`Screens::follow`]) per
//!    running VM of a project somebody listens to, on the VM's primary screen, and stops the
//!    followers of VMs nobody listens to any more, that stopped or that are gone. A follower
//!    also ends by itself when its VM stops. When the last listener goes every follower is
//!    stopped at once, and a mirrored screen is let go after the mirror's own linger.
//! 3. A follower publishes one event for the screen as it is when following starts (the first
//!    listener came, or the VM started), then one per change (a listener that joins others gets
//!    changes only): the instance, its project, the screen, the new `ETag` of the plain PNG (what
//!    `GET …/console?type=vga` answers as `ETag`), the size and when the pixels changed
//!    ([`ScreenChange`]).
//! 4. Rate: the follower captures at most once per [`PERIOD`] (or the instance's
//!    `console.screenshot.min_interval` if longer), and yields only captures that differ, so
//!    an instance makes at most one event per period whatever its guest repaints; the change
//!    that ends a burst is captured in the next period, never lost (the follower yields the
//!    latest picture, not a queue of old ones). Every listener gets the same events: N
//!    listeners cost one follower per VM, not N.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use utoipa::ToSchema;
use vgashot_instance_drivers::Instance;
use vgashot_screens::{Capture, ScreenId, ScreensError, Variant};
use vgashot_stdext::rfc3339;

use crate::context::Context;
use crate::events::{Event, EventType};
use crate::request::DEFAULT_PROJECT;
use crate::screen_interest::{ScreenInterest, wanted};
use crate::screens::Screens;

/// At most one `screen` event per instance per second: a monitor (a dashboard, a test runner
/// waiting for a prompt) learns of a change within a second, while a guest that repaints
/// constantly (a video, a counter: 18 changes a second in our fixture) costs each listener one
/// small JSON frame a second per VM, and the daemon one capture a second per VM. Whoever needs
/// every frame streams the screen (MJPEG) or waits on it (`wait=`).
pub const PERIOD: Duration = Duration::from_secs(1);

/// How often, while somebody listens, the supervisor looks for VMs that started or stopped:
/// a second, as the history recorder; it reads the driver's registry only, no QEMU.
pub const SWEEP: Duration = Duration::from_secs(1);

/// The metadata of a `screen` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScreenChange {
    /// The instance's name.
    pub name: String,
    /// The instance's project.
    pub project: String,
    /// The display device, as the console's `device` parameter names it; absent for the
    /// primary screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The head, as the console's `head` parameter names it; absent for the primary screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<u32>,
    /// The new strong `ETag` of the plain PNG (`GET …/console?type=vga`), quotes included.
    pub etag: String,
    /// The screen's width, in pixels.
    pub width: u32,
    /// The screen's height, in pixels.
    pub height: u32,
    /// When the pixels changed, RFC 3339.
    pub changed_at: String,
}

impl ScreenChange {
    /// The change that `capture` of `screen` of instance `name` in `project` shows.
    pub fn of(name: &str, project: &str, screen: &ScreenId, capture: &Capture) -> Self {
        Self {
            name: name.to_owned(),
            project: project.to_owned(),
            device: screen.device.clone(),
            head: screen.head,
            etag: capture.etag(&Variant::plain()),
            width: capture.frame().width(),
            height: capture.frame().height(),
            changed_at: rfc3339(capture.changed_at()),
        }
    }

    /// The `screen` event of this change.
    pub fn event(&self) -> Result<Event, serde_json::Error> {
        Ok(Event::new(
            EventType::Screen,
            serde_json::to_value(self)?,
            &self.project,
        ))
    }
}

/// The running followers, by (project, name); stopped when dropped (the server stopped).
#[derive(Default)]
struct Followers(HashMap<(String, String), JoinHandle<()>>);

impl Followers {
    /// Stops the followers for which `keep` is false, and forgets those that ended.
    fn retain(&mut self, keep: impl Fn(&(String, String)) -> bool) {
        self.0.retain(|key, follower| {
            let kept = keep(key) && !follower.is_finished();
            if !kept {
                follower.abort();
            }
            kept
        });
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        self.retain(|_| false);
    }
}

/// Runs the screen events until the task is aborted (the server stops); see the
/// [module](self).
pub async fn supervise(context: Arc<Context>) {
    let interest: &ScreenInterest = context.events.screen_interest();
    let mut listeners = interest.subscribe();
    let mut followers = Followers::default();
    loop {
        let wanted_now = listeners.borrow_and_update().clone();
        if wanted_now.is_empty() {
            // Step 1: nothing to follow until a listener comes.
            followers.retain(|_| false);
            if listeners.changed().await.is_err() {
                return;
            }
            continue;
        }
        // Step 2. Only the default project exists.
        let vms: HashMap<(String, String), Arc<dyn Instance>> = context
            .driver
            .list(DEFAULT_PROJECT)
            .into_iter()
            .filter(|vm| vm.running() && wanted(&wanted_now, vm.project()))
            .map(|vm| ((vm.project().to_owned(), vm.name().to_owned()), vm))
            .collect();
        let keys: HashSet<_> = vms.keys().cloned().collect();
        followers.retain(|key| keys.contains(key));
        for (key, vm) in vms {
            followers
                .0
                .entry(key)
                .or_insert_with(|| tokio::spawn(follow(context.clone(), vm)));
        }
        tokio::select! {
            changed = listeners.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(SWEEP) => {}
        }
    }
}

/// Publishes the changes of `vm`'s primary screen until it stops (steps 3 and 4).
async fn follow(context: Arc<Context>, vm: Arc<dyn Instance>) {
    let screen = ScreenId::default();
    let screens: &Screens = &context.screens;
    let mut follower = match screens.follow(&vm, &screen, PERIOD) {
        Ok(follower) => follower,
        Err(error) => {
            tracing::debug!(instance = vm.name(), error = %crate::describe(&error), "no screen to follow for events");
            return;
        }
    };
    loop {
        match follower.changed().await {
            Ok(answer) => {
                let change = ScreenChange::of(vm.name(), vm.project(), &screen, &answer.capture);
                match change.event() {
                    Ok(event) => context.events.publish(event),
                    Err(error) => tracing::warn!(%error, "cannot serialise a screen change"),
                }
            }
            Err(ScreensError::NotRunning) => return,
            Err(error) => {
                tracing::debug!(instance = vm.name(), error = %crate::describe(&error), "no screen for events");
                tokio::time::sleep(PERIOD).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_screen_change_is_a_screen_event_of_its_project() {
        let change = ScreenChange {
            name: "v1".into(),
            project: "default".into(),
            device: None,
            head: None,
            etag: "\"00ff\"".into(),
            width: 640,
            height: 480,
            changed_at: "2026-12-02T02:00:00.000000000Z".into(),
        };
        let event = serde_json::to_value(change.event().unwrap()).unwrap();
        assert_eq!(event["type"], "screen");
        assert_eq!(event["project"], "default");
        assert_eq!(event["location"], "none");
        assert_eq!(
            event["metadata"],
            json!({"name": "v1", "project": "default", "etag": "\"00ff\"",
                   "width": 640, "height": 480,
                   "changed_at": "2026-12-02T02:00:00.000000000Z"})
        );
        let secondary = ScreenChange {
            device: Some("video1".into()),
            head: Some(1),
            ..change
        };
        let metadata = serde_json::to_value(&secondary).unwrap();
        assert_eq!(
            (&metadata["device"], &metadata["head"]),
            (&json!("video1"), &json!(1))
        );
    }

    #[test]
    fn screen_is_a_type_of_the_default_set() {
        assert_eq!("screen".parse::<EventType>().unwrap(), EventType::Screen);
        assert!(
            EventType::parse_list(None)
                .unwrap()
                .contains(&EventType::Screen)
        );
    }
}

//! The recorder: follows every running VM's default screen into the history, a screenshot when
//! the pixels changed, at most one per `console.history.interval`.
//!
//! 1. [`supervise`] runs while the server serves: every [`SWEEP`] it starts a follower for each
//!    running VM with `console.history.enabled` that has none, and forgets followers that ended.
//!    A follower ends by itself when its VM stops (or its history is disabled), so recording
//!    starts and stops with the VM's running state within a sweep.
//! 2. A follower follows the screen through the screens engine ([`Follower`]): a mirrored
//!    screen pushes its changes, so a still screen costs no capture at all; others are polled
//!    at the interval. [`next_changed_frame`] takes the next change, at most one per
//!    `console.history.interval`, and keeps it only when its pixel hash differs from the last two
//!    recorded. That function is the one place that knows where changed frames come from. Two,
//!    not one: a text console's blinking cursor alternates between two pictures, and an idle
//!    console recorded one row per interval for ever (measured: 938 rows in 22 minutes for 8
//!    distinct frames); a screen that goes back to the picture before last within an interval
//!    is a blink, not news.
//! 3. A changed frame is written on the blocking pool (SQLite blocks): the row, its frame
//!    (encoded only when new to this VM), then the VM's retention.
//! 4. Every [`FORGET_EVERY`] sweeps, the histories of instances that no longer exist go (an
//!    ephemeral VM deleted by the driver when it stopped, a delete interrupted by a crash).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use vgashot_history::{NewShot, Reason};
use vgashot_instance_drivers::Instance;
use vgashot_screens::{Capture, Follower, ScreenId, ScreensError};

use super::{ScreenHistory, instance_ref, retention, settings};
use crate::context::Context;
use crate::error::ApiError;
use crate::request::DEFAULT_PROJECT;

/// How often the supervisor looks for VMs that started: a second, so the first screens of a
/// boot are recorded; it reads the driver's registry only, no QEMU.
pub const SWEEP: Duration = Duration::from_secs(1);
/// Sweeps between two looks for histories of instances that are gone: a minute.
const FORGET_EVERY: u32 = 60;
/// How long a follower waits for a change before it looks at the VM again: a stopped VM is
/// let go of, a disabled history stops and a new interval takes a new follower within this.
const RECHECK: Duration = SWEEP;

/// Runs the recorder until the task is aborted (the server stops).
pub async fn supervise(context: Arc<Context>) {
    let Some(history) = context.history.clone() else {
        return;
    };
    let mut followers: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut sweeps = 0u32;
    let mut ticker = tokio::time::interval(SWEEP);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        followers.retain(|_, follower| !follower.is_finished());
        let vms = context.driver.list(DEFAULT_PROJECT);
        for vm in &vms {
            let enabled = settings(vm).is_ok_and(|settings| settings.enabled);
            if !enabled || !vm.running() {
                continue;
            }
            let identity = instance_ref(vm).identity;
            followers.entry(identity).or_insert_with(|| {
                tokio::spawn(follow(context.clone(), history.clone(), vm.clone()))
            });
        }
        sweeps += 1;
        if sweeps % FORGET_EVERY == 0 {
            let alive: HashSet<String> = vms.iter().map(|vm| instance_ref(vm).identity).collect();
            forget_gone(&history, alive).await;
        }
    }
}

/// Deletes the histories whose instance is not in `alive`.
async fn forget_gone(history: &ScreenHistory, alive: HashSet<String>) {
    let forgotten = history
        .run(move |store| {
            let gone: Vec<String> = store
                .identities()?
                .into_iter()
                .filter(|identity| !alive.contains(identity))
                .collect();
            for identity in &gone {
                store.forget_instance(identity)?;
            }
            Ok(gone.len())
        })
        .await;
    if let Err(error) = forgotten {
        tracing::warn!(error = %crate::describe(&error), "cannot forget the histories of deleted instances");
    }
}

/// Follows `vm`'s screen into the history until it stops or its history is disabled.
async fn follow(context: Arc<Context>, history: Arc<ScreenHistory>, vm: Arc<dyn Instance>) {
    let instance = instance_ref(&vm);
    let mut recent = {
        let identity = instance.identity.clone();
        let latest = history
            .run(move |store| store.latest(&identity))
            .await
            .ok()
            .flatten()
            .map(|shot| shot.hash);
        Recent([latest, None])
    };
    let Ok(mut settings) = settings(&vm) else {
        return;
    };
    let Ok(mut follower) = context
        .screens
        .follow(&vm, &ScreenId::default(), settings.interval)
    else {
        return;
    };
    loop {
        if !settings.enabled {
            return;
        }
        let capture = match next_changed_frame(&mut follower, &recent).await {
            Ok(Some(capture)) => capture,
            Ok(None) => {
                // No change in a while: the VM may have stopped (let go of it, so that its
                // screens' state and metrics can go with it), or its settings changed.
                if !vm.running() {
                    return;
                }
                match self::settings(&vm) {
                    Ok(now) if now.interval == settings.interval => settings = now,
                    // A new interval needs a new follower: the next sweep starts one.
                    _ => return,
                }
                continue;
            }
            Err(ApiError::Screens(ScreensError::NotRunning)) => return,
            Err(error) => {
                tracing::debug!(instance = vm_name(&vm), error = %crate::describe(&error), "no screen to record");
                tokio::time::sleep(settings.interval).await;
                continue;
            }
        };
        let hash = capture.hash();
        let (instance, rules) = (instance.clone(), retention(&settings));
        let written = history
            .run(move |store| {
                let frame = capture.frame();
                store.record(
                    &instance,
                    NewShot {
                        frame,
                        hash,
                        taken_at: capture.captured_at(),
                        reason: Reason::Change,
                        pinned: false,
                        note: "",
                    },
                )?;
                store.trim(&instance.identity, rules, SystemTime::now())
            })
            .await;
        match written {
            Ok(_) => recent.push(hash.to_hex()),
            Err(error) => {
                tracing::warn!(instance = vm_name(&vm), error = %crate::describe(&error), "cannot record a screen")
            }
        }
    }
}

fn vm_name(vm: &Arc<dyn Instance>) -> &str {
    Instance::name(vm.as_ref())
}

/// The pixel hashes (hex) of the last two screenshots recorded, the latest first.
struct Recent([Option<String>; 2]);

impl Recent {
    fn push(&mut self, hash: String) {
        self.0[1] = self.0[0].replace(hash);
    }

    fn contains(&self, hash: &str) -> bool {
        self.0.iter().flatten().any(|recent| recent == hash)
    }
}

/// The next screen of the follower's VM whose pixels are not one of the `recent` ones, or
/// `None` after [`RECHECK`] without one: the one place that knows where changed frames come
/// from (see the module's step 2). The follower is pushed changes by a mirrored screen (a still
/// screen costs nothing) and polls other screens at the interval.
async fn next_changed_frame(
    follower: &mut Follower<'_>,
    recent: &Recent,
) -> Result<Option<Arc<Capture>>, ApiError> {
    let Ok(answer) = tokio::time::timeout(RECHECK, follower.changed()).await else {
        return Ok(None);
    };
    let answer = answer?;
    let changed = !recent.contains(&answer.capture.hash().to_hex());
    Ok(changed.then_some(answer.capture))
}

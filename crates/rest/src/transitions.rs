//! The driver's state transitions as Incus `lifecycle` events on `/1.0/events`.
//!
//! 1. The driver publishes a [`Transition`] each time an instance starts or ends, whoever or
//!    whatever caused it (a request, the guest, QEMU dying); [`forward`] follows them for the
//!    daemon's life and publishes each as one lifecycle event, so a change nobody asked for
//!    through the API (a guest powering off, a panic, a crash) reaches listeners as a request's
//!    change does, and no client has to poll for it.
//! 2. The action is upstream's name where upstream has one (`shared/api/event_lifecycle.go`):
//!    [`action::INSTANCE_STARTED`], [`action::INSTANCE_STOPPED`], and
//!    [`action::INSTANCE_SHUTDOWN`] for a guest that powered itself off (upstream's event for a
//!    clean shutdown); ours where it has none: [`action::INSTANCE_PANICKED`] and
//!    [`action::INSTANCE_CRASHED`] (the `instance_lifecycle_reasons` extension).
//! 3. The record's `context` says why: `reason` (the words the instance's state records) and
//!    `status` (its Incus status from then on, `Stopped`, `Running` or `Error`), and for an end,
//!    `screenshot`: the URL of the instance's last screen, pinned in the screen history before
//!    the event goes out (the frame the driver captured before QEMU ended,
//!    `Transition::final_frame`, or the latest recorded when QEMU was gone; see
//!    [`crate::history::ScreenHistory::pin_final_screen`]).
//! 4. A bridge that falls behind the driver's channel loses the oldest transitions and logs how
//!    many; it never holds the driver up.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use vgashot_instance_drivers::{Driver, Transition, TransitionKind};

use crate::events::{EventHub, Lifecycle, action};
use crate::history::ScreenHistory;

/// The lifecycle action of a transition of `kind`.
pub fn action_of(kind: TransitionKind) -> &'static str {
    match kind {
        TransitionKind::Started => action::INSTANCE_STARTED,
        TransitionKind::Stopped => action::INSTANCE_STOPPED,
        TransitionKind::GuestShutdown => action::INSTANCE_SHUTDOWN,
        TransitionKind::GuestPanicked => action::INSTANCE_PANICKED,
        TransitionKind::Crashed => action::INSTANCE_CRASHED,
    }
}

/// The lifecycle record of `transition`, in upstream's shape, with its reason and status.
pub fn record(transition: &Transition) -> Lifecycle {
    Lifecycle::instance(
        action_of(transition.kind),
        &transition.name,
        &transition.project,
    )
    .with_context("reason", transition.reason.as_str())
    .with_context("status", transition.status.as_str())
}

/// Where the last screens of ended instances are pinned: the daemon's history, and the driver
/// that finds the instance a transition names.
#[derive(Debug, Clone)]
pub struct FinalScreens {
    /// The screen history.
    pub history: Arc<ScreenHistory>,
    /// The driver whose transitions these are.
    pub driver: Arc<dyn Driver>,
}

/// Publishes every transition from `transitions` on `hub` until the driver is gone, each end
/// with its last screen pinned first in `final_screens` (when the daemon keeps a history).
pub async fn forward(
    mut transitions: broadcast::Receiver<Transition>,
    hub: EventHub,
    final_screens: Option<FinalScreens>,
) {
    loop {
        match transitions.recv().await {
            Ok(transition) => {
                let mut record = record(&transition);
                if let Some(FinalScreens { history, driver }) = &final_screens {
                    let pinned = history.pin_final_screen(driver.as_ref(), &transition).await;
                    if let Some(url) = pinned {
                        record = record.with_context("screenshot", url.as_str());
                    }
                }
                hub.publish_lifecycle_record(&transition.project, &record)
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "lifecycle events lost: the bridge fell behind the driver"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::json;
    use vgashot_instance_drivers::InstanceStatus;

    use super::*;

    fn transition(kind: TransitionKind, status: InstanceStatus, reason: &str) -> Transition {
        Transition {
            project: "default".into(),
            name: "v1".into(),
            kind,
            status,
            reason: reason.into(),
            at: SystemTime::now(),
            final_frame: None,
        }
    }

    #[test]
    fn each_kind_has_its_action_and_the_reason_is_in_the_context() {
        let panicked = transition(
            TransitionKind::GuestPanicked,
            InstanceStatus::Error,
            "the guest kernel panicked",
        );
        assert_eq!(
            serde_json::to_value(record(&panicked)).unwrap(),
            json!({
                "action": "instance-panicked",
                "source": "/1.0/instances/v1",
                "context": {"reason": "the guest kernel panicked", "status": "Error"},
                "name": "v1",
                "project": "default",
            })
        );
        let actions: Vec<_> = [
            TransitionKind::Started,
            TransitionKind::Stopped,
            TransitionKind::GuestShutdown,
            TransitionKind::GuestPanicked,
            TransitionKind::Crashed,
        ]
        .into_iter()
        .map(action_of)
        .collect();
        assert_eq!(
            actions,
            [
                "instance-started",
                "instance-stopped",
                "instance-shutdown",
                "instance-panicked",
                "instance-crashed"
            ]
        );
    }

    #[tokio::test]
    async fn the_bridge_publishes_each_transition_until_the_driver_is_gone() {
        let hub = EventHub::new();
        let mut listener = hub.subscribe();
        let (sender, receiver) = broadcast::channel(4);
        let bridge = tokio::spawn(forward(receiver, hub, None));
        sender
            .send(transition(
                TransitionKind::GuestShutdown,
                InstanceStatus::Stopped,
                "the guest shut down",
            ))
            .unwrap();
        let published = listener.recv().await.unwrap();
        let event: serde_json::Value = serde_json::from_str(published.text()).unwrap();
        assert_eq!(event["type"], "lifecycle");
        assert_eq!(event["metadata"]["action"], "instance-shutdown");
        assert_eq!(
            event["metadata"]["context"]["reason"],
            "the guest shut down"
        );
        drop(sender);
        bridge.await.unwrap();
    }
}

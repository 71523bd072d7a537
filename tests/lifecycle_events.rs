//! Lifecycle events of the real daemon for starts and ends of instances (boot-sector fixtures):
//! one `instance-started` per start, `instance-stopped` with its reason for a stop through the
//! API, and `instance-crashed` when QEMU is killed from outside, which leaves no QEMU behind.

mod support;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use support::lifecycle::{LifecycleListener, pinned_last_screen};
use support::{Daemon, json};
use vgashot_fixtures::Fixture;

/// How long an event may take on a loaded 2-core machine: a start, a stop that escalates to
/// `quit`, a capture; far below a hang.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

/// The state of instance `name`.
async fn state(daemon: &Daemon, name: &str) -> Value {
    let reply = daemon
        .request("GET", &format!("/1.0/instances/{name}/state"), None)
        .await;
    assert_eq!(reply.status, 200, "{:?}", json(&reply));
    json(&reply)["metadata"].clone()
}

#[tokio::test]
async fn starts_stops_and_crashes_are_lifecycle_events_with_their_reasons() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let mut listener = LifecycleListener::open(&daemon).await;
    daemon
        .create_vm("v1", Some(Fixture::bars(640, 480)), json!({}), true)
        .await;
    let events = listener
        .until("v1", "instance-started", EVENT_DEADLINE)
        .await;
    assert_eq!(
        events,
        [
            json!({"action": "instance-created", "source": "/1.0/instances/v1",
                   "name": "v1", "project": "default"}),
            json!({"action": "instance-started", "source": "/1.0/instances/v1",
                   "context": {"reason": "started on request", "status": "Running"},
                   "name": "v1", "project": "default"}),
        ]
    );

    daemon
        .operation(
            "PUT",
            "/1.0/instances/v1/state",
            Some(json!({"action": "stop", "force": true})),
        )
        .await;
    let events = listener
        .until("v1", "instance-stopped", EVENT_DEADLINE)
        .await;
    assert_eq!(events.len(), 1, "one event for the stop: {events:?}");
    // The last screen, captured before QEMU ended, pinned.
    let (url, _) = pinned_last_screen(
        &daemon,
        &events[0]["context"],
        ("stopped on request", "Stopped"),
        "stop",
    )
    .await;
    let image = daemon.request("GET", &format!("{url}/image"), None).await;
    assert_eq!(image.status, 200);

    // Killed from outside: a crash, and nothing left of QEMU.
    daemon
        .operation(
            "PUT",
            "/1.0/instances/v1/state",
            Some(json!({"action": "start"})),
        )
        .await;
    listener
        .until("v1", "instance-started", EVENT_DEADLINE)
        .await;
    let pid = state(&daemon, "v1").await["pid"].as_i64().unwrap();
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).unwrap();
    let events = listener
        .until("v1", "instance-crashed", EVENT_DEADLINE)
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["context"]["status"], "Stopped");
    assert_eq!(
        events[0]["context"]["reason"],
        format!(
            "QEMU (pid {pid}) exited without shutting down (killed from outside, or crashed; its \
             exit status is unknown: it is not the daemon's child)"
        )
    );
    let after = state(&daemon, "v1").await;
    assert_eq!(
        (after["status"].clone(), after["pid"].clone()),
        (json!("Stopped"), json!(0))
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    assert!(
        stat.as_deref().map_or(true, |stat| stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z')),
        "QEMU {pid} still runs: {stat:?}"
    );
}

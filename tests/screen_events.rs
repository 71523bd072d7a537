//! Screen-change events of the real daemon and QEMU (`instance_console_screen_events`): a
//! listener of `screen` gets a changing VM's changes at most once a second, and a still VM's
//! screen once, with the `ETag` a screenshot answers.

mod support;

use std::time::Duration;

use serde_json::json;
use support::screen_events::{ScreenListener, assert_paced, of};
use support::{Daemon, wait_for_picture};
use vgashot_fixtures::Fixture;

/// The least time between the changes of two events of one instance: the period (1 s), less
/// the time a mirrored frame's update may precede its capture (the counter repaints every
/// 55 ms).
const LEAST_GAP: Duration = Duration::from_millis(900);

#[tokio::test]
async fn a_changing_screen_is_an_event_a_second_and_a_still_one_only_its_first() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let bars = Fixture::bars(640, 480);
    daemon.create_vm("still", Some(bars), json!({}), true).await;
    daemon
        .create_vm("counter", Some(Fixture::Counter), json!({}), true)
        .await;
    wait_for_picture(&daemon, "still", bars).await;

    let mut listener = ScreenListener::open(&daemon, "type=screen").await;
    let events = listener.collect(Duration::from_secs(6)).await;

    let still = of(&events, "still");
    assert_eq!(still.len(), 1, "{still:?}");
    let metadata = &still[0].1;
    assert_eq!(
        (
            &metadata["project"],
            &metadata["width"],
            &metadata["height"]
        ),
        (&json!("default"), &json!(640), &json!(480)),
        "{metadata}"
    );
    assert!(metadata.get("device").is_none(), "{metadata}");
    let screenshot = daemon
        .request("GET", "/1.0/instances/still/console?type=vga", None)
        .await;
    assert_eq!(screenshot.status, 200);
    assert_eq!(
        screenshot.headers["etag"].to_str().unwrap(),
        metadata["etag"].as_str().unwrap()
    );

    // The counter changes 18 times a second: one event at the start, then one a second.
    let counter = of(&events, "counter");
    assert!((4..=7).contains(&counter.len()), "{counter:?}");
    assert_paced(&counter, LEAST_GAP);
}

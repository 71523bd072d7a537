//! Many listeners of `screen` events against one VM whose guest repaints constantly: they share
//! one follower per VM, so the captures stay at one follower's rate (one a second), every
//! listener gets the same paced events, and a bystander keeps getting screenshots.

use std::time::Duration;

use serde_json::json;
use vgashot_fixtures::Fixture;

use crate::support::bystander::{self, Bystander};
use crate::support::screen_events::{ScreenListener, assert_paced, of};
use crate::support::{Daemon, metric};

/// Listeners in the attack: half of the daemon's bound of 128.
const LISTENERS: usize = 64;

#[tokio::test]
async fn many_screen_listeners_do_not_multiply_the_captures() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    // No minimum interval of its own: the events' period is what paces the captures.
    daemon
        .create_vm(
            "counter",
            Some(Fixture::Counter),
            json!({"console.screenshot.min_interval": "0"}),
            true,
        )
        .await;
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let mut listeners = Vec::new();
    for _ in 0..LISTENERS {
        listeners.push(ScreenListener::open(&daemon, "type=screen").await);
    }
    // Following has started once the first event of the counter arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while of(
        &listeners[0].collect(Duration::from_millis(500)).await,
        "counter",
    )
    .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "no screen event");
    }

    let before = metric(&daemon, "vgashot_screenshot_captures_total", "counter").await;
    let events = listeners[0].collect(Duration::from_secs(5)).await;
    let after = metric(&daemon, "vgashot_screenshot_captures_total", "counter").await;
    let counter = of(&events, "counter");
    assert!((4..=6).contains(&counter.len()), "{counter:?}");
    assert_paced(&counter, Duration::from_millis(900));
    // One follower's rate: a capture a second (and one more at the edges), not 64.
    assert!(after - before <= 7, "{} captures in 5 s", after - before);

    // The last listener, unread meanwhile, got the same events (and perhaps one more on each
    // side: it was read a little later, for a little longer).
    let last = listeners[LISTENERS - 1]
        .collect(Duration::from_millis(500))
        .await;
    let etags = |events: &[&(tokio::time::Instant, serde_json::Value)]| {
        events
            .iter()
            .map(|(_, metadata)| metadata["etag"].clone())
            .collect::<Vec<_>>()
    };
    let theirs = etags(&of(&last, "counter"));
    let ours = etags(&counter);
    assert!(
        theirs.windows(ours.len()).any(|window| window == ours),
        "the last listener missed events: {theirs:?} vs {ours:?}"
    );
    bystander.finish(bystander::BOUND).await;
}

//! The screen history, end to end: a running VM's changes recorded, served through the
//! screenshots API and `console?at=`, kept after it stops, deleted with it, and a store that
//! survives the daemon's SIGKILL with every frame it committed.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Daemon, decode_png, json};
use vgashot_client::HistoryFilter;
use vgashot_fixtures::Fixture;
use vgashot_incus_wire::Screenshot;

/// The screenshots of `name` (recursion 1).
async fn screenshots(daemon: &Daemon, name: &str) -> Vec<Screenshot> {
    daemon
        .client()
        .screenshots(name, None, &HistoryFilter::default())
        .await
        .unwrap()
}

/// The screenshot in an answer's metadata.
fn screenshot(reply: &vgashot_client::Reply) -> Screenshot {
    assert_eq!(reply.status, 200, "{:?}", json(reply));
    serde_json::from_value(json(reply)["metadata"].clone()).unwrap()
}

/// Polls (bounded) until `name` has at least `count` screenshots; returns them.
async fn wait_for_screenshots(daemon: &Daemon, name: &str, count: usize) -> Vec<Screenshot> {
    let started = Instant::now();
    loop {
        let shots = screenshots(daemon, name).await;
        if shots.len() >= count {
            return shots;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} recorded {} screenshots, not {count}",
            shots.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A VM showing the counter (a new picture 18 times a second), recorded every 200 ms.
async fn counting_vm(daemon: &Daemon, name: &str, interval: &str) {
    daemon
        .create_vm(
            name,
            Some(Fixture::Counter),
            json!({"console.history.interval": interval}),
            true,
        )
        .await;
}

#[tokio::test]
async fn a_vms_screens_are_recorded_served_and_kept_after_it_stops() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    counting_vm(&daemon, "v1", "200ms").await;
    let shots = wait_for_screenshots(&daemon, "v1", 3).await;
    for pair in shots.windows(2) {
        assert_eq!(pair[0].reason, "change");
        assert_ne!(
            pair[0].etag, pair[1].etag,
            "an unchanged screen was recorded"
        );
    }
    let first = &shots[0];
    let id = first.id;
    let image_url = format!("/1.0/instances/v1/screenshots/{id}/image");

    // The image, as the live console serves one: same ETag for the same pixels, 304, thumbnails.
    let image = daemon.request("GET", &image_url, None).await;
    assert_eq!(image.status, 200);
    assert_eq!(image.headers["content-type"], "image/png");
    assert_eq!(image.headers["etag"], first.etag.as_str());
    let (width, height, _) = decode_png(&image.body);
    assert_eq!((width, height), (first.width, first.height));
    let client = daemon.client();
    let cached = client
        .request_with(
            "GET",
            &image_url,
            &[(http::header::IF_NONE_MATCH, first.etag.as_str())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(cached.status, 304);
    let thumbnail = daemon
        .request("GET", &format!("{image_url}?width=160&format=jpeg"), None)
        .await;
    assert_eq!(thumbnail.status, 200);
    assert_eq!(thumbnail.headers["content-type"], "image/jpeg");

    // What the screen showed at the first screenshot's time.
    let at = |time: &str| format!("/1.0/instances/v1/console?type=vga&at={time}");
    let then = daemon.request("GET", &at(&first.taken_at), None).await;
    assert_eq!(then.status, 200);
    assert_eq!(then.headers["etag"], first.etag.as_str());
    assert_eq!(
        then.headers["content-location"],
        format!("/1.0/instances/v1/screenshots/{id}").as_str()
    );
    let before = daemon
        .request("GET", &at("2000-01-01T00:00:00Z"), None)
        .await;
    assert_eq!(before.status, 404);
    assert_eq!(json(&before)["error"], "Screenshot not found");
    let bad = daemon.request("GET", &at("yesterday"), None).await;
    assert_eq!(bad.status, 400);

    // A manual screenshot, pinned, with a note; then changed.
    let manual = daemon
        .request(
            "POST",
            "/1.0/instances/v1/screenshots",
            Some(json!({"pinned": true, "note": "as seen"})),
        )
        .await;
    let manual = screenshot(&manual);
    assert_eq!(
        (manual.reason.as_str(), manual.pinned, manual.note.as_str()),
        ("manual", true, "as seen")
    );
    let manual_url = format!("/1.0/instances/v1/screenshots/{}", manual.id);
    let patched = daemon
        .request("PATCH", &manual_url, Some(json!({"note": "evidence"})))
        .await;
    let patched = screenshot(&patched);
    assert_eq!((patched.note.as_str(), patched.pinned), ("evidence", true));
    let manual_only = daemon
        .client()
        .screenshots(
            "v1",
            None,
            &HistoryFilter {
                reason: Some("manual".into()),
                ..HistoryFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(manual_only, [patched]);
    let urls_only = daemon
        .request("GET", "/1.0/instances/v1/screenshots?reason=manual", None)
        .await;
    assert_eq!(json(&urls_only)["metadata"], json!([manual_url]));
    let manual_only = daemon
        .request("GET", "/1.0/instances/v1/screenshots?reason=manual", None)
        .await;
    assert_eq!(json(&manual_only)["metadata"], json!([manual_url]));

    // Stopped: the live screen is a 400, the history still answers.
    daemon
        .operation(
            "PUT",
            "/1.0/instances/v1/state",
            Some(json!({"action": "stop", "force": true})),
        )
        .await;
    let live = daemon
        .request("GET", "/1.0/instances/v1/console?type=vga", None)
        .await;
    assert_eq!(live.status, 400);
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    assert_eq!(daemon.request("GET", &at(&now), None).await.status, 200);

    // A time-lapse of the whole history, and its bound.
    let timelapse = daemon
        .request(
            "GET",
            &format!("/1.0/instances/v1/screenshots/timelapse?until={now}&width=160"),
            None,
        )
        .await;
    assert_eq!(timelapse.status, 200);
    assert_eq!(timelapse.headers["content-type"], "image/apng");
    assert!(timelapse.body.windows(4).any(|chunk| chunk == b"acTL"));

    // Deleting a screenshot, then the instance with its history.
    assert_eq!(
        daemon
            .request(
                "DELETE",
                &format!("/1.0/instances/v1/screenshots/{id}"),
                None
            )
            .await
            .status,
        200
    );
    assert_eq!(
        daemon
            .request("GET", &format!("/1.0/instances/v1/screenshots/{id}"), None)
            .await
            .status,
        404
    );
    daemon.operation("DELETE", "/1.0/instances/v1", None).await;
    daemon
        .create_vm("v1", Some(Fixture::Counter), json!({}), false)
        .await;
    assert!(screenshots(&daemon, "v1").await.is_empty());
}

#[tokio::test]
async fn a_killed_daemon_leaves_every_committed_screenshot() {
    let Some(mut daemon) = Daemon::start().await else {
        return;
    };
    counting_vm(&daemon, "v1", "100ms").await;
    let committed = wait_for_screenshots(&daemon, "v1", 5).await;
    // Killed while it goes on recording.
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let path = daemon.dir.path().join("history.sqlite");
    let started = Instant::now();
    // The process is gone when its lock is free: a store opened then is the one it left.
    while std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.contains("State:\tZ"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the daemon did not die"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let limits = vgashot_history::Limits {
        max_frame_pixels: 1 << 24,
        max_total_bytes: u64::MAX,
    };
    let store = vgashot_history::History::open(&path, limits).unwrap();
    let identity = store.identities().unwrap().pop().unwrap();
    for shot in &committed {
        let (kept, image) = store.image(&identity, shot.id).unwrap();
        assert_eq!(format!("\"{}\"", kept.hash), shot.etag);
        vgashot_history::History::decode(&image).unwrap();
    }
    drop(store);
    // Started again, the daemon serves them too.
    daemon.spawn().await;
    for shot in &committed {
        let url = format!("/1.0/instances/v1/screenshots/{}/image", shot.id);
        let image = daemon.request("GET", &url, None).await;
        assert_eq!(image.status, 200, "{url}");
        assert_eq!(image.headers["etag"], shot.etag.as_str());
    }
    daemon
        .operation(
            "PUT",
            "/1.0/instances/v1/state",
            Some(json!({"action": "stop", "force": true})),
        )
        .await;
}

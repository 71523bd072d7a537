//! Waiting for a screen to change, end to end: `wait=DURATION` with `If-None-Match` answers as
//! soon as the screen differs, `304` when the duration passes first, and refuses a duration
//! beyond its bound.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Daemon, json, wait_for_picture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vgashot_fixtures::Fixture;

/// Status, `ETag` and how long a GET with `headers` took, over a raw socket (HTTP/1.0).
async fn get(daemon: &Daemon, path: &str, headers: &[(&str, &str)]) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut stream = tokio::net::UnixStream::connect(daemon.socket())
        .await
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response))
        .await
        .expect("an answer within 60 s")
        .unwrap();
    let head = String::from_utf8_lossy(&response);
    let status = head[9..12].parse().unwrap();
    let etag = head
        .lines()
        .find_map(|line| line.strip_prefix("etag: "))
        .unwrap_or_default()
        .to_owned();
    (status, etag, started.elapsed())
}

#[tokio::test]
async fn a_still_screen_is_a_304_when_the_wait_ends() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    daemon.create_vm("v1", Some(fixture), json!({}), true).await;
    wait_for_picture(&daemon, "v1", fixture).await;
    let path = "/1.0/instances/v1/console?type=vga&width=320";
    let (status, etag, _) = get(&daemon, path, &[]).await;
    assert_eq!(status, 200);

    let waiting = format!("{path}&wait=2s");
    let (status, same, took) = get(&daemon, &waiting, &[("If-None-Match", &etag)]).await;
    assert_eq!((status, &same), (304, &etag));
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // An ETag the screen does not have answers at once, with the screen.
    let (status, current, took) = get(&daemon, &waiting, &[("If-None-Match", "\"x\"")]).await;
    assert_eq!((status, &current), (200, &etag));
    assert!(took < Duration::from_secs(2), "{took:?}");

    let reply = daemon
        .request("GET", "/1.0/instances/v1/console?type=vga&wait=31s", None)
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        json(&reply)["error"],
        "Invalid value for wait parameter: 31s (a duration of at most 30s, e.g. 500ms or 10s)"
    );
}

#[tokio::test]
async fn a_changing_screen_answers_the_wait_at_its_next_change() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    daemon
        .create_vm("v1", Some(Fixture::Counter), json!({}), true)
        .await;
    let path = "/1.0/instances/v1/console?type=vga";
    let started = Instant::now();
    let mut etag = loop {
        let (status, etag, _) = get(&daemon, path, &[]).await;
        if status == 200 {
            break etag;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no screen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for _ in 0..3 {
        let waiting = format!("{path}&wait=20s");
        let (status, next, took) = get(&daemon, &waiting, &[("If-None-Match", &etag)]).await;
        assert_eq!(status, 200);
        assert_ne!(next, etag);
        // The counter changes 18 times a second; the answer comes with a change, not at 20 s.
        assert!(took < Duration::from_secs(10), "{took:?}");
        etag = next;
    }
}

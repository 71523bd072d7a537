//! Screenshots for many viewers, end to end: shared captures, ETags and 304s, thumbnails and
//! formats, the live stream, and the metrics that count them.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Daemon, decode_png, json, metric, wait_for_picture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vgashot_fixtures::Fixture;

/// Every line of the metrics text about instance `name`.
async fn metric_lines(daemon: &Daemon, name: &str) -> Vec<String> {
    let reply = daemon.request("GET", "/1.0/metrics", None).await;
    assert_eq!(reply.status, 200);
    let label = format!("project=\"default\",name=\"{name}\"");
    String::from_utf8(reply.body.to_vec())
        .unwrap()
        .lines()
        .filter(|line| line.contains(&label))
        .map(str::to_owned)
        .collect()
}

/// Polls the metrics (bounded) until `name` has no line left: a deleted instance's go once
/// whatever followed its screen (the history's recorder, within a second) has let go of it.
async fn wait_for_no_metrics(daemon: &Daemon, name: &str) {
    let started = Instant::now();
    while !metric_lines(daemon, name).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}'s metrics stayed: {:#?}",
            metric_lines(daemon, name).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET path` (bounded) until it answers `status`; `what` names the wait in a failure.
async fn wait_for_status(daemon: &Daemon, path: &str, status: u16, what: &str) {
    let started = Instant::now();
    while daemon.request("GET", path, None).await.status != status {
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the daemon no longer has instance `name`.
async fn wait_until_gone(daemon: &Daemon, name: &str) {
    let path = format!("/1.0/instances/{name}");
    wait_for_status(daemon, &path, 404, &format!("{name} was never deleted")).await;
}

/// A head without a device is refused before it makes any state; a deleted instance's screens
/// and metrics go with it, whether the API deleted it or the driver did (an ephemeral instance
/// that stopped).
#[tokio::test]
async fn screens_and_metrics_go_with_their_instance() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    daemon
        .create_vm("kept", Some(fixture), json!({}), true)
        .await;
    wait_for_picture(&daemon, "kept", fixture).await;
    let body = json!({
        "name": "brief", "type": "virtual-machine", "source": {"type": "none"},
        "config": {"limits.memory": "64MiB"}, "ephemeral": true, "start": true,
    });
    daemon.operation("POST", "/1.0/instances", Some(body)).await;
    let head = daemon
        .request("GET", "/1.0/instances/brief/console?type=vga&head=1", None)
        .await;
    assert_eq!(head.status, 400);
    assert_eq!(
        json(&head)["error"],
        "A screenshot head needs a display device"
    );
    assert_eq!(metric_lines(&daemon, "brief").await, Vec::<String>::new());

    let shot = daemon
        .request("GET", "/1.0/instances/brief/console?type=vga", None)
        .await;
    assert_eq!(shot.status, 200);
    let lines = metric_lines(&daemon, "brief").await;
    let label = "{project=\"default\",name=\"brief\"}";
    for line in [
        format!("vgashot_screenshot_captures_total{label} 1"),
        format!("vgashot_screenshot_errors_total{label} 0"),
        format!("vgashot_screenshot_streams{label} 0"),
        format!("vgashot_screenshot_capture_duration_seconds_count{label} 1"),
    ] {
        assert!(lines.contains(&line), "no {line} in {lines:#?}");
    }
    // Six counters, frames by their two sources, a gauge, and a histogram of 12 buckets, a
    // count and a sum.
    assert_eq!(lines.len(), 23, "{lines:#?}");
    assert_eq!(metric_lines(&daemon, "kept").await.len(), 23);

    // The driver deletes an ephemeral instance when it stops.
    let stop = json!({"action": "stop", "force": true});
    daemon
        .operation("PUT", "/1.0/instances/brief/state", Some(stop.clone()))
        .await;
    wait_until_gone(&daemon, "brief").await;
    wait_for_no_metrics(&daemon, "brief").await;

    daemon
        .operation("PUT", "/1.0/instances/kept/state", Some(stop))
        .await;
    daemon
        .operation("DELETE", "/1.0/instances/kept", None)
        .await;
    wait_for_no_metrics(&daemon, "kept").await;
    let reply = daemon.request("GET", "/1.0/metrics", None).await;
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(!text.contains("name=\""), "{text}");
}

#[tokio::test]
async fn five_hundred_viewers_cost_a_handful_of_captures() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    // The history's recorder asks for the screen too: this test counts the viewers' requests.
    let config = json!({"console.history.enabled": "false"});
    daemon.create_vm("v1", Some(fixture), config, true).await;
    wait_for_picture(&daemon, "v1", fixture).await;
    let before = metric(&daemon, "vgashot_screenshot_captures_total", "v1").await;
    let shared_before = shared_answers(&daemon, "v1").await;

    let daemon = std::sync::Arc::new(daemon);
    let burst = Instant::now();
    let mut viewers = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let daemon = daemon.clone();
        viewers.spawn(async move {
            daemon
                .request("GET", "/1.0/instances/v1/console?type=vga", None)
                .await
        });
    }
    let replies = viewers.join_all().await;
    let elapsed = burst.elapsed();
    let captures = metric(&daemon, "vgashot_screenshot_captures_total", "v1").await - before;
    // One capture per 250 ms interval at most, however many requests: a handful for a burst that
    // a loaded CI machine may stretch beyond a second.
    let intervals = u64::try_from(elapsed.as_millis() / 250).unwrap() + 1;
    assert!(
        captures <= intervals.max(5),
        "{captures} captures for 500 requests in {elapsed:?}"
    );
    let expected = fixture.expected_rgb().unwrap();
    let first = &replies[0];
    assert_eq!(decode_png(&first.body).2, expected);
    for reply in &replies {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, first.body, "every viewer gets the same image");
        assert_eq!(reply.headers["etag"], first.headers["etag"]);
    }
    let shared = shared_answers(&daemon, "v1").await - shared_before;
    // Each request either started a capture or shared one: the accounts add up exactly.
    assert_eq!(
        shared + captures,
        500,
        "{shared} requests shared a capture, {captures} took one"
    );
}

#[tokio::test]
async fn etags_follow_the_pixels_and_answer_304() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    daemon
        .create_vm(
            "still",
            Some(fixture),
            json!({"console.screenshot.min_interval": "0"}),
            true,
        )
        .await;
    daemon
        .create_vm(
            "moving",
            Some(Fixture::Counter),
            json!({"console.screenshot.min_interval": "0"}),
            true,
        )
        .await;
    wait_for_picture(&daemon, "still", fixture).await;

    let shot = |name: &'static str, extra: &'static str| {
        let daemon = &daemon;
        async move {
            daemon
                .request(
                    "GET",
                    &format!("/1.0/instances/{name}/console?type=vga{extra}"),
                    None,
                )
                .await
        }
    };
    // An unchanged screen keeps its ETag and its Last-Modified across captures.
    let a = shot("still", "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = shot("still", "").await;
    assert_eq!(a.headers["etag"], b.headers["etag"]);
    assert_eq!(a.headers["last-modified"], b.headers["last-modified"]);
    assert!(
        a.headers["etag"].to_str().unwrap().starts_with('"'),
        "a strong ETag"
    );
    assert!(a.headers.contains_key("date"));
    // A thumbnail of the same pixels has an ETag of its own.
    let thumbnail = shot("still", "&width=320").await;
    assert_ne!(thumbnail.headers["etag"], a.headers["etag"]);

    // 304 for a matching If-None-Match (also weak, also in a list), 200 otherwise.
    let etag = a.headers["etag"].to_str().unwrap().to_owned();
    let socket = daemon.socket();
    for (header, status) in [
        (etag.clone(), 304),
        (format!("W/{etag}"), 304),
        (format!("\"nope\", {etag}"), 304),
        ("\"nope\"".to_owned(), 200),
    ] {
        let reply = raw_get(
            &socket,
            "/1.0/instances/still/console?type=vga",
            &[("If-None-Match", &header)],
        )
        .await;
        assert_eq!(reply.status, status, "If-None-Match: {header}");
        if status == 304 {
            assert!(reply.body.is_empty());
            assert_eq!(reply.etag.as_deref(), Some(etag.as_str()));
        }
    }
    assert!(metric(&daemon, "vgashot_screenshot_not_modified_total", "still").await >= 3);

    // A screen that changes changes its ETag.
    let mut etags = std::collections::HashSet::new();
    let started = Instant::now();
    while etags.len() < 3 {
        let reply = shot("moving", "").await;
        if reply.status == 200 {
            etags.insert(reply.headers["etag"].to_str().unwrap().to_owned());
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the counter's ETag never changed"
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
}

#[tokio::test]
async fn thumbnails_and_formats() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(1024, 768);
    daemon.create_vm("v1", Some(fixture), json!({}), true).await;
    wait_for_picture(&daemon, "v1", fixture).await;
    let get = |query: &'static str| {
        let daemon = &daemon;
        async move {
            daemon
                .request(
                    "GET",
                    &format!("/1.0/instances/v1/console?type=vga{query}"),
                    None,
                )
                .await
        }
    };

    let plain = get("").await;
    let explicit = get("&format=png").await;
    assert_eq!(
        plain.body, explicit.body,
        "PNG without parameters is the plain endpoint's"
    );

    let thumbnail = get("&width=320").await;
    assert_eq!(thumbnail.headers["content-type"], "image/png");
    let (width, height, rgb) = decode_png(&thumbnail.body);
    assert_eq!((width, height), (320, 240));
    // The middle of each bar, away from edges, keeps its colour.
    let bar_width = 320 / 8;
    for (bar, colour) in vgashot_fixtures::BAR_COLOURS.iter().enumerate() {
        let x = bar as u32 * bar_width + bar_width / 2;
        let y = 15; // inside the first band, which is not inverted
        let offset = ((y * width + x) * 3) as usize;
        let pixel = &rgb[offset..offset + 3];
        let close = pixel.iter().zip(colour).all(|(a, b)| a.abs_diff(*b) <= 8);
        assert!(close, "bar {bar}: {pixel:?} is not {colour:?}");
    }
    let (width, height, _) = decode_png(&get("&height=96").await.body);
    assert_eq!((width, height), (128, 96));

    let jpeg = get("&format=jpeg&quality=70&width=512").await;
    assert_eq!(jpeg.headers["content-type"], "image/jpeg");
    assert!(jpeg.body.starts_with(&[0xFF, 0xD8]), "a JPEG");
    let decoded = image::load_from_memory(&jpeg.body).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (512, 384));

    let webp = get("&format=webp").await;
    assert_eq!(webp.headers["content-type"], "image/webp");
    let decoded = image::load_from_memory(&webp.body).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (1024, 768));

    for bad in [
        "&width=0",
        "&width=5000",
        "&format=gif",
        "&quality=50",
        "&format=jpeg&quality=0",
        "&stream=flv",
        "&device=nope",
        "&device=video0&head=99",
        "&head=1",
        "&head=x",
    ] {
        let reply = get(bad).await;
        assert_eq!(reply.status, 400, "{bad}: {:?}", json(&reply));
    }
}

#[tokio::test]
async fn the_live_stream_sends_changes_and_ends_with_its_viewer() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    daemon
        .create_vm(
            "v1",
            Some(Fixture::Counter),
            json!({"console.screenshot.min_interval": "0"}),
            true,
        )
        .await;
    let socket = daemon.socket();
    // Wait until the counter is on screen.
    let started = Instant::now();
    loop {
        let reply = daemon
            .request("GET", "/1.0/instances/v1/console?type=vga", None)
            .await;
        if reply.status == 200 && decode_png(&reply.body).0 == 640 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream
        .write_all(b"GET /1.0/instances/v1/console?type=vga&stream=mjpeg&fps=10&width=320&quality=60 HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Read until a few frames of the changing screen came (bounded: a loaded machine is slow).
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut chunk = vec![0; 64 * 1024];
    while jpeg_parts(&received).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "{} frames in 30 s",
            jpeg_parts(&received).len()
        );
        let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut chunk)).await;
        if let Ok(Ok(read)) = read {
            received.extend_from_slice(&chunk[..read]);
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.0 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(text.contains("multipart/x-mixed-replace; boundary=vgashot-frame"));
    let frames = jpeg_parts(&received);
    // A frame is sent only when the screen changed, but for one repeat (browsers show a part
    // once the next begins): never three times in a row.
    for run in frames.windows(3) {
        assert!(
            run[0] != run[1] || run[1] != run[2],
            "an unchanged screen was sent again and again"
        );
    }
    for frame in &frames {
        let decoded = image::load_from_memory(frame).unwrap();
        assert_eq!(decoded.width(), 320);
    }
    assert_eq!(metric(&daemon, "vgashot_screenshot_streams", "v1").await, 1);

    drop(stream);
    let started = Instant::now();
    while metric(&daemon, "vgashot_screenshot_streams", "v1").await != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the stream outlived its viewer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_slow_stream_reader_misses_frames_instead_of_queueing_them() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    daemon
        .create_vm(
            "v1",
            Some(Fixture::Counter),
            json!({"console.screenshot.min_interval": "0"}),
            true,
        )
        .await;
    wait_for_a_screen(&daemon, "v1").await;
    let captures = || metric(&daemon, "vgashot_screenshot_captures_total", "v1");
    // Full-size frames at 30 fps of a changing screen, not read for STALLED frames: each
    // capture is a new frame, which replaces the one the viewer has not taken. The mirror gives
    // a frame per change QEMU reports (5-18 a second on a loaded machine), so STALLED frames
    // come well within the daemon's 30 s bound on a write that makes no progress.
    const STALLED: u64 = 60;
    let (mut reader, _writer) = open_stream(&daemon, "fps=30&quality=100").await;
    let stalled_from = captures().await;
    wait_for_count(captures, stalled_from + STALLED).await;
    // Now read everything while 30 more frames are made. What arrives is what the sockets'
    // buffers held, the one frame waiting in the daemon, and the new ones: had the daemon
    // queued what the viewer did not read, all the STALLED frames would arrive too.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reading = tokio::spawn({
        let received = received.clone();
        async move {
            let mut chunk = vec![0; 64 * 1024];
            while let Ok(read @ 1..) = reader.read(&mut chunk).await {
                received.lock().unwrap().extend_from_slice(&chunk[..read]);
            }
        }
    });
    let resumed = captures().await;
    wait_for_count(captures, resumed + 30).await;
    // Distinct frames: each new one may be followed by its repeat (browsers show a part once
    // the next begins), which is the same bytes.
    let parts = jpeg_parts(&received.lock().unwrap());
    let frames = parts
        .iter()
        .enumerate()
        .filter(|(at, part)| *at == 0 || parts[at - 1] != **part)
        .count() as u64;
    reading.abort();
    assert!(frames > 0, "the stream sent nothing");
    assert!(
        frames < STALLED / 2 + 30,
        "{frames} frames arrived after {STALLED} were made unread: the daemon queued them"
    );
}

/// Requests for `name`'s screen answered without a capture of their own: from a recent
/// capture, by joining one in flight, or from the last one while the mirror saw no change.
async fn shared_answers(daemon: &Daemon, name: &str) -> u64 {
    let mut total = 0;
    for family in ["cache_hits", "coalesced", "unchanged"] {
        total += metric(daemon, &format!("vgashot_screenshot_{family}_total"), name).await;
    }
    total
}

/// Opens v1's MJPEG stream (`stream=mjpeg&QUERY`) on a raw connection, for reading it as it
/// comes; the request's half is kept open with the returned writer.
async fn open_stream(
    daemon: &Daemon,
    query: &str,
) -> (
    tokio::net::unix::OwnedReadHalf,
    tokio::net::unix::OwnedWriteHalf,
) {
    let stream = tokio::net::UnixStream::connect(daemon.socket())
        .await
        .unwrap();
    let (reader, mut writer) = stream.into_split();
    let request = format!(
        "GET /1.0/instances/v1/console?type=vga&stream=mjpeg&{query} HTTP/1.0\r\nHost: x\r\n\r\n"
    );
    writer.write_all(request.as_bytes()).await.unwrap();
    (reader, writer)
}

/// Frames of `name` captured from `source` (`screendump` or `mirror`), from the metrics.
async fn frames(daemon: &Daemon, name: &str, source: &str) -> u64 {
    let prefix = format!(
        "vgashot_screenshot_frames_total{{project=\"default\",name=\"{name}\",source=\"{source}\"}} "
    );
    metric_lines(daemon, name)
        .await
        .iter()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}"))
}

/// Waits (bounded) until `name` has a screen to capture (its firmware set a video mode).
async fn wait_for_a_screen(daemon: &Daemon, name: &str) {
    let path = format!("/1.0/instances/{name}/console?type=vga");
    wait_for_status(daemon, &path, 200, &format!("{name} never had a screen")).await;
}

/// Waits (bounded) until `count` reaches `target`.
async fn wait_for_count<F, C>(count: C, target: u64)
where
    C: Fn() -> F,
    F: Future<Output = u64>,
{
    let started = Instant::now();
    loop {
        let now = count().await;
        if now >= target {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "stuck at {now}, waiting for {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_still_screen_is_streamed_once_and_repeated_once() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    daemon
        .create_vm(
            "v1",
            Some(fixture),
            // The history's recorder follows the screen too, and takes its first capture
            // whenever its sweep finds the VM: this test counts the stream's captures alone.
            json!({"console.screenshot.min_interval": "0", "console.history.enabled": "false"}),
            true,
        )
        .await;
    wait_for_picture(&daemon, "v1", fixture).await;
    let captures = || metric(&daemon, "vgashot_screenshot_captures_total", "v1");

    let (mut reader, _writer) = open_stream(&daemon, "fps=10&width=320").await;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reading = tokio::spawn({
        let received = received.clone();
        async move {
            let mut chunk = vec![0; 64 * 1024];
            while let Ok(read @ 1..) = reader.read(&mut chunk).await {
                received.lock().unwrap().extend_from_slice(&chunk[..read]);
            }
        }
    });
    // The picture once, and once again so browsers show it (a part is shown when the next
    // begins)...
    let parts = || jpeg_parts(&received.lock().unwrap()).len() as u64;
    wait_for_count(|| std::future::ready(parts()), 2).await;
    // ... and nothing else while the screen stays still: the mirror pushes no change, so the
    // stream takes no capture at all (an observation window, not a stand-in for a condition).
    let before = captures().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        captures().await,
        before,
        "captures of a still, streamed screen"
    );
    let frames = jpeg_parts(&received.lock().unwrap());
    assert_eq!(frames.len(), 2, "frames of a still screen");
    assert_eq!(frames[0], frames[1]);
    let decoded = image::load_from_memory(&frames[0]).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
    reading.abort();
}

/// A reply read from a raw socket.
struct RawReply {
    status: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

/// A GET with extra headers, over a raw socket (HTTP/1.0, so the body ends with the connection).
async fn raw_get(socket: &std::path::Path, path: &str, headers: &[(&str, &str)]) -> RawReply {
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap();
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    let etag = head
        .lines()
        .find_map(|line| line.strip_prefix("etag: "))
        .map(str::to_owned);
    RawReply {
        status,
        etag,
        body: response[split + 4..].to_vec(),
    }
}

/// The JPEG bodies of the multipart parts in `received` (complete parts only).
fn jpeg_parts(received: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let marker = b"Content-Type: image/jpeg\r\nContent-Length: ";
    let mut rest = received;
    while let Some(start) = rest
        .windows(marker.len())
        .position(|window| window == marker)
    {
        let after = &rest[start + marker.len()..];
        let Some(end_of_length) = after.windows(4).position(|window| window == b"\r\n\r\n") else {
            break;
        };
        let length: usize = std::str::from_utf8(&after[..end_of_length])
            .unwrap()
            .parse()
            .unwrap();
        let body = &after[end_of_length + 4..];
        if body.len() < length {
            break;
        }
        parts.push(body[..length].to_vec());
        rest = &body[length..];
    }
    parts
}

/// QEMU without its VNC server (`-vnc none` dropped from its command line, as a QEMU started by
/// an older daemon runs): the mirror's session fails, and every screenshot and stream falls back
/// to screendumps by itself, as the metrics show.
#[tokio::test]
async fn without_a_vnc_server_screens_fall_back_to_screendump() {
    let Ok(qemu) = vgashot_qemu_process::find_qemu() else {
        support::skip_unless_required("VGASHOT_REQUIRE_QEMU", "QEMU");
        return;
    };
    let bin = tempfile::tempdir().unwrap();
    let wrapper = bin.path().join("qemu-without-vnc");
    let script = format!(
        "#!/bin/sh\n# QEMU as vgashot runs it, minus its VNC server.\nskip=\nfor arg do\n  shift\n  if [ -n \"$skip\" ]; then skip=; continue; fi\n  if [ \"$arg\" = -vnc ]; then skip=1; continue; fi\n  set -- \"$@\" \"$arg\"\ndone\nexec {} \"$@\"\n",
        qemu.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    for path in [bin.path(), &wrapper] {
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(path, executable).unwrap();
    }
    let Some(daemon) = Daemon::start_with_env(&[("VGASHOT_QEMU", wrapper.to_str().unwrap())]).await
    else {
        return;
    };
    let config =
        json!({"console.screenshot.min_interval": "0", "console.history.enabled": "false"});
    daemon
        .create_vm("v1", Some(Fixture::Counter), config, true)
        .await;
    wait_for_a_screen(&daemon, "v1").await;
    // A stream of the changing counter is polled instead of pushed: it still gets its changes.
    let (mut reader, _writer) = open_stream(&daemon, "fps=10&width=160").await;
    let mut received = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    let started = Instant::now();
    while jpeg_parts(&received).len() < 6 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the stream stalled"
        );
        let read = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut chunk))
            .await
            .expect("a frame within 30 s")
            .unwrap();
        assert!(read > 0, "the stream ended");
        received.extend_from_slice(&chunk[..read]);
    }
    let parts = jpeg_parts(&received);
    assert!(
        parts.windows(2).any(|pair| pair[0] != pair[1]),
        "the stream sent no change"
    );
    let shot = daemon
        .request("GET", "/1.0/instances/v1/console?type=vga", None)
        .await;
    assert_eq!(shot.status, 200);
    assert!(frames(&daemon, "v1", "screendump").await >= 6);
    assert_eq!(
        frames(&daemon, "v1", "mirror").await,
        0,
        "a mirror without a VNC server"
    );
}

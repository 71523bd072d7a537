//! Attacks on connections: clients that hold connections open saying nothing or half a header,
//! floods of connections from one address, from many, and on the Unix socket, too many streams
//! and event listeners, oversized websocket messages, many distinct renderings, a daemon out of
//! descriptors, and a client whose certificate stops being trusted while its connections are
//! open. Each against the real daemon listening with TLS on `127.0.0.1:0`, with attackers bound
//! to other loopback addresses (all of 127/8 is loopback), while bystanders keep taking
//! screenshots over the Unix socket or over TLS (whichever the attack leaves open).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream, UnixStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use vgashot_client::Client;
use vgashot_fixtures::Fixture;

use crate::support::bystander::{self, Bystander};
use crate::support::{self, wait_for_picture};

/// The daemon's bounds, as its documentation states them.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const PER_ADDRESS: usize = 64;
const TOTAL: usize = 512;
const UNIX_TOTAL: usize = 512;
const STREAMS_PER_INSTANCE: usize = 16;
const LISTENERS: usize = 128;
const INCOMING_MESSAGE: usize = 4096;
/// How soon a trust removal takes effect on open connections, as documented (1 s readings).
const TRUST_BOUND: Duration = Duration::from_secs(5);
/// Slack on timing bounds for a loaded machine.
const SLACK: Duration = Duration::from_secs(5);

use crate::connections_wire::{
    closed_within, envelope, events, exchange, loopback, pong, setup, vgashot_trust,
};

/// 64 connections from one address that send half a header or nothing hold every slot that
/// address has: one more is answered 429, other addresses and the Unix socket are served, the
/// silent ones are closed within the header bound, and so is a kept-alive connection left idle,
/// while an MJPEG stream, an events websocket and an operation wait outlive that bound.
#[tokio::test]
async fn half_headers_and_silence_are_closed_and_a_flood_from_one_address_is_refused() {
    let Some((daemon, tls)) = setup().await else {
        return;
    };
    daemon.create_vm("target", None, json!({}), true).await;
    let unix_bystander = Bystander::start(daemon.client(), "bystander");
    let tls_bystander = Bystander::start(tls.client(), "bystander");

    // Long responses, opened before the attack, from 127.0.0.1.
    let mut mjpeg = tls
        .client()
        .send(
            "GET",
            "/1.0/instances/bystander/console?type=vga&stream=mjpeg&fps=1",
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(mjpeg.status(), 200);
    let mut listener = events(tls.connect(loopback(1), true).await).await;
    let stop = daemon
        .request(
            "PUT",
            "/1.0/instances/target/state",
            Some(json!({"action": "stop", "timeout": 60})),
        )
        .await;
    assert_eq!(stop.status, 202, "{:?}", stop.body);
    let operation = support::json(&stop)["operation"]
        .as_str()
        .unwrap()
        .to_owned();
    let wait_client = tls.client();
    let wait_path = format!("{operation}/wait?timeout={}", HEADER_TIMEOUT.as_secs() + 3);
    let wait = tokio::spawn(async move {
        let started = Instant::now();
        let reply = wait_client.request("GET", &wait_path, None).await.unwrap();
        (reply.status, started.elapsed())
    });

    // The attack: every slot of 127.0.0.2, half of them with half a header, half silent.
    let attacker = loopback(2);
    let mut held = Vec::new();
    for index in 0..PER_ADDRESS {
        let mut stream = tls.connect(attacker, false).await;
        if index % 2 == 0 {
            stream
                .write_all(b"GET /1.0 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
                .await
                .unwrap();
            stream.flush().await.unwrap();
        }
        held.push((Instant::now(), stream));
    }
    // One more from that address is answered, in the envelope, and closed.
    for _ in 0..4 {
        let mut refused = tls.connect(attacker, false).await;
        assert_eq!(
            exchange(&mut refused, "/1.0").await,
            (
                429,
                envelope(429, "Too many connections from this address (at most 64)")
            )
        );
        closed_within(&mut refused, SLACK).await;
    }
    // Another address is served meanwhile, and its kept-alive connection, left idle, is closed
    // within the same bound.
    let mut neighbour = tls.connect(loopback(3), false).await;
    assert_eq!(exchange(&mut neighbour, "/1.0").await.0, 200);
    let idle = closed_within(&mut neighbour, HEADER_TIMEOUT + SLACK).await;
    assert!(
        idle >= HEADER_TIMEOUT - Duration::from_secs(1),
        "closed after {idle:?}"
    );

    // Every attacking connection is closed within the header bound of its opening, not before.
    for (opened, mut stream) in held {
        let left = (HEADER_TIMEOUT + SLACK).saturating_sub(opened.elapsed());
        closed_within(&mut stream, left).await;
        let after = opened.elapsed();
        assert!(
            after >= HEADER_TIMEOUT - Duration::from_secs(1),
            "closed after {after:?}"
        );
    }
    // Its slots are free again.
    let mut again = tls.connect(attacker, false).await;
    assert_eq!(exchange(&mut again, "/1.0").await.0, 200);

    // The long responses outlived the header bound: the stream has frames to read (a still
    // screen's last ones), then waits.
    loop {
        match tokio::time::timeout(Duration::from_secs(2), mjpeg.body_mut().frame()).await {
            Ok(Some(Ok(_))) => {}
            Err(_) => break,
            Ok(end) => panic!("the MJPEG stream ended: {end:?}"),
        }
    }
    pong(&mut listener).await;
    let (status, waited) = wait.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        waited > HEADER_TIMEOUT + Duration::from_secs(2),
        "{waited:?}"
    );

    unix_bystander.finish(bystander::BOUND).await;
    tls_bystander.finish(bystander::BOUND).await;
}

/// 512 silent TCP connections from eight addresses, which never even start their TLS
/// handshake, fill the server: one more, from a ninth address, is answered 503 while the Unix
/// socket keeps serving; the handshake bound (10 s, as the header bound) closes them, and the
/// ninth address is served.
#[tokio::test]
async fn a_flood_from_many_addresses_fills_the_server_and_is_refused_clearly() {
    let Some((daemon, tls)) = setup().await else {
        return;
    };
    let bystander = Bystander::start(daemon.client(), "bystander");
    let opened = Instant::now();
    let mut held = Vec::new();
    for index in 0..TOTAL {
        let from = loopback(10 + u8::try_from(index / PER_ADDRESS).unwrap());
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
        held.push(socket.connect(tls.address).await.unwrap());
    }
    // The daemon has accepted them all once a connection after them was answered; this one,
    // from a ninth address, is over the server's cap.
    let mut refused = tls.connect(loopback(30), false).await;
    assert_eq!(
        exchange(&mut refused, "/1.0").await,
        (
            503,
            envelope(
                503,
                "Too many connections to the server (at most 512); try again later"
            )
        )
    );
    for stream in &mut held {
        let left = (HEADER_TIMEOUT + SLACK).saturating_sub(opened.elapsed());
        closed_within(stream, left).await;
    }
    let closed = opened.elapsed();
    assert!(
        closed >= HEADER_TIMEOUT - Duration::from_secs(1),
        "closed after {closed:?}"
    );
    let mut served = tls.connect(loopback(30), false).await;
    assert_eq!(exchange(&mut served, "/1.0").await.0, 200);
    bystander.finish(bystander::BOUND).await;
}

/// Opens an MJPEG stream of `name` with `client`: its status, and the response to hold open.
async fn open_stream(client: &Client, name: &str) -> (u16, Box<dyn std::any::Any + Send>) {
    let response = client
        .send(
            "GET",
            &format!("/1.0/instances/{name}/console?type=vga&stream=mjpeg"),
            &[],
            None,
        )
        .await
        .unwrap();
    (response.status().as_u16(), Box::new(response))
}

/// The websocket handshake headers of a listener, for a plain request.
fn websocket_headers() -> Vec<(http::HeaderName, &'static str)> {
    use http::header::{CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
    vec![
        (CONNECTION, "Upgrade"),
        (UPGRADE, "websocket"),
        (SEC_WEBSOCKET_VERSION, "13"),
        (SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="),
    ]
}

/// Streams and event listeners beyond their caps get a 503 envelope; a listener that sends a
/// message over the bound is closed (1009) and the others keep listening.
#[tokio::test]
async fn too_many_streams_and_listeners_are_refused_and_big_messages_close_one_socket() {
    let Some((daemon, _tls)) = setup().await else {
        return;
    };
    // Each VM has an image of its own: QEMU locks it.
    let fixture = Fixture::Mode13;
    daemon
        .create_vm("target", Some(fixture), json!({}), true)
        .await;
    wait_for_picture(&daemon, "target", fixture).await;
    let bystander = Bystander::start(daemon.client(), "bystander");
    let client = daemon.client();

    let mut streams = Vec::new();
    for _ in 0..STREAMS_PER_INSTANCE {
        let (status, stream) = open_stream(&client, "target").await;
        assert_eq!(status, 200);
        streams.push(stream);
    }
    let path = "/1.0/instances/target/console?type=vga&stream=mjpeg";
    let refused = daemon.request("GET", path, None).await;
    assert_eq!(
        (refused.status, support::json(&refused)),
        (
            503,
            envelope(
                503,
                "Too many screen streams open on this instance (at most 16); try again later"
            )
        )
    );
    // Another instance still streams; a stream closed frees its place.
    let (status, _other) = open_stream(&client, "bystander").await;
    assert_eq!(status, 200);
    drop(streams.pop());
    let started = Instant::now();
    loop {
        let (status, stream) = open_stream(&client, "target").await;
        if status == 200 {
            streams.push(stream);
            break;
        }
        assert!(
            started.elapsed() < SLACK,
            "the closed stream's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut listeners = Vec::new();
    for _ in 0..LISTENERS {
        listeners.push(events(UnixStream::connect(daemon.socket()).await.unwrap()).await);
    }
    let refused = client
        .request_with("GET", "/1.0/events", &websocket_headers(), None)
        .await
        .unwrap();
    assert_eq!(
        (refused.status, support::json(&refused)),
        (
            503,
            envelope(
                503,
                "Too many event listeners (at most 128); try again later"
            )
        )
    );

    // A message over the bound closes that listener only.
    let mut big = listeners.pop().unwrap();
    big.send(Message::text("x".repeat(INCOMING_MESSAGE + 1)))
        .await
        .unwrap();
    let closed = tokio::time::timeout(SLACK, big.next()).await.unwrap();
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    for listener in listeners.iter_mut().take(4) {
        pong(listener).await;
    }
    // Its place is free again.
    let started = Instant::now();
    loop {
        let reply = client
            .send("GET", "/1.0/events", &websocket_headers(), None)
            .await
            .unwrap();
        if reply.status() == 101 {
            break;
        }
        assert!(
            started.elapsed() < SLACK,
            "the closed listener's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bystander.finish(bystander::BOUND).await;
}

/// A certificate removed from the trust store stops its open connections within the bound: a
/// kept-alive connection, an MJPEG stream, an events websocket and an operation wait, all cut;
/// a new connection with it is untrusted.
#[tokio::test]
async fn trust_removed_cuts_the_connections_already_open() {
    let Some((daemon, tls)) = setup().await else {
        return;
    };
    daemon.create_vm("target", None, json!({}), true).await;
    let bystander = Bystander::start(daemon.client(), "bystander");

    let mut mjpeg = tls
        .client()
        .send(
            "GET",
            "/1.0/instances/bystander/console?type=vga&stream=mjpeg",
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(mjpeg.status(), 200);
    let mut listener = events(tls.connect(loopback(1), true).await).await;
    pong(&mut listener).await;
    let stop = daemon
        .request(
            "PUT",
            "/1.0/instances/target/state",
            Some(json!({"action": "stop", "timeout": 60})),
        )
        .await;
    assert_eq!(stop.status, 202);
    let operation = support::json(&stop)["operation"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut waiting = tls.connect(loopback(1), true).await;
    let request = format!("GET {operation}/wait?timeout=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    waiting.write_all(request.as_bytes()).await.unwrap();
    // Last, so that its idle bound is far off when the trust goes.
    let mut kept_alive = tls.connect(loopback(1), true).await;
    assert_eq!(exchange(&mut kept_alive, "/1.0/instances").await.0, 200);

    vgashot_trust(&daemon, &["remove", &tls.trusted.fingerprint]);
    let removed = Instant::now();
    closed_within(&mut kept_alive, TRUST_BOUND).await;
    closed_within(&mut waiting, TRUST_BOUND.saturating_sub(removed.elapsed())).await;
    let left = TRUST_BOUND.saturating_sub(removed.elapsed());
    loop {
        match tokio::time::timeout(left, mjpeg.body_mut().frame()).await {
            Ok(Some(Ok(_))) => {}
            Ok(None | Some(Err(_))) => break,
            Err(_) => panic!("the MJPEG stream is still open after {TRUST_BOUND:?}"),
        }
    }
    let left = TRUST_BOUND.saturating_sub(removed.elapsed());
    loop {
        match tokio::time::timeout(left, listener.next()).await {
            Ok(Some(Ok(_))) => {}
            Ok(None | Some(Err(_))) => break,
            Err(_) => panic!("the events websocket is still open after {TRUST_BOUND:?}"),
        }
    }
    let mut fresh = tls.connect(loopback(1), true).await;
    assert_eq!(
        exchange(&mut fresh, "/1.0/instances").await,
        (403, envelope(403, "not authorized"))
    );
    bystander.finish(bystander::BOUND).await;
}

/// Hundreds of distinct thumbnail widths at once cannot take every core: some are answered
/// 503 by the bounded render queue, the rest rendered, and the bystander is served.
#[tokio::test]
async fn many_distinct_renderings_keep_the_bystander_served() {
    let Some((daemon, _tls)) = setup().await else {
        return;
    };
    let fixture = Fixture::bars(1024, 768);
    daemon
        .create_vm("target", Some(fixture), json!({}), true)
        .await;
    wait_for_picture(&daemon, "target", fixture).await;
    let bystander = Bystander::start(daemon.client(), "bystander");
    let mut renderings = tokio::task::JoinSet::new();
    for width in 1..=300 {
        let client = daemon.client();
        renderings.spawn(async move {
            let path = format!("/1.0/instances/target/console?type=vga&width={width}&format=webp");
            client.request("GET", &path, None).await.unwrap()
        });
    }
    let replies = renderings.join_all().await;
    // As the daemon sizes its queue: every core but one renders, 16 places each to wait.
    let workers = std::thread::available_parallelism()
        .map(|cores| cores.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1);
    let busy = envelope(
        503,
        &format!(
            "Too many screenshots waiting to be rendered (at most {}); try again later",
            workers * 16
        ),
    );
    let mut refused = 0;
    for reply in &replies {
        match reply.status {
            200 => assert!(reply.body.starts_with(b"RIFF"), "not a WebP"),
            503 => {
                assert_eq!(support::json(reply), busy);
                refused += 1;
            }
            other => panic!("{other}: {:?}", reply.body),
        }
    }
    assert!(refused > 0, "300 renderings at once all fit the queue");
    assert!(refused < replies.len(), "every rendering was refused");
    bystander.finish(bystander::BOUND).await;
}

/// The CPU time (user and system) the process `pid` has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap();
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// Sets the open-file limit of `pid` with util-linux's `prlimit`.
fn set_open_file_limit(pid: u32, soft: &str, hard: &str) {
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={soft}:{hard}"),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit failed");
}

/// Out of descriptors, every `accept` fails (`EMFILE`): the daemon rests between tries instead
/// of spinning on them, keeps its trusted connections (the trust store it cannot read keeps its
/// last reading), and serves again, both listeners, soon after descriptors are back.
#[tokio::test]
async fn out_of_descriptors_the_accept_loop_rests_and_recovers() {
    let Some((daemon, tls)) = setup().await else {
        return;
    };
    let pid = daemon.pid();
    // A trusted listener, open before: an unreadable trust store must not cut it.
    let mut listener = events(tls.connect(loopback(1), true).await).await;
    let output = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            "--nofile",
            "--output=SOFT,HARD",
            "--noheadings",
        ])
        .output()
        .unwrap();
    let limits = String::from_utf8(output.stdout).unwrap();
    let (soft, hard) = limits.trim().split_once(char::is_whitespace).unwrap();
    let (soft, hard) = (soft.to_owned(), hard.trim().to_owned());
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    set_open_file_limit(pid, &open.to_string(), &hard);

    // Clients wait in both backlogs while every accept fails.
    let mut waiting = Vec::new();
    for _ in 0..4 {
        waiting.push(TcpStream::connect(tls.address).await.unwrap());
    }
    let unix_waiting = UnixStream::connect(daemon.socket()).await.unwrap();
    // A window of measurement, not a wait for a condition: a loop spinning on failed accepts
    // would burn most of a core in it.
    let window = Duration::from_secs(3);
    let before = cpu_time(pid);
    tokio::time::sleep(window).await;
    let used = cpu_time(pid) - before;
    assert!(
        used < window / 5,
        "the daemon used {used:?} of CPU in {window:?} out of descriptors"
    );

    set_open_file_limit(pid, &soft, &hard);
    drop((waiting, unix_waiting));
    // The rest is at most a second: both listeners serve again well within the bound.
    let restored = Instant::now();
    let bystander = Bystander::start(daemon.client(), "bystander");
    let mut stream = loop {
        match tls.try_connect(loopback(1), false).await {
            Ok(stream) => break stream,
            Err(error) => assert!(restored.elapsed() < SLACK, "not served again: {error}"),
        }
    };
    assert_eq!(exchange(&mut stream, "/1.0").await.0, 200);
    pong(&mut listener).await;
    bystander.finish(bystander::BOUND).await;
}

/// 512 silent connections fill the Unix socket: one more is answered 503 (its own cap, not the
/// TCP one), TLS clients are served meanwhile, and the header bound frees the socket.
#[tokio::test]
async fn a_flood_of_the_unix_socket_is_refused_clearly_while_tls_serves() {
    let Some((daemon, tls)) = setup().await else {
        return;
    };
    let bystander = Bystander::start(tls.client(), "bystander");
    let opened = Instant::now();
    let mut held = Vec::new();
    for _ in 0..UNIX_TOTAL {
        held.push(UnixStream::connect(daemon.socket()).await.unwrap());
    }
    let mut refused = UnixStream::connect(daemon.socket()).await.unwrap();
    assert_eq!(
        exchange(&mut refused, "/1.0").await,
        (
            503,
            envelope(
                503,
                "Too many connections to the server (at most 512); try again later"
            )
        )
    );
    for stream in &mut held {
        let left = (HEADER_TIMEOUT + SLACK).saturating_sub(opened.elapsed());
        closed_within(stream, left).await;
    }
    let reply = daemon.request("GET", "/1.0", None).await;
    assert_eq!(reply.status, 200);
    bystander.finish(bystander::BOUND).await;
}

//! Attacks on the interactive serial console: more sessions than an instance may have, a wrong
//! secret, a websocket connected twice, an oversized message, and operations whose websockets
//! are never connected. Each is refused with its error while a bystander keeps getting
//! screenshots of another VM.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::UnixStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use vgashot_fixtures::Fixture;

use crate::support::bystander::{BOUND, Bystander};
use crate::support::{Daemon, json};

/// The driver's bound (`vgashot_instance_drivers::serial::MAX_CONSOLE_SESSIONS`).
const MAX_SESSIONS: usize = 8;

/// How long an operation whose websockets are never connected may live, with room for a
/// loaded machine: the daemon's 10 s and a margin.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(30);

/// `POST /1.0/instances/target/console`; the reply.
async fn open(daemon: &Daemon, force: bool) -> (u16, Value) {
    let body = json!({"type": "console", "width": 80, "height": 24, "force": force});
    let reply = daemon
        .request("POST", "/1.0/instances/target/console", Some(body))
        .await;
    (reply.status, json(&reply))
}

/// Connects the websocket of `operation` that `secret` names; the handshake's status.
async fn connect(
    daemon: &Daemon,
    operation: &Value,
    secret: &str,
) -> Result<WebSocketStream<UnixStream>, u16> {
    let stream = UnixStream::connect(daemon.socket()).await.unwrap();
    let url = format!(
        "ws://vgashot/1.0/operations/{}/websocket?secret={secret}",
        operation["id"].as_str().unwrap()
    );
    match tokio_tungstenite::client_async(url, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("handshake: {error}"),
    }
}

#[tokio::test]
async fn console_sessions_are_bounded_and_their_websockets_guarded() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    daemon
        .create_vm("target", Some(Fixture::bars(320, 200)), json!({}), true)
        .await;
    let bystander = Bystander::on_a_new_vm(&daemon).await;

    // Sessions waiting for their client count: the ninth is refused, with the bound's words.
    let mut operations = Vec::new();
    for _ in 0..MAX_SESSIONS {
        let (status, reply) = open(&daemon, false).await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(reply["metadata"]["class"], "websocket");
        operations.push(reply["metadata"].clone());
    }
    let (status, reply) = open(&daemon, true).await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(
        reply["error"],
        "Too many console sessions open on this instance (at most 8); try again later"
    );

    // A wrong secret is a 403; a websocket connects once.
    let first = &operations[0];
    let data_secret = first["metadata"]["fds"]["0"].as_str().unwrap();
    let control_secret = first["metadata"]["fds"]["control"].as_str().unwrap();
    assert_eq!(connect(&daemon, first, "nope").await.err(), Some(403));
    let mut control = connect(&daemon, first, control_secret).await.unwrap();
    assert_eq!(
        connect(&daemon, first, control_secret).await.err(),
        Some(400)
    );
    let mut data = connect(&daemon, first, data_secret).await.unwrap();
    // A message over 4 KiB closes the session with 1009.
    data.send(Message::Binary(vec![b'x'; 8192].into()))
        .await
        .unwrap();
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match data.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code),
                Some(Ok(_)) => {}
                other => panic!("the data websocket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the oversized message closes the session");
    assert_eq!(closed, Some(CloseCode::Size));
    let _ = control.close(None).await;

    // The other seven are never connected: their operations fail within the bound, and their
    // places come free.
    let started = Instant::now();
    for operation in &operations[1..] {
        let url = format!(
            "/1.0/operations/{}/wait?timeout=30",
            operation["id"].as_str().unwrap()
        );
        let done = json(&daemon.request("GET", &url, None).await);
        assert_eq!(done["error_code"], 500, "{done}");
        assert_eq!(
            done["error"],
            "The console's websockets were not connected within 10 s"
        );
    }
    assert!(started.elapsed() < EXPIRY_DEADLINE);
    let (status, reply) = open(&daemon, false).await;
    assert_eq!(status, 202, "{reply}");
    bystander.finish(BOUND).await;
}

//! A listener of the daemon's `screen` events (`GET /1.0/events?…`), as a monitor would
//! follow them.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::Daemon;

/// An open events websocket.
pub struct ScreenListener {
    socket: WebSocketStream<UnixStream>,
}

impl ScreenListener {
    /// Opens the websocket on `daemon`'s Unix socket with `query` (`type=screen`).
    pub async fn open(daemon: &Daemon, query: &str) -> Self {
        let stream = UnixStream::connect(daemon.socket()).await.unwrap();
        let url = format!("ws://vgashot/1.0/events?{query}");
        let (socket, response) = tokio_tungstenite::client_async(url, stream).await.unwrap();
        assert_eq!(response.status(), 101);
        Self { socket }
    }

    /// The metadata of every `screen` event that arrives within `period`, with its arrival.
    pub async fn collect(&mut self, period: Duration) -> Vec<(Instant, Value)> {
        let deadline = Instant::now() + period;
        let mut events = Vec::new();
        while let Ok(message) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            let message = message.expect("the events websocket closed").unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let event: Value = serde_json::from_str(&text).unwrap();
            if event["type"] == "screen" {
                events.push((Instant::now(), event["metadata"].clone()));
            }
        }
        events
    }
}

/// The events of instance `name` among `events`.
pub fn of<'a>(events: &'a [(Instant, Value)], name: &str) -> Vec<&'a (Instant, Value)> {
    events
        .iter()
        .filter(|(_, metadata)| metadata["name"] == name)
        .collect()
}

/// When the pixels of an event's change changed (its `changed_at`).
fn changed_at(metadata: &Value) -> SystemTime {
    humantime::parse_rfc3339(metadata["changed_at"].as_str().unwrap()).unwrap()
}

/// Asserts that consecutive `events` show changes at least `gap` apart (by their
/// `changed_at`, the daemon's pacing; arrivals jitter on a loaded machine), each with a new
/// `ETag`.
pub fn assert_paced(events: &[&(Instant, Value)], gap: Duration) {
    for pair in events.windows(2) {
        let apart = changed_at(&pair[1].1)
            .duration_since(changed_at(&pair[0].1))
            .unwrap_or_default();
        assert!(
            apart >= gap,
            "{apart:?} between {:?} and {:?}",
            pair[0],
            pair[1]
        );
        assert_ne!(pair[0].1["etag"], pair[1].1["etag"], "{pair:?}");
    }
}

//! A listener of the daemon's `lifecycle` events (`GET /1.0/events?type=lifecycle`), as a
//! monitoring client would follow them.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::UnixStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::Daemon;

/// An open events websocket that hears lifecycle events only.
pub struct LifecycleListener {
    socket: WebSocketStream<UnixStream>,
}

impl LifecycleListener {
    /// Opens the websocket on `daemon`'s Unix socket.
    pub async fn open(daemon: &Daemon) -> Self {
        let stream = UnixStream::connect(daemon.socket()).await.unwrap();
        let (socket, response) =
            tokio_tungstenite::client_async("ws://vgashot/1.0/events?type=lifecycle", stream)
                .await
                .unwrap();
        assert_eq!(response.status(), 101);
        Self { socket }
    }

    /// The metadata of every lifecycle event of instance `name` until one with `action`, which
    /// comes last; fails after `deadline`.
    pub async fn until(&mut self, name: &str, action: &str, deadline: Duration) -> Vec<Value> {
        let started = Instant::now();
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_sub(started.elapsed());
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no {action} for {name} in {deadline:?}: {seen:?}"))
                .expect("the events websocket closed")
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let event: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(event["type"], "lifecycle", "{event}");
            let metadata = event["metadata"].clone();
            if metadata["name"] != name {
                continue;
            }
            let done = metadata["action"] == action;
            seen.push(metadata);
            if done {
                return seen;
            }
        }
    }
}

/// The end of an instance as its lifecycle event `context` tells it: checks its `reason` and
/// `status`, fetches the pinned last screen the context names, checks that it is pinned with
/// `history_reason`, and returns the screenshot's URL and object.
pub async fn pinned_last_screen(
    daemon: &Daemon,
    context: &Value,
    (reason, status): (&str, &str),
    history_reason: &str,
) -> (String, Value) {
    assert_eq!(
        (context["reason"].as_str(), context["status"].as_str()),
        (Some(reason), Some(status)),
        "{context}"
    );
    let url = context["screenshot"]
        .as_str()
        .expect("the URL of the pinned last screen")
        .to_owned();
    let pinned = super::json(&daemon.request("GET", &url, None).await)["metadata"].clone();
    assert_eq!(
        (pinned["reason"].as_str(), pinned["pinned"].as_bool()),
        (Some(history_reason), Some(true)),
        "{pinned}"
    );
    (url, pinned)
}

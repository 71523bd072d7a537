//! The normal client of the attack tests: while an attack runs, it keeps taking screenshots of
//! another VM and records how long each took, so a test asserts both that the attack failed and
//! that everyone else was still served.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vgashot_client::Client;
use vgashot_fixtures::Fixture;

use super::Daemon;

/// The bystander's bound in the attack suite: generous for a loaded 2-core CI machine, yet far
/// below a hang.
pub const BOUND: Duration = Duration::from_secs(5);

/// The name of the bystander's VM.
pub const VM: &str = "bystander";

/// Creates the bystander's VM on `daemon`: `fixture`, captured afresh at every request
/// (`console.screenshot.min_interval: 0`), and waits until it shows its picture.
pub async fn create_vm(daemon: &Daemon, fixture: Fixture) {
    daemon
        .create_vm(
            VM,
            Some(fixture),
            json!({"console.screenshot.min_interval": "0"}),
            true,
        )
        .await;
    super::wait_for_picture(daemon, VM, fixture).await;
}

/// A client taking screenshots of one VM in a loop, until [`Bystander::finish`].
pub struct Bystander {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Result<Duration, String>>>,
}

/// What the bystander saw.
#[derive(Debug)]
pub struct Served {
    /// Screenshots it got.
    pub screenshots: usize,
    /// The slowest of them.
    pub slowest: Duration,
}

impl Bystander {
    /// Creates the bystander's VM ([`create_vm`], the Mode13 picture) and starts taking
    /// screenshots of it over the Unix socket.
    pub async fn on_a_new_vm(daemon: &Daemon) -> Self {
        create_vm(daemon, Fixture::Mode13).await;
        Self::start(daemon.client(), VM)
    }

    /// Starts taking screenshots of `name` through `client` (over the Unix socket or TLS), one
    /// after the other. The VM should have `console.screenshot.min_interval: 0`, so each request
    /// is a capture of its own rather than a cached one.
    pub fn start(client: Client, name: &str) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let path = format!("/1.0/instances/{name}/console?type=vga");
        let task = tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !*stopped.borrow() {
                let started = Instant::now();
                let outcome = match client.request("GET", &path, None).await {
                    Ok(reply) if reply.status == 200 && reply.body.starts_with(b"\x89PNG") => {
                        Ok(started.elapsed())
                    }
                    Ok(reply) => Err(format!(
                        "{} {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    )),
                    Err(error) => Err(error.to_string()),
                };
                outcomes.push(outcome);
                // A short pause between screenshots, ended early by `finish`.
                let _ =
                    tokio::time::timeout(Duration::from_millis(20), stopped.wait_for(|&stop| stop))
                        .await;
            }
            outcomes
        });
        Self { stop, task }
    }

    /// Stops the bystander and asserts that it got at least one screenshot, that every request
    /// it made succeeded, and that none took longer than `bound`.
    pub async fn finish(self, bound: Duration) -> Served {
        self.stop.send_replace(true);
        let outcomes = self.task.await.expect("the bystander does not panic");
        let mut slowest = Duration::ZERO;
        for (index, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Ok(latency) => slowest = slowest.max(*latency),
                Err(error) => panic!("the bystander's request {index} failed: {error}"),
            }
        }
        assert!(!outcomes.is_empty(), "the bystander took no screenshot");
        assert!(
            slowest <= bound,
            "the bystander waited {slowest:?} for a screenshot (bound {bound:?})"
        );
        Served {
            screenshots: outcomes.len(),
            slowest,
        }
    }
}

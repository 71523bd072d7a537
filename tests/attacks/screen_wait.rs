//! Requests that wait for a screen change (`wait=30s` with `If-None-Match`) on still screens,
//! more than the daemon keeps: 64 per instance, 256 in all. The one past each bound is a `503`
//! envelope that names it, at once; the waiters in are answered `304` when their time ends (and
//! ask again, so the slots stay taken until the test lets go); then the slots are free again;
//! a bystander keeps getting screenshots meanwhile.

use std::time::{Duration, Instant};

use http::header::IF_NONE_MATCH;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use vgashot_fixtures::Fixture;

use crate::support::bystander::{self, Bystander};
use crate::support::{Daemon, json, screenshot, wait_for_picture};

/// The daemon's bounds (`crates/rest/src/screens/wait.rs`).
const PER_INSTANCE: usize = 64;
const IN_ALL: usize = 256;
/// How long the waiters wait: the longest `wait` allowed.
const WAIT: &str = "30s";

/// `GET …/console?type=vga&wait=WAIT` of `name`, naming `etag`: its status and error text.
async fn wait_for_change(daemon: &Daemon, name: &str, wait: &str, etag: &str) -> (u16, String) {
    let path = format!("/1.0/instances/{name}/console?type=vga&wait={wait}");
    let reply = daemon
        .client()
        .request_with("GET", &path, &[(IF_NONE_MATCH, etag)], None)
        .await
        .unwrap();
    let error = match reply.status {
        503 => json(&reply)["error"].as_str().unwrap().to_owned(),
        _ => String::new(),
    };
    (reply.status, error)
}

/// Asks with a short wait until the answer is a refusal (every slot it competes for is held by
/// the long waiters, which retry while one of these short probes holds a slot); returns it.
async fn refusal(daemon: &Daemon, name: &str, etag: &str) -> String {
    let started = Instant::now();
    loop {
        let (status, error) = wait_for_change(daemon, name, "1s", etag).await;
        match status {
            503 => return error,
            304 => assert!(
                started.elapsed() < Duration::from_secs(60),
                "the waiters never filled their slots"
            ),
            other => panic!("{other} for a waiter of {name}"),
        }
    }
}

/// Starts [`PER_INSTANCE`] waiters of the instance `(name, etag)`, each asking again whenever
/// it is answered or refused, until `stop`; each answers how long its waits took.
fn fill(
    waiters: &mut JoinSet<Vec<Duration>>,
    daemon: &std::sync::Arc<Daemon>,
    (name, etag): (&String, &String),
    stop: &watch::Receiver<bool>,
) {
    for _ in 0..PER_INSTANCE {
        let (daemon, name, etag) = (daemon.clone(), name.clone(), etag.clone());
        let stop = stop.clone();
        waiters.spawn(async move {
            let mut waits = Vec::new();
            let mut out_since = Instant::now();
            while !*stop.borrow() {
                let asked = Instant::now();
                match wait_for_change(&daemon, &name, WAIT, &etag).await {
                    // Refused while a probe held a slot: ask again.
                    (503, _) => {
                        assert!(
                            out_since.elapsed() < Duration::from_secs(60),
                            "a waiter of {name} never got back in"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    (304, _) => {
                        waits.push(asked.elapsed());
                        out_since = Instant::now();
                    }
                    other => panic!("{other:?} for a waiter of {name}"),
                }
            }
            waits
        });
    }
}

#[tokio::test]
async fn waiters_past_their_bounds_are_refused_at_once() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let daemon = std::sync::Arc::new(daemon);
    // Four still screens take every slot; a fifth meets the bound in all. Each boots a picture
    // of its own size (a disk image is opened by one VM only).
    let names: Vec<String> = (0..=IN_ALL / PER_INSTANCE)
        .map(|index| format!("still{index}"))
        .collect();
    let mut etags = Vec::new();
    for (index, name) in (0u32..).zip(&names) {
        let fixture = Fixture::bars(320 + 8 * index, 200);
        daemon.create_vm(name, Some(fixture), json!({}), true).await;
        wait_for_picture(&daemon, name, fixture).await;
        let reply = screenshot(&daemon, name).await;
        etags.push(reply.headers["etag"].to_str().unwrap().to_owned());
    }
    let bystander = Bystander::on_a_new_vm(&daemon).await;

    // The first instance's slots, then everyone else's: the bound in all is checked first, so
    // the instance's own bound shows while the others are still free.
    let mut waiters = JoinSet::new();
    let (stop, stopped) = watch::channel(false);
    let instances: Vec<_> = names
        .iter()
        .zip(&etags)
        .take(IN_ALL / PER_INSTANCE)
        .collect();
    fill(&mut waiters, &daemon, instances[0], &stopped);
    let per_instance = refusal(&daemon, &names[0], &etags[0]).await;
    assert_eq!(
        per_instance,
        "Too many requests waiting for a screen change of this instance (at most 64); try again later"
    );
    for instance in &instances[1..] {
        fill(&mut waiters, &daemon, *instance, &stopped);
    }
    let last = IN_ALL / PER_INSTANCE;
    let in_all = refusal(&daemon, &names[last], &etags[last]).await;
    assert_eq!(
        in_all,
        "Too many requests waiting for a screen change (at most 256); try again later"
    );
    // A refusal is at once, not after a wait.
    let asked = Instant::now();
    let (status, _) = wait_for_change(&daemon, &names[0], WAIT, &etags[0]).await;
    assert_eq!(status, 503);
    assert!(asked.elapsed() < bystander::BOUND, "{:?}", asked.elapsed());
    // Screenshots without `wait` take no slot.
    let shot = screenshot(&daemon, &names[0]).await;
    assert_eq!(shot.status, 200);
    bystander.finish(bystander::BOUND).await;

    // Every wait is answered when its time ends: a 304, about 30 s after it got in.
    stop.send_replace(true);
    let waits: Vec<Duration> = waiters.join_all().await.into_iter().flatten().collect();
    assert!(waits.len() >= IN_ALL, "{} waits", waits.len());
    for took in waits {
        assert!(
            (Duration::from_secs(29)..Duration::from_secs(45)).contains(&took),
            "a waiter was answered after {took:?}"
        );
    }
    // Their slots are free again.
    let (status, _) = wait_for_change(&daemon, &names[0], "500ms", &etags[0]).await;
    assert_eq!(status, 304);
}

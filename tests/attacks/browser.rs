//! Attacks through a browser: another web site makes the user's browser, which holds a trusted
//! client certificate and presents it like a cookie, create VMs with a `text/plain` `POST` (a
//! "simple" request, no preflight) or read `/1.0/events` over a websocket. The daemon refuses
//! any request a browser marks as coming from another origin (403) and any body that is not
//! JSON (415), while the `incus` client, `vgashot` and the daemon's own page go on working.
//!
//! Two tests: the exact refusals, on the wire, with the project's own TLS client presenting the
//! trusted certificate and headers as browsers send them; and the real attack in headless
//! Chromium (`tests/ui/cross-origin-test.mjs`), from a page of another origin.

use http::header::{
    CONNECTION, CONTENT_TYPE, HeaderName, ORIGIN, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use serde_json::{Value, json};
use vgashot_client::Client;
use vgashot_fixtures::Fixture;

use crate::support::Daemon;
use crate::support::browser::{Browser, TrustedIdentity};
use crate::support::bystander::{self, Bystander};

/// The header browsers say who initiated a request in.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// A daemon listening with TLS, a running VM that a bystander takes screenshots of over the
/// Unix socket, and a trusted certificate; `None` when QEMU is missing.
async fn set_up() -> Option<(Daemon, TrustedIdentity, Bystander)> {
    let daemon = Daemon::start_listening("127.0.0.1:0").await?;
    bystander::create_vm(&daemon, Fixture::bars(640, 480)).await;
    let identity = TrustedIdentity::make(&daemon, "browser").await;
    let bystander = Bystander::start(daemon.client(), bystander::VM);
    Some((daemon, identity, bystander))
}

/// What a `POST /1.0/instances` would create and start.
fn instance(name: &str) -> Vec<u8> {
    json!({"name": name, "type": "virtual-machine", "source": {"type": "none"}, "start": true})
        .to_string()
        .into_bytes()
}

/// Sends a request with `headers` and an optional body; the status and the envelope (or
/// `Null` for a body that is not JSON).
async fn send(
    client: &Client,
    method: &str,
    path: &str,
    headers: &[(HeaderName, &str)],
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let reply = client
        .request_with(method, path, headers, body)
        .await
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
    (reply.status, reply.json().unwrap_or(Value::Null))
}

/// The status and the error text of an Incus error envelope.
fn refusal(status: u16, text: &str) -> (u16, Value) {
    (
        status,
        json!({"type": "error", "status": "", "status_code": 0, "operation": "",
               "error_code": status, "error": text, "metadata": null}),
    )
}

/// The headers of a websocket handshake from `origin`, as a browser sends them.
fn handshake(origin: &str) -> Vec<(HeaderName, &str)> {
    vec![
        (CONNECTION, "Upgrade"),
        (UPGRADE, "websocket"),
        (SEC_WEBSOCKET_VERSION, "13"),
        (SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="),
        (ORIGIN, origin),
    ]
}

/// Whether the daemon has instance `name`.
async fn exists(daemon: &Daemon, name: &str) -> bool {
    let reply = daemon
        .request("GET", &format!("/1.0/instances/{name}"), None)
        .await;
    match reply.status {
        200 => true,
        404 => false,
        other => panic!("GET /1.0/instances/{name}: {other}"),
    }
}

#[tokio::test]
async fn foreign_origins_and_bodies_that_are_not_json_are_refused() {
    let Some((daemon, identity, bystander)) = set_up().await else {
        return;
    };
    let tls = identity.client();
    let own = format!("https://{}", identity.address);
    let foreign_origin = |origin: &str| {
        format!("Cross-origin request refused: Origin {origin} is not this server's origin {own}")
    };

    // A text/plain body, the kind any page may send: 415, and nothing is created.
    let text = [(CONTENT_TYPE, "text/plain;charset=UTF-8")];
    assert_eq!(
        send(
            &tls,
            "POST",
            "/1.0/instances",
            &text,
            Some(instance("evil"))
        )
        .await,
        refusal(
            415,
            "A request body must be application/json, not text/plain;charset=UTF-8"
        )
    );
    let form = [(CONTENT_TYPE, "application/x-www-form-urlencoded")];
    let stop = br#"{"action": "stop", "force": true}"#.to_vec();
    assert_eq!(
        send(
            &tls,
            "PUT",
            "/1.0/instances/bystander/state",
            &form,
            Some(stop)
        )
        .await,
        refusal(
            415,
            "A request body must be application/json, not application/x-www-form-urlencoded"
        )
    );
    // The same over the Unix socket.
    assert_eq!(
        send(
            &daemon.client(),
            "POST",
            "/1.0/instances",
            &text,
            Some(instance("evil"))
        )
        .await,
        refusal(
            415,
            "A request body must be application/json, not text/plain;charset=UTF-8"
        )
    );

    // A foreign Origin, even with a JSON body: 403.
    for origin in ["http://127.0.0.1:9", "https://evil.example", "null"] {
        let headers = [(ORIGIN, origin)];
        assert_eq!(
            send(
                &tls,
                "POST",
                "/1.0/instances",
                &headers,
                Some(instance("evil"))
            )
            .await,
            refusal(403, &foreign_origin(origin)),
        );
    }
    // Sec-Fetch-Site marks requests without Origin (an <img>, a navigation): 403 but for the
    // page's own and the user's.
    let stream = "/1.0/instances/bystander/console?type=vga&stream=mjpeg";
    for site in ["cross-site", "same-site"] {
        let refused = refusal(
            403,
            &format!("Cross-origin request refused: the browser marked it Sec-Fetch-Site: {site}"),
        );
        let headers = [(SEC_FETCH_SITE, site)];
        for path in ["/1.0/instances", "/1.0", stream] {
            assert_eq!(
                send(&tls, "GET", path, &headers, None).await,
                refused,
                "{path}"
            );
        }
    }
    // A websocket upgrade from a foreign origin never reaches the events' handler.
    let events = "/1.0/events";
    assert_eq!(
        send(&tls, "GET", events, &handshake("http://127.0.0.1:9"), None).await,
        refusal(403, &foreign_origin("http://127.0.0.1:9"))
    );
    // On the Unix socket too (reached by a browser only through a bridge that forwards headers).
    let bridged = [(ORIGIN, "http://evil.example")];
    assert_eq!(
        send(&daemon.client(), "GET", "/1.0/instances", &bridged, None).await,
        refusal(
            403,
            "Cross-origin request refused: Origin http://evil.example is not this server's \
             origin http://unix.socket"
        )
    );
    assert!(!exists(&daemon, "evil").await, "an attack created a VM");

    // The page's own requests and the user's navigations pass; a JSON body with a charset too.
    for headers in [
        vec![(ORIGIN, own.as_str()), (SEC_FETCH_SITE, "same-origin")],
        vec![(SEC_FETCH_SITE, "none")],
        vec![],
    ] {
        let (status, _) = send(&tls, "GET", "/1.0/instances", &headers, None).await;
        assert_eq!(status, 200, "{headers:?}");
    }
    let upgraded = tls
        .send("GET", events, &handshake(&own), None)
        .await
        .unwrap();
    assert_eq!(upgraded.status(), 101);
    drop(upgraded);
    let json = [(CONTENT_TYPE, "application/json; charset=utf-8")];
    let body = json!({"name": "made", "type": "virtual-machine", "source": {"type": "none"}});
    let (status, created) = send(
        &tls,
        "POST",
        "/1.0/instances",
        &json,
        Some(body.to_string().into_bytes()),
    )
    .await;
    assert_eq!(status, 202, "{created}");

    let served = bystander.finish(bystander::BOUND).await;
    eprintln!("browser: the bystander got {served:?}");
}

#[tokio::test]
async fn a_page_of_another_origin_cannot_use_the_browsers_certificate() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let Some((daemon, identity, bystander)) = set_up().await else {
        return;
    };
    let env = [
        ("VGASHOT_UI_RUNNING", "bystander".to_owned()),
        ("VGASHOT_UI_FORBIDDEN", "evil".to_owned()),
    ];
    let (report, took) = browser.run("cross-origin-test.mjs", &identity, &env).await;
    eprintln!("browser: the attack in Chromium took {took:?}: {report}");
    assert!(
        !exists(&daemon, "evil").await,
        "the foreign page created a VM"
    );
    let served = bystander.finish(bystander::BOUND).await;
    eprintln!("browser: the bystander got {served:?}");
}

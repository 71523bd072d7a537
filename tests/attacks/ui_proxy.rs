//! Attacks on `vgashot ui`, the loopback proxy to the daemon's Unix socket: any process or web
//! page of this machine can reach its port, so it must serve only the browser that opened the
//! address it printed. A request without the session cookie, one that names another host (a
//! DNS-rebinding page), one a browser sends for another site, a token used a second time, and
//! one connection too many each get their exact refusal in an Incus error envelope, while the
//! browser's session is served, websockets included, and a bystander keeps getting screenshots
//! over the socket.
//!
//! The requests are written on raw TCP connections, so every header is exactly what a browser
//! (or an attacker) would send.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Daemon;
use crate::support::bystander::{self, Bystander};
use crate::support::ui_proxy::UiProxy;

/// How long one exchange with the proxy may take.
const EXCHANGE_BOUND: Duration = Duration::from_secs(10);

/// What the proxy answered.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header names in lowercase, with their values.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends one request on a new connection, `headers` exactly as given (no `Host` unless among
/// them), and reads the answer's head and its `Content-Length` body.
async fn exchange(
    address: &str,
    request_line: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    tokio::time::timeout(EXCHANGE_BOUND, async {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut request = format!("{request_line} HTTP/1.1\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
        read_answer(&mut stream).await
    })
    .await
    .unwrap_or_else(|_| panic!("{request_line}: no answer within {EXCHANGE_BOUND:?}"))
}

/// Reads an answer's head and its `Content-Length` body from `stream`.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut received = Vec::new();
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let mut buf = [0; 4096];
        let read = stream.read(&mut buf).await.unwrap();
        assert!(read > 0, "closed before a whole head: {received:?}");
        received.extend_from_slice(&buf[..read]);
    };
    let head = String::from_utf8(received[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = received[head_end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| value.parse().unwrap());
    while body.len() < length {
        let mut buf = [0; 4096];
        let read = stream.read(&mut buf).await.unwrap();
        assert!(read > 0, "closed before the whole body");
        body.extend_from_slice(&buf[..read]);
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// Asserts that `answer` is a 403 error envelope saying `text`.
fn assert_refused(answer: &Answer, text: &str) {
    assert_eq!(
        (answer.status, answer.json()),
        (
            403,
            json!({"type": "error", "status": "", "status_code": 0, "operation": "",
                   "error_code": 403, "error": text, "metadata": null})
        ),
        "{answer:?}"
    );
}

/// The address's path and query (`/ui/?token=...`).
fn path_of(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap();
    &rest[rest.find('/').unwrap()..]
}

/// Exchanges the token as the browser that opens the address does; returns the `Cookie` value
/// to send.
async fn log_in(proxy: &UiProxy) -> String {
    let host = proxy.address.as_str();
    let answer = exchange(
        host,
        &format!("GET {}", path_of(&proxy.url)),
        &[("Host", host), ("Sec-Fetch-Site", "none")],
        "",
    )
    .await;
    assert_eq!(answer.status, 303, "{answer:?}");
    assert_eq!(answer.header("location"), Some("/ui/"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let cookie = answer.header("set-cookie").unwrap();
    let (pair, attributes) = cookie.split_once("; ").unwrap();
    assert_eq!(attributes, "HttpOnly; SameSite=Strict; Path=/");
    pair.to_owned()
}

/// The daemon, the bystander's VM being screenshotted over the socket, and `vgashot ui`.
async fn set_up() -> Option<(Daemon, Bystander, UiProxy)> {
    let daemon = Daemon::start().await?;
    let bystander = Bystander::on_a_new_vm(&daemon).await;
    let proxy = UiProxy::start(&daemon);
    Some((daemon, bystander, proxy))
}

#[tokio::test]
async fn only_the_browser_that_opened_the_address_is_served() {
    let Some((daemon, bystander, proxy)) = set_up().await else {
        return;
    };
    let host = proxy.address.as_str();
    let no_session = "not authorized: open the address that `vgashot ui` printed";
    let spent = "not authorized: this token is wrong or was used already; run `vgashot ui` again";

    // Any local process or page, without the cookie: nothing, not even the page.
    for target in ["GET /1.0/instances", "GET /ui/", "GET /1.0"] {
        let answer = exchange(host, target, &[("Host", host)], "").await;
        assert_refused(&answer, no_session);
    }
    // A guessed token.
    let guessed = format!("GET /ui/?token={}", "0".repeat(64));
    assert_refused(
        &exchange(host, &guessed, &[("Host", host)], "").await,
        spent,
    );

    let cookie = log_in(&proxy).await;
    // The token is spent: whoever saw the address (a terminal, a process list, the browser's
    // history) cannot use it again.
    let again = format!("GET {}", path_of(&proxy.url));
    assert_refused(&exchange(host, &again, &[("Host", host)], "").await, spent);

    // The browser's session is served.
    let session = [("Host", host), ("Cookie", cookie.as_str())];
    let answer = exchange(host, "GET /1.0/instances", &session, "").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.json()["metadata"],
        json!([format!("/1.0/instances/{}", bystander::VM)])
    );

    // A page of another name that resolves to the loopback (DNS rebinding) is same-origin with
    // itself and would carry no cookie; even with the cookie, its Host gives it away.
    for forged in [
        format!("rebind.example:{}", host.rsplit(':').next().unwrap()),
        "127.0.0.1".into(),
    ] {
        let answer = exchange(
            host,
            "GET /1.0/instances",
            &[("Host", &forged), ("Cookie", &cookie)],
            "",
        )
        .await;
        assert_refused(
            &answer,
            &format!("Request refused: Host {forged} is not this server's address"),
        );
    }

    // Another site's page in the same browser, whose requests carry no SameSite=Strict cookie;
    // even if one did, its Origin and Sec-Fetch-Site give it away.
    let create = json!({"name": "forbidden", "type": "virtual-machine", "source": {"type": "none"}, "start": true})
        .to_string();
    let answer = exchange(
        host,
        "POST /1.0/instances",
        &[
            ("Host", host),
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        &create,
    )
    .await;
    assert_refused(
        &answer,
        &format!(
            "Cross-origin request refused: Origin http://evil.example is not this server's \
             origin http://{host}"
        ),
    );
    let answer = exchange(
        host,
        "GET /1.0/instances",
        &[
            ("Host", host),
            ("Cookie", &cookie),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        "",
    )
    .await;
    assert_refused(
        &answer,
        "Cross-origin request refused: the browser marked it Sec-Fetch-Site: cross-site",
    );
    let websocket = [
        ("Host", host),
        ("Cookie", cookie.as_str()),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let mut foreign = websocket.to_vec();
    foreign.push(("Origin", "http://evil.example"));
    let answer = exchange(host, "GET /1.0/events", &foreign, "").await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let reply = daemon
        .request("GET", "/1.0/instances/forbidden", None)
        .await;
    assert_eq!(reply.status, 404, "the foreign page created nothing");

    // The page's own websocket, through the proxy to the daemon's `/1.0/events`.
    let mut own = websocket.to_vec();
    own.push(("Origin", &proxy.base));
    let answer = exchange(host, "GET /1.0/events", &own, "").await;
    assert_eq!(answer.status, 101, "{answer:?}");
    assert_eq!(answer.header("upgrade"), Some("websocket"));

    bystander.finish(bystander::BOUND).await;
}

#[tokio::test]
async fn a_connection_over_the_cap_is_told_so_and_the_session_goes_on() {
    let Some((_daemon, bystander, proxy)) = set_up().await else {
        return;
    };
    let host = proxy.address.as_str();
    let cookie = log_in(&proxy).await;
    // Connections that say nothing hold every slot (each is closed after the header bound, 10 s;
    // the test is done long before).
    let mut held = Vec::new();
    for _ in 0..vgashot_ui_proxy::MAX_CONNECTIONS {
        held.push(TcpStream::connect(host).await.unwrap());
    }
    let over = exchange(host, "GET /1.0", &[("Host", host), ("Cookie", &cookie)], "").await;
    assert_eq!(
        (over.status, over.json()["error"].clone()),
        (
            503,
            json!(format!(
                "Too many connections to the server (at most {}); try again later",
                vgashot_ui_proxy::MAX_CONNECTIONS
            ))
        ),
        "{over:?}"
    );
    // Once they go, the browser is served again.
    drop(held);
    let deadline = std::time::Instant::now() + EXCHANGE_BOUND;
    loop {
        let answer = exchange(host, "GET /1.0", &[("Host", host), ("Cookie", &cookie)], "").await;
        if answer.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bystander.finish(bystander::BOUND).await;
}

//! Who the proxy serves: one browser, made known by a one-time token, on the proxy's own
//! address, for pages of the proxy's own origin.
//!
//! How a request is judged ([`Access::judge`]), before anything reaches the daemon:
//! 1. **Host**: the request must name the proxy's own address, `127.0.0.1:PORT` (the address it
//!    listens on) or `localhost:PORT`, in its `Host` header and in an absolute request target.
//!    A page of another name that resolves to the loopback (DNS rebinding) is same-origin with
//!    itself, so the browser lets it read what it fetches; its `Host` still names it, and it is
//!    refused ([`ApiError::ForeignHost`]).
//! 2. **Origin**: a request a browser sends on behalf of a page of another origin is refused by
//!    the daemon's own check ([`vgashot_rest::same_origin`]) as the Unix socket's bridge, which
//!    this proxy is: the origin must be `http://` and the `Host` just checked, and
//!    `Sec-Fetch-Site` `same-origin` or `none`.
//! 3. **Token**: [`Access::new`] makes a random token (256 bits) that `vgashot ui` prints in the
//!    page's address. A request that carries it (`?token=`) the first time is answered with a
//!    redirect to the same address without it, setting the session cookie; the token is then
//!    spent, so an address copied from the terminal, the browser's history or another user's
//!    view of a process list serves nobody else, and a second use is refused
//!    ([`ApiError::UiTokenRefused`]). A browser that already holds the cookie is just
//!    redirected.
//! 4. **Session**: every other request needs the cookie [`SESSION_COOKIE`] with the session's value, an
//!    other 256 random bits made at start and handed out only by step 3 (`HttpOnly`, so no
//!    script reads it; `SameSite=Strict`, so the browser sends it only with this site's own
//!    requests; `Path=/`). Without it: [`ApiError::NoUiSession`]. Secrets are compared in
//!    constant time.
//!
//! The session lives as long as the proxy: a new `vgashot ui` makes new secrets.

use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, COOKIE, HOST, HeaderValue, LOCATION, REFERRER_POLICY, SET_COOKIE,
};
use http::{HeaderMap, Response, StatusCode, Uri};
use ring::rand::{SecureRandom, SystemRandom};
use vgashot_rest::envelope::{self, ApiResponse};
use vgashot_rest::{ApiError, Caller, same_origin};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "vgashot_ui";

/// The query parameter that carries the one-time token.
pub const TOKEN_PARAMETER: &str = "token";

/// How many random bytes a token or a session has: 256 bits, beyond guessing.
const SECRET_BYTES: usize = 32;

/// What to do with a request that passed.
#[derive(Debug)]
pub enum Verdict {
    /// Forward it to the daemon.
    Forward,
    /// Answer with this redirect (the token exchange of step 3).
    Redirect(ApiResponse),
}

/// The random source failed (no `getrandom`, no `/dev/urandom`).
#[derive(Debug, thiserror::Error)]
#[error("cannot make a random token: the system's random source failed")]
pub struct RandomError;

/// The proxy's address, token and session; see the module documentation.
#[derive(Debug)]
pub struct Access {
    /// The `Host` values that name this proxy.
    hosts: [String; 2],
    /// The token, until it is spent.
    token: Mutex<Option<String>>,
    /// The session cookie's value.
    session: String,
}

impl Access {
    /// The access of a proxy listening on `address` (a loopback address), with a new token and
    /// session. Returns it with the token, which the caller prints in the page's address.
    pub fn new(address: SocketAddr) -> Result<(Self, String), RandomError> {
        let token = secret()?;
        let access = Self {
            hosts: [address.to_string(), format!("localhost:{}", address.port())],
            token: Mutex::new(Some(token.clone())),
            session: secret()?,
        };
        Ok((access, token))
    }

    /// Judges a request (steps 1 to 4): forward it, redirect it, or refuse it with the error
    /// to answer.
    pub fn judge(&self, uri: &Uri, headers: &HeaderMap) -> Result<Verdict, ApiError> {
        self.check_host(uri, headers)?;
        same_origin::check(&Caller::Unix, uri, headers)?;
        let has_session = self.has_session(headers);
        let mut token = None;
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (key, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
            if key == TOKEN_PARAMETER {
                token = Some(value.into_owned());
            } else {
                rest.append_pair(&key, &value);
            }
        }
        let Some(token) = token else {
            return if has_session {
                Ok(Verdict::Forward)
            } else {
                Err(ApiError::NoUiSession)
            };
        };
        let mut location = uri.path().to_owned();
        let rest = rest.finish();
        if !rest.is_empty() {
            location.push('?');
            location.push_str(&rest);
        }
        if has_session {
            return Ok(Verdict::Redirect(redirect(&location, None)));
        }
        if !self.spend(&token) {
            return Err(ApiError::UiTokenRefused);
        }
        let cookie = format!(
            "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            self.session
        );
        Ok(Verdict::Redirect(redirect(&location, Some(&cookie))))
    }

    /// Step 1: every name the request gives for its target must be one of this proxy's.
    fn check_host(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
        let mut named = false;
        let authority = uri
            .authority()
            .map(|authority| authority.as_str().as_bytes());
        let hosts = headers.get_all(HOST).iter().map(HeaderValue::as_bytes);
        for host in authority.into_iter().chain(hosts) {
            named = true;
            let host = String::from_utf8_lossy(host);
            if !self
                .hosts
                .iter()
                .any(|own| own.eq_ignore_ascii_case(host.trim()))
            {
                return Err(ApiError::ForeignHost(host.into_owned()));
            }
        }
        if named {
            Ok(())
        } else {
            Err(ApiError::ForeignHost("(none)".to_owned()))
        }
    }

    /// Whether the request carries the session cookie.
    fn has_session(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|header| header.as_bytes().split(|&byte| byte == b';'))
            .filter_map(|pair| {
                let text = std::str::from_utf8(pair).ok()?;
                let (name, value) = text.trim().split_once('=')?;
                (name == SESSION_COOKIE).then_some(value)
            })
            .any(|value| same_secret(value, &self.session))
    }

    /// Spends the token if `offered` is it; false if it is not, or was spent already.
    fn spend(&self, offered: &str) -> bool {
        // A poisoned lock still holds a consistent `Option`.
        let mut token = self
            .token
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match token.as_deref() {
            Some(expected) if same_secret(offered, expected) => {
                *token = None;
                true
            }
            _ => false,
        }
    }
}

/// A new secret: [`SECRET_BYTES`] random bytes in lowercase hex.
fn secret() -> Result<String, RandomError> {
    let mut bytes = [0; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomError)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Whether two secrets are equal, in time that depends only on their lengths (which are
/// public: every secret is as long).
fn same_secret(offered: &str, expected: &str) -> bool {
    offered.len() == expected.len()
        && offered
            .bytes()
            .zip(expected.bytes())
            .fold(0, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// A 303 to `location` (a path of this proxy), setting `cookie` when given; never cached, and
/// with no `Referer` sent on, so the token it carried goes nowhere.
fn redirect(location: &str, cookie: Option<&str>) -> ApiResponse {
    let mut response = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .body(envelope::full(Bytes::new()))
        .expect("a status and no headers make a valid response");
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, location);
    }
    if let Some(Ok(cookie)) = cookie.map(HeaderValue::from_str) {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str = "127.0.0.1:7000";

    fn request(path: &str, headers: &[(&str, &str)]) -> (Uri, HeaderMap) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        (path.parse().unwrap(), map)
    }

    fn judge(access: &Access, path: &str, headers: &[(&str, &str)]) -> Result<Verdict, String> {
        let (uri, map) = request(path, headers);
        access.judge(&uri, &map).map_err(|error| {
            assert_eq!(error.status(), StatusCode::FORBIDDEN);
            error.to_string()
        })
    }

    /// Exchanges the token; returns the `Cookie` header that the browser then sends.
    fn log_in(access: &Access, token: &str) -> String {
        let path = format!("/ui/?project=default&token={token}");
        let Ok(Verdict::Redirect(response)) = judge(access, &path, &[("host", ADDRESS)]) else {
            panic!("the token is taken");
        };
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/ui/?project=default");
        let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
        let (pair, attributes) = cookie.split_once("; ").unwrap();
        assert_eq!(attributes, "HttpOnly; SameSite=Strict; Path=/");
        assert!(
            pair.starts_with("vgashot_ui=") && pair.len() == 11 + 64,
            "{pair}"
        );
        pair.to_owned()
    }

    #[test]
    fn the_token_becomes_a_session_once() {
        let (access, token) = Access::new(ADDRESS.parse().unwrap()).unwrap();
        assert_eq!(token.len(), 64);
        let no_session = "not authorized: open the address that `vgashot ui` printed";
        assert_eq!(
            judge(&access, "/ui/", &[("host", ADDRESS)]).unwrap_err(),
            no_session
        );
        let wrong = format!("/ui/?token={}", "0".repeat(64));
        let refused =
            "not authorized: this token is wrong or was used already; run `vgashot ui` again";
        assert_eq!(
            judge(&access, &wrong, &[("host", ADDRESS)]).unwrap_err(),
            refused
        );
        let cookie = log_in(&access, &token);
        // The token is spent: a browser without the cookie cannot use it again.
        let again = format!("/ui/?token={token}");
        assert_eq!(
            judge(&access, &again, &[("host", ADDRESS)]).unwrap_err(),
            refused
        );
        // With the cookie, requests pass, among other cookies too, and on `localhost`.
        let other_cookies = format!("a=b; {cookie}; c=d");
        for headers in [
            [("host", ADDRESS), ("cookie", cookie.as_str())],
            [
                ("host", "localhost:7000"),
                ("cookie", other_cookies.as_str()),
            ],
        ] {
            assert!(matches!(
                judge(&access, "/1.0/instances", &headers),
                Ok(Verdict::Forward)
            ));
        }
        // A browser with the cookie that opens the spent address again is just redirected.
        let Ok(Verdict::Redirect(response)) = judge(
            &access,
            &again,
            &[("host", ADDRESS), ("cookie", cookie.as_str())],
        ) else {
            panic!("redirected");
        };
        assert!(response.headers().get(SET_COOKIE).is_none());
        // A wrong session value is no session.
        let forged = format!("{SESSION_COOKIE}={}", "0".repeat(64));
        assert_eq!(
            judge(&access, "/1.0", &[("host", ADDRESS), ("cookie", &forged)]).unwrap_err(),
            no_session
        );
    }

    #[test]
    fn other_hosts_and_origins_are_refused() {
        let (access, token) = Access::new(ADDRESS.parse().unwrap()).unwrap();
        let cookie = log_in(&access, &token);
        let cookie = ("cookie", cookie.as_str());
        for host in [
            "evil.example:7000",
            "127.0.0.1:7001",
            "127.0.0.1",
            "[::1]:7000",
        ] {
            assert_eq!(
                judge(&access, "/1.0", &[("host", host), cookie]).unwrap_err(),
                format!("Request refused: Host {host} is not this server's address")
            );
        }
        assert_eq!(
            judge(
                &access,
                "http://evil.example/1.0",
                &[("host", ADDRESS), cookie]
            )
            .unwrap_err(),
            "Request refused: Host evil.example is not this server's address"
        );
        assert!(judge(&access, "/1.0", &[cookie]).is_err(), "no Host at all");
        let host = ("host", ADDRESS);
        assert_eq!(
            judge(
                &access,
                "/1.0",
                &[host, cookie, ("origin", "http://evil.example")]
            )
            .unwrap_err(),
            "Cross-origin request refused: Origin http://evil.example is not this server's \
             origin http://127.0.0.1:7000"
        );
        assert!(
            judge(
                &access,
                "/1.0",
                &[host, cookie, ("sec-fetch-site", "cross-site")]
            )
            .is_err()
        );
        // The page's own requests pass.
        let own = [
            host,
            cookie,
            ("origin", "http://127.0.0.1:7000"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(matches!(judge(&access, "/1.0", &own), Ok(Verdict::Forward)));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }
}

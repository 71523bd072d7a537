//! Refusing what a browser sends on behalf of another web site. A browser holding a trusted
//! client certificate presents it to this daemon for any page that addresses it, as it sends a
//! cookie, so without this check any site the user visits could create and start VMs (a
//! `text/plain` `POST` is a "simple" cross-site request that needs no preflight) or read
//! `/1.0/events` over a websocket (which CORS does not cover).
//!
//! How a request is judged, before any route sees it ([`check`]):
//! 1. A client that is not a browser sends neither `Origin` nor `Sec-Fetch-Site` (the `incus`
//!    client, curl, `vgashot`): nothing to judge, it passes.
//! 2. `Sec-Fetch-Site` is the browser's own verdict on who initiated the request. Only
//!    `same-origin` (the page at `/ui/` itself) and `none` (the user typed the address, used a
//!    bookmark or reloaded) pass. `same-site` is refused too: a site ignores ports and
//!    subdomains, so `https://127.0.0.1:9000` (any other service on this machine) and
//!    `https://other.example.com` are "same-site" with `https://vg.example.com:8443`, yet they
//!    hold none of this daemon's trust. Values the standard does not name are refused as well.
//! 3. `Origin`, which browsers send with every websocket handshake and every request but plain
//!    `GET`s and `HEAD`s (also from browsers too old for `Sec-Fetch-*`), must be the origin the
//!    request was addressed to: the scheme of the listener, then the request's `Host` (its
//!    default port left out, as browsers serialize origins). `null` (sandboxed frames, `file:`
//!    pages) is never this daemon's origin.
//! 4. The TLS listener's origin is `https://` + `Host`. The Unix socket has no scheme of its own:
//!    a browser reaches it only through something that bridges it to TCP (the loopback proxy of
//!    `vgashot ui`, or an administrator's `socat`), so there `http://` + `Host` and
//!    `https://` + `Host` both pass. The same check applies there: it costs non-browser clients
//!    nothing, it still stops a foreign page behind a naive bridge that forwards headers
//!    unchanged, and a bridge that rewrites `Host` must check and rewrite `Origin` itself, which
//!    is the bridge's job anyway (only it knows the origin it serves).
//!
//! A refusal is [`ApiError::CrossOrigin`], a 403 in the Incus error envelope, whatever the route
//! (also `GET /` and `GET /1.0`, and also for websocket upgrades, which never reach their
//! handler).

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, Uri};

use crate::auth::trust::Caller;
use crate::error::ApiError;

/// The header in which a browser says who initiated a request (Fetch Metadata).
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// The `Sec-Fetch-Site` values that pass: the page's own requests and the user's navigations.
const ALLOWED_FETCH_SITES: [&str; 2] = ["same-origin", "none"];

/// Refuses a request that a browser sent on behalf of a page of another origin; see the module
/// documentation for the rules.
pub fn check(caller: &Caller, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    for site in headers.get_all(SEC_FETCH_SITE) {
        let site = String::from_utf8_lossy(site.as_bytes());
        if !ALLOWED_FETCH_SITES
            .iter()
            .any(|allowed| site.trim().eq_ignore_ascii_case(allowed))
        {
            return Err(ApiError::CrossOrigin(format!(
                "the browser marked it Sec-Fetch-Site: {site}"
            )));
        }
    }
    let origins = headers.get_all(ORIGIN);
    if origins.iter().next().is_none() {
        return Ok(());
    }
    let own = own_origins(caller, uri, headers);
    for origin in origins {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        if !own
            .iter()
            .any(|own| own.eq_ignore_ascii_case(origin.trim()))
        {
            return Err(ApiError::CrossOrigin(match own.first() {
                Some(own) => format!("Origin {origin} is not this server's origin {own}"),
                None => format!("Origin {origin} given without a Host"),
            }));
        }
    }
    Ok(())
}

/// The origins a request to this listener may come from: `https://HOST` on the TLS listener,
/// `http://HOST` or `https://HOST` on the Unix socket; none without a `Host`.
fn own_origins(caller: &Caller, uri: &Uri, headers: &HeaderMap) -> Vec<String> {
    let host = uri
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| {
            let host = headers.get(HOST)?.to_str().ok()?;
            Some(host.trim().to_owned())
        })
        .filter(|host| !host.is_empty());
    let Some(host) = host else {
        return Vec::new();
    };
    let schemes: &[(&str, &str)] = match caller {
        Caller::Unix => &[("http", ":80"), ("https", ":443")],
        Caller::TrustedCertificate(_) | Caller::Untrusted => &[("https", ":443")],
    };
    schemes
        .iter()
        .map(|(scheme, default_port)| {
            // Browsers leave the default port out of an origin, and out of `Host` too; other
            // clients may write it in `Host`.
            let host = host.strip_suffix(default_port).unwrap_or(&host);
            format!("{scheme}://{host}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    fn judge(caller: &Caller, headers: &[(&str, &str)]) -> Result<(), String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        check(caller, &Uri::from_static("/1.0/instances"), &map).map_err(|error| {
            assert_eq!(error.status(), StatusCode::FORBIDDEN);
            error.to_string()
        })
    }

    #[test]
    fn non_browser_clients_and_the_page_itself_pass() {
        let tls = Caller::TrustedCertificate("ab".into());
        assert_eq!(judge(&tls, &[]), Ok(()));
        assert_eq!(judge(&tls, &[("host", "127.0.0.1:8443")]), Ok(()));
        for site in ["same-origin", "none", "Same-Origin"] {
            assert_eq!(judge(&tls, &[("sec-fetch-site", site)]), Ok(()), "{site}");
        }
        let page = [
            ("host", "127.0.0.1:8443"),
            ("origin", "https://127.0.0.1:8443"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(judge(&tls, &page), Ok(()));
        assert_eq!(
            judge(
                &tls,
                &[("host", "VG.example:443"), ("origin", "https://vg.example")]
            ),
            Ok(())
        );
        assert_eq!(
            judge(
                &tls,
                &[("host", "[::1]:8443"), ("origin", "https://[::1]:8443")]
            ),
            Ok(())
        );
        let bridged = [
            ("host", "127.0.0.1:7000"),
            ("origin", "http://127.0.0.1:7000"),
        ];
        assert_eq!(judge(&Caller::Unix, &bridged), Ok(()));
    }

    #[test]
    fn other_origins_are_refused() {
        let tls = Caller::TrustedCertificate("ab".into());
        for site in ["cross-site", "same-site", "bogus"] {
            assert_eq!(
                judge(&tls, &[("sec-fetch-site", site)]),
                Err(format!(
                    "Cross-origin request refused: the browser marked it Sec-Fetch-Site: {site}"
                ))
            );
        }
        let host = ("host", "127.0.0.1:8443");
        for origin in [
            "http://127.0.0.1:9000",
            "https://127.0.0.1:9000",
            // The right host over plain HTTP is another origin.
            "http://127.0.0.1:8443",
            "https://127.0.0.1:8443.evil.example",
            "null",
        ] {
            assert_eq!(
                judge(&tls, &[host, ("origin", origin)]),
                Err(format!(
                    "Cross-origin request refused: Origin {origin} is not this server's origin \
                     https://127.0.0.1:8443"
                ))
            );
        }
        // Untrusted callers and the Unix socket are judged alike.
        assert!(judge(&Caller::Untrusted, &[host, ("origin", "null")]).is_err());
        assert!(judge(&Caller::Unix, &[host, ("origin", "http://evil.example")]).is_err());
        // A second Origin or Sec-Fetch-Site that disagrees is refused.
        let page = ("origin", "https://127.0.0.1:8443");
        assert!(judge(&tls, &[host, page, ("origin", "http://evil.example")]).is_err());
        assert!(
            judge(
                &tls,
                &[("sec-fetch-site", "none"), ("sec-fetch-site", "cross-site")]
            )
            .is_err()
        );
        assert_eq!(
            judge(&tls, &[("origin", "https://127.0.0.1:8443")]),
            Err(
                "Cross-origin request refused: Origin https://127.0.0.1:8443 given without a Host"
                    .into()
            )
        );
    }
}

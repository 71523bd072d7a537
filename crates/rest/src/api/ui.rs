//! `/ui/`: a small web page that shows every VM's screen, with Start and Stop buttons.
//!
//! The page is three static files under `crates/rest/ui/`, compiled into the binary so the
//! daemon has nothing to install and nothing to find at run time, and so the page always
//! matches the API of the daemon that serves it. It uses only the public API (with the
//! browser's own TLS client certificate), so it sees and may do exactly what that certificate
//! may: the routes stay closed to untrusted clients like every other route.
//!
//! Every asset carries a strong `ETag` (a digest of its bytes) and `Cache-Control: no-cache`:
//! a browser revalidates at each load and gets a cheap 304 until the daemon is upgraded, and
//! never keeps a stale script next to a newer API. A strict `Content-Security-Policy` allows
//! only this origin's scripts, styles, images (and the `blob:` URLs the page makes of
//! screenshots) and connections, so nothing is fetched from anywhere else and no injected
//! markup can run.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderValue, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, Response, StatusCode, Uri};

use crate::api::console::if_none_match;
use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;

/// The policy of every asset: this origin only. `blob:` images are the screenshots the script
/// fetched and turned into object URLs; `connect-src 'self'` covers `fetch` and the events
/// websocket (`wss:` to the same host, as CSP level 3 says).
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// One embedded file of the page.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/ui/` (empty for the page itself).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes, as compiled in.
    pub body: &'static [u8],
}

/// The page and its assets, compiled in.
pub const ASSETS: [Asset; 3] = [
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/app.css"),
    },
];

impl Asset {
    /// The asset called `name` (`""` or `index.html` for the page), if there is one.
    pub fn find(name: &str) -> Option<&'static Self> {
        let name = if name == "index.html" { "" } else { name };
        ASSETS.iter().find(|asset| asset.name == name)
    }

    /// Its strong `ETag`: a digest of the bytes, computed once per process, so it changes
    /// exactly when the daemon ships a different file.
    pub fn etag(&self) -> &'static str {
        static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
        let etags = ETAGS.get_or_init(|| {
            ASSETS
                .iter()
                .map(|asset| {
                    let digest = ring::digest::digest(&ring::digest::SHA256, asset.body);
                    let hex: String = digest.as_ref()[..16]
                        .iter()
                        .map(|byte| format!("{byte:02x}"))
                        .collect();
                    format!("\"{hex}\"")
                })
                .collect()
        });
        let index = ASSETS
            .iter()
            .position(|asset| asset.name == self.name)
            .expect("every asset is in ASSETS");
        &etags[index]
    }
}

/// Get the web page
///
/// A page listing the instances of a project (`?project=`, default `default`) with a live
/// thumbnail of each running VM's screen, Start and Stop buttons, and a large live view with a
/// "Save PNG" button. `/ui` redirects here; the page's script and style sheet are
/// `/ui/app.js` and `/ui/app.css`. The files are compiled into the daemon, served with
/// `Cache-Control: no-cache`, a strong `ETag` and a `Content-Security-Policy` allowing this
/// origin only. Over TLS the page needs a trusted client certificate, as the API does.
#[utoipa::path(
    get,
    path = "/ui/",
    operation_id = "ui_get",
    tag = "ui",
    params(
        ("project" = Option<String>, Query, description = "The project whose instances the page shows", example = "default"),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of the copy the browser has; unchanged, the answer is 304"),
    ),
    responses(
        (status = 200, description = "The page", content((crate::envelope::Binary = "text/html")), headers(
            ("ETag" = String, description = "Strong, a digest of the page"),
            ("Content-Security-Policy" = String, description = "This origin only"),
        )),
        (status = 304, description = "The browser's copy is current"),
        (status = 403, description = "An untrusted client", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub fn get(uri: &Uri, headers: &HeaderMap) -> Result<ApiResponse, ApiError> {
    let path = uri.path();
    // `/ui` has to become `/ui/` so that the page's relative links (`app.js`) resolve under it.
    if path == "/ui" {
        let location = match uri.query() {
            Some(query) => format!("/ui/?{query}"),
            None => "/ui/".to_owned(),
        };
        return Ok(redirect(&location));
    }
    let name = path.strip_prefix("/ui/").unwrap_or_default();
    let asset = Asset::find(name).ok_or(ApiError::UnknownPath)?;
    Ok(serve(asset, headers))
}

/// A 308 to `location`: permanent, and the method is kept.
fn redirect(location: &str) -> ApiResponse {
    let mut response = Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .body(envelope::full(Bytes::new()))
        .expect("a status and no headers make a valid response");
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// The asset, or a 304 when the browser's copy is current; with the headers every asset has.
fn serve(asset: &'static Asset, headers: &HeaderMap) -> ApiResponse {
    let etag = asset.etag();
    let mut response = if if_none_match(headers, etag) {
        Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(envelope::full(Bytes::new()))
            .expect("a status and no headers make a valid response")
    } else {
        envelope::bytes(asset.content_type, Bytes::from_static(asset.body))
    };
    let fixed = [
        (ETAG, etag),
        (CACHE_CONTROL, "no-cache"),
        (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    if response.status() == StatusCode::NOT_MODIFIED {
        response.headers_mut().remove(CONTENT_TYPE);
    }
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn get_path(path: &str, if_none_match: Option<&str>) -> Result<ApiResponse, ApiError> {
        let mut headers = HeaderMap::new();
        if let Some(tag) = if_none_match {
            headers.insert(http::header::IF_NONE_MATCH, tag.parse().unwrap());
        }
        get(&path.parse().unwrap(), &headers)
    }

    #[tokio::test]
    async fn assets_have_their_types_and_a_strict_policy() {
        for (path, content_type, needle) in [
            ("/ui/", "text/html; charset=utf-8", "<!doctype html>"),
            ("/ui/index.html", "text/html; charset=utf-8", "app.js"),
            ("/ui/app.js", "text/javascript; charset=utf-8", "use strict"),
            ("/ui/app.css", "text/css; charset=utf-8", "grid"),
        ] {
            let response = get_path(path, None).unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers().clone();
            assert_eq!(headers[CONTENT_TYPE], content_type, "{path}");
            assert_eq!(headers[CACHE_CONTROL], "no-cache");
            assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
            let policy = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(policy.starts_with("default-src 'none'; script-src 'self';"));
            assert!(!policy.contains("unsafe"), "{policy}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let text = std::str::from_utf8(&body).unwrap();
            assert!(text.to_lowercase().contains(needle), "{path}");
        }
    }

    #[test]
    fn the_page_refers_to_nothing_outside_its_origin() {
        for asset in &ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(scheme), "{} has {scheme}", asset.name);
            }
        }
        let page = std::str::from_utf8(Asset::find("").unwrap().body).unwrap();
        assert!(page.contains(r#"<script src="app.js" defer></script>"#));
        assert!(
            !page.contains("<script>"),
            "inline scripts would break the policy"
        );
        assert!(
            !page.contains("style="),
            "inline styles would break the policy"
        );
    }

    #[test]
    fn etags_answer_304() {
        let first = get_path("/ui/app.js", None).unwrap();
        let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
        let again = get_path("/ui/app.js", Some(&etag)).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[ETAG], etag.as_str());
        assert!(again.headers().get(CONTENT_TYPE).is_none());
        let other = get_path("/ui/app.css", Some(&etag)).unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[test]
    fn ui_redirects_to_the_directory_keeping_the_query() {
        let response = get_path("/ui", None).unwrap();
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response.headers()[LOCATION], "/ui/");
        let response = get_path("/ui?project=default", None).unwrap();
        assert_eq!(response.headers()[LOCATION], "/ui/?project=default");
    }

    #[test]
    fn unknown_assets_are_404() {
        for path in ["/ui/nope.js", "/ui/../1.0", "/ui/app.js/x"] {
            let error = get_path(path, None).unwrap_err();
            assert_eq!(error.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
}

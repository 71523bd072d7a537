//! A small client of the API over its Unix socket, for tools and tests that talk to a daemon.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Errors of talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket does not accept connections: no daemon runs there.
    #[error("no daemon answers on {}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("the request failed")]
    Http(#[source] hyper::Error),
    /// The reply is not the JSON expected.
    #[error("the daemon's reply is not JSON")]
    Json(#[source] serde_json::Error),
    /// The daemon answered with an error envelope (or an operation that failed).
    #[error("{message}")]
    Api {
        /// The HTTP status (or the envelope's `error_code`).
        status: u16,
        /// The envelope's `error`.
        message: String,
    },
}

/// A reply, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(ClientError::Json)
    }
}

/// A client of the daemon on one Unix socket; one connection per request, as the `incus`
/// client does.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request with an optional JSON body and reads the whole reply, whatever its
    /// status.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let body = body.map(|body| body.to_string().into_bytes());
        self.request_bytes(method, path, body).await
    }

    /// Sends one request with an optional raw body and reads the whole reply.
    pub async fn request_bytes(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "unix.socket");
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a method, a path and static headers make a valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(ClientError::Http)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Http)?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Sends a request that answers `metadata` in a sync envelope (or starts an operation, which
    /// is then waited for); an error envelope becomes [`ClientError::Api`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let reply = self.request(method, path, body).await?;
        let envelope = reply.json()?;
        match envelope["type"].as_str() {
            Some("sync") => Ok(envelope["metadata"].clone()),
            Some("async") => {
                let operation = envelope["operation"].as_str().unwrap_or_default();
                let waited = self
                    .request("GET", &format!("{operation}/wait?timeout=-1"), None)
                    .await?
                    .json()?;
                match waited["type"].as_str() {
                    Some("sync") => Ok(waited["metadata"].clone()),
                    _ => Err(api_error(&waited, reply.status)),
                }
            }
            _ => Err(api_error(&envelope, reply.status)),
        }
    }
}

fn api_error(envelope: &Value, status: u16) -> ClientError {
    ClientError::Api {
        status: envelope["error_code"]
            .as_u64()
            .and_then(|code| u16::try_from(code).ok())
            .unwrap_or(status),
        message: envelope["error"]
            .as_str()
            .unwrap_or("the daemon sent no error message")
            .to_owned(),
    }
}

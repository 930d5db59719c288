//! Registry failures in the words dockerd uses: transport errors as Go prints them, error
//! documents (`{"errors":[...]}`) read from a capped body, and bare statuses.

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use serde::Deserialize;

/// Most of a registry's error body that is read: enough for any error document, and a registry
/// streaming gigabytes of "error" costs no more than this.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// A registry failure, before it is put in terms of the image being pulled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached: `Get "url": dial tcp ...: connect: connection refused`.
    #[error("Get \"{url}\": {message}")]
    Transport { url: String, message: String },
    /// The registry answered with an error code (`MANIFEST_UNKNOWN`, `DENIED`, ...).
    #[error("{}: {message}", code_words(code))]
    Code {
        status: u16,
        code: String,
        message: String,
    },
    /// The registry answered with a status and no error document.
    #[error("received unexpected HTTP status: {status}")]
    Status { status: String },
    /// A Basic challenge and nothing to answer it with.
    #[error("Get \"{url}\": no basic auth credentials")]
    NoBasicCredentials { url: String },
    /// The token server would not hand out a token.
    #[error("{0}")]
    Token(String),
    #[error("{0}")]
    Invalid(String),
}

impl RegistryError {
    /// Transport failures mean "try the next endpoint"; answers from a registry do not, except
    /// from a mirror.
    pub fn is_transport(&self) -> bool {
        matches!(self, RegistryError::Transport { .. })
    }
}

/// `MANIFEST_UNKNOWN` -> `manifest unknown`, as Go's errcode prints codes.
pub(crate) fn code_words(code: &str) -> String {
    code.replace('_', " ").to_lowercase()
}

/// A registry's error body: `{"errors":[{"code":"...","message":"..."}]}`.
#[derive(Deserialize)]
pub(crate) struct ErrorDocument {
    #[serde(default)]
    pub(crate) errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
pub(crate) struct ErrorEntry {
    #[serde(default)]
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// Go's wording of a failed HTTP exchange, which the docker CLI's users know
/// (`dial tcp 127.0.0.1:5000: connect: connection refused`).
pub fn describe_http_error(err: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let addr = err
                .url()
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
                .unwrap_or_default();
            let addr = addr.replace(['[', ']'], "");
            let addr = match addr.rsplit_once(':') {
                Some((h, p)) if h.contains(':') => format!("[{h}]:{p}"),
                _ => addr,
            };
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    format!("dial tcp {addr}: connect: connection refused")
                }
                std::io::ErrorKind::ConnectionReset => {
                    format!("read tcp {addr}: read: connection reset by peer")
                }
                std::io::ErrorKind::TimedOut => format!("dial tcp {addr}: i/o timeout"),
                _ => format!("dial tcp {addr}: {io}"),
            };
        }
        source = e.source();
    }
    // No I/O cause: spell out the chain (TLS, protocol, timeouts).
    let mut parts = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    if parts.is_empty() {
        parts.push(err.to_string());
    }
    parts.dedup();
    parts.join(": ")
}

/// Reads at most `cap` bytes of a body in chunks, never more; says whether any was left unread.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Bytes, bool), reqwest::Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

pub(super) fn transport(url: &str, err: &reqwest::Error) -> RegistryError {
    RegistryError::Transport {
        url: url.to_string(),
        message: describe_http_error(err),
    }
}

/// Turns an error response into a [`RegistryError`], reading its error document if it has one.
pub(super) async fn error_of(mut response: reqwest::Response) -> RegistryError {
    let status = response.status();
    let (body, _) = read_capped(&mut response, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let body = &body[..];
    if let Ok(doc) = serde_json::from_slice::<ErrorDocument>(body) {
        if let Some(first) = doc.errors.into_iter().next() {
            return RegistryError::Code {
                status: status.as_u16(),
                code: if first.code.is_empty() {
                    "UNKNOWN".into()
                } else {
                    first.code
                },
                message: first.message,
            };
        }
    }
    if status == StatusCode::UNAUTHORIZED {
        let text = String::from_utf8_lossy(body).trim().to_string();
        return RegistryError::Code {
            status: 401,
            code: "UNAUTHORIZED".into(),
            message: if text.is_empty() {
                "authentication required".into()
            } else {
                text
            },
        };
    }
    if status == StatusCode::NOT_FOUND {
        // Registries without error documents: dockerd's distribution client reports 404s as
        // unknown manifests.
        return RegistryError::Code {
            status: 404,
            code: "MANIFEST_UNKNOWN".into(),
            message: "manifest unknown".into(),
        };
    }
    RegistryError::Status {
        status: status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_codes_read_like_go_errcode() {
        let e = RegistryError::Code {
            status: 404,
            code: "MANIFEST_UNKNOWN".into(),
            message: "manifest unknown".into(),
        };
        assert_eq!(e.to_string(), "manifest unknown: manifest unknown");
    }
}

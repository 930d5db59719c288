//! Typed errors that travel over the bus and map once to Docker's HTTP status codes.

use serde::{Deserialize, Serialize};

/// What went wrong, in the few kinds a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed or unacceptable input (HTTP 400).
    Invalid,
    /// Credentials missing or refused (HTTP 401).
    Unauthorized,
    /// Allowed credentials, forbidden operation (HTTP 403).
    Forbidden,
    /// The thing named does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with current state (HTTP 409).
    Conflict,
    /// The other side went away or gave up (HTTP 499 on the bus; never sent to HTTP clients).
    Cancelled,
    /// A bug or an unexpected failure (HTTP 500).
    Internal,
    /// A service or upstream is down or not answering in time (HTTP 503).
    Unavailable,
}

impl ErrorKind {
    /// The HTTP-like code carried in the NATS service API's `Nats-Service-Error-Code` header.
    pub fn code(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Cancelled => 499,
            ErrorKind::Internal => 500,
            ErrorKind::Unavailable => 503,
        }
    }

    pub fn from_code(code: u16) -> Self {
        match code {
            400 => ErrorKind::Invalid,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            499 => ErrorKind::Cancelled,
            503 | 504 | 408 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

/// An error as it crosses the bus: a kind and the message a Docker user will read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct BusError {
    pub kind: ErrorKind,
    pub message: String,
}

impl BusError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BusError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, message)
    }

    /// The NATS service API form of this error. Header values cannot hold CR or LF (the
    /// client library panics on them), so line breaks become spaces.
    pub fn to_service_error(&self) -> async_nats::service::error::Error {
        async_nats::service::error::Error {
            status: self.message.replace(['\r', '\n'], " "),
            code: self.kind.code() as usize,
        }
    }

    /// The service API's error headers, for an answer published without the service API (a
    /// broadcast's reply): what [`BusError::from_headers`] reads back.
    pub fn to_headers(&self) -> async_nats::HeaderMap {
        let error = self.to_service_error();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::service::NATS_SERVICE_ERROR_CODE,
            error.code.to_string().as_str(),
        );
        headers.insert(
            async_nats::service::NATS_SERVICE_ERROR,
            error.status.as_str(),
        );
        headers
    }

    /// Reads an error reply (service API headers) if the message is one.
    pub fn from_headers(headers: Option<&async_nats::HeaderMap>) -> Option<Self> {
        let headers = headers?;
        let code = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE)?;
        let code: u16 = code.as_str().parse().unwrap_or(500);
        let message = headers
            .get(async_nats::service::NATS_SERVICE_ERROR)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        Some(BusError::new(ErrorKind::from_code(code), message))
    }
}

impl From<std::io::Error> for BusError {
    fn from(err: std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::NotFound => BusError::not_found(err.to_string()),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                BusError::invalid(err.to_string())
            }
            _ => BusError::internal(err.to_string()),
        }
    }
}

impl From<serde_json::Error> for BusError {
    fn from(err: serde_json::Error) -> Self {
        BusError::invalid(format!("malformed message: {err}"))
    }
}

/// Turns a [`BusError`] into an `io::Error` (for readers and writers fed by a stream) and back.
impl From<BusError> for std::io::Error {
    fn from(err: BusError) -> Self {
        std::io::Error::other(err)
    }
}

/// Recovers a [`BusError`] that travelled inside an `io::Error`, or wraps the I/O failure.
pub fn from_io(err: std::io::Error) -> BusError {
    if err.get_ref().map(|e| e.is::<BusError>()).unwrap_or(false) {
        return *err.into_inner().unwrap().downcast::<BusError>().unwrap();
    }
    BusError::from(err)
}

pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// Go's `%q` of a string, as dockerd's messages quote names and values.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_for_every_kind() {
        for kind in [
            ErrorKind::Invalid,
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Cancelled,
            ErrorKind::Internal,
            ErrorKind::Unavailable,
        ] {
            assert_eq!(ErrorKind::from_code(kind.code()), kind);
        }
    }

    #[test]
    fn errors_cross_headers_whatever_their_message_holds() {
        let err = BusError::invalid("invalid filter 'name=a\r\nb'");
        let back = BusError::from_headers(Some(&err.to_headers())).unwrap();
        assert_eq!(back, BusError::invalid("invalid filter 'name=a  b'"));
        let err = BusError::conflict("");
        assert_eq!(BusError::from_headers(Some(&err.to_headers())), Some(err));
    }

    #[test]
    fn bus_error_survives_a_trip_through_io_error() {
        let err = BusError::not_found("no such blob");
        let io: std::io::Error = err.clone().into();
        assert_eq!(from_io(io), err);
    }
}

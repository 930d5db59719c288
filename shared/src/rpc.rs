//! Typed request/reply with deadlines.

use std::time::Duration;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{BusError, Result};

/// Waits between retries of a request nobody answered yet (about 3 s in all).
pub(crate) const NO_RESPONDERS_BACKOFF: [Duration; 7] = [
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1200),
];

/// Default deadline of a small call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `request` as JSON to `subject` and decodes the JSON reply, or the typed error.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    client: &async_nats::Client,
    subject: &str,
    request: &Req,
) -> Result<Resp> {
    call_with_timeout(client, subject, request, DEFAULT_TIMEOUT).await
}

pub async fn call_with_timeout<Req: Serialize, Resp: DeserializeOwned>(
    client: &async_nats::Client,
    subject: &str,
    request: &Req,
    timeout: Duration,
) -> Result<Resp> {
    let payload =
        Bytes::from(serde_json::to_vec(request).map_err(|e| BusError::internal(e.to_string()))?);
    let reply = raw_request(
        client,
        subject,
        async_nats::HeaderMap::new(),
        payload,
        timeout,
    )
    .await?;
    serde_json::from_slice(&reply.payload)
        .map_err(|e| BusError::internal(format!("malformed reply from {subject}: {e}")))
}

/// One request with headers; a service error reply becomes `Err`.
pub async fn raw_request(
    client: &async_nats::Client,
    subject: &str,
    headers: async_nats::HeaderMap,
    payload: Bytes,
    timeout: Duration,
) -> Result<async_nats::Message> {
    // A service that is starting or being restarted by its supervisor has no responders for a
    // moment: retry that briefly before calling it unavailable.
    let mut backoff = NO_RESPONDERS_BACKOFF.iter();
    let reply = loop {
        let request = async_nats::Request::new()
            .headers(headers.clone())
            .payload(payload.clone())
            .timeout(Some(timeout));
        match client.send_request(subject.to_string(), request).await {
            Ok(reply) => break reply,
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                match backoff.next() {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => return Err(request_error(subject, e)),
                }
            }
            Err(e) => return Err(request_error(subject, e)),
        }
    };
    if let Some(err) = BusError::from_headers(reply.headers.as_ref()) {
        return Err(err);
    }
    Ok(reply)
}

fn request_error(subject: &str, err: async_nats::RequestError) -> BusError {
    use async_nats::RequestErrorKind;
    let service = subject.split('.').nth(2).unwrap_or(subject);
    match err.kind() {
        RequestErrorKind::NoResponders => BusError::unavailable(format!(
            "the {service} service is not running (no responders on {subject})"
        )),
        RequestErrorKind::TimedOut => BusError::unavailable(format!(
            "the {service} service did not answer in time ({subject})"
        )),
        RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
            BusError::invalid(format!("bus request to {subject} refused: {err}"))
        }
        _ => BusError::unavailable(format!("bus request to {subject} failed: {err}")),
    }
}

/// Encodes a reply payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| BusError::internal(format!("cannot encode reply: {e}")))
}

/// Decodes a request payload; malformed input is the caller's error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    serde_json::from_slice(payload)
        .map_err(|e| BusError::invalid(format!("malformed request: {e}")))
}

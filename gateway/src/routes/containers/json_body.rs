//! Request bodies read as dockerd's `httputils.ReadJSON` reads them: an empty body is the zero
//! value; otherwise JSON only (by content type), one document.

use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

pub fn read_json<T: DeserializeOwned + Default>(headers: &HeaderMap, body: &[u8]) -> ApiResult<T> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""))
        .unwrap_or("");
    if ct.is_empty() && body.is_empty() {
        return Ok(T::default());
    }
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.is_empty() {
        return Err(ApiError::bad_request(format!(
            "malformed Content-Type header ({ct}): mime: no media type"
        )));
    }
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::bad_request(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )));
    }
    if body.is_empty() {
        return Ok(T::default());
    }
    let mut documents = serde_json::Deserializer::from_slice(body).into_iter::<T>();
    let value = match documents.next() {
        None => {
            return Err(ApiError::bad_request(
                "invalid JSON: got EOF while reading request body",
            ))
        }
        Some(Err(e)) => return Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
        Some(Ok(value)) => value,
    };
    // Go's `Decoder.More`: another value follows unless the rest is blank or closes a bracket.
    let rest = &body[documents.byte_offset()..];
    match rest.iter().find(|b| !b.is_ascii_whitespace()) {
        None | Some(b']') | Some(b'}') => Ok(value),
        Some(_) => Err(ApiError::bad_request("unexpected content after JSON")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json() -> HeaderMap {
        HeaderMap::from_iter([(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        )])
    }

    #[test]
    fn an_empty_body_is_the_zero_value() {
        let v: Value = read_json(&HeaderMap::new(), b"").unwrap();
        assert_eq!(v, Value::Null);
        let v: Value = read_json(&json(), b"").unwrap();
        assert_eq!(v, Value::Null);
    }

    #[test]
    fn a_body_must_be_one_json_document() {
        let v: Value = read_json(&json(), br#" {"a": 1} "#).unwrap();
        assert_eq!(v["a"], 1);
        let err = read_json::<Value>(&json(), b"  ").unwrap_err();
        assert_eq!(
            err.message,
            "invalid JSON: got EOF while reading request body"
        );
        assert!(read_json::<Value>(&json(), b"{")
            .unwrap_err()
            .message
            .starts_with("invalid JSON: "));
        assert_eq!(
            read_json::<Value>(&json(), b"{} {}").unwrap_err().message,
            "unexpected content after JSON"
        );
    }

    #[test]
    fn a_body_must_say_it_is_json() {
        let text = HeaderMap::from_iter([(header::CONTENT_TYPE, "text/plain".parse().unwrap())]);
        assert_eq!(
            read_json::<Value>(&text, b"{}").unwrap_err().message,
            "unsupported Content-Type header (text/plain): must be 'application/json'"
        );
        assert_eq!(
            read_json::<Value>(&HeaderMap::new(), b"{}")
                .unwrap_err()
                .message,
            "malformed Content-Type header (): mime: no media type"
        );
    }
}

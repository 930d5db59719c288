//! Request bodies read as dockerd's `httputils.ReadJSON` reads them: an empty body is the zero
//! value; otherwise one JSON document. The content type was checked before the handler ran: the
//! routes that read JSON are registered with `content_type::json_post` (dockerd's
//! `CheckForJSON`).

use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

pub fn read_json<T: DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
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

    #[test]
    fn an_empty_body_is_the_zero_value() {
        let v: Value = read_json(b"").unwrap();
        assert_eq!(v, Value::Null);
    }

    #[test]
    fn a_body_must_be_one_json_document() {
        let v: Value = read_json(br#" {"a": 1} "#).unwrap();
        assert_eq!(v["a"], 1);
        let err = read_json::<Value>(b"  ").unwrap_err();
        assert_eq!(
            err.message,
            "invalid JSON: got EOF while reading request body"
        );
        assert!(read_json::<Value>(b"{")
            .unwrap_err()
            .message
            .starts_with("invalid JSON: "));
        assert_eq!(
            read_json::<Value>(b"{} {}").unwrap_err().message,
            "unexpected content after JSON"
        );
    }
}

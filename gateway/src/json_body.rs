//! Request bodies read as dockerd reads them, in one place: one JSON document
//! (`httputils.ReadJSON`: an empty body is the zero value, content after the document is
//! refused), decoded with the rules of Go's `encoding/json` ([`go_decoder`]): `null` is the zero
//! value, unknown keys are ignored, keys match fields case-insensitively, and a value of the
//! wrong type is a 400 in Go's words. Every route with a JSON body reads it here; the content
//! type was checked before the handler ran (`content_type::json_post`, dockerd's
//! `CheckForJSON`).

mod go_decoder;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use go_decoder::{GoDecoder, GoJsonError};

use crate::error::{ApiError, ApiResult};

/// `T` from `value` as Go's decoder fills it.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, GoJsonError> {
    T::deserialize(GoDecoder(value))
}

/// The one JSON document of `body`; `None` when the body is empty.
pub fn read_document(body: &[u8]) -> ApiResult<Option<Value>> {
    if body.is_empty() {
        return Ok(None);
    }
    let mut documents = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
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
        None | Some(b']') | Some(b'}') => Ok(Some(value)),
        Some(_) => Err(ApiError::bad_request("unexpected content after JSON")),
    }
}

/// dockerd's `ReadJSON` into `T`: an empty body is `T`'s zero value.
pub fn read_json<T: DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    match read_document(body)? {
        None => Ok(T::default()),
        Some(value) => decode(value).map_err(invalid),
    }
}

/// A document that does not fit its type, as dockerd answers it.
pub fn invalid(e: GoJsonError) -> ApiError {
    ApiError::bad_request(format!("invalid JSON: {e}"))
}

/// Takes the value of the struct field `field` out of `object` as Go finds it: by its exact
/// name or case-insensitively, the last such key winning.
pub fn take_field(object: &mut Map<String, Value>, field: &str) -> Option<Value> {
    let keys: Vec<String> = object
        .keys()
        .filter(|k| k.eq_ignore_ascii_case(field))
        .cloned()
        .collect();
    let mut found = None;
    for key in keys {
        found = object.shift_remove(&key);
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::json;
    use wharf_bus::container::{ExecConfig, HealthConfig, HostConfig, Ulimit};

    use super::*;

    #[test]
    fn an_empty_body_is_the_zero_value() {
        let v: Value = read_json(b"").unwrap();
        assert_eq!(v, Value::Null);
        let exec: ExecConfig = read_json(b"").unwrap();
        assert_eq!(exec, ExecConfig::default());
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

    /// docker-compose 1.29.2's health check when the compose file sets only `test`.
    #[test]
    fn null_fields_of_a_struct_are_zero_as_in_go() {
        let health: HealthConfig = decode(json!({
            "Test": ["CMD-SHELL", "true"], "Interval": null, "Timeout": null,
            "Retries": null, "StartPeriod": null
        }))
        .unwrap();
        assert_eq!(
            health,
            HealthConfig {
                test: Some(vec!["CMD-SHELL".into(), "true".into()]),
                ..Default::default()
            }
        );
        let host: HostConfig = decode(json!({
            "Memory": null, "Binds": null, "PidsLimit": null, "RestartPolicy": null,
            "LogConfig": {"Type": null, "Config": null}, "ConsoleSize": null
        }))
        .unwrap();
        assert_eq!(host, HostConfig::default());
    }

    #[test]
    fn null_in_a_map_or_a_list_is_the_elements_zero_value() {
        let labels: BTreeMap<String, String> = decode(json!({"a": null, "b": "x"})).unwrap();
        assert_eq!(
            labels,
            BTreeMap::from([("a".into(), "".into()), ("b".into(), "x".into())])
        );
        let list: Vec<String> = decode(json!(["a", null])).unwrap();
        assert_eq!(list, ["a", ""]);
        let ulimits: Vec<Ulimit> = decode(json!([null, {"Name": "nofile", "Soft": null}])).unwrap();
        assert_eq!(
            ulimits,
            [
                Ulimit::default(),
                Ulimit {
                    name: "nofile".into(),
                    ..Default::default()
                }
            ]
        );
    }

    #[test]
    fn untyped_objects_lose_their_null_keys_but_arrays_keep_their_nulls() {
        let v: Value = decode(
            json!({"Memory": null, "RestartPolicy": {"Name": null, "MaximumRetryCount": 3},
                                     "Cmd": ["a", null]}),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"RestartPolicy": {"MaximumRetryCount": 3}, "Cmd": ["a", null]})
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_known_ones_match_in_any_case() {
        let exec: ExecConfig =
            decode(json!({"cmd": ["true"], "TTY": true, "NoSuchField": {"x": [1, null]}})).unwrap();
        assert_eq!(exec.cmd, ["true"]);
        assert!(exec.tty);
        // Two keys of one field: the later one counts, as in Go.
        let exec: ExecConfig = decode(json!({"User": "a", "user": "b"})).unwrap();
        assert_eq!(exec.user, "b");
    }

    #[test]
    fn a_fixed_size_array_takes_what_fits_as_go_does() {
        let host: HostConfig = decode(json!({"ConsoleSize": [24]})).unwrap();
        assert_eq!(host.console_size, Some([24, 0]));
        let host: HostConfig = decode(json!({"ConsoleSize": [24, 80, 5]})).unwrap();
        assert_eq!(host.console_size, Some([24, 80]));
    }

    #[test]
    fn wrong_types_are_refused_in_gos_words() {
        let err = |v: Value| decode::<HostConfig>(v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"Memory": "1g"})),
            "json: cannot unmarshal string into Go struct field HostConfig.Memory of type int64"
        );
        assert_eq!(
            err(json!({"Memory": 1.5})),
            "json: cannot unmarshal number 1.5 into Go struct field HostConfig.Memory of type int64"
        );
        assert_eq!(
            err(json!({"BlkioWeight": 70000})),
            "json: cannot unmarshal number 70000 into Go struct field HostConfig.BlkioWeight of type uint16"
        );
        assert_eq!(
            err(json!({"Privileged": "yes"})),
            "json: cannot unmarshal string into Go struct field HostConfig.Privileged of type bool"
        );
        assert_eq!(
            err(json!({"Binds": "/a:/b"})),
            "json: cannot unmarshal string into Go struct field HostConfig.Binds of type slice"
        );
        assert_eq!(
            err(json!({"RestartPolicy": {"MaximumRetryCount": "3"}})),
            "json: cannot unmarshal string into Go struct field RestartPolicy.RestartPolicy.MaximumRetryCount of type int64"
        );
        assert_eq!(
            err(json!({"Tmpfs": {"/run": 1}})),
            "json: cannot unmarshal number into Go struct field HostConfig.Tmpfs of type string"
        );
        assert_eq!(
            err(json!([])),
            "json: cannot unmarshal array into Go value of type HostConfig"
        );
    }

    #[test]
    fn a_read_json_error_is_a_400_saying_invalid_json() {
        #[derive(Debug, Default, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body {
            #[serde(default)]
            detach: bool,
        }
        let err = read_json::<Body>(br#"{"Detach": "yes"}"#).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "invalid JSON: json: cannot unmarshal string into Go struct field Body.Detach of type bool"
        );
        assert!(!read_json::<Body>(br#"{"Detach": null}"#).unwrap().detach);
    }

    #[test]
    fn a_field_is_taken_out_by_any_case_of_its_name() {
        let mut o = json!({"HostConfig": {"a": 1}, "Image": "x", "hostconfig": {"b": 2}})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(take_field(&mut o, "HostConfig"), Some(json!({"b": 2})));
        assert_eq!(Value::Object(o), json!({"Image": "x"}));
    }
}

//! The swarm endpoints (`/swarm`, `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs`),
//! answered as a dockerd that is not part of a swarm answers them (moby's
//! `api/server/router/swarm` over a `daemon/cluster` without a swarm node).
//!
//! Each handler reads its request first, as dockerd's does (a JSON body as `httputils.ReadJSON`
//! reads it, then versions, flags and filters), so a malformed request gets dockerd's 400. Then
//! every manager operation is refused with 503 "This node is not a swarm manager...", and
//! `POST /swarm/leave` with 503 "This node is not part of a swarm". dockerd would start or join
//! a swarm on `POST /swarm/init` and `POST /swarm/join`; Wharf cannot, and says so with a 503.
//! `GET /info` shows the swarm `inactive`, and `GET /_ping` says so in its `Swarm` header.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::Value;
use wharf_bus::error::go_quote;

use crate::content_type::json_post;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::version::ApiVersion;

/// dockerd's answer to a manager operation on a node in no swarm (`errNoManager`).
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
/// dockerd's answer to `POST /swarm/leave` on a node in no swarm (`errNoSwarm`).
pub const NOT_IN_A_SWARM: &str = "This node is not part of a swarm";
/// Wharf's answer to `POST /swarm/init`, where dockerd would start a swarm.
pub const CANNOT_INIT: &str = "This node cannot start a swarm: Wharf does not support swarm mode";
/// Wharf's answer to `POST /swarm/join`, where dockerd would join one.
pub const CANNOT_JOIN: &str = "This node cannot join a swarm: Wharf does not support swarm mode";

/// The swarm routes, as dockerd's swarm router registers them. `create` is also an ID to
/// dockerd's `GET` and `DELETE` of `{id}`, so those methods answer there too.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/swarm", get(not_a_manager))
        .route("/swarm/init", json_post(init))
        .route("/swarm/join", json_post(join))
        .route("/swarm/leave", post(leave))
        .route("/swarm/update", json_post(update_swarm))
        .route("/swarm/unlock", json_post(unlock))
        .route("/swarm/unlockkey", get(not_a_manager))
        .route("/services", get(list_services))
        .route(
            "/services/create",
            json_post(create_service)
                .get(inspect_service)
                .delete(not_a_manager),
        )
        .route("/services/{id}", get(inspect_service).delete(not_a_manager))
        .route("/services/{id}/update", json_post(update_service))
        .route("/services/{id}/logs", get(logs))
        .route("/nodes", get(list))
        .route("/nodes/{id}", get(not_a_manager).delete(not_a_manager))
        .route("/nodes/{id}/update", json_post(update_node))
        .route("/tasks", get(list))
        .route("/tasks/{id}", get(not_a_manager))
        .route("/tasks/{id}/logs", get(logs))
        .route("/secrets", get(list))
        .route(
            "/secrets/create",
            json_post(create_secret)
                .get(not_a_manager)
                .delete(not_a_manager),
        )
        .route("/secrets/{id}", get(not_a_manager).delete(not_a_manager))
        .route("/secrets/{id}/update", json_post(update_secret))
        .route("/configs", get(list))
        .route(
            "/configs/create",
            json_post(create_config)
                .get(not_a_manager)
                .delete(not_a_manager),
        )
        .route("/configs/{id}", get(not_a_manager).delete(not_a_manager))
        .route("/configs/{id}/update", json_post(update_config))
}

fn unavailable(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}

async fn not_a_manager() -> ApiError {
    unavailable(NOT_A_MANAGER)
}

async fn init(body: Bytes) -> ApiResult<()> {
    read_json(&body, "swarm.InitRequest")?;
    Err(unavailable(CANNOT_INIT))
}

async fn join(body: Bytes) -> ApiResult<()> {
    read_json(&body, "swarm.JoinRequest")?;
    Err(unavailable(CANNOT_JOIN))
}

async fn leave() -> ApiError {
    unavailable(NOT_IN_A_SWARM)
}

async fn unlock(body: Bytes) -> ApiResult<()> {
    read_json(&body, "swarm.UnlockRequest")?;
    Err(unavailable(NOT_A_MANAGER))
}

async fn update_swarm(RawQuery(raw): RawQuery, body: Bytes) -> ApiResult<()> {
    read_json(&body, "swarm.Spec")?;
    let q = Query::parse(raw.as_deref());
    version(&q, |raw, e| format!("invalid swarm version '{raw}': {e}"))?;
    for flag in [
        "rotateWorkerToken",
        "rotateManagerToken",
        "rotateManagerUnlockKey",
    ] {
        if let Some(value) = q.get(flag).filter(|v| !v.is_empty()) {
            if parse_go_bool(value).is_err() {
                return Err(ApiError::bad_request(format!(
                    "invalid value for {flag}: {value}"
                )));
            }
        }
    }
    Err(unavailable(NOT_A_MANAGER))
}

/// `GET /nodes`, `/tasks`, `/secrets`, `/configs`: the filters are read first.
async fn list(RawQuery(raw): RawQuery) -> ApiResult<()> {
    check_filters(Query::parse(raw.as_deref()).get("filters").unwrap_or(""))?;
    Err(unavailable(NOT_A_MANAGER))
}

/// `GET /services`: the filters, then `status` (read from API 1.41 on).
async fn list_services(
    Extension(api): Extension<ApiVersion>,
    RawQuery(raw): RawQuery,
) -> ApiResult<()> {
    let q = Query::parse(raw.as_deref());
    check_filters(q.get("filters").unwrap_or(""))?;
    if api.at_least(1, 41) {
        bool_param(&q, "status")?;
    }
    Err(unavailable(NOT_A_MANAGER))
}

async fn inspect_service(RawQuery(raw): RawQuery) -> ApiResult<()> {
    bool_param(&Query::parse(raw.as_deref()), "insertDefaults")?;
    Err(unavailable(NOT_A_MANAGER))
}

async fn create_service(body: Bytes) -> ApiResult<()> {
    read_json(&body, "swarm.ServiceSpec")?;
    Err(unavailable(NOT_A_MANAGER))
}

async fn update_service(RawQuery(raw): RawQuery, body: Bytes) -> ApiResult<()> {
    read_json(&body, "swarm.ServiceSpec")?;
    version(&Query::parse(raw.as_deref()), |raw, e| {
        format!("invalid service version '{raw}': {e}")
    })?;
    Err(unavailable(NOT_A_MANAGER))
}

/// `GET /services/{id}/logs` and `/tasks/{id}/logs`: a stream must be chosen first (dockerd's
/// plain error, so a 500).
async fn logs(RawQuery(raw): RawQuery) -> ApiResult<()> {
    let q = Query::parse(raw.as_deref());
    if !q.flag("stdout") && !q.flag("stderr") {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Bad parameters: you must choose at least one stream",
        ));
    }
    Err(unavailable(NOT_A_MANAGER))
}

async fn update_node(RawQuery(raw): RawQuery, body: Bytes) -> ApiResult<()> {
    read_json(&body, "swarm.NodeSpec")?;
    version(&Query::parse(raw.as_deref()), |raw, e| {
        format!("invalid node version '{raw}': {e}")
    })?;
    Err(unavailable(NOT_A_MANAGER))
}

async fn create_secret(Extension(api): Extension<ApiVersion>, body: Bytes) -> ApiResult<()> {
    create_with_templating(&body, "swarm.SecretSpec", "secret", api)
}

async fn create_config(Extension(api): Extension<ApiVersion>, body: Bytes) -> ApiResult<()> {
    create_with_templating(&body, "swarm.ConfigSpec", "config", api)
}

/// Secrets and configs may be templates from API 1.37 on.
fn create_with_templating(
    body: &[u8],
    go_type: &str,
    what: &str,
    api: ApiVersion,
) -> ApiResult<()> {
    let spec = read_json(body, go_type)?;
    if !spec["Templating"].is_null() && !api.at_least(1, 37) {
        return Err(ApiError::bad_request(format!(
            "{what} templating is not supported on the specified API version: {api}"
        )));
    }
    Err(unavailable(NOT_A_MANAGER))
}

async fn update_secret(RawQuery(raw): RawQuery, body: Bytes) -> ApiResult<()> {
    read_json(&body, "swarm.SecretSpec")?;
    version(&Query::parse(raw.as_deref()), |_, _| {
        "invalid secret version".to_string()
    })?;
    Err(unavailable(NOT_A_MANAGER))
}

async fn update_config(RawQuery(raw): RawQuery, body: Bytes) -> ApiResult<()> {
    read_json(&body, "swarm.ConfigSpec")?;
    version(&Query::parse(raw.as_deref()), |_, _| {
        "invalid config version".to_string()
    })?;
    Err(unavailable(NOT_A_MANAGER))
}

/// dockerd's `httputils.ReadJSON` into the swarm type `go_type` (the route checked the content
/// type): an empty body is the zero value, otherwise one JSON document, an object or `null`.
/// Its fields are not checked: nothing is ever made of them.
fn read_json(body: &[u8], go_type: &str) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
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
    let kind = match &value {
        Value::Object(_) | Value::Null => None,
        Value::Array(_) => Some("array"),
        Value::String(_) => Some("string"),
        Value::Number(_) => Some("number"),
        Value::Bool(_) => Some("bool"),
    };
    if let Some(kind) = kind {
        return Err(ApiError::bad_request(format!(
            "invalid JSON: json: cannot unmarshal {kind} into Go value of type {go_type}"
        )));
    }
    // Go's `Decoder.More`: another value follows unless the rest is blank or closes a bracket.
    let rest = &body[documents.byte_offset()..];
    match rest.iter().find(|b| !b.is_ascii_whitespace()) {
        None | Some(b']') | Some(b'}') => Ok(value),
        Some(_) => Err(ApiError::bad_request("unexpected content after JSON")),
    }
}

/// The `version` parameter of an update, as Go's `strconv.ParseUint` reads it; `message` words
/// the refusal from the raw value and Go's error.
fn version(q: &Query, message: impl Fn(&str, &str) -> String) -> ApiResult<u64> {
    let raw = q.get("version").unwrap_or("");
    let quoted = go_quote(raw);
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        let e = format!("strconv.ParseUint: parsing {quoted}: invalid syntax");
        return Err(ApiError::bad_request(message(raw, &e)));
    }
    raw.parse::<u64>().map_err(|_| {
        let e = format!("strconv.ParseUint: parsing {quoted}: value out of range");
        ApiError::bad_request(message(raw, &e))
    })
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(value)
        )),
    }
}

/// A boolean query parameter dockerd reads with `strconv.ParseBool` when it is not empty.
fn bool_param(q: &Query, name: &str) -> ApiResult<()> {
    match q.get(name).filter(|v| !v.is_empty()) {
        Some(value) => parse_go_bool(value)
            .map(drop)
            .map_err(|e| ApiError::bad_request(format!("invalid value for {name}: {value}: {e}"))),
        None => Ok(()),
    }
}

/// dockerd's `filters.FromJSON`: `{"key": {"value": true}}`, or the older `{"key": ["value"]}`;
/// anything else is an "invalid filter".
fn check_filters(raw: &str) -> ApiResult<()> {
    if raw.is_empty() {
        return Ok(());
    }
    let valid = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Null) => true,
        Ok(Value::Object(fields)) => {
            let sets = fields.values().all(|v| match v {
                Value::Null => true,
                Value::Object(values) => values.values().all(|b| b.is_boolean() || b.is_null()),
                _ => false,
            });
            let lists = fields.values().all(|v| match v {
                Value::Null => true,
                Value::Array(values) => values.iter().all(|s| s.is_string() || s.is_null()),
                _ => false,
            });
            sets || lists
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid filter"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// (status, message) of one request to the swarm routes at API `api`.
    async fn ask(
        method: &str,
        path: &str,
        body: Option<&str>,
        api: ApiVersion,
    ) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        let mut req = req
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .unwrap();
        req.extensions_mut().insert(api);
        let resp = router::<()>().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (
            status,
            v["message"].as_str().unwrap_or_default().to_string(),
        )
    }

    async fn call(method: &str, path: &str, body: Option<&str>) -> (StatusCode, String) {
        ask(method, path, body, ApiVersion::CURRENT).await
    }

    #[tokio::test]
    async fn every_manager_operation_is_refused_as_by_a_node_in_no_swarm() {
        let unavailable = (StatusCode::SERVICE_UNAVAILABLE, NOT_A_MANAGER.to_string());
        for (method, path, body) in [
            ("GET", "/swarm", None),
            ("GET", "/swarm/unlockkey", None),
            ("POST", "/swarm/update?version=1", Some("{}")),
            (
                "POST",
                "/swarm/unlock",
                Some(r#"{"UnlockKey":"SWMKEY-1-x"}"#),
            ),
            ("GET", "/services", None),
            ("GET", "/services?status=true", None),
            ("GET", "/services/web", None),
            ("GET", "/services/create", None),
            ("POST", "/services/create", Some(r#"{"Name":"web"}"#)),
            ("POST", "/services/web/update?version=3", Some("{}")),
            ("DELETE", "/services/web", None),
            ("GET", "/services/web/logs?stdout=1", None),
            ("GET", "/nodes", None),
            (
                "GET",
                "/nodes?filters=%7B%22role%22%3A%7B%22manager%22%3Atrue%7D%7D",
                None,
            ),
            ("GET", "/nodes/self", None),
            ("DELETE", "/nodes/n1?force=1", None),
            ("POST", "/nodes/n1/update?version=1", Some("{}")),
            ("GET", "/tasks", None),
            ("GET", "/tasks/t1", None),
            ("GET", "/tasks/t1/logs?stderr=1", None),
            ("GET", "/secrets", None),
            ("POST", "/secrets/create", Some(r#"{"Name":"s","Data":""}"#)),
            ("GET", "/secrets/s1", None),
            ("DELETE", "/secrets/s1", None),
            ("POST", "/secrets/s1/update?version=1", Some("{}")),
            ("GET", "/configs", None),
            ("POST", "/configs/create", None),
            ("GET", "/configs/c1", None),
            ("DELETE", "/configs/c1", None),
            ("POST", "/configs/c1/update?version=1", Some("{}")),
        ] {
            assert_eq!(
                call(method, path, body).await,
                unavailable,
                "{method} {path}"
            );
        }
    }

    #[tokio::test]
    async fn leaving_init_and_join_say_there_is_no_swarm_and_there_will_be_none() {
        let refused = |m: &str| (StatusCode::SERVICE_UNAVAILABLE, m.to_string());
        assert_eq!(
            call("POST", "/swarm/leave?force=1", None).await,
            refused(NOT_IN_A_SWARM)
        );
        assert_eq!(
            call(
                "POST",
                "/swarm/init",
                Some(r#"{"ListenAddr":"0.0.0.0:2377"}"#)
            )
            .await,
            refused(CANNOT_INIT)
        );
        assert_eq!(
            call(
                "POST",
                "/swarm/join",
                Some(r#"{"RemoteAddrs":["10.0.0.1:2377"]}"#)
            )
            .await,
            refused(CANNOT_JOIN)
        );
    }

    #[tokio::test]
    async fn malformed_requests_get_dockerds_400_first() {
        let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
        assert_eq!(
            call("POST", "/swarm/init", Some("[]")).await,
            bad("invalid JSON: json: cannot unmarshal array into Go value of type swarm.InitRequest")
        );
        assert_eq!(
            call("POST", "/swarm/join", Some("  ")).await,
            bad("invalid JSON: got EOF while reading request body")
        );
        assert_eq!(
            call("POST", "/services/create", Some("{} x")).await,
            bad("unexpected content after JSON")
        );
        assert_eq!(
            call("POST", "/swarm/update", Some("{}")).await,
            bad("invalid swarm version '': strconv.ParseUint: parsing \"\": invalid syntax")
        );
        assert_eq!(
            call(
                "POST",
                "/swarm/update?version=1&rotateWorkerToken=yes",
                Some("{}")
            )
            .await,
            bad("invalid value for rotateWorkerToken: yes")
        );
        assert_eq!(
            call("POST", "/services/web/update?version=-1", Some("{}")).await,
            bad("invalid service version '-1': strconv.ParseUint: parsing \"-1\": invalid syntax")
        );
        assert_eq!(
            call("POST", "/nodes/n1/update?version=99999999999999999999", Some("{}")).await,
            bad("invalid node version '99999999999999999999': strconv.ParseUint: parsing \"99999999999999999999\": value out of range")
        );
        assert_eq!(
            call("POST", "/secrets/s1/update", Some("{}")).await,
            bad("invalid secret version")
        );
        assert_eq!(
            call("POST", "/configs/c1/update?version=x", Some("{}")).await,
            bad("invalid config version")
        );
        assert_eq!(
            call("GET", "/services?status=maybe", None).await,
            bad("invalid value for status: maybe: strconv.ParseBool: parsing \"maybe\": invalid syntax")
        );
        assert_eq!(
            call("GET", "/services/web?insertDefaults=2", None).await,
            bad("invalid value for insertDefaults: 2: strconv.ParseBool: parsing \"2\": invalid syntax")
        );
        assert_eq!(
            call(
                "GET",
                "/nodes?filters=%7B%22role%22%3A%22manager%22%7D",
                None
            )
            .await,
            bad("invalid filter")
        );
        assert_eq!(
            ask(
                "POST",
                "/secrets/create",
                Some(r#"{"Templating":{"Name":"golang"}}"#),
                ApiVersion(1, 36)
            )
            .await,
            bad("secret templating is not supported on the specified API version: 1.36")
        );
        assert_eq!(
            call("GET", "/tasks/t1/logs", None).await,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Bad parameters: you must choose at least one stream".to_string()
            )
        );
        // Before API 1.41 `status` is not read at all.
        assert_eq!(
            ask("GET", "/services?status=maybe", None, ApiVersion(1, 40)).await,
            (StatusCode::SERVICE_UNAVAILABLE, NOT_A_MANAGER.to_string())
        );
    }

    #[test]
    fn filters_are_read_as_dockerds_from_json_reads_them() {
        for ok in [
            "",
            "null",
            "{}",
            r#"{"name":{"web":true}}"#,
            r#"{"name":["web"]}"#,
            r#"{"name":null}"#,
        ] {
            assert!(check_filters(ok).is_ok(), "{ok}");
        }
        for bad in [
            "x",
            "[]",
            r#"{"name":"web"}"#,
            r#"{"a":{"x":true},"b":["y"]}"#,
        ] {
            assert_eq!(
                check_filters(bad).unwrap_err().message,
                "invalid filter",
                "{bad}"
            );
        }
    }
}

//! dockerd's `httputils.CheckForJSON`, in one place: a route whose body is JSON is registered with
//! [`json_post`], and its requests must say `Content-Type: application/json` (parameters such as
//! `charset` allowed) unless they have no body at all.
//!
//! Besides matching dockerd's answers, this keeps web pages out: a browser sends a cross-origin
//! POST without asking the server first (no CORS preflight) only when its content type is
//! `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data`. So a page cannot
//! create a container through an API listening on a loopback TCP port.

use axum::body::HttpBody;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};

use crate::error::{ApiError, ApiResult};

/// `POST` to `handler`, for a route whose body is JSON: [`require_json`] checks the request's
/// content type before the handler runs.
pub fn json_post<H, T, S>(handler: H) -> MethodRouter<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    post(handler).route_layer(axum::middleware::from_fn(require_json))
}

/// The middleware of [`json_post`]: dockerd's 400 unless the request may carry JSON.
pub async fn require_json(req: Request, next: Next) -> Response {
    // Go's `r.ContentLength == 0`: a declared length of 0, or no length and no chunked body.
    let no_body = req.body().size_hint().exact() == Some(0);
    match check_for_json(req.headers().get(header::CONTENT_TYPE), no_body) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            // Read (and drop) a small body first, as Go's server does: a client still writing it
            // then gets the answer, not a broken pipe or a reset connection.
            let drain = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT);
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
            e.into_response()
        }
    }
}

/// How much of a refused body is read before answering (Go's `maxPostHandlerReadBytes`); the
/// connection is closed after the answer when more follows.
const DRAIN_LIMIT: usize = 256 << 10;
/// How long a refused body may take to arrive before the answer goes out anyway.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// dockerd's `CheckForJSON`: no content type is fine for a request without a body; otherwise the
/// media type (compared case-insensitively, parameters ignored) must be `application/json`.
pub fn check_for_json(content_type: Option<&HeaderValue>, no_body: bool) -> ApiResult<()> {
    let ct = content_type
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if ct.is_empty() && no_body {
        return Ok(());
    }
    let media_type = ct.split(';').next().unwrap_or("").trim();
    if media_type.is_empty() {
        return Err(ApiError::bad_request(format!(
            "malformed Content-Type header ({ct}): mime: no media type"
        )));
    }
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::bad_request(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    /// (status, body) of `POST /x` with `content_type` and `body` through a `json_post` route.
    async fn post_x(content_type: Option<&str>, body: Body) -> (StatusCode, String) {
        let app = axum::Router::new().route("/x", json_post(|| async { "handled" }));
        let mut req = axum::http::Request::post("/x");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let resp = app.oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// A body of unknown length, as a chunked request has.
    fn streamed(data: &'static str) -> Body {
        Body::from_stream(futures::stream::iter([Ok::<_, std::io::Error>(data)]))
    }

    #[tokio::test]
    async fn json_routes_refuse_other_bodies_before_the_handler_runs() {
        let handled = (StatusCode::OK, "handled".to_string());
        assert_eq!(post_x(None, Body::empty()).await, handled);
        assert_eq!(
            post_x(Some("application/json"), Body::from("{}")).await,
            handled
        );
        assert_eq!(
            post_x(Some("application/json"), streamed("{}")).await,
            handled
        );
        assert_eq!(
            post_x(Some("text/plain"), Body::from("{}")).await,
            (
                StatusCode::BAD_REQUEST,
                r#"{"message":"unsupported Content-Type header (text/plain): must be 'application/json'"}"#
                    .to_string()
            )
        );
        // No content type and a body of unknown length: Go's ContentLength is -1, not 0.
        assert_eq!(
            post_x(None, streamed("")).await,
            (
                StatusCode::BAD_REQUEST,
                r#"{"message":"malformed Content-Type header (): mime: no media type"}"#
                    .to_string()
            )
        );
    }

    fn check(ct: Option<&'static str>, no_body: bool) -> Result<(), String> {
        let value = ct.map(HeaderValue::from_static);
        check_for_json(value.as_ref(), no_body).map_err(|e| {
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            e.message
        })
    }

    #[test]
    fn json_media_types_pass_in_any_case_and_with_parameters() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            " application/json ",
        ] {
            assert_eq!(check(Some(ct), false), Ok(()), "{ct}");
            assert_eq!(check(Some(ct), true), Ok(()), "{ct}");
        }
    }

    #[test]
    fn no_content_type_passes_only_without_a_body() {
        assert_eq!(check(None, true), Ok(()));
        assert_eq!(check(Some(""), true), Ok(()));
        assert_eq!(
            check(None, false),
            Err("malformed Content-Type header (): mime: no media type".to_string())
        );
    }

    #[test]
    fn other_media_types_are_refused_as_dockerd_refuses_them() {
        for ct in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/x-tar",
        ] {
            for no_body in [false, true] {
                assert_eq!(
                    check(Some(ct), no_body),
                    Err(format!(
                        "unsupported Content-Type header ({ct}): must be 'application/json'"
                    )),
                );
            }
        }
        assert_eq!(
            check(Some("; charset=utf-8"), false),
            Err("malformed Content-Type header (; charset=utf-8): mime: no media type".to_string())
        );
    }
}

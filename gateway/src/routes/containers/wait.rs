//! `POST /containers/{name}/wait`: headers at once, the exit status when the container gets
//! there. The CLI starts waiting before it starts a `--rm` or attached container, so the wait
//! must be with the node before the 200 goes out, and may then last as long as the container.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use serde_json::json;
use wharf_bus::api;
use wharf_bus::container::{WaitRequest, WaitResponse};
use wharf_bus::BusError;

use crate::cluster::resolve;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;
use crate::version::ApiVersion;

/// The wait condition of a query: `not-running` (default), `next-exit` or `removed`.
pub fn condition(q: &Query) -> ApiResult<String> {
    match q.get("condition").unwrap_or("") {
        "" => Ok("not-running".to_string()),
        c @ ("not-running" | "next-exit" | "removed") => Ok(c.to_string()),
        other => Err(ApiError::bad_request(format!(
            "invalid condition: \"{other}\""
        ))),
    }
}

/// dockerd's wait body: `Error` only when waiting failed, then `StatusCode`; one JSON line.
pub fn render(result: Result<WaitResponse, BusError>) -> Bytes {
    let value = match result {
        Ok(WaitResponse {
            status_code,
            error: Some(e),
        }) => json!({"Error": {"Message": e.message}, "StatusCode": status_code}),
        Ok(WaitResponse { status_code, .. }) => json!({ "StatusCode": status_code }),
        Err(e) => json!({"Error": {"Message": e.message}, "StatusCode": -1}),
    };
    let mut line = serde_json::to_vec(&value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

pub async fn wait(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    // Before API 1.30 there was no condition, and the headers came with the answer.
    let legacy = !version.at_least(1, 30);
    let condition = if legacy {
        "not-running".to_string()
    } else {
        condition(&Query::parse(raw.as_deref()))?
    };
    let target = resolve::locate(&state, &name).await?;
    let request = WaitRequest {
        id: target.id,
        condition,
    };
    // No deadline: the wait lasts as long as the container runs and the client waits. It is
    // with the node before the headers go out, ahead of the start the CLI sends after them.
    let answer = state
        .node(&target.node)
        .send::<api::ContainerWait>(&request)
        .await?;
    let json = [(header::CONTENT_TYPE, "application/json")];
    if legacy {
        let body = render(Ok(answer.await?));
        return Ok((json, body).into_response());
    }
    // A dropped client drops the body, and with it the pending answer.
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(render(answer.await)) });
    Ok((json, Body::from_stream(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_bus::container::WaitError;

    #[test]
    fn conditions_default_to_not_running_and_unknown_ones_are_refused() {
        assert_eq!(condition(&Query::parse(None)).unwrap(), "not-running");
        assert_eq!(
            condition(&Query::parse(Some("condition=next-exit"))).unwrap(),
            "next-exit"
        );
        assert_eq!(
            condition(&Query::parse(Some("condition=removed"))).unwrap(),
            "removed"
        );
        let err = condition(&Query::parse(Some("condition=later"))).unwrap_err();
        assert_eq!(err.message, "invalid condition: \"later\"");
    }

    #[test]
    fn the_body_has_error_only_when_waiting_failed() {
        assert_eq!(
            &render(Ok(WaitResponse {
                status_code: 7,
                error: None
            }))[..],
            b"{\"StatusCode\":7}\n"
        );
        assert_eq!(
            &render(Ok(WaitResponse {
                status_code: 0,
                error: Some(WaitError {
                    message: "boom".into()
                })
            }))[..],
            b"{\"Error\":{\"Message\":\"boom\"},\"StatusCode\":0}\n"
        );
    }
}

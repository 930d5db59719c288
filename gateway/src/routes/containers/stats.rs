//! `GET /containers/{name}/stats`: the node's stats stream, one JSON document per frame, written
//! as dockerd's JSON encoder writes them (each followed by a newline).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use wharf_bus::api;
use wharf_bus::container::StatsRequest;

use crate::cluster::resolve;
use crate::error::ApiResult;
use crate::query::Query;
use crate::state::AppState;
use crate::version::ApiVersion;

/// `stream` (on unless given and false) and, from API 1.41, `one-shot`.
fn stats_request(id: String, q: &Query, version: ApiVersion) -> StatsRequest {
    let stream = q.get("stream").is_none() || q.flag("stream");
    let one_shot = version.at_least(1, 41) && q.flag("one-shot");
    StatsRequest {
        id,
        stream,
        one_shot,
    }
}

/// One stats document as a line.
fn line(frame: Bytes) -> Bytes {
    let text = frame.trim_ascii_end();
    let mut out = BytesMut::with_capacity(text.len() + 1);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\n");
    out.freeze()
}

pub async fn stats(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let target = resolve::locate(&state, &name).await?;
    let request = stats_request(target.id, &q, version);
    let stream = request.stream;
    // Errors before the first frame (no such container, ...) are still HTTP errors.
    let (rx, _) = state
        .node(&target.node)
        .download::<api::ContainerStats>(&request)
        .await?;
    // After the headers, dockerd ends a failing stream without a word.
    let body = rx
        .into_stream()
        .take_while(|frame| {
            if let Err(e) = frame {
                tracing::debug!("stats stream ended: {}", e.message);
            }
            std::future::ready(frame.is_ok())
        })
        .map(|frame| Ok::<_, std::io::Error>(line(frame.unwrap_or_default())));
    let body = Body::from_stream(body);
    // dockerd names the type of a single answer only; a stream goes out untyped (Go sniffs no
    // type from the empty flush that sends its headers).
    Ok(if stream {
        body.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_stream_unless_told_not_to() {
        let r = stats_request("c".into(), &Query::parse(None), ApiVersion(1, 45));
        assert!(r.stream && !r.one_shot);
        for off in ["stream=0", "stream=false", "stream="] {
            let r = stats_request("c".into(), &Query::parse(Some(off)), ApiVersion(1, 45));
            assert!(!r.stream, "{off}");
        }
        let r = stats_request(
            "c".into(),
            &Query::parse(Some("stream=1&one-shot=1")),
            ApiVersion(1, 45),
        );
        assert!(r.stream && r.one_shot);
    }

    #[test]
    fn one_shot_counts_from_api_1_41() {
        let q = Query::parse(Some("stream=0&one-shot=true"));
        assert!(stats_request("c".into(), &q, ApiVersion(1, 41)).one_shot);
        assert!(!stats_request("c".into(), &q, ApiVersion(1, 40)).one_shot);
    }

    #[test]
    fn each_document_is_one_line() {
        assert_eq!(&line(Bytes::from_static(b"{\"a\":1}"))[..], b"{\"a\":1}\n");
        assert_eq!(
            &line(Bytes::from_static(b"{\"a\":1}\n"))[..],
            b"{\"a\":1}\n"
        );
    }
}

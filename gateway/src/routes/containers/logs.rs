//! `GET /containers/{name}/logs`: the node's log stream, framed as dockerd frames it.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use futures::StreamExt;
use wharf_bus::api;
use wharf_bus::container::LogsRequest;
use wharf_bus::stream::Receiver;

use crate::cluster::resolve;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;
use crate::version::ApiVersion;

pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
pub const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// The content type of a container's output: raw with a TTY; otherwise multiplexed, which
/// dockerd names as such from API 1.42 on.
pub fn stream_content_type(tty: bool, version: ApiVersion) -> &'static str {
    if !tty && version.at_least(1, 42) {
        MULTIPLEXED_STREAM
    } else {
        RAW_STREAM
    }
}

/// One frame of a multiplexed stream (1: stdout, 2: stderr).
pub fn mux_frame(stream: u8, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    Bytes::from(out)
}

/// A point in time as `docker logs --since/--until` sends it: unix seconds with an optional
/// fraction (the CLI sends `1700000000.000000000`), or RFC 3339. Empty is 0 (none).
pub fn parse_time(s: &str) -> ApiResult<f64> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(0.0);
    }
    let bad = || ApiError::bad_request(format!("failed to parse value {s} as a time"));
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let numeric = !secs.is_empty()
        && secs
            .trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit());
    if numeric {
        let whole: i64 = secs.parse().map_err(|_| bad())?;
        let frac: f64 = if frac.is_empty() {
            0.0
        } else {
            format!("0.{frac}").parse().map_err(|_| bad())?
        };
        return Ok(whole as f64 + if whole < 0 { -frac } else { frac });
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
    Ok(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
}

fn logs_request(id: String, q: &Query) -> ApiResult<LogsRequest> {
    let (stdout, stderr) = (q.flag("stdout"), q.flag("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match q.get("tail").unwrap_or("").trim() {
        "" => "all".to_string(),
        t => t.to_string(),
    };
    Ok(LogsRequest {
        id,
        follow: q.flag("follow"),
        stdout,
        stderr,
        since: parse_time(q.get("since").unwrap_or(""))?,
        until: parse_time(q.get("until").unwrap_or(""))?,
        timestamps: q.flag("timestamps"),
        tail,
    })
}

/// A response streaming a node's output frames. An error after the headers went out is told in
/// the stream, as dockerd does (`Error grabbing logs: ...`).
pub fn stream_response(rx: Receiver, tty: bool, content_type: &'static str) -> Response {
    let body = futures::stream::unfold(Some(rx), move |rx| async move {
        let mut rx = rx?;
        match rx.next().await {
            Some(Ok(chunk)) => Some((chunk, Some(rx))),
            Some(Err(e)) => {
                let text = format!("Error grabbing logs: {}\n", e.message);
                let chunk = if tty {
                    Bytes::from(text)
                } else {
                    mux_frame(1, text.as_bytes())
                };
                Some((chunk, None))
            }
            None => None,
        }
    })
    .map(Ok::<_, std::io::Error>);
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

pub async fn logs(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    // Parameters are checked before anything else: once the stream starts, errors can only be
    // told inside it.
    let mut request = logs_request(String::new(), &q)?;
    let target = resolve::locate(&state, &name).await?;
    request.id = target.id;
    let (rx, info) = state
        .node(&target.node)
        .download::<api::ContainerLogs>(&request)
        .await?;
    Ok(stream_response(
        rx,
        info.tty,
        stream_content_type(info.tty, version),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_unix_seconds_or_rfc3339() {
        assert_eq!(parse_time("").unwrap(), 0.0);
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000.0);
        assert_eq!(parse_time("1700000000.000000000").unwrap(), 1_700_000_000.0);
        assert!((parse_time("1700000000.25").unwrap() - 1_700_000_000.25).abs() < 1e-6);
        assert!((parse_time("2023-11-14T22:13:20.5Z").unwrap() - 1_700_000_000.5).abs() < 1e-6);
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00").unwrap(),
            1_700_000_000.0
        );
        assert_eq!(
            parse_time("yesterday").unwrap_err().message,
            "failed to parse value yesterday as a time"
        );
        assert!(parse_time("1.2.3").is_err());
    }

    #[test]
    fn logs_need_a_stream_and_default_to_the_whole_log() {
        let err = logs_request("c".into(), &Query::parse(Some("follow=1"))).unwrap_err();
        assert_eq!(
            err.message,
            "Bad parameters: you must choose at least one stream"
        );
        let r = logs_request(
            "c".into(),
            &Query::parse(Some("stderr=1&since=1700000000.000000000&timestamps=true")),
        )
        .unwrap();
        assert!(r.stderr && !r.stdout && r.timestamps && !r.follow);
        assert_eq!(r.tail, "all");
        assert_eq!(r.since, 1_700_000_000.0);
        assert_eq!(r.until, 0.0);
    }

    #[test]
    fn output_is_multiplexed_without_a_tty_from_api_1_42() {
        assert_eq!(
            stream_content_type(false, ApiVersion(1, 45)),
            MULTIPLEXED_STREAM
        );
        assert_eq!(stream_content_type(false, ApiVersion(1, 41)), RAW_STREAM);
        assert_eq!(stream_content_type(true, ApiVersion(1, 45)), RAW_STREAM);
    }

    #[test]
    fn mux_frames_carry_stream_and_big_endian_length() {
        assert_eq!(
            &mux_frame(2, b"hi")[..],
            &[2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']
        );
    }
}

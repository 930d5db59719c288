//! `/events`: events from the bus, replayed from the JetStream stream that records them for
//! `--since`, filtered as dockerd does, and ended at `--until`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use wharf_bus::events::Event;
use wharf_bus::subjects;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;

/// Name of the JetStream stream that keeps recent events for `docker events --since`.
pub const EVENTS_STREAM: &str = "WHARF_EVENTS";

/// A point in time as `docker events --since/--until` sends it: unix seconds with optional
/// fraction, or RFC 3339.
fn parse_time(s: &str) -> ApiResult<i64> {
    if let Some((secs, frac)) = s.split_once('.') {
        if let (Ok(secs), true) = (
            secs.parse::<i64>(),
            frac.chars().all(|c| c.is_ascii_digit()),
        ) {
            let frac = format!("{frac:0<9}");
            let nanos: i64 = frac[..9].parse().unwrap_or(0);
            return secs
                .checked_mul(1_000_000_000)
                .and_then(|n| n.checked_add(nanos))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("failed to parse value {s} as a time"))
                });
        }
    }
    if let Ok(secs) = s.parse::<i64>() {
        return secs
            .checked_mul(1_000_000_000)
            .ok_or_else(|| ApiError::bad_request(format!("failed to parse value {s} as a time")));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_nanos_opt().unwrap_or(0))
        .map_err(|_| ApiError::bad_request(format!("failed to parse value {s} as a time")))
}

const EVENT_FILTERS: &[&str] = &[
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "service",
    "type",
    "volume",
    "config",
    "secret",
];

/// True when `event` passes dockerd's event filters.
fn matches(event: &Event, filters: &BTreeMap<String, Vec<String>>) -> bool {
    let attr = |k: &str| event.actor.attributes.get(k).map(String::as_str);
    let any = |key: &str, f: &dyn Fn(&str) -> bool| {
        filters
            .get(key)
            .map(|vs| vs.iter().any(|v| f(v)))
            .unwrap_or(true)
    };
    any("type", &|v| v == event.kind)
        && any("event", &|v| {
            v == event.action || event.action.starts_with(&format!("{v}:"))
        })
        && any("scope", &|v| v == event.scope)
        && any("container", &|v| {
            event.kind == "container" && (event.actor.id.starts_with(v) || attr("name") == Some(v))
        })
        && any("image", &|v| {
            let name = attr("image").or(if event.kind == "image" {
                attr("name")
            } else {
                None
            });
            event.actor.id == v
                || name == Some(v)
                || name
                    .map(|n| n.split(':').next() == Some(v))
                    .unwrap_or(false)
                || (event.kind == "image"
                    && event
                        .actor
                        .id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:")))
        })
        && any("label", &|v| match v.split_once('=') {
            Some((k, val)) => attr(k) == Some(val),
            None => attr(v).is_some(),
        })
        && any("volume", &|v| {
            event.kind == "volume" && (event.actor.id == v || attr("name") == Some(v))
        })
        && any("network", &|v| {
            event.kind == "network" && (event.actor.id.starts_with(v) || attr("name") == Some(v))
        })
        && any("daemon", &|v| {
            event.kind == "daemon" && (event.actor.id == v || attr("name") == Some(v))
        })
}

/// Docker's event JSON; container and image events also carry the `status`, `id` and `from`
/// fields that every API version up to 1.51 keeps.
fn render_event(event: &Event) -> Vec<u8> {
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    if event.kind == "container" || event.kind == "image" {
        if let Some(o) = v.as_object_mut() {
            o.insert("status".into(), json!(event.action));
            o.insert("id".into(), json!(event.actor.id));
            if let Some(from) = event.actor.attributes.get("image") {
                o.insert("from".into(), json!(from));
            }
        }
    }
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Creates (or finds) the JetStream stream that records every event, so `--since` can replay them.
pub async fn ensure_events_stream(
    js: &async_nats::jetstream::Context,
) -> Result<async_nats::jetstream::stream::Stream, async_nats::jetstream::context::CreateStreamError>
{
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: EVENTS_STREAM.to_string(),
        subjects: vec![subjects::EVENTS_ALL.to_string()],
        max_age: std::time::Duration::from_secs(24 * 3600),
        max_messages: 100_000,
        ..Default::default()
    })
    .await
}

/// An event as read from the bus, with how many recorded events follow it (JetStream only).
struct Recorded {
    payload: Vec<u8>,
    pending: Option<u64>,
}

/// Source of events: JetStream (history for `--since`) when the bus has it, a plain
/// subscription otherwise. Also returns how many recorded events the replay holds (`None`
/// without JetStream).
async fn event_source(
    state: &AppState,
    since: Option<i64>,
) -> ApiResult<(futures::stream::BoxStream<'static, Recorded>, Option<u64>)> {
    let unavailable = |e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read events: {e}"),
        )
    };
    match ensure_events_stream(&state.jetstream).await {
        Ok(stream) => {
            let deliver_policy = match since {
                Some(nanos) => async_nats::jetstream::consumer::DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                },
                None => async_nats::jetstream::consumer::DeliverPolicy::New,
            };
            let mut consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable(&e))?;
            let recorded = consumer
                .info()
                .await
                .map(|i| i.num_pending)
                .map_err(|e| unavailable(&e))?;
            let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
            let source = messages.filter_map(|m| async move {
                let m = m.ok()?;
                let pending = m.info().ok().map(|i| i.pending);
                Some(Recorded {
                    payload: m.payload.to_vec(),
                    pending,
                })
            });
            Ok((source.boxed(), Some(recorded)))
        }
        Err(e) => {
            tracing::debug!("JetStream unavailable for events ({e}); live events only");
            let sub = state
                .bus
                .subscribe(subjects::EVENTS_ALL.to_string())
                .await
                .map_err(|e| unavailable(&e))?;
            Ok((
                sub.map(|m| Recorded {
                    payload: m.payload.to_vec(),
                    pending: None,
                })
                .boxed(),
                None,
            ))
        }
    }
}

/// When the response ends: with an `until` in the past, once the recorded events are replayed;
/// with one in the future, at that time; without one, never.
enum End {
    AfterReplay,
    At(tokio::time::Instant),
    Never,
}

pub async fn events(State(state): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let filters = q.filters()?;
    for key in filters.keys() {
        if !EVENT_FILTERS.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
        }
    }
    let since = q
        .get("since")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()?;
    let until = q
        .get("until")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()?;
    let (source, recorded) = event_source(&state, since).await?;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let end = match until {
        Some(u) if u <= now && recorded.is_some() => End::AfterReplay,
        Some(u) => End::At(
            tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64),
        ),
        None => End::Never,
    };
    if matches!(end, End::AfterReplay) && recorded == Some(0) {
        return Ok(([(header::CONTENT_TYPE, "application/json")], Body::empty()).into_response());
    }
    let body = futures::stream::unfold(Some(source), move |source| {
        let filters = filters.clone();
        let end_at = match end {
            End::At(t) => Some(t),
            _ => None,
        };
        let after_replay = matches!(end, End::AfterReplay);
        async move {
            let mut source = source?;
            loop {
                let next = match end_at {
                    Some(t) => tokio::time::timeout_at(t, source.next()).await.ok()?,
                    None => source.next().await,
                }?;
                let last = after_replay && next.pending == Some(0);
                let event = serde_json::from_slice::<Event>(&next.payload).ok();
                let wanted = event.as_ref().filter(|e| {
                    until.map(|u| e.time_nano <= u).unwrap_or(true)
                        && since.map(|s| e.time_nano >= s).unwrap_or(true)
                        && matches(e, &filters)
                });
                match (wanted, last) {
                    (Some(e), last) => {
                        let rest = if last { None } else { Some(source) };
                        return Some((Ok::<_, std::io::Error>(render_event(e)), rest));
                    }
                    (None, true) => return None,
                    (None, false) => continue,
                }
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_parse_as_the_cli_sends_them() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert!(parse_time("2024-01-01T00:00:00Z").is_ok());
        assert!(parse_time("yesterday").is_err());
        assert!(
            parse_time("99999999999999999").is_err(),
            "overflow is a bad request, not a panic"
        );
    }

    #[test]
    fn event_filters_follow_dockerd() {
        let ev = Event::now(
            "image",
            "tag",
            "sha256:abc",
            wharf_bus::events::image_attributes("busybox:latest"),
        );
        let f = |k: &str, v: &str| BTreeMap::from([(k.to_string(), vec![v.to_string()])]);
        assert!(matches(&ev, &f("type", "image")));
        assert!(!matches(&ev, &f("type", "container")));
        assert!(matches(&ev, &f("event", "tag")));
        assert!(matches(&ev, &f("image", "busybox")));
        assert!(!matches(&ev, &f("image", "alpine")));
    }
}

//! `/events`: the events [`cluster::events::replay`] gives for `--since` and `--until`,
//! filtered and written as dockerd does.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use wharf_bus::events::Event;

use crate::cluster;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;

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
    let events =
        cluster::events::replay(&state, since, until, move |e| matches(e, &filters)).await?;
    let json = [(header::CONTENT_TYPE, "application/json")];
    let Some(events) = events else {
        return Ok((json, Body::empty()).into_response());
    };
    let lines = events.map(|e| Ok::<_, std::io::Error>(render_event(&e)));
    Ok((json, Body::from_stream(lines)).into_response())
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

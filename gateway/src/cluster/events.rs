//! The events of every service and node as `docker events` reads them. Services publish under
//! `wharf.v1.events.>`; a JetStream stream ([`events::STREAM`], kept 24 hours) records them, so
//! `--since` replays what happened before the client asked, then follows live events; `--until`
//! ends the replay (in the past) or the wait (in the future). Without JetStream only live
//! events are seen.

use std::sync::Arc;

use axum::http::StatusCode;
use futures::stream::BoxStream;
use futures::StreamExt;
use wharf_bus::events::{self, Event};
use wharf_bus::subjects;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Creates (or finds) the JetStream stream that records every event, so `--since` can replay them.
pub async fn ensure_events_stream(
    js: &async_nats::jetstream::Context,
) -> Result<async_nats::jetstream::stream::Stream, async_nats::jetstream::context::CreateStreamError>
{
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: events::STREAM.to_string(),
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
#[derive(Clone, Copy)]
enum End {
    AfterReplay,
    At(tokio::time::Instant),
    Never,
}

/// The events from `since` (nanoseconds since the epoch; without it, from now on) up to
/// `until`, those `keep` wants, in the order they were published. `None` when `until` is past
/// and nothing was recorded: there is nothing to send at all. The stream ends after the last
/// recorded event when `until` is past, at `until` when it is ahead, never without it.
pub async fn replay(
    state: &AppState,
    since: Option<i64>,
    until: Option<i64>,
    keep: impl Fn(&Event) -> bool + Send + Sync + 'static,
) -> ApiResult<Option<BoxStream<'static, Event>>> {
    let (source, recorded) = event_source(state, since).await?;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let end = match until {
        Some(u) if u <= now && recorded.is_some() => End::AfterReplay,
        Some(u) => End::At(
            tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64),
        ),
        None => End::Never,
    };
    if matches!(end, End::AfterReplay) && recorded == Some(0) {
        return Ok(None);
    }
    let keep = Arc::new(keep);
    let events = futures::stream::unfold(Some(source), move |source| {
        let keep = keep.clone();
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
                // Undecodable payloads are no events.
                let event = serde_json::from_slice::<Event>(&next.payload).ok();
                let wanted = event.filter(|e| {
                    until.map(|u| e.time_nano <= u).unwrap_or(true)
                        && since.map(|s| e.time_nano >= s).unwrap_or(true)
                        && keep(e)
                });
                match (wanted, last) {
                    (Some(e), last) => {
                        let rest = if last { None } else { Some(source) };
                        return Some((e, rest));
                    }
                    (None, true) => return None,
                    (None, false) => continue,
                }
            }
        }
    });
    Ok(Some(events.boxed()))
}

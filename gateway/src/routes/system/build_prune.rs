//! `/build/prune`: the builders remove the cache entries the filters select, answered as
//! dockerd does.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde_json::{json, Value};
use wharf_bus::build::{CachePrune, CachePruneReport};
use wharf_bus::{api, endpoint, ErrorKind};

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;

/// A byte count parameter of `POST /build/prune`, as dockerd parses it.
fn bytes_param(q: &Query, key: &str) -> ApiResult<u64> {
    match q.get(key).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v.parse::<i64>().map(|n| n.max(0) as u64).map_err(|_| {
            ApiError::bad_request(format!("{key} is in bytes and expects an integer, got {v}"))
        }),
    }
}

/// dockerd's `POST /build/prune` answer: a null list when nothing was deleted.
pub fn prune_json(report: &CachePruneReport) -> Value {
    let deleted = if report.caches_deleted.is_empty() {
        Value::Null
    } else {
        json!(report.caches_deleted)
    };
    json!({"CachesDeleted": deleted, "SpaceReclaimed": report.space_reclaimed})
}

/// `POST /build/prune`: a builder removes the cache entries the filters select and deletes
/// the images only they kept; the images containers use stay.
pub async fn build_prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let q = Query::parse(raw.as_deref());
    let filters = q.filters()?;
    // `reserved-space` (API 1.48) replaces `keep-storage`.
    let keep_storage = match bytes_param(&q, "reserved-space")? {
        0 => bytes_param(&q, "keep-storage")?,
        n => n,
    };
    let request = CachePrune {
        all: q.flag("all"),
        filters,
        keep_storage,
        in_use: crate::cluster::containers::images_in_use(&state).await?,
    };
    let report = endpoint::call::<api::CachePruneUnused>(&state.bus, &request)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot prune the build cache: {}", e.message),
            ),
            _ => e.into(),
        })?;
    Ok(axum::Json(prune_json(&report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_prune_answers_as_dockerd() {
        assert_eq!(
            prune_json(&CachePruneReport::default()),
            json!({"CachesDeleted": null, "SpaceReclaimed": 0})
        );
        let report = CachePruneReport {
            caches_deleted: vec!["k1".into(), "k2".into()],
            images_deleted: vec!["sha256:x".into()],
            space_reclaimed: 4096,
        };
        assert_eq!(
            prune_json(&report),
            json!({"CachesDeleted": ["k1", "k2"], "SpaceReclaimed": 4096})
        );
        let q = Query::parse(Some("keep-storage=1e3"));
        assert_eq!(
            bytes_param(&q, "keep-storage").unwrap_err().message,
            "keep-storage is in bytes and expects an integer, got 1e3"
        );
        assert_eq!(
            bytes_param(&Query::parse(Some("keep-storage=512")), "keep-storage").unwrap(),
            512
        );
    }
}

//! `POST /containers/prune`: every node removes its stopped containers matching the filters;
//! the gateway adds up the reports.

use axum::extract::{RawQuery, State};
use serde_json::{json, Value};
use wharf_bus::container::{ContainerPruneResponse, ListRequest};

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;

/// The filters a container prune takes (dockerd's `containersAcceptedFilters`).
const ACCEPTED_FILTERS: [&str; 3] = ["label", "label!", "until"];

fn prune_request(q: &Query) -> ApiResult<ListRequest> {
    let filters = q.filters()?;
    if let Some(bad) = filters
        .keys()
        .find(|k| !ACCEPTED_FILTERS.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!("invalid filter '{bad}'")));
    }
    Ok(ListRequest {
        filters,
        ..Default::default()
    })
}

/// Every node's report as dockerd's one: the deleted IDs (sorted; `null` when none, as Go
/// encodes an empty slice it never appended to) and the space added up.
fn merge(answers: Vec<ContainerPruneResponse>) -> Value {
    let mut deleted: Vec<String> = Vec::new();
    let mut space: u64 = 0;
    for answer in answers {
        deleted.extend(answer.containers_deleted);
        space = space.saturating_add(answer.space_reclaimed);
    }
    deleted.sort();
    let deleted = if deleted.is_empty() {
        Value::Null
    } else {
        json!(deleted)
    };
    json!({"ContainersDeleted": deleted, "SpaceReclaimed": space})
}

pub async fn prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let request = prune_request(&Query::parse(raw.as_deref()))?;
    let answers: Vec<ContainerPruneResponse> = state
        .roster()
        .await?
        .gather::<wharf_bus::api::ContainerPrune>(&request)
        .await?;
    Ok(axum::Json(merge(answers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ids: &[&str], space: u64) -> ContainerPruneResponse {
        ContainerPruneResponse {
            containers_deleted: ids.iter().map(|s| s.to_string()).collect(),
            space_reclaimed: space,
        }
    }

    #[test]
    fn reports_add_up_and_none_deleted_is_null() {
        assert_eq!(
            merge(vec![report(&["b", "c"], 10), report(&["a"], 5)]),
            json!({"ContainersDeleted": ["a", "b", "c"], "SpaceReclaimed": 15})
        );
        assert_eq!(
            merge(vec![report(&[], 0), report(&[], 0)]),
            json!({"ContainersDeleted": null, "SpaceReclaimed": 0})
        );
        assert_eq!(
            merge(vec![]),
            json!({"ContainersDeleted": null, "SpaceReclaimed": 0})
        );
    }

    #[test]
    fn only_label_and_until_filters_are_accepted() {
        let q = Query::parse(Some(
            "filters=%7B%22until%22%3A%7B%2224h%22%3Atrue%7D%2C%22label%22%3A%5B%22a%3Db%22%5D%7D",
        ));
        let r = prune_request(&q).unwrap();
        assert_eq!(r.filters["until"], ["24h"]);
        assert_eq!(r.filters["label"], ["a=b"]);
        let q = Query::parse(Some("filters=%7B%22status%22%3A%5B%22exited%22%5D%7D"));
        assert_eq!(
            prune_request(&q).unwrap_err().message,
            "invalid filter 'status'"
        );
    }
}

//! `GET /containers/json`: every node lists its containers; the gateway merges them.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use serde_json::Value;
use wharf_bus::container::{ListRequest, ListResponse};

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;

/// Key nodes add for a stable order within one second; never shown to clients.
const CREATED_NANOS: &str = "_created_nanos";

pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let q = Query::parse(raw.as_deref());
    let request = list_request(&q)?;
    let limit = request.limit;
    let roster = state.roster().await?;
    let answers: Vec<ListResponse> = roster
        .gather::<wharf_bus::api::ContainerList>(&request)
        .await?;
    Ok(axum::Json(Value::Array(merge(answers, limit))))
}

/// The list request a query asks for. The old `since=`/`before=` parameters become the filters
/// of the same name.
fn list_request(q: &Query) -> ApiResult<ListRequest> {
    let mut filters: BTreeMap<String, Vec<String>> = q.filters()?;
    for key in ["since", "before"] {
        if let Some(v) = q.get(key).filter(|v| !v.is_empty()) {
            filters
                .entry(key.to_string())
                .or_default()
                .push(v.to_string());
        }
    }
    let limit = match q.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => Some(l.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("strconv.Atoi: parsing \"{l}\": invalid syntax"))
        })?),
        None => None,
    }
    .filter(|n| *n > 0);
    Ok(ListRequest {
        all: q.flag("all"),
        limit,
        size: q.flag("size"),
        filters,
    })
}

fn created(v: &Value) -> (i64, i64) {
    (
        v.get("Created").and_then(Value::as_i64).unwrap_or(0),
        v.get(CREATED_NANOS).and_then(Value::as_i64).unwrap_or(0),
    )
}

/// Every node's containers as one list, newest first, cut to `limit`.
pub fn merge(answers: Vec<ListResponse>, limit: Option<i64>) -> Vec<Value> {
    let mut all: Vec<Value> = answers.into_iter().flat_map(|a| a.containers).collect();
    all.sort_by(|a, b| match created(b).cmp(&created(a)) {
        Ordering::Equal => {
            let id = |v: &Value| v.get("Id").and_then(Value::as_str).map(str::to_string);
            id(a).cmp(&id(b))
        }
        other => other,
    });
    if let Some(n) = limit.filter(|n| *n > 0) {
        all.truncate(n as usize);
    }
    for v in &mut all {
        if let Some(o) = v.as_object_mut() {
            o.remove(CREATED_NANOS);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(node: &str, containers: Vec<Value>) -> ListResponse {
        ListResponse {
            node: node.into(),
            containers,
        }
    }

    #[test]
    fn nodes_lists_merge_newest_first_and_lose_the_nanos_key() {
        let merged = merge(
            vec![
                answer(
                    "n1",
                    vec![
                        json!({"Id": "a", "Created": 100, "_created_nanos": 100_000_000_001i64}),
                        json!({"Id": "c", "Created": 300}),
                    ],
                ),
                answer(
                    "n2",
                    vec![json!({"Id": "b", "Created": 100, "_created_nanos": 100_000_000_009i64})],
                ),
            ],
            None,
        );
        let ids: Vec<_> = merged.iter().map(|v| v["Id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert!(merged.iter().all(|v| v.get(CREATED_NANOS).is_none()));
    }

    #[test]
    fn a_limit_keeps_the_newest() {
        let merged = merge(
            vec![
                answer("n1", vec![json!({"Id": "old", "Created": 1})]),
                answer("n2", vec![json!({"Id": "new", "Created": 2})]),
            ],
            Some(1),
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0]["Id"], "new");
        assert_eq!(merge(vec![answer("n", vec![json!({})])], Some(0)).len(), 1);
    }

    #[test]
    fn list_queries_carry_filters_in_both_shapes_and_old_parameters() {
        let q = Query::parse(Some(
            "all=1&limit=3&filters=%7B%22status%22%3A%7B%22exited%22%3Atrue%7D%7D&since=abc",
        ));
        let r = list_request(&q).unwrap();
        assert!(r.all);
        assert_eq!(r.limit, Some(3));
        assert_eq!(r.filters["status"], ["exited"]);
        assert_eq!(r.filters["since"], ["abc"]);
        let q = Query::parse(Some("filters=%7B%22name%22%3A%5B%22web%22%5D%7D&limit=-1"));
        let r = list_request(&q).unwrap();
        assert_eq!(r.filters["name"], ["web"]);
        assert_eq!(r.limit, None);
        assert!(list_request(&Query::parse(Some("limit=x"))).is_err());
        assert!(list_request(&Query::parse(Some("filters=%7B"))).is_err());
    }
}

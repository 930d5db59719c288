//! `GET /containers/json`: every node lists its containers; the gateway merges them
//! ([`cluster::containers::list`]).

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use wharf_bus::container::{ContainerSummary, ListRequest};

use crate::cluster;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Vec<ContainerSummary>>> {
    let q = Query::parse(raw.as_deref());
    let request = list_request(&q)?;
    let containers = cluster::containers::list(&state, &request).await?;
    Ok(axum::Json(containers))
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

#[cfg(test)]
mod tests {
    use super::*;

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

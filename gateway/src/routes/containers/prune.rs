//! `POST /containers/prune`: every node removes its stopped containers matching the filters;
//! the gateway adds up the reports ([`cluster::containers::prune`]).

use axum::extract::{RawQuery, State};
use serde_json::Value;
use wharf_bus::container::ListRequest;

use crate::cluster;
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

pub async fn prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let request = prune_request(&Query::parse(raw.as_deref()))?;
    Ok(axum::Json(
        cluster::containers::prune(&state, &request).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! `POST /wharf/sync`: Wharf's own endpoint, outside Docker's API, for registry-sync's
//! registry-to-registry copies. The body names the repositories
//! (`{"Source": "reg/repo[:tag]", "Destination": "reg/repo", "Tags": [...]}`); credentials come
//! in `X-Registry-Config`, keyed by registry as `docker build` sends them; the answer is a JSON
//! progress stream, as for a push, whose last message carries the summary in `aux`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use wharf_bus::reference::Reference;
use wharf_bus::registry::{auth_configs_from_header, auth_for_domain, SyncRequest};
use wharf_bus::{api, endpoint};

use super::images::{progress_response, registry_error};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SyncBody {
    source: String,
    destination: String,
    #[serde(default)]
    tags: Vec<String>,
}

pub async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body: SyncBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid sync request: {e}")))?;
    let source = Reference::parse(&body.source)?;
    let destination = Reference::parse(&body.destination)?;
    let configs = headers
        .get("X-Registry-Config")
        .and_then(|v| v.to_str().ok())
        .map(auth_configs_from_header)
        .unwrap_or_default();
    let request = SyncRequest {
        source_auth: auth_for_domain(&configs, &source.domain),
        destination_auth: auth_for_domain(&configs, &destination.domain),
        source: source.to_string(),
        destination: destination.to_string(),
        tags: body.tags,
    };
    let (rx, _) = endpoint::download::<api::RegistrySync>(&state.bus, &request)
        .await
        .map_err(registry_error)?;
    progress_response(rx).await
}

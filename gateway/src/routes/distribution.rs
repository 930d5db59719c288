//! `GET /distribution/{name}/json`: what the registry serves for a reference, without pulling
//! it (the manifest or index descriptor and its platforms), as dockerd answers it. registry-sync
//! asks the registry (`manifest.inspect`) with the credentials of `X-Registry-Auth`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use wharf_bus::digest::is_hex64;
use wharf_bus::reference::{valid_digest, Reference};
use wharf_bus::registry::{DistributionInspect, DistributionRequest, RegistryAuth};
use wharf_bus::{api, endpoint};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `rest` is `{name}/json`; the name may hold slashes (`127.0.0.1:5000/team/app:v1`).
pub async fn inspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(rest): Path<String>,
) -> ApiResult<axum::Json<DistributionInspect>> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::not_found("page not found"));
    };
    // dockerd's ParseAnyReference takes a bare ID (or `sha256:` ID) for an image ID, which no
    // registry serves.
    if is_hex64(name) || valid_digest(name) {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no manifest found for full image ID",
        ));
    }
    let reference = Reference::parse(name)?.with_default_tag();
    // An unreadable header counts as none, as dockerd ignores it too.
    let auth = headers
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .and_then(RegistryAuth::from_header);
    let request = DistributionRequest {
        reference: reference.to_string(),
        auth,
    };
    Ok(axum::Json(
        endpoint::call::<api::ManifestInspect>(&state.bus, &request).await?,
    ))
}

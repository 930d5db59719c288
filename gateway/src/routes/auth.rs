//! `POST /auth` (`docker login`): registry-sync checks the credentials against the registry.
//! A token server's refusal is a 401; a registry answering `/v2/` with another status is a 500,
//! as in dockerd.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use serde_json::{json, Value};
use wharf_bus::registry::RegistryAuth;
use wharf_bus::{api, endpoint};

use crate::error::{ApiError, ApiResult};
use crate::json_body;
use crate::state::AppState;

/// A login may try two endpoints and a token server; dockerd gives each request 15 seconds.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn login(State(state): State<AppState>, body: Bytes) -> ApiResult<axum::Json<Value>> {
    // dockerd decodes the body itself and answers its decoder's error as it is.
    let auth: RegistryAuth = match json_body::read_document(&body)? {
        Some(document) => {
            json_body::decode(document).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        None => return Err(ApiError::bad_request("EOF")),
    };
    let reply = endpoint::call_with_timeout::<api::Login>(&state.bus, &auth, LOGIN_TIMEOUT).await?;
    Ok(axum::Json(
        json!({"IdentityToken": reply.identity_token, "Status": reply.status}),
    ))
}

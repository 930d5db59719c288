//! `POST /containers/{name}/update`: Docker's `UpdateConfig` (resources and a restart policy),
//! read as dockerd reads it for the client's API version, applied by the container's node.

use axum::extract::{Path, State};
use axum::Extension;
use bytes::Bytes;
use serde_json::{Map, Value};
use wharf_bus::container::UpdateRequest;
use wharf_bus::rpc::DEFAULT_TIMEOUT;

use super::json_body::read_json;
use crate::cluster::resolve;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::version::ApiVersion;
use wharf_bus::api;

/// Per-device blkio settings: in the request type, but ignored by update before API 1.55.
const BLKIO_DEVICE_FIELDS: [&str; 5] = [
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
];

/// The update a body asks for at `version`: `PidsLimit` from API 1.40 on, where 0 and any
/// negative number mean unlimited (0); blkio device rules dropped (this API is older than 1.55).
fn update_body(body: Value, version: ApiVersion) -> ApiResult<Value> {
    let mut config = match body {
        Value::Null => Map::new(),
        Value::Object(o) => o,
        other => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                _ => "bool",
            };
            return Err(ApiError::bad_request(format!(
                "invalid JSON: json: cannot unmarshal {kind} into Go value of type container.UpdateConfig"
            )));
        }
    };
    if !version.at_least(1, 40) {
        config.remove("PidsLimit");
    }
    if let Some(limit) = config.get_mut("PidsLimit") {
        if limit.as_f64().map(|l| l <= 0.0).unwrap_or(false) {
            *limit = Value::from(0);
        }
    }
    for field in BLKIO_DEVICE_FIELDS {
        config.remove(field);
    }
    Ok(Value::Object(config))
}

pub async fn update(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let body = update_body(read_json(&body)?, version)?;
    let target = resolve::locate(&state, &name).await?;
    let request = UpdateRequest {
        id: target.id.clone(),
        body,
    };
    Ok(axum::Json(
        state
            .node(&target.node)
            .call::<api::ContainerUpdate>(&request, DEFAULT_TIMEOUT)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_update_is_an_empty_object() {
        assert_eq!(
            update_body(Value::Null, ApiVersion(1, 45)).unwrap(),
            json!({})
        );
        assert_eq!(
            update_body(json!([]), ApiVersion(1, 45)).unwrap_err().message,
            "invalid JSON: json: cannot unmarshal array into Go value of type container.UpdateConfig"
        );
    }

    #[test]
    fn pids_limits_count_from_api_1_40_and_non_positive_means_unlimited() {
        let body = json!({"Memory": 1024, "PidsLimit": -1});
        assert_eq!(
            update_body(body.clone(), ApiVersion(1, 45)).unwrap(),
            json!({"Memory": 1024, "PidsLimit": 0})
        );
        assert_eq!(
            update_body(body, ApiVersion(1, 39)).unwrap(),
            json!({"Memory": 1024})
        );
        assert_eq!(
            update_body(json!({"PidsLimit": 50}), ApiVersion(1, 45)).unwrap(),
            json!({"PidsLimit": 50})
        );
        assert_eq!(
            update_body(json!({"PidsLimit": null}), ApiVersion(1, 45)).unwrap(),
            json!({"PidsLimit": null})
        );
    }

    #[test]
    fn blkio_device_rules_are_ignored_as_before_api_1_55() {
        let body = json!({"BlkioWeight": 300, "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1}],
                          "RestartPolicy": {"Name": "always"}});
        assert_eq!(
            update_body(body, ApiVersion(1, 45)).unwrap(),
            json!({"BlkioWeight": 300, "RestartPolicy": {"Name": "always"}})
        );
    }
}

//! `POST /containers/{name}/update`: Docker's `UpdateConfig` (resources and a restart policy),
//! read as dockerd reads it for the client's API version, applied by the container's node.

use axum::extract::{Path, State};
use axum::Extension;
use bytes::Bytes;
use serde_json::{Map, Value};
use wharf_bus::container::{HostConfig, UpdateRequest};
use wharf_bus::rpc::DEFAULT_TIMEOUT;

use crate::cluster::resolve;
use crate::error::{ApiError, ApiResult};
use crate::json_body::{self, read_json};
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

/// The fields of dockerd's `UpdateConfig` (its `Resources` and `RestartPolicy`): their types are
/// checked as Go's decoder checks them; other keys are ignored, as Go ignores them.
const UPDATE_FIELDS: [&str; 32] = [
    "CpuShares",
    "Memory",
    "NanoCpus",
    "CgroupParent",
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetCpus",
    "CpusetMems",
    "Devices",
    "DeviceCgroupRules",
    "DeviceRequests",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "OomKillDisable",
    "PidsLimit",
    "Ulimits",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
    "RestartPolicy",
];

/// A 400 in Go's words when a field of the update has the wrong type (the fields are
/// `HostConfig`'s, typed the same), as dockerd words it ("Go struct field UpdateConfig.Memory").
fn check_types(config: &Map<String, Value>) -> ApiResult<()> {
    let known: Map<String, Value> = config
        .iter()
        .filter(|(k, _)| UPDATE_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json_body::decode::<HostConfig>(Value::Object(known))
        .map(drop)
        .map_err(|e| json_body::invalid(e.root_named("UpdateConfig")))
}

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
    check_types(&config)?;
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
    fn fields_of_the_wrong_type_are_refused_and_unknown_ones_ignored() {
        assert_eq!(
            update_body(json!({"Memory": "1g"}), ApiVersion(1, 45))
                .unwrap_err()
                .message,
            "invalid JSON: json: cannot unmarshal string into Go struct field UpdateConfig.Memory of type int64"
        );
        assert_eq!(
            update_body(
                json!({"RestartPolicy": {"Name": 3}}),
                ApiVersion(1, 45)
            )
            .unwrap_err()
            .message,
            "invalid JSON: json: cannot unmarshal number into Go struct field RestartPolicy.RestartPolicy.Name of type string"
        );
        let body = json!({"Memory": 1024, "Binds": 7, "Whatever": {"x": 1}});
        assert_eq!(update_body(body.clone(), ApiVersion(1, 45)).unwrap(), body);
        // A null is no change: read_json leaves it out.
        let read: Value = read_json(br#"{"Memory": null, "CpuShares": 512}"#).unwrap();
        assert_eq!(
            update_body(read, ApiVersion(1, 45)).unwrap(),
            json!({"CpuShares": 512})
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

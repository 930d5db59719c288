//! Volumes over every node: the lists merged, the prune reports added up, a volume found by
//! its exact name (the nodes' `name` filter matches substrings), and the node a new volume goes
//! to.

use std::collections::BTreeMap;

use serde_json::Value;
use wharf_bus::api;
use wharf_bus::container::{
    VolumeCreateRequest, VolumeListRequest, VolumeListResponse, VolumePruneResponse,
};

use super::placement;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// dockerd's answer for a volume no node has.
pub fn no_such_volume(name: &str) -> ApiError {
    ApiError::not_found(format!("get {name}: no such volume"))
}

/// A volume found on a node: the node, and the volume's JSON as the node renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub node: String,
    pub volume: Value,
}

fn volume_name(v: &Value) -> &str {
    v.get("Name").and_then(Value::as_str).unwrap_or("")
}

/// The volume named exactly `name` among the nodes' answers (the `name` filter also matches
/// longer names that contain it).
pub fn exact(name: &str, answers: Vec<VolumeListResponse>) -> Option<Located> {
    answers.into_iter().find_map(|answer| {
        let node = answer.node;
        answer
            .volumes
            .into_iter()
            .find(|v| volume_name(v) == name)
            .map(|volume| Located { node, volume })
    })
}

/// Every node's volumes as one list, by name (then by node, so the order is stable).
pub fn merge_lists(answers: Vec<VolumeListResponse>) -> Vec<Value> {
    let mut all: Vec<(String, Value)> = answers
        .into_iter()
        .flat_map(|a| {
            let node = a.node;
            a.volumes.into_iter().map(move |v| (node.clone(), v))
        })
        .collect();
    all.sort_by(|(na, a), (nb, b)| (volume_name(a), na).cmp(&(volume_name(b), nb)));
    all.into_iter().map(|(_, v)| v).collect()
}

/// Every node's prune report as one: all deleted names (sorted), the space added up.
pub fn merge_prunes(answers: Vec<VolumePruneResponse>) -> VolumePruneResponse {
    let mut merged = VolumePruneResponse::default();
    for answer in answers {
        merged.volumes_deleted.extend(answer.volumes_deleted);
        merged.space_reclaimed = merged
            .space_reclaimed
            .saturating_add(answer.space_reclaimed);
    }
    merged.volumes_deleted.sort();
    merged
}

/// The volume named exactly `name`, on whichever node has it.
pub async fn locate(state: &AppState, name: &str) -> ApiResult<Option<Located>> {
    if name.is_empty() {
        return Ok(None);
    }
    let request = VolumeListRequest {
        filters: BTreeMap::from([("name".to_string(), vec![name.to_string()])]),
    };
    let answers = state
        .roster()
        .await?
        .gather::<api::VolumeList>(&request)
        .await?;
    Ok(exact(name, answers))
}

/// Where a volume create goes: dockerd answers a create of an existing name with that volume,
/// so to the node that has it; otherwise where its labels place it.
pub async fn node_for_create(state: &AppState, request: &VolumeCreateRequest) -> ApiResult<String> {
    match locate(state, &request.name).await? {
        Some(found) => Ok(found.node),
        None => placement::by_labels(state, &request.labels).await,
    }
}

/// Every node's volumes matching `filters`, as one list.
pub async fn list(
    state: &AppState,
    filters: BTreeMap<String, Vec<String>>,
) -> ApiResult<Vec<Value>> {
    let request = VolumeListRequest { filters };
    let answers = state
        .roster()
        .await?
        .gather::<api::VolumeList>(&request)
        .await?;
    Ok(merge_lists(answers))
}

/// Every node prunes the volumes the filters select; their reports as one.
pub async fn prune(
    state: &AppState,
    filters: BTreeMap<String, Vec<String>>,
) -> ApiResult<VolumePruneResponse> {
    let request = VolumeListRequest { filters };
    let answers = state
        .roster()
        .await?
        .gather::<api::VolumePrune>(&request)
        .await?;
    Ok(merge_prunes(answers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    fn answer(node: &str, names: &[&str]) -> VolumeListResponse {
        VolumeListResponse {
            node: node.into(),
            volumes: names
                .iter()
                .map(
                    |n| json!({"Name": n, "Driver": "local", "Mountpoint": format!("/{node}/{n}")}),
                )
                .collect(),
        }
    }

    #[test]
    fn lists_merge_sorted_by_name_across_nodes() {
        let merged = merge_lists(vec![
            answer("n2", &["web", "alpha"]),
            answer("n1", &["db", "web"]),
        ]);
        let names: Vec<_> = merged.iter().map(volume_name).collect();
        assert_eq!(names, ["alpha", "db", "web", "web"]);
        assert_eq!(merged[2]["Mountpoint"], "/n1/web");
        assert!(merge_lists(vec![]).is_empty());
    }

    #[test]
    fn only_the_exact_name_is_found() {
        let found = exact(
            "data",
            vec![answer("n1", &["data2", "mydata"]), answer("n2", &["data"])],
        )
        .unwrap();
        assert_eq!(found.node, "n2");
        assert_eq!(found.volume["Name"], "data");
        assert!(exact("dat", vec![answer("n1", &["data"])]).is_none());
        assert!(exact("data", vec![]).is_none());
    }

    #[test]
    fn prunes_merge_names_and_add_up_space() {
        let merged = merge_prunes(vec![
            VolumePruneResponse {
                volumes_deleted: vec!["b".into()],
                space_reclaimed: 10,
            },
            VolumePruneResponse {
                volumes_deleted: vec!["a".into()],
                space_reclaimed: 5,
            },
        ]);
        assert_eq!(
            serde_json::to_value(&merged).unwrap(),
            json!({"VolumesDeleted": ["a", "b"], "SpaceReclaimed": 15})
        );
        // dockerd answers an empty list, not null.
        assert_eq!(
            serde_json::to_value(merge_prunes(vec![])).unwrap(),
            json!({"VolumesDeleted": [], "SpaceReclaimed": 0})
        );
    }

    #[test]
    fn a_missing_volume_reads_as_dockerds() {
        let err = no_such_volume("v1");
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        assert_eq!(err.message, "get v1: no such volume");
    }
}

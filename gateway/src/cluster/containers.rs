//! Containers over every node: the lists merged into one (`docker ps`), the prune reports added
//! up, and which images containers use (image removal and the build cache keep those).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{json, Value};
use wharf_bus::api;
use wharf_bus::container::{ContainerPruneResponse, ListRequest, ListResponse};

use crate::error::ApiResult;
use crate::state::AppState;

/// Key nodes add for a stable order within one second; never shown to clients.
const CREATED_NANOS: &str = "_created_nanos";

fn created(v: &Value) -> (i64, i64) {
    (
        v.get("Created").and_then(Value::as_i64).unwrap_or(0),
        v.get(CREATED_NANOS).and_then(Value::as_i64).unwrap_or(0),
    )
}

/// Every node's containers as one list, newest first, cut to `limit`.
pub fn merge_lists(answers: Vec<ListResponse>, limit: Option<i64>) -> Vec<Value> {
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

/// Every node's containers `request` selects, as one list.
pub async fn list(state: &AppState, request: &ListRequest) -> ApiResult<Vec<Value>> {
    let answers = state
        .roster()
        .await?
        .gather::<api::ContainerList>(request)
        .await?;
    Ok(merge_lists(answers, request.limit))
}

/// Every node's report as dockerd's one: the deleted IDs (sorted; `null` when none, as Go
/// encodes an empty slice it never appended to) and the space added up.
pub fn merge_prunes(answers: Vec<ContainerPruneResponse>) -> Value {
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

/// Every node prunes the containers `request` selects; their reports as one.
pub async fn prune(state: &AppState, request: &ListRequest) -> ApiResult<Value> {
    let answers = state
        .roster()
        .await?
        .gather::<api::ContainerPrune>(request)
        .await?;
    Ok(merge_prunes(answers))
}

/// Image IDs that the listed containers use, each with one of those containers.
pub fn images_in_use_of(lists: &[ListResponse]) -> BTreeMap<String, String> {
    let mut used = BTreeMap::new();
    for c in lists.iter().flat_map(|l| l.containers.iter()) {
        if let (Some(image), Some(id)) = (c["ImageID"].as_str(), c["Id"].as_str()) {
            used.entry(image.to_string())
                .or_insert_with(|| id.to_string());
        }
    }
    used
}

/// Image IDs that containers on any node use, each with one of those containers (the store
/// refuses to delete them as dockerd does).
pub async fn images_in_use(state: &AppState) -> ApiResult<BTreeMap<String, String>> {
    let every = ListRequest {
        all: true,
        ..Default::default()
    };
    let lists = state
        .roster()
        .await?
        .gather::<api::ContainerList>(&every)
        .await?;
    Ok(images_in_use_of(&lists))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(node: &str, containers: Vec<Value>) -> ListResponse {
        ListResponse {
            node: node.into(),
            containers,
        }
    }

    #[test]
    fn nodes_lists_merge_newest_first_and_lose_the_nanos_key() {
        let merged = merge_lists(
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
        let merged = merge_lists(
            vec![
                answer("n1", vec![json!({"Id": "old", "Created": 1})]),
                answer("n2", vec![json!({"Id": "new", "Created": 2})]),
            ],
            Some(1),
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0]["Id"], "new");
        assert_eq!(
            merge_lists(vec![answer("n", vec![json!({})])], Some(0)).len(),
            1
        );
    }

    fn report(ids: &[&str], space: u64) -> ContainerPruneResponse {
        ContainerPruneResponse {
            containers_deleted: ids.iter().map(|s| s.to_string()).collect(),
            space_reclaimed: space,
        }
    }

    #[test]
    fn prune_reports_add_up_and_none_deleted_is_null() {
        assert_eq!(
            merge_prunes(vec![report(&["b", "c"], 10), report(&["a"], 5)]),
            json!({"ContainersDeleted": ["a", "b", "c"], "SpaceReclaimed": 15})
        );
        assert_eq!(
            merge_prunes(vec![report(&[], 0), report(&[], 0)]),
            json!({"ContainersDeleted": null, "SpaceReclaimed": 0})
        );
        assert_eq!(
            merge_prunes(vec![]),
            json!({"ContainersDeleted": null, "SpaceReclaimed": 0})
        );
    }

    #[test]
    fn images_in_use_name_one_container_each() {
        let lists = vec![
            answer(
                "n1",
                vec![
                    json!({"Id": "c1", "ImageID": "sha256:a"}),
                    json!({"Id": "c2", "ImageID": "sha256:b"}),
                ],
            ),
            answer(
                "n2",
                vec![
                    json!({"Id": "c3", "ImageID": "sha256:a"}),
                    json!({"Id": "c4"}),
                ],
            ),
        ];
        assert_eq!(
            images_in_use_of(&lists),
            BTreeMap::from([
                ("sha256:a".to_string(), "c1".to_string()),
                ("sha256:b".to_string(), "c2".to_string()),
            ])
        );
    }
}

//! Containers over every node: the lists merged into one (`docker ps`), the prune reports added
//! up, and which images containers use (image removal and the build cache keep those).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde_json::{json, Value};
use wharf_bus::api;
use wharf_bus::container::{ContainerPruneResponse, ContainerSummary, ListRequest, ListResponse};

use crate::error::ApiResult;
use crate::state::AppState;

/// Every node's containers as one list, newest first (by second, then nanosecond; the ID
/// breaks a tie), cut to `limit`.
pub fn merge_lists(answers: Vec<ListResponse>, limit: Option<i64>) -> Vec<ContainerSummary> {
    let mut all: Vec<ContainerSummary> = answers.into_iter().flat_map(|a| a.containers).collect();
    all.sort_by(|a, b| {
        let key = |c: &ContainerSummary| (Reverse((c.created, c.created_nanos)), c.id.clone());
        key(a).cmp(&key(b))
    });
    if let Some(n) = limit.filter(|n| *n > 0) {
        all.truncate(n as usize);
    }
    all
}

/// Every node's containers `request` selects, as one list.
pub async fn list(state: &AppState, request: &ListRequest) -> ApiResult<Vec<ContainerSummary>> {
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
        if !c.image_id.is_empty() {
            used.entry(c.image_id.clone())
                .or_insert_with(|| c.id.clone());
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

    fn answer(node: &str, containers: Vec<ContainerSummary>) -> ListResponse {
        ListResponse {
            node: node.into(),
            containers,
        }
    }

    fn container(id: &str, created: i64, created_nanos: i64) -> ContainerSummary {
        ContainerSummary {
            id: id.into(),
            created,
            created_nanos,
            ..Default::default()
        }
    }

    fn using(id: &str, image: &str) -> ContainerSummary {
        ContainerSummary {
            id: id.into(),
            image_id: image.into(),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_lists_merge_newest_first() {
        let merged = merge_lists(
            vec![
                answer(
                    "n1",
                    vec![container("a", 100, 100_000_000_001), container("c", 300, 0)],
                ),
                answer("n2", vec![container("b", 100, 100_000_000_009)]),
            ],
            None,
        );
        let ids: Vec<_> = merged.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        // The nanoseconds order the merge only: Docker's JSON has no such key.
        let rendered = serde_json::to_value(&merged).unwrap();
        assert!(rendered[1].get("_created_nanos").is_none());
        assert_eq!(rendered[1]["Created"], 100);
    }

    #[test]
    fn a_list_crosses_the_bus_with_its_nanoseconds() {
        let sent = answer("n1", vec![container("a", 100, 100_000_000_001)]);
        let got: ListResponse =
            serde_json::from_slice(&serde_json::to_vec(&sent).unwrap()).unwrap();
        assert_eq!(got.containers, sent.containers);
        assert_eq!(got.containers[0].created_nanos, 100_000_000_001);
    }

    #[test]
    fn a_limit_keeps_the_newest() {
        let merged = merge_lists(
            vec![
                answer("n1", vec![container("old", 1, 0)]),
                answer("n2", vec![container("new", 2, 0)]),
            ],
            Some(1),
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].id, "new");
        assert_eq!(
            merge_lists(vec![answer("n", vec![container("x", 0, 0)])], Some(0)).len(),
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
            answer("n1", vec![using("c1", "sha256:a"), using("c2", "sha256:b")]),
            answer("n2", vec![using("c3", "sha256:a"), using("c4", "")]),
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

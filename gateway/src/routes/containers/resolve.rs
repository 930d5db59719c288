//! Finding containers across runtime nodes: which node holds a name or ID, whether a name is
//! free, and where a new container goes.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use wharf_bus::container::{MatchKind, NodeInfo, ResolveMatch, ResolveRequest, ResolveResponse};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The characters dockerd allows in a container name, as its error message shows them.
const NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

/// The label that pins a container to a runtime node.
pub const NODE_LABEL: &str = "wharf.node";

/// dockerd's container name rule: `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`.
pub fn valid_name(name: &str) -> bool {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    let rest = chars.as_str();
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// dockerd's refusal of a bad name; `name` as the client gave it.
pub fn check_name(name: &str) -> ApiResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid container name ({name}), only {NAME_CHARS} are allowed"
        )))
    }
}

/// `/name` from `name` or `/name`.
pub fn slashed(name: &str) -> String {
    format!("/{}", name.trim_start_matches('/'))
}

/// dockerd's answer when `name` (with its slash) already belongs to container `id`.
pub fn name_conflict(name: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "Conflict. The container name \"{name}\" is already in use by container \"{id}\". \
             You have to remove (or rename) that container to be able to reuse that name."
        ),
    )
}

/// Picks the container `query` means from every node's candidates, in dockerd's order: the
/// container whose full ID it is, else the one it names, else the only one whose ID starts with
/// it. Several prefix matches are an error (moby's `GetByPrefix`: InvalidParameter, 400).
pub fn decide(query: &str, mut matches: Vec<ResolveMatch>) -> ApiResult<ResolveMatch> {
    for kind in [MatchKind::Id, MatchKind::Name] {
        if let Some(i) = matches.iter().position(|m| m.how == kind) {
            return Ok(matches.swap_remove(i));
        }
    }
    matches.sort_by(|a, b| a.id.cmp(&b.id));
    matches.dedup_by(|a, b| a.id == b.id);
    match matches.len() {
        0 => Err(no_such_container(query)),
        1 => Ok(matches.remove(0)),
        _ => Err(ApiError::bad_request(format!(
            "multiple IDs found with provided prefix: {query}"
        ))),
    }
}

pub fn no_such_container(query: &str) -> ApiError {
    ApiError::not_found(format!("No such container: {query}"))
}

fn no_node() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no runtime node is connected",
    )
}

/// Where a new container runs.
///
/// - A create whose labels hold `wharf.node=<name>` runs on that node (an unknown node is the
///   client's error, 400).
/// - Otherwise it runs on the node with the fewest running containers; ties go to the node with
///   the fewest containers, then to the first by name, so placement is deterministic.
/// - With no node connected at all, nothing can run (503).
pub fn place<'a>(
    nodes: &'a [NodeInfo],
    labels: &BTreeMap<String, String>,
) -> ApiResult<&'a NodeInfo> {
    if nodes.is_empty() {
        return Err(no_node());
    }
    if let Some(wanted) = labels.get(NODE_LABEL) {
        return nodes
            .iter()
            .find(|n| &n.name == wanted)
            .ok_or_else(|| ApiError::bad_request(format!("no runtime node named {wanted}")));
    }
    wharf_bus::nodes::least_loaded(nodes).ok_or_else(no_node)
}

/// Where a new container goes when a user network it joins lives on `home` (networks are
/// local to a node, and a container joins only its own node's). A `wharf.node` label naming
/// another node contradicts that: the client's error (400).
pub fn place_with_network<'a>(
    nodes: &'a [NodeInfo],
    labels: &BTreeMap<String, String>,
    network: &str,
    home: &str,
) -> ApiResult<&'a NodeInfo> {
    if let Some(wanted) = labels.get(NODE_LABEL).filter(|w| *w != home) {
        return Err(ApiError::bad_request(format!(
            "label {NODE_LABEL}={wanted} asks for node {wanted}, but network {network} is on node {home}"
        )));
    }
    nodes.iter().find(|n| n.name == home).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("runtime node {home} holding network {network} is not connected"),
        )
    })
}

/// The connected nodes (discovering them when none is known).
pub async fn nodes(state: &AppState) -> ApiResult<Vec<NodeInfo>> {
    Ok(state.roster().await?.nodes_or_discover().await)
}

/// Every node's candidates for `name_or_id`, each tagged with the node holding it.
async fn candidates(state: &AppState, name_or_id: &str) -> ApiResult<Vec<ResolveMatch>> {
    let roster = state.roster().await?;
    if roster.nodes_or_discover().await.is_empty() {
        return Err(no_node());
    }
    let answers: Vec<ResolveResponse> = roster
        .gather::<wharf_bus::api::ContainerResolve>(&ResolveRequest {
            name_or_id: name_or_id.to_string(),
        })
        .await?;
    Ok(answers
        .into_iter()
        .flat_map(|answer| {
            let node = answer.node;
            answer.matches.into_iter().map(move |mut m| {
                if m.node.is_empty() {
                    m.node = node.clone();
                }
                m
            })
        })
        .collect())
}

/// The container a `/containers/{name}/...` path means, and its node.
pub async fn locate(state: &AppState, name_or_id: &str) -> ApiResult<ResolveMatch> {
    if name_or_id.is_empty() {
        return Err(no_such_container(name_or_id));
    }
    decide(name_or_id, candidates(state, name_or_id).await?)
}

/// Fails with dockerd's conflict error when a container on any node is named `name`.
pub async fn ensure_name_free(state: &AppState, name: &str) -> ApiResult<()> {
    let bare = name.trim_start_matches('/');
    let taken = candidates(state, bare)
        .await?
        .into_iter()
        .find(|m| m.how == MatchKind::Name && m.name.trim_start_matches('/') == bare);
    match taken {
        Some(m) => Err(name_conflict(&slashed(bare), &m.id)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, name: &str, node: &str, how: MatchKind) -> ResolveMatch {
        ResolveMatch {
            id: id.into(),
            name: name.into(),
            node: node.into(),
            how,
        }
    }

    fn node(name: &str, containers: u64, running: u64) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            containers,
            running,
            ..Default::default()
        }
    }

    #[test]
    fn names_follow_dockerds_pattern() {
        for ok in ["ab", "/web-1", "a.b_c-d", "0x", "A9"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "a", "/", "/a", "-ab", "_ab", ".ab", "a b", "a/b", "ä1", "ab:c",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(
            check_name("a b").unwrap_err().message,
            "Invalid container name (a b), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
    }

    #[test]
    fn a_name_conflict_reads_as_dockerds() {
        let err = name_conflict("/web", "abc");
        assert_eq!(err.status, StatusCode::CONFLICT);
        assert_eq!(
            err.message,
            "Conflict. The container name \"/web\" is already in use by container \"abc\". \
             You have to remove (or rename) that container to be able to reuse that name."
        );
    }

    #[test]
    fn a_full_id_wins_over_a_name_and_a_name_over_a_prefix() {
        let by_id = decide(
            "abc",
            vec![
                m("abcdef", "x", "n1", MatchKind::Prefix),
                m("fff", "abc", "n2", MatchKind::Name),
                m("abc", "y", "n3", MatchKind::Id),
            ],
        )
        .unwrap();
        assert_eq!(by_id.node, "n3");
        let by_name = decide(
            "abc",
            vec![
                m("abcdef", "x", "n1", MatchKind::Prefix),
                m("abc123", "z", "n1", MatchKind::Prefix),
                m("fff", "abc", "n2", MatchKind::Name),
            ],
        )
        .unwrap();
        assert_eq!(by_name.id, "fff");
    }

    #[test]
    fn a_unique_prefix_resolves_and_an_ambiguous_one_is_refused() {
        let one = decide("ab", vec![m("abcdef", "x", "n1", MatchKind::Prefix)]).unwrap();
        assert_eq!(one.id, "abcdef");
        let err = decide(
            "ab",
            vec![
                m("abcdef", "x", "n1", MatchKind::Prefix),
                m("ab1234", "y", "n2", MatchKind::Prefix),
            ],
        )
        .unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "multiple IDs found with provided prefix: ab");
        // The same container reported twice is not ambiguous.
        let twice = decide(
            "ab",
            vec![
                m("abcdef", "x", "n1", MatchKind::Prefix),
                m("abcdef", "x", "n1", MatchKind::Prefix),
            ],
        );
        assert!(twice.is_ok());
    }

    #[test]
    fn nothing_matching_is_no_such_container() {
        let err = decide("nope", vec![]).unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        assert_eq!(err.message, "No such container: nope");
    }

    #[test]
    fn placement_prefers_fewest_running_then_fewest_containers_then_name() {
        let none = BTreeMap::new();
        let nodes = vec![node("b", 1, 0), node("a", 5, 2), node("c", 1, 0)];
        assert_eq!(place(&nodes, &none).unwrap().name, "b");
        let nodes = vec![node("b", 3, 0), node("a", 2, 0)];
        assert_eq!(place(&nodes, &none).unwrap().name, "a");
        let nodes = vec![node("b", 2, 1), node("a", 9, 0)];
        assert_eq!(place(&nodes, &none).unwrap().name, "a");
    }

    #[test]
    fn the_node_label_pins_placement() {
        let nodes = vec![node("a", 0, 0), node("b", 9, 9)];
        let labels = BTreeMap::from([(NODE_LABEL.to_string(), "b".to_string())]);
        assert_eq!(place(&nodes, &labels).unwrap().name, "b");
        let labels = BTreeMap::from([(NODE_LABEL.to_string(), "z".to_string())]);
        let err = place(&nodes, &labels).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "no runtime node named z");
    }

    #[test]
    fn a_user_network_decides_placement_and_a_contrary_label_is_refused() {
        let nodes = vec![node("a", 0, 0), node("b", 9, 9)];
        let none = BTreeMap::new();
        assert_eq!(
            place_with_network(&nodes, &none, "front", "b")
                .unwrap()
                .name,
            "b"
        );
        let same = BTreeMap::from([(NODE_LABEL.to_string(), "b".to_string())]);
        assert_eq!(
            place_with_network(&nodes, &same, "front", "b")
                .unwrap()
                .name,
            "b"
        );
        let other = BTreeMap::from([(NODE_LABEL.to_string(), "a".to_string())]);
        let err = place_with_network(&nodes, &other, "front", "b").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "label wharf.node=a asks for node a, but network front is on node b"
        );
        let gone = place_with_network(&nodes, &none, "front", "z").unwrap_err();
        assert_eq!(gone.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn no_node_means_unavailable() {
        let err = place(&[], &BTreeMap::new()).unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.message, "no runtime node is connected");
    }
}

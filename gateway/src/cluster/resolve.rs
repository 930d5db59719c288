//! Which container a name or an ID prefix means across the nodes, as dockerd decides it on one
//! host: every node reports its candidates (`container.resolve`), the gateway picks.

use axum::http::StatusCode;
use wharf_bus::api;
use wharf_bus::container::{MatchKind, ResolveMatch, ResolveRequest, ResolveResponse};

use super::nodes::no_node;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

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

pub fn no_such_container(query: &str) -> ApiError {
    ApiError::not_found(format!("No such container: {query}"))
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

/// Every node's answers as one list of candidates, each tagged with the node holding it.
pub fn candidates_of(answers: Vec<ResolveResponse>) -> Vec<ResolveMatch> {
    answers
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
        .collect()
}

/// Every node's candidates for `name_or_id`.
async fn candidates(state: &AppState, name_or_id: &str) -> ApiResult<Vec<ResolveMatch>> {
    let roster = state.roster().await?;
    if roster.nodes_or_discover().await.is_empty() {
        return Err(no_node());
    }
    let request = ResolveRequest {
        name_or_id: name_or_id.to_string(),
    };
    let answers = roster.gather::<api::ContainerResolve>(&request).await?;
    Ok(candidates_of(answers))
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

    #[test]
    fn a_name_conflict_reads_as_dockerds() {
        let err = name_conflict("/web", "abc");
        assert_eq!(err.status, StatusCode::CONFLICT);
        assert_eq!(
            err.message,
            "Conflict. The container name \"/web\" is already in use by container \"abc\". \
             You have to remove (or rename) that container to be able to reuse that name."
        );
        assert_eq!(slashed("web"), "/web");
        assert_eq!(slashed("/web"), "/web");
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
    fn candidates_carry_the_node_that_answered() {
        let answers = vec![
            ResolveResponse {
                node: "n1".into(),
                matches: vec![m("a1", "/x", "", MatchKind::Prefix)],
            },
            ResolveResponse {
                node: "n2".into(),
                matches: vec![m("a2", "/y", "n9", MatchKind::Prefix)],
            },
        ];
        let nodes: Vec<String> = candidates_of(answers).into_iter().map(|m| m.node).collect();
        assert_eq!(nodes, ["n1", "n9"]);
    }
}

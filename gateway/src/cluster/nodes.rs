//! The runtime nodes this gateway knows of (its roster, fed by their announcements): which are
//! connected, the counts `docker info` adds up, the protections all of them enforce, and counts
//! noted between announcements so that quick creates spread.

use axum::http::StatusCode;
use wharf_bus::container::NodeInfo;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// dockerd has no word for it: nothing can run without a node (503).
pub fn no_node() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no runtime node is connected",
    )
}

/// The connected nodes (discovering them when none is known).
pub async fn connected(state: &AppState) -> ApiResult<Vec<NodeInfo>> {
    Ok(state.roster().await?.nodes_or_discover().await)
}

/// The connected nodes, or none when the roster cannot be followed (for `docker info`, which
/// answers anyway).
pub async fn connected_or_none(state: &AppState) -> Vec<NodeInfo> {
    match state.roster().await {
        Ok(roster) => roster.nodes_or_discover().await,
        Err(_) => Vec::new(),
    }
}

/// Adjusts the roster's counts of `node` until its next announcement, so that containers
/// created in quick succession spread over the nodes.
pub async fn note_counts(state: &AppState, node: &str, change: impl FnOnce(&mut NodeInfo)) {
    let Ok(roster) = state.roster().await else {
        return;
    };
    if let Some(mut info) = roster.nodes().into_iter().find(|n| n.name == node) {
        change(&mut info);
        roster.note(info);
    }
}

/// Every node's container counts added up (from their last announcements).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub containers: u64,
    pub running: u64,
    pub paused: u64,
    pub stopped: u64,
}

pub fn counts(nodes: &[NodeInfo]) -> Counts {
    let sum = |f: fn(&NodeInfo) -> u64| nodes.iter().map(f).sum::<u64>();
    Counts {
        containers: sum(|n| n.containers),
        running: sum(|n| n.running),
        paused: sum(|n| n.paused),
        stopped: sum(|n| n.stopped),
    }
}

/// What every node enforces (a protection one node lacks is not listed): seccomp always,
/// `userns` where every node remaps. With no node, the protection every node has.
pub fn security_options(nodes: &[NodeInfo]) -> Vec<String> {
    let Some(first) = nodes.first() else {
        return vec!["name=seccomp,profile=builtin".to_string()];
    };
    first
        .security_options
        .iter()
        .filter(|o| nodes.iter().all(|n| n.security_options.contains(o)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, running: u64, options: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            containers: running + 1,
            running,
            stopped: 1,
            security_options: options.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn counts_add_up_over_the_nodes() {
        let nodes = [node("a", 2, &[]), node("b", 3, &[])];
        assert_eq!(
            counts(&nodes),
            Counts {
                containers: 7,
                running: 5,
                paused: 0,
                stopped: 2
            }
        );
        assert_eq!(counts(&[]), Counts::default());
    }

    #[test]
    fn only_what_every_node_enforces_is_listed() {
        let seccomp = "name=seccomp,profile=builtin";
        let both = [
            node("a", 0, &[seccomp, "name=userns"]),
            node("b", 0, &[seccomp]),
        ];
        assert_eq!(security_options(&both), [seccomp]);
        let remapped = [
            node("a", 0, &[seccomp, "name=userns"]),
            node("b", 0, &["name=userns", seccomp]),
        ];
        assert_eq!(security_options(&remapped), [seccomp, "name=userns"]);
        assert_eq!(security_options(&[]), [seccomp]);
    }
}

//! Where new things go: a container on the node its user networks live on, else the node its
//! `wharf.node` label names, else the least loaded node; a network or a volume by the same
//! label rule.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use wharf_bus::container::{CreateBody, NodeInfo};

use super::{networks, nodes};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The label that pins a container (or a network, or a volume) to a runtime node.
pub const NODE_LABEL: &str = "wharf.node";

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
        return Err(nodes::no_node());
    }
    if let Some(wanted) = labels.get(NODE_LABEL) {
        return nodes
            .iter()
            .find(|n| &n.name == wanted)
            .ok_or_else(|| ApiError::bad_request(format!("no runtime node named {wanted}")));
    }
    wharf_bus::nodes::least_loaded(nodes).ok_or_else(nodes::no_node)
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

/// The node a container create goes to: its user networks' node (they must share one), else
/// by its labels. The body still names the networks as the client did; the node resolves them.
pub async fn for_container(state: &AppState, body: &CreateBody) -> ApiResult<String> {
    let home = networks::home_of(state, body).await?;
    let nodes = nodes::connected(state).await?;
    let node = match &home {
        Some((network, home)) => place_with_network(&nodes, &body.config.labels, network, home)?,
        None => place(&nodes, &body.config.labels)?,
    };
    Ok(node.name.clone())
}

/// The node a network or a volume with `labels` is created on.
pub async fn by_labels(state: &AppState, labels: &BTreeMap<String, String>) -> ApiResult<String> {
    let nodes = nodes::connected(state).await?;
    Ok(place(&nodes, labels)?.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, containers: u64, running: u64) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            containers,
            running,
            ..Default::default()
        }
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

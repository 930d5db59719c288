//! Networks over every node. Each node lists its networks; the gateway merges the lists and
//! finds a network named in a path the way dockerd finds one (full ID, then name, then unique ID
//! prefix).
//!
//! Every node reports its own predefined `bridge`, `host` and `none` networks (with IDs of its
//! own). The gateway shows each predefined name once, as the first node (by name) reports it; a
//! container joining a predefined network by name joins its own node's.
//!
//! A network is local to its node and a container joins only networks of the node it runs on:
//! `docker run --network NAME` is placed on the node holding `NAME` (see [`home_of`]), and
//! connecting a container to a network of another node is refused (see [`pair`]).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::Value;
use wharf_bus::api;
use wharf_bus::container::{
    CreateBody, NetworkListResponse, NetworkPruneResponse, ResolveMatch, VolumeListRequest,
};

use super::resolve;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The networks every node has, under the same names (and IDs of its own).
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

pub fn is_predefined(name: &str) -> bool {
    PREDEFINED.contains(&name)
}

/// Network modes of a container create that need no user network: the node's own.
fn is_node_mode(mode: &str) -> bool {
    matches!(mode, "" | "default") || is_predefined(mode) || mode.starts_with("container:")
}

/// dockerd's answer for a network no node has.
pub fn no_such_network(term: &str) -> ApiError {
    ApiError::not_found(format!("network {term} not found"))
}

/// A network found on a node: the node, and the network's JSON as the node renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub node: String,
    pub network: Value,
}

impl Located {
    pub fn name(&self) -> &str {
        self.network
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn id(&self) -> &str {
        self.network.get("Id").and_then(Value::as_str).unwrap_or("")
    }
}

/// Every node's networks, nodes in name order (so "the first node" is the same every time).
pub fn flatten(mut answers: Vec<NetworkListResponse>) -> Vec<Located> {
    answers.sort_by(|a, b| a.node.cmp(&b.node));
    answers
        .into_iter()
        .flat_map(|answer| {
            let node = answer.node;
            answer.networks.into_iter().map(move |network| Located {
                node: node.clone(),
                network,
            })
        })
        .collect()
}

/// Every node's networks as one list: each predefined name once (the first node's), every
/// user network. dockerd does not sort the list (the CLI does); nodes come in name order.
pub fn merge_lists(answers: Vec<NetworkListResponse>) -> Vec<Value> {
    let mut seen = Vec::new();
    flatten(answers)
        .into_iter()
        .filter(|n| {
            if !is_predefined(n.name()) {
                return true;
            }
            if seen.iter().any(|s| s == n.name()) {
                return false;
            }
            seen.push(n.name().to_string());
            true
        })
        .map(|n| n.network)
        .collect()
}

/// Every node's prune report as one, names sorted. dockerd sends `null` when nothing went.
pub fn merge_prunes(answers: Vec<NetworkPruneResponse>) -> Value {
    let mut deleted: Vec<String> = answers
        .into_iter()
        .flat_map(|a| a.networks_deleted)
        .collect();
    deleted.sort();
    if deleted.is_empty() {
        serde_json::json!({ "NetworksDeleted": null })
    } else {
        serde_json::json!({ "NetworksDeleted": deleted })
    }
}

/// Why no single network answers to a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    /// Several networks (this many) carry the name.
    AmbiguousName(usize),
    /// Several networks (this many) have IDs starting with the term.
    AmbiguousPrefix(usize),
}

/// The network `term` means, in dockerd's order: the one whose full ID it is, else the one it
/// names, else the only one whose ID starts with it. A predefined name is one network however
/// many nodes report it: the first node's.
pub fn find<'a>(term: &str, networks: &'a [Located]) -> Result<&'a Located, Miss> {
    if term.is_empty() {
        return Err(Miss::NotFound);
    }
    if let Some(n) = networks.iter().find(|n| n.id() == term) {
        return Ok(n);
    }
    let named: Vec<&Located> = networks.iter().filter(|n| n.name() == term).collect();
    match named.len() {
        0 => {}
        1 => return Ok(named[0]),
        _ if is_predefined(term) => return Ok(named[0]),
        count => return Err(Miss::AmbiguousName(count)),
    }
    let mut prefixed: Vec<&Located> = networks
        .iter()
        .filter(|n| n.id().starts_with(term))
        .collect();
    prefixed.sort_by(|a, b| a.id().cmp(b.id()));
    prefixed.dedup_by(|a, b| a.id() == b.id());
    match prefixed.len() {
        0 => Err(Miss::NotFound),
        1 => Ok(prefixed[0]),
        count => Err(Miss::AmbiguousPrefix(count)),
    }
}

/// How the route failing to find a network words it; dockerd has three wordings of ambiguity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wording {
    /// `GET /networks/{id}` (the router's `getNetwork`).
    Inspect,
    /// `DELETE /networks/{id}` (the router's `findUniqueNetwork`).
    Unique,
    /// Connect, disconnect and container create (the daemon's `FindNetwork`).
    Daemon,
}

/// dockerd's error for `miss` of `term`: ambiguity is the client's (400), absence 404.
pub fn miss_error(term: &str, miss: Miss, wording: Wording) -> ApiError {
    let (count, by) = match miss {
        Miss::NotFound => return no_such_network(term),
        Miss::AmbiguousName(count) => (
            count,
            if wording == Wording::Daemon {
                "on name"
            } else {
                "based on name"
            },
        ),
        Miss::AmbiguousPrefix(count) => (count, "based on ID prefix"),
    };
    ApiError::bad_request(match wording {
        Wording::Inspect => format!("{count} matches found {by}: network {term} is ambiguous"),
        Wording::Unique | Wording::Daemon => {
            format!("network {term} is ambiguous ({count} matches found {by})")
        }
    })
}

/// The user networks a container create names (`HostConfig.NetworkMode` and the keys of
/// `NetworkingConfig.EndpointsConfig`), each once, in that order.
pub fn user_networks(body: &CreateBody) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mode = body.host_config.network_mode.as_str();
    let keys = body.networking_config.endpoints_config.keys();
    for name in std::iter::once(mode).chain(keys.map(String::as_str)) {
        if !is_node_mode(name) && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// The node holding every network in `names`, with the first network's name; `None` when
/// `names` is empty.
///
/// Wharf-specific: networks are local to a node, so a container naming networks of two nodes
/// cannot run anywhere (400).
pub fn home(names: &[String], networks: &[Located]) -> ApiResult<Option<(String, String)>> {
    let mut home: Option<(String, String)> = None;
    for name in names {
        let found = find(name, networks).map_err(|m| miss_error(name, m, Wording::Daemon))?;
        match &home {
            None => home = Some((name.clone(), found.node.clone())),
            Some((first, node)) if *node != found.node => {
                return Err(ApiError::bad_request(format!(
                    "networks {first} and {name} are on different nodes"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(home)
}

/// Every node's networks `request` selects, nodes in name order.
async fn gather(state: &AppState, request: &VolumeListRequest) -> ApiResult<Vec<Located>> {
    let answers = state
        .roster()
        .await?
        .gather::<api::NetworkList>(request)
        .await?;
    Ok(flatten(answers))
}

/// Every node's networks (unfiltered), nodes in name order.
pub async fn all_networks(state: &AppState) -> ApiResult<Vec<Located>> {
    gather(state, &VolumeListRequest::default()).await
}

/// Where a container create must run because of the user networks it names: the network that
/// decided and its node. `None` when it names only the node's own modes (bridge, host, ...).
pub async fn home_of(state: &AppState, body: &CreateBody) -> ApiResult<Option<(String, String)>> {
    let names = user_networks(body);
    if names.is_empty() {
        return Ok(None);
    }
    home(&names, &all_networks(state).await?)
}

/// Every node's networks matching `filters`, as `docker network ls` shows them.
pub async fn list(
    state: &AppState,
    filters: BTreeMap<String, Vec<String>>,
) -> ApiResult<Vec<Value>> {
    let request = VolumeListRequest { filters };
    let answers = state
        .roster()
        .await?
        .gather::<api::NetworkList>(&request)
        .await?;
    Ok(merge_lists(answers))
}

/// The network `term` means, on whichever node holds it; a miss worded for `wording`'s route.
pub async fn locate(state: &AppState, term: &str, wording: Wording) -> ApiResult<Located> {
    let networks = all_networks(state).await?;
    find(term, &networks)
        .cloned()
        .map_err(|miss| miss_error(term, miss, wording))
}

/// Fails with dockerd's conflict when a network named `name` exists on any node.
pub async fn ensure_name_free(state: &AppState, name: &str) -> ApiResult<()> {
    let lookup = VolumeListRequest {
        filters: BTreeMap::from([("name".to_string(), vec![name.to_string()])]),
    };
    if gather(state, &lookup)
        .await?
        .iter()
        .any(|n| n.name() == name)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("network with name {name} already exists"),
        ));
    }
    Ok(())
}

/// The network `term` means for a container on `container_node`: a predefined name means that
/// node's own network.
pub fn network_for<'a>(
    term: &str,
    container_node: &str,
    networks: &'a [Located],
) -> Result<&'a Located, Miss> {
    if is_predefined(term) {
        return networks
            .iter()
            .find(|n| n.node == container_node && n.name() == term)
            .ok_or(Miss::NotFound);
    }
    find(term, networks)
}

/// The container (`container` as the client named it) and the ID of the network `term` a
/// connect or disconnect is about, checked to share a node.
///
/// Wharf-specific: a network is local to its node, so a container can join only networks of
/// the node it runs on; naming a network of another node is refused with
/// `container X and network Y are on different nodes` (400).
pub async fn pair(
    state: &AppState,
    term: &str,
    container: &str,
) -> ApiResult<(ResolveMatch, String)> {
    // dockerd looks the container up first.
    if container.is_empty() {
        return Err(ApiError::bad_request("invalid name or ID supplied: \"\""));
    }
    let found = resolve::locate(state, container).await?;
    let networks = all_networks(state).await?;
    let network = network_for(term, &found.node, &networks)
        .map_err(|m| miss_error(term, m, Wording::Daemon))?;
    if network.node != found.node {
        return Err(ApiError::bad_request(format!(
            "container {container} and network {term} are on different nodes"
        )));
    }
    let id = network.id().to_string();
    Ok((found, id))
}

/// Every node prunes the networks the filters select; their reports as one.
pub async fn prune(state: &AppState, filters: BTreeMap<String, Vec<String>>) -> ApiResult<Value> {
    let request = VolumeListRequest { filters };
    let answers = state
        .roster()
        .await?
        .gather::<api::NetworkPrune>(&request)
        .await?;
    Ok(merge_prunes(answers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A node's answer: its predefined networks (IDs `<node>-bridge`, ...) and `user` networks
    /// given as `(name, id)`.
    fn answer(node: &str, user: &[(&str, &str)]) -> NetworkListResponse {
        let predefined = PREDEFINED
            .iter()
            .map(|name| json!({"Name": name, "Id": format!("{node}-{name}"), "Containers": {}}));
        let user = user
            .iter()
            .map(|(name, id)| json!({"Name": name, "Id": id, "Containers": {}}));
        NetworkListResponse {
            node: node.into(),
            networks: predefined.chain(user).collect(),
        }
    }

    fn names(list: &[Value]) -> Vec<&str> {
        list.iter().map(|n| n["Name"].as_str().unwrap()).collect()
    }

    #[test]
    fn the_list_shows_each_predefined_network_once_and_every_user_network() {
        let merged = merge_lists(vec![
            answer("n2", &[("back", "b2")]),
            answer("n1", &[("front", "f1")]),
        ]);
        assert_eq!(names(&merged), ["bridge", "host", "none", "front", "back"]);
        // The first node by name speaks for the predefined ones.
        assert_eq!(merged[0]["Id"], "n1-bridge");
        assert!(merge_lists(vec![]).is_empty());
    }

    #[test]
    fn a_full_id_wins_over_a_name_and_a_name_over_a_prefix() {
        let nets = flatten(vec![answer(
            "n1",
            &[("abc", "fff111"), ("x", "abc"), ("y", "abcdef")],
        )]);
        assert_eq!(find("abc", &nets).unwrap().name(), "x");
        let nets = flatten(vec![answer("n1", &[("abc", "fff111"), ("y", "abcdef")])]);
        assert_eq!(find("abc", &nets).unwrap().id(), "fff111");
        assert_eq!(find("abcd", &nets).unwrap().name(), "y");
    }

    #[test]
    fn a_predefined_name_is_the_first_nodes_network() {
        let nets = flatten(vec![answer("n2", &[]), answer("n1", &[])]);
        let found = find("bridge", &nets).unwrap();
        assert_eq!((found.node.as_str(), found.id()), ("n1", "n1-bridge"));
        // Its ID still reaches another node's.
        assert_eq!(find("n2-host", &nets).unwrap().node, "n2");
    }

    #[test]
    fn a_unique_prefix_resolves_across_nodes_and_an_ambiguous_one_is_refused() {
        let nets = flatten(vec![
            answer("n1", &[("front", "aa11")]),
            answer("n2", &[("back", "aa22")]),
        ]);
        let found = find("aa2", &nets).unwrap();
        assert_eq!((found.node.as_str(), found.name()), ("n2", "back"));
        assert_eq!(find("aa", &nets), Err(Miss::AmbiguousPrefix(2)));
        assert_eq!(find("zz", &nets), Err(Miss::NotFound));
        assert_eq!(find("", &nets), Err(Miss::NotFound));
        // One user name on two nodes (a race of two creates) is ambiguous, as in dockerd.
        let twice = flatten(vec![
            answer("n1", &[("dup", "d1")]),
            answer("n2", &[("dup", "d2")]),
        ]);
        assert_eq!(find("dup", &twice), Err(Miss::AmbiguousName(2)));
    }

    #[test]
    fn misses_read_as_dockerds_for_each_route() {
        let err = miss_error("web", Miss::NotFound, Wording::Inspect);
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        assert_eq!(err.message, "network web not found");
        let err = miss_error("a", Miss::AmbiguousPrefix(2), Wording::Inspect);
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "2 matches found based on ID prefix: network a is ambiguous"
        );
        assert_eq!(
            miss_error("a", Miss::AmbiguousName(3), Wording::Unique).message,
            "network a is ambiguous (3 matches found based on name)"
        );
        assert_eq!(
            miss_error("a", Miss::AmbiguousName(2), Wording::Daemon).message,
            "network a is ambiguous (2 matches found on name)"
        );
        assert_eq!(
            miss_error("a", Miss::AmbiguousPrefix(2), Wording::Daemon).message,
            "network a is ambiguous (2 matches found based on ID prefix)"
        );
    }

    #[test]
    fn a_connect_by_predefined_name_means_the_containers_node() {
        let nets = flatten(vec![answer("n1", &[]), answer("n2", &[("back", "b2")])]);
        assert_eq!(
            network_for("bridge", "n2", &nets).unwrap().id(),
            "n2-bridge"
        );
        assert_eq!(network_for("back", "n1", &nets).unwrap().node, "n2");
        assert_eq!(network_for("bridge", "n9", &nets), Err(Miss::NotFound));
    }

    #[test]
    fn prunes_merge_names_and_nothing_pruned_is_null() {
        let merged = merge_prunes(vec![
            NetworkPruneResponse {
                networks_deleted: vec!["b".into()],
            },
            NetworkPruneResponse {
                networks_deleted: vec!["a".into()],
            },
        ]);
        assert_eq!(merged, json!({"NetworksDeleted": ["a", "b"]}));
        assert_eq!(
            merge_prunes(vec![NetworkPruneResponse::default()]),
            json!({"NetworksDeleted": null})
        );
        assert_eq!(merge_prunes(vec![]), json!({"NetworksDeleted": null}));
    }

    fn create_body(json: Value) -> CreateBody {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn only_user_networks_of_a_create_decide_its_node() {
        let body = create_body(json!({
            "Image": "busybox",
            "HostConfig": {"NetworkMode": "front"},
            "NetworkingConfig": {"EndpointsConfig": {
                "front": {}, "back": {"Aliases": ["b"]}, "bridge": {}
            }},
        }));
        assert_eq!(user_networks(&body), ["front", "back"]);
        for mode in ["", "default", "bridge", "host", "none", "container:web"] {
            let body = create_body(json!({"Image": "x", "HostConfig": {"NetworkMode": mode}}));
            assert!(user_networks(&body).is_empty(), "{mode}");
        }
    }

    #[test]
    fn a_creates_networks_must_share_one_node() {
        let nets = flatten(vec![
            answer("n1", &[("front", "f1")]),
            answer("n2", &[("back", "b2"), ("side", "s2")]),
        ]);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(home(&[], &nets).unwrap(), None);
        assert_eq!(
            home(&names(&["back", "s2"]), &nets).unwrap(),
            Some(("back".to_string(), "n2".to_string()))
        );
        let err = home(&names(&["front", "back"]), &nets).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "networks front and back are on different nodes"
        );
        let err = home(&names(&["nope"]), &nets).unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        assert_eq!(err.message, "network nope not found");
    }
}

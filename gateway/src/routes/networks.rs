//! `/networks/...`: networks live on runtime nodes. Listing and pruning ask every node and merge;
//! a network named in a path is found in every node's list the way dockerd finds one (full ID,
//! then name, then unique ID prefix), and the request goes to the node that holds it.
//!
//! Every node reports its own predefined `bridge`, `host` and `none` networks (with IDs of its
//! own). The gateway shows each predefined name once, as the first node (by name) reports it; a
//! container joining a predefined network by name joins its own node's.
//!
//! A network is local to its node and a container joins only networks of the node it runs on:
//! `docker run --network NAME` is placed on the node holding `NAME` (see [`home_of`]), and
//! connecting a container to a network of another node is refused (see [`connect`]).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use wharf_bus::container::{
    CreateBody, NetworkConnectRequest, NetworkCreateRequest, NetworkListResponse,
    NetworkPruneResponse, NetworkRef, ResolveMatch, VolumeListRequest,
};

use super::containers::json_body::read_json;
use super::containers::resolve;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;
use wharf_bus::api;

/// Creating may set up a bridge and its firewall rules.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Removing tears the bridge down again.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connecting a running container plumbs an interface into it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Every node's networks (unfiltered), nodes in name order.
async fn all_networks(state: &AppState) -> ApiResult<Vec<Located>> {
    let answers: Vec<NetworkListResponse> = state
        .roster()
        .await?
        .gather::<wharf_bus::api::NetworkList>(&VolumeListRequest::default())
        .await?;
    Ok(flatten(answers))
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

pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Vec<Value>>> {
    let q = Query::parse(raw.as_deref());
    let request = VolumeListRequest {
        filters: q.filters()?,
    };
    let answers: Vec<NetworkListResponse> = state
        .roster()
        .await?
        .gather::<wharf_bus::api::NetworkList>(&request)
        .await?;
    Ok(axum::Json(merge_lists(answers)))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub async fn inspect(
    State(state): State<AppState>,
    Path(term): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let q = Query::parse(raw.as_deref());
    // Only checked: `verbose` adds swarm services, which Wharf has none of.
    if let Some(v) = q.get("verbose").filter(|v| !v.is_empty()) {
        if parse_bool(v).is_none() {
            return Err(ApiError::bad_request(format!(
                "invalid value for verbose: {v}: strconv.ParseBool: parsing \"{v}\": invalid syntax"
            )));
        }
    }
    // Every Wharf network is local: another scope finds nothing.
    if !matches!(q.get("scope").unwrap_or(""), "" | "local") {
        return Err(no_such_network(&term));
    }
    let networks = all_networks(&state).await?;
    match find(&term, &networks) {
        Ok(found) => Ok(axum::Json(found.network.clone())),
        Err(miss) => Err(miss_error(&term, miss, Wording::Inspect)),
    }
}

/// A create body as dockerd reads it: no body or no `Name` is an empty name.
fn parse_create_body(body: &[u8]) -> ApiResult<NetworkCreateRequest> {
    let mut value: Value = read_json(body)?;
    if value.is_null() {
        return Ok(NetworkCreateRequest::default());
    }
    if let Some(object) = value.as_object_mut() {
        object
            .entry("Name")
            .or_insert_with(|| Value::String(String::new()));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

pub async fn create(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let request = parse_create_body(&body)?;
    let name = request.name.clone();
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("invalid name: name is empty"));
    }
    // dockerd's own predefined names, `default` included (the trailing space is dockerd's).
    if is_predefined(&name) || name == "default" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("operation is not permitted on predefined {name} network "),
        ));
    }
    let lookup = VolumeListRequest {
        filters: BTreeMap::from([("name".to_string(), vec![name.clone()])]),
    };
    let answers: Vec<NetworkListResponse> = state
        .roster()
        .await?
        .gather::<wharf_bus::api::NetworkList>(&lookup)
        .await?;
    if flatten(answers).iter().any(|n| n.name() == name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("network with name {name} already exists"),
        ));
    }
    let nodes = resolve::nodes(&state).await?;
    let node = resolve::place(&nodes, &request.labels)?.name.clone();
    let created: Value = state
        .node(&node)
        .call::<api::NetworkCreate>(&request, CREATE_TIMEOUT)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    Path(term): Path<String>,
) -> ApiResult<StatusCode> {
    let networks = all_networks(&state).await?;
    let found = find(&term, &networks).map_err(|m| miss_error(&term, m, Wording::Unique))?;
    // A predefined network goes to its node too, which refuses it (403) as dockerd does.
    let request = NetworkRef {
        id: found.id().to_string(),
    };
    state
        .node(&found.node)
        .call::<api::NetworkRemove>(&request, REMOVE_TIMEOUT)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of a connect (`Container`, `EndpointConfig`) or a disconnect (`Container`, `Force`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConnectBody {
    #[serde(default)]
    container: String,
    #[serde(default)]
    endpoint_config: Option<EndpointConfig>,
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointConfig {
    #[serde(default)]
    aliases: Option<Vec<String>>,
}

/// The network `term` means for a container on `container_node`: a predefined name means that
/// node's own network.
fn network_for<'a>(
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

/// The container and the network a connect or disconnect is about, checked to share a node.
///
/// Wharf-specific: a network is local to its node, so a container can join only networks of
/// the node it runs on; naming a network of another node is refused with
/// `container X and network Y are on different nodes` (400).
async fn pair(
    state: &AppState,
    term: &str,
    body: &ConnectBody,
) -> ApiResult<(ResolveMatch, String)> {
    // dockerd looks the container up first.
    if body.container.is_empty() {
        return Err(ApiError::bad_request("invalid name or ID supplied: \"\""));
    }
    let container = resolve::locate(state, &body.container).await?;
    let networks = all_networks(state).await?;
    let network = network_for(term, &container.node, &networks)
        .map_err(|m| miss_error(term, m, Wording::Daemon))?;
    if network.node != container.node {
        return Err(ApiError::bad_request(format!(
            "container {} and network {term} are on different nodes",
            body.container
        )));
    }
    let id = network.id().to_string();
    Ok((container, id))
}

pub async fn connect(
    State(state): State<AppState>,
    Path(term): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let body: ConnectBody = read_json(&body)?;
    let (container, network) = pair(&state, &term, &body).await?;
    let request = NetworkConnectRequest {
        network,
        container: container.id.clone(),
        aliases: body
            .endpoint_config
            .and_then(|e| e.aliases)
            .unwrap_or_default(),
        force: false,
    };
    state
        .node(&container.node)
        .call::<api::NetworkConnect>(&request, CONNECT_TIMEOUT)
        .await?;
    Ok(StatusCode::OK)
}

pub async fn disconnect(
    State(state): State<AppState>,
    Path(term): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let body: ConnectBody = read_json(&body)?;
    let (container, network) = pair(&state, &term, &body).await?;
    let request = NetworkConnectRequest {
        network,
        container: container.id.clone(),
        aliases: Vec::new(),
        force: body.force,
    };
    state
        .node(&container.node)
        .call::<api::NetworkDisconnect>(&request, CONNECT_TIMEOUT)
        .await?;
    Ok(StatusCode::OK)
}

pub async fn prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let q = Query::parse(raw.as_deref());
    let request = VolumeListRequest {
        filters: q.filters()?,
    };
    let answers: Vec<NetworkPruneResponse> = state
        .roster()
        .await?
        .gather::<wharf_bus::api::NetworkPrune>(&request)
        .await?;
    Ok(axum::Json(merge_prunes(answers)))
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

    #[test]
    fn create_bodies_without_a_name_have_an_empty_one() {
        assert!(parse_create_body(b"").unwrap().name.is_empty());
        assert!(parse_create_body(br#"{"Driver":"bridge"}"#)
            .unwrap()
            .name
            .is_empty());
        let r =
            parse_create_body(br#"{"Name":"front","Labels":{"wharf.node":"n2"},"Options":null}"#)
                .unwrap();
        assert_eq!(
            (r.name.as_str(), r.labels["wharf.node"].as_str()),
            ("front", "n2")
        );
        assert!(parse_create_body(b"{").is_err());
    }

    #[test]
    fn verbose_is_a_go_boolean() {
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}

/// The network routes, and a container create placed by its network, against a real
/// nats-server and two stand-in runtime nodes answering the contract (broadcasts on plain
/// subscriptions, like the runtime, so both nodes answer).
#[cfg(test)]
mod bus_tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use futures::StreamExt;
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use wharf_bus::container::*;
    use wharf_bus::testkit::NatsServer;
    use wharf_bus::BusError;

    /// What the nodes were asked to do: `<node> <op> <payload>`.
    type Calls = Arc<Mutex<Vec<String>>>;

    /// A node with its predefined networks (IDs `<node>-bridge`, ...), one user network
    /// `(name, id)` and one container `(name, id)`.
    async fn fake_node(
        client: &async_nats::Client,
        name: &'static str,
        running: u64,
        network: (&'static str, &'static str),
        container: (&'static str, &'static str),
        calls: Calls,
    ) {
        let mut all = client.subscribe(all_subject(">")).await.unwrap();
        let mut own = client.subscribe(node_subject(name, ">")).await.unwrap();
        let info = NodeInfo {
            name: name.into(),
            running,
            containers: running,
            ..Default::default()
        };
        let networks: Vec<Value> = ["bridge", "host", "none"]
            .iter()
            .map(|n| json!({"Name": n, "Id": format!("{name}-{n}"), "Containers": {}}))
            .chain(std::iter::once(
                json!({"Name": network.0, "Id": network.1, "Containers": {}}),
            ))
            .collect();
        let bus = client.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    Some(m) = all.next() => m,
                    Some(m) = own.next() => m,
                    else => break,
                };
                let subject = message.subject.to_string();
                let operation = subject
                    .rsplit_once('.')
                    .map(|(rest, last)| {
                        let kind = rest.rsplit('.').next().unwrap_or("");
                        format!("{kind}.{last}")
                    })
                    .unwrap_or_default();
                let payload = String::from_utf8_lossy(&message.payload).to_string();
                if operation != op::PING {
                    calls
                        .lock()
                        .unwrap()
                        .push(format!("{name} {operation} {payload}"));
                }
                let answer: Result<Value, BusError> = match operation.as_str() {
                    op::PING => Ok(serde_json::to_value(&info).unwrap()),
                    op::RESOLVE => {
                        let r: ResolveRequest = serde_json::from_str(&payload).unwrap();
                        let q = r.name_or_id;
                        let how = if q == container.1 {
                            Some(MatchKind::Id)
                        } else if q == container.0 {
                            Some(MatchKind::Name)
                        } else if container.1.starts_with(&q) {
                            Some(MatchKind::Prefix)
                        } else {
                            None
                        };
                        let matches = how
                            .map(|how| ResolveMatch {
                                id: container.1.into(),
                                name: format!("/{}", container.0),
                                node: name.into(),
                                how,
                            })
                            .into_iter()
                            .collect();
                        Ok(serde_json::to_value(ResolveResponse {
                            node: name.into(),
                            matches,
                        })
                        .unwrap())
                    }
                    op::NETWORK_LIST => {
                        let r: VolumeListRequest = serde_json::from_str(&payload).unwrap();
                        let wanted = r.filters.get("name").cloned().unwrap_or_default();
                        let networks = networks
                            .iter()
                            .filter(|n| {
                                let n = n["Name"].as_str().unwrap();
                                wanted.iter().all(|w| n.contains(w.as_str()))
                            })
                            .cloned()
                            .collect();
                        Ok(serde_json::to_value(NetworkListResponse {
                            node: name.into(),
                            networks,
                        })
                        .unwrap())
                    }
                    op::NETWORK_PRUNE => Ok(serde_json::to_value(NetworkPruneResponse {
                        networks_deleted: vec![format!("gone-{name}")],
                    })
                    .unwrap()),
                    op::NETWORK_CREATE => {
                        let r: NetworkCreateRequest = serde_json::from_str(&payload).unwrap();
                        Ok(json!({"Id": format!("{name}-{}", r.name), "Warning": ""}))
                    }
                    op::NETWORK_REMOVE => {
                        let r: NetworkRef = serde_json::from_str(&payload).unwrap();
                        match r.id.strip_prefix(&format!("{name}-")) {
                            Some(predefined) => Err(BusError::forbidden(format!(
                                "{predefined} is a pre-defined network and cannot be removed"
                            ))),
                            None => Ok(json!({})),
                        }
                    }
                    op::NETWORK_CONNECT | op::NETWORK_DISCONNECT => Ok(json!({})),
                    op::CREATE => Ok(json!({"Id": format!("{name}-new"), "Warnings": []})),
                    _ => continue,
                };
                let Some(reply) = message.reply.clone() else {
                    continue;
                };
                match answer {
                    Ok(v) => bus
                        .publish(reply, Bytes::from(serde_json::to_vec(&v).unwrap()))
                        .await
                        .unwrap(),
                    Err(err) => {
                        bus.publish_with_headers(reply, err.to_headers(), Bytes::new())
                            .await
                            .unwrap();
                    }
                }
            }
        });
    }

    async fn gateway(client: async_nats::Client) -> String {
        let listener = crate::listen::bind("tcp://127.0.0.1:0", None, None)
            .await
            .unwrap();
        let addr = listener.describe().trim_start_matches("tcp://").to_string();
        let state = crate::state::AppState::new(client, crate::Options::default()).await;
        let app = super::super::router(state);
        tokio::spawn(crate::listen::serve(
            listener,
            app,
            tokio_util::sync::CancellationToken::new(),
            crate::limits::Limits::default(),
        ));
        addr
    }

    /// One HTTP/1.1 exchange; returns the status line and the body.
    async fn http(addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.lines().next().unwrap().to_string();
        (status, body.to_string())
    }

    fn json_of(body: &str) -> Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// The calls of `operation` made since the last look, as `<node> <payload>`.
    fn taken(calls: &Calls, operation: &str) -> Vec<String> {
        let mut calls = calls.lock().unwrap();
        let wanted = calls
            .iter()
            .filter_map(|c| {
                let (node, rest) = c.split_once(' ').unwrap();
                let (o, payload) = rest.split_once(' ').unwrap();
                (o == operation).then(|| format!("{node} {payload}"))
            })
            .collect();
        calls.clear();
        wanted
    }

    #[tokio::test]
    async fn network_routes_follow_the_contract_end_to_end() {
        let nats = NatsServer::start();
        let client = nats.client().await;
        let calls = Calls::default();
        let web = ("web", "c1000000000000000000000000000001");
        let db = ("db", "c2000000000000000000000000000002");
        fake_node(&client, "n1", 0, ("front", "f1aaaa"), web, calls.clone()).await;
        fake_node(&client, "n2", 3, ("back", "b2bbbb"), db, calls.clone()).await;
        let addr = gateway(client.clone()).await;

        // The list: predefined names once (the first node's), every user network.
        let (status, body) = http(&addr, "GET", "/v1.45/networks", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let list = json_of(&body);
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["bridge", "host", "none", "front", "back"]);
        assert_eq!(list[0]["Id"], "n1-bridge");

        // Inspect by name, by ID prefix; a missing or ambiguous term.
        let (status, body) = http(&addr, "GET", "/networks/back", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(json_of(&body)["Id"], "b2bbbb");
        let (_, body) = http(&addr, "GET", "/networks/f1a?verbose=true", "").await;
        assert_eq!(json_of(&body)["Name"], "front");
        let (status, body) = http(&addr, "GET", "/networks/nope", "").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert_eq!(json_of(&body), json!({"message": "network nope not found"}));
        let (status, body) = http(&addr, "GET", "/networks/n", "").await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert_eq!(
            json_of(&body)["message"],
            "6 matches found based on ID prefix: network n is ambiguous"
        );
        let (status, _) = http(&addr, "GET", "/networks/back?scope=swarm", "").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");

        // Create: names are checked on every node, then the network is placed.
        let (status, body) = http(&addr, "POST", "/networks/create", r#"{"Name":"back"}"#).await;
        assert_eq!(status, "HTTP/1.1 409 Conflict");
        assert_eq!(
            json_of(&body)["message"],
            "network with name back already exists"
        );
        let (status, body) = http(&addr, "POST", "/networks/create", r#"{"Driver":"x"}"#).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert_eq!(json_of(&body)["message"], "invalid name: name is empty");
        let (status, body) = http(&addr, "POST", "/networks/create", r#"{"Name":"host"}"#).await;
        assert_eq!(status, "HTTP/1.1 403 Forbidden");
        assert_eq!(
            json_of(&body)["message"],
            "operation is not permitted on predefined host network "
        );
        let (status, body) = http(
            &addr,
            "POST",
            "/networks/create",
            r#"{"Name":"mid","Labels":{"wharf.node":"n2"}}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 201 Created");
        assert_eq!(json_of(&body), json!({"Id": "n2-mid", "Warning": ""}));
        let (status, body) = http(&addr, "POST", "/networks/create", r#"{"Name":"mid2"}"#).await;
        assert_eq!(status, "HTTP/1.1 201 Created");
        assert_eq!(json_of(&body)["Id"], "n1-mid2");
        taken(&calls, "");

        // Remove goes to the network's node with its full ID; predefined ones are refused there.
        let (status, _) = http(&addr, "DELETE", "/networks/b2", "").await;
        assert_eq!(status, "HTTP/1.1 204 No Content");
        assert_eq!(taken(&calls, op::NETWORK_REMOVE), [r#"n2 {"id":"b2bbbb"}"#]);
        let (status, body) = http(&addr, "DELETE", "/networks/bridge", "").await;
        assert_eq!(status, "HTTP/1.1 403 Forbidden");
        assert_eq!(
            json_of(&body)["message"],
            "bridge is a pre-defined network and cannot be removed"
        );
        let (status, _) = http(&addr, "DELETE", "/networks/nope", "").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");

        // Connect and disconnect: full IDs to the node holding both.
        let (status, body) = http(
            &addr,
            "POST",
            "/networks/front/connect",
            r#"{"Container":"web","EndpointConfig":{"Aliases":["w"]}}"#,
        )
        .await;
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", ""));
        assert_eq!(
            taken(&calls, op::NETWORK_CONNECT),
            [format!(
                r#"n1 {{"network":"f1aaaa","container":"{}","aliases":["w"],"force":false}}"#,
                web.1
            )]
        );
        let (status, _) = http(
            &addr,
            "POST",
            "/networks/bridge/connect",
            r#"{"Container":"c2"}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let connected = taken(&calls, op::NETWORK_CONNECT);
        assert_eq!(connected.len(), 1);
        assert!(
            connected[0].starts_with(r#"n2 {"network":"n2-bridge""#),
            "{connected:?}"
        );
        let (status, body) = http(
            &addr,
            "POST",
            "/networks/back/connect",
            r#"{"Container":"web"}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert_eq!(
            json_of(&body)["message"],
            "container web and network back are on different nodes"
        );
        let (status, body) = http(
            &addr,
            "POST",
            "/networks/front/connect",
            r#"{"Container":"ghost"}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert_eq!(json_of(&body)["message"], "No such container: ghost");
        let (status, body) = http(&addr, "POST", "/networks/front/connect", "{}").await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert_eq!(
            json_of(&body)["message"],
            "invalid name or ID supplied: \"\""
        );
        let (status, body) = http(
            &addr,
            "POST",
            "/networks/nope/connect",
            r#"{"Container":"web"}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert_eq!(json_of(&body)["message"], "network nope not found");
        taken(&calls, "");
        let (status, _) = http(
            &addr,
            "POST",
            "/networks/back/disconnect",
            r#"{"Container":"db","Force":true}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            taken(&calls, op::NETWORK_DISCONNECT),
            [format!(
                r#"n2 {{"network":"b2bbbb","container":"{}","aliases":[],"force":true}}"#,
                db.1
            )]
        );

        let (status, body) = http(&addr, "POST", "/networks/prune", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            json_of(&body),
            json!({"NetworksDeleted": ["gone-n1", "gone-n2"]})
        );

        // A container joining a user network runs on that network's node, the name unchanged.
        let (status, body) = http(
            &addr,
            "POST",
            "/containers/create",
            r#"{"Image":"busybox","HostConfig":{"NetworkMode":"back"}}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 201 Created");
        assert_eq!(json_of(&body)["Id"], "n2-new");
        let created = taken(&calls, op::CREATE);
        assert_eq!(created.len(), 1);
        assert!(
            created[0].starts_with("n2 ") && created[0].contains(r#""NetworkMode":"back""#),
            "{created:?}"
        );
        let (status, body) = http(
            &addr,
            "POST",
            "/containers/create",
            r#"{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"front":{}}}}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 201 Created");
        assert_eq!(json_of(&body)["Id"], "n1-new");
        let (status, body) = http(
            &addr,
            "POST",
            "/containers/create",
            r#"{"Image":"busybox","Labels":{"wharf.node":"n1"},"HostConfig":{"NetworkMode":"back"}}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert_eq!(
            json_of(&body)["message"],
            "label wharf.node=n1 asks for node n1, but network back is on node n2"
        );
        let (status, body) = http(
            &addr,
            "POST",
            "/containers/create",
            r#"{"Image":"busybox","HostConfig":{"NetworkMode":"nope"}}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert_eq!(json_of(&body)["message"], "network nope not found");
        // The node's own modes leave placement to the usual rule (fewest running: n1).
        taken(&calls, "");
        let (status, body) = http(
            &addr,
            "POST",
            "/containers/create",
            r#"{"Image":"busybox","HostConfig":{"NetworkMode":"bridge"}}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 201 Created");
        assert_eq!(json_of(&body)["Id"], "n1-new");
        assert!(taken(&calls, op::NETWORK_LIST).is_empty());
    }
}

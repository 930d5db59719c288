//! `/networks/...`: networks live on runtime nodes. Listing and pruning ask every node and merge,
//! a network named in a path is found across the nodes, a connect pairs a container with a
//! network of its own node: all in [`crate::cluster::networks`]. These handlers read dockerd's
//! requests and call the node that holds the network.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use wharf_bus::api;
use wharf_bus::container::{
    EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkRef,
};

use crate::cluster::networks::{self, is_predefined, no_such_network, Wording};
use crate::cluster::placement;
use crate::error::{ApiError, ApiResult};
use crate::json_body::read_json;
use crate::query::Query;
use crate::state::AppState;

/// Creating may set up a bridge and its firewall rules.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Removing tears the bridge down again.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connecting a running container plumbs an interface into it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Vec<Value>>> {
    let q = Query::parse(raw.as_deref());
    Ok(axum::Json(networks::list(&state, q.filters()?).await?))
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
    let found = networks::locate(&state, &term, Wording::Inspect).await?;
    Ok(axum::Json(found.network))
}

/// A create body as dockerd reads it: no body or no `Name` is an empty name.
fn parse_create_body(body: &[u8]) -> ApiResult<NetworkCreateRequest> {
    read_json(body)
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
    networks::ensure_name_free(&state, &name).await?;
    let node = placement::by_labels(&state, &request.labels).await?;
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
    let found = networks::locate(&state, &term, Wording::Unique).await?;
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
    endpoint_config: Option<EndpointSettings>,
    #[serde(default)]
    force: bool,
}

pub async fn connect(
    State(state): State<AppState>,
    Path(term): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let body: ConnectBody = read_json(&body)?;
    let (container, network) = networks::pair(&state, &term, &body.container).await?;
    let request = NetworkConnectRequest {
        network,
        container: container.id.clone(),
        endpoint: body.endpoint_config.unwrap_or_default(),
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
    let (container, network) = networks::pair(&state, &term, &body.container).await?;
    let request = NetworkConnectRequest {
        network,
        container: container.id.clone(),
        endpoint: Default::default(),
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
    Ok(axum::Json(networks::prune(&state, q.filters()?).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let r = parse_create_body(br#"{"Name":null,"Driver":null,"Internal":null,"IPAM":null}"#)
            .unwrap();
        assert!(r.name.is_empty() && r.driver.is_empty() && r.ipam.is_none());
        assert_eq!(
            parse_create_body(br#"{"Name":"n","Internal":"yes"}"#)
                .unwrap_err()
                .message,
            "invalid JSON: json: cannot unmarshal string into Go struct field NetworkCreateRequest.Internal of type bool"
        );
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

    use serde_json::{json, Value};
    use wharf_bus::container::*;
    use wharf_bus::testkit::NatsServer;
    use wharf_bus::BusError;

    use crate::testutil::{gateway, http, json_of};

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
        crate::testutil::fake_node(client, info, move |operation, payload| {
            let payload = String::from_utf8_lossy(payload).to_string();
            calls
                .lock()
                .unwrap()
                .push(format!("{name} {operation} {payload}"));
            let answer: Result<Value, BusError> = match operation {
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
                _ => return None,
            };
            Some(answer)
        })
        .await;
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
                r#"n1 {{"network":"f1aaaa","container":"{}","endpoint":{{"Aliases":["w"],"Links":[],"IPAMConfig":null,"MacAddress":"","GwPriority":0}},"force":false}}"#,
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
                r#"n2 {{"network":"b2bbbb","container":"{}","endpoint":{{"Aliases":[],"Links":[],"IPAMConfig":null,"MacAddress":"","GwPriority":0}},"force":true}}"#,
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

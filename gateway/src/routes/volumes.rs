//! `/volumes/...`: volumes live on runtime nodes. Listing and pruning ask every node and merge;
//! a volume named in a path is found by listing with a `name` filter (a substring match on the
//! nodes) and keeping the exact name; creating goes to the node that already has the name, else
//! where a container with the same labels would go.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use wharf_bus::container::{
    VolumeCreateRequest, VolumeListRequest, VolumeListResponse, VolumePruneResponse,
    VolumeRemoveRequest,
};

use super::containers::resolve;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;
use wharf_bus::api;

/// Removing a volume deletes its data, which may be large.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(120);
/// Creating may run a driver's setup (a mount, a directory tree).
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

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

/// dockerd's reading of a volume create body (`httputils.ReadJSON`): an empty body is an
/// anonymous volume; otherwise JSON only, one document.
pub fn parse_create_body(body: &[u8]) -> ApiResult<VolumeCreateRequest> {
    super::containers::json_body::read_json(body)
}

/// The volume named exactly `name`, on whichever node has it.
async fn locate(state: &AppState, name: &str) -> ApiResult<Option<Located>> {
    if name.is_empty() {
        return Ok(None);
    }
    let request = VolumeListRequest {
        filters: BTreeMap::from([("name".to_string(), vec![name.to_string()])]),
    };
    let answers: Vec<VolumeListResponse> = state
        .roster()
        .await?
        .gather::<wharf_bus::api::VolumeList>(&request)
        .await?;
    Ok(exact(name, answers))
}

pub async fn create(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let request = parse_create_body(&body)?;
    // dockerd answers a create of an existing name with that volume: ask its node.
    let node = match locate(&state, &request.name).await? {
        Some(found) => found.node,
        None => {
            let nodes = resolve::nodes(&state).await?;
            resolve::place(&nodes, &request.labels)?.name.clone()
        }
    };
    let created: Value = state
        .node(&node)
        .call::<api::VolumeCreate>(&request, CREATE_TIMEOUT)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let q = Query::parse(raw.as_deref());
    let request = VolumeListRequest {
        filters: q.filters()?,
    };
    let answers: Vec<VolumeListResponse> = state
        .roster()
        .await?
        .gather::<wharf_bus::api::VolumeList>(&request)
        .await?;
    Ok(axum::Json(serde_json::json!({
        "Volumes": merge_lists(answers),
        "Warnings": [],
    })))
}

pub async fn inspect(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    match locate(&state, &name).await? {
        Some(found) => Ok(axum::Json(found.volume)),
        None => Err(no_such_volume(&name)),
    }
}

pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let force = Query::parse(raw.as_deref()).flag("force");
    let Some(found) = locate(&state, &name).await? else {
        // dockerd's purge-on-error: a forced removal of nothing succeeds.
        return if force {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(no_such_volume(&name))
        };
    };
    let request = VolumeRemoveRequest { name, force };
    state
        .node(&found.node)
        .call::<api::VolumeRemove>(&request, REMOVE_TIMEOUT)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<VolumePruneResponse>> {
    let q = Query::parse(raw.as_deref());
    let request = VolumeListRequest {
        filters: q.filters()?,
    };
    let answers: Vec<VolumePruneResponse> = state
        .roster()
        .await?
        .gather::<wharf_bus::api::VolumePrune>(&request)
        .await?;
    Ok(axum::Json(merge_prunes(answers)))
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn create_bodies_are_read_like_dockerd() {
        let anonymous = parse_create_body(b"").unwrap();
        assert!(anonymous.name.is_empty());
        let r = parse_create_body(
            br#"{"Name":"v","Driver":"local","DriverOpts":null,"Labels":{"a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(r.name, "v");
        assert_eq!(r.labels["a"], "b");
        assert!(r.driver_opts.is_empty());
        assert!(parse_create_body(b"{").is_err());
        assert_eq!(
            parse_create_body(b"{} {}").unwrap_err().message,
            "unexpected content after JSON"
        );
    }
}

/// The volume routes against a real nats-server and two stand-in runtime nodes answering the
/// contract (broadcasts on plain subscriptions, like the runtime, so both nodes answer).
#[cfg(test)]
mod bus_tests {
    use bytes::Bytes;
    use futures::StreamExt;
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use wharf_bus::container::*;
    use wharf_bus::testkit::NatsServer;
    use wharf_bus::BusError;

    /// A node holding `volumes`; `busy` is in use by a container.
    async fn fake_node(
        client: &async_nats::Client,
        name: &'static str,
        running: u64,
        volumes: &'static [&'static str],
    ) {
        let mut all = client.subscribe(all_subject(">")).await.unwrap();
        let mut own = client.subscribe(node_subject(name, ">")).await.unwrap();
        let info = NodeInfo {
            name: name.into(),
            running,
            containers: running,
            ..Default::default()
        };
        let vol = move |n: &str| json!({"Name": n, "Driver": "local", "Mountpoint": format!("/{name}/{n}")});
        let bus = client.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    Some(m) = all.next() => m,
                    Some(m) = own.next() => m,
                    else => break,
                };
                let subject = message.subject.to_string();
                let operation = subject.rsplit_once('.').map(|(rest, last)| {
                    // Ops are two tokens: `volume.list`, `node.ping`.
                    let kind = rest.rsplit('.').next().unwrap_or("");
                    format!("{kind}.{last}")
                });
                let answer: Result<Value, BusError> = match operation.as_deref().unwrap_or("") {
                    op::PING => Ok(serde_json::to_value(&info).unwrap()),
                    op::VOLUME_LIST => {
                        let r: VolumeListRequest =
                            serde_json::from_slice(&message.payload).unwrap();
                        let wanted = r.filters.get("name").cloned().unwrap_or_default();
                        let volumes = volumes
                            .iter()
                            .filter(|v| wanted.iter().all(|w| v.contains(w.as_str())))
                            .map(|v| vol(v))
                            .collect();
                        Ok(serde_json::to_value(VolumeListResponse {
                            node: name.into(),
                            volumes,
                        })
                        .unwrap())
                    }
                    op::VOLUME_PRUNE => Ok(serde_json::to_value(VolumePruneResponse {
                        volumes_deleted: vec![format!("anon-{name}")],
                        space_reclaimed: 100,
                    })
                    .unwrap()),
                    op::VOLUME_CREATE => {
                        let r: VolumeCreateRequest =
                            serde_json::from_slice(&message.payload).unwrap();
                        let n = if r.name.is_empty() {
                            "anon".to_string()
                        } else {
                            r.name
                        };
                        Ok(vol(&n))
                    }
                    op::VOLUME_REMOVE => {
                        let r: VolumeRemoveRequest =
                            serde_json::from_slice(&message.payload).unwrap();
                        if r.name == "busy" {
                            Err(BusError::conflict(
                                "remove busy: volume is in use - [abc123]",
                            ))
                        } else {
                            Ok(json!({}))
                        }
                    }
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

    /// One HTTP/1.1 exchange; returns the status line and the body (un-chunked if need be).
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

    #[tokio::test]
    async fn volume_routes_follow_the_contract_end_to_end() {
        let nats = NatsServer::start();
        let client = nats.client().await;
        fake_node(&client, "n1", 0, &["data", "database", "busy"]).await;
        fake_node(&client, "n2", 3, &["logs"]).await;
        let addr = gateway(client.clone()).await;

        let (status, body) = http(&addr, "GET", "/v1.45/volumes", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let names: Vec<String> = json_of(&body)["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["Name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["busy", "data", "database", "logs"]);
        assert_eq!(json_of(&body)["Warnings"], json!([]));

        let (status, body) = http(
            &addr,
            "GET",
            "/volumes?filters=%7B%22name%22%3A%7B%22nothing%22%3Atrue%7D%7D",
            "",
        )
        .await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(json_of(&body), json!({"Volumes": [], "Warnings": []}));

        // Inspect keeps the exact name, not the other names the filter matched.
        let (status, body) = http(&addr, "GET", "/volumes/data", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(json_of(&body)["Mountpoint"], "/n1/data");
        let (status, body) = http(&addr, "GET", "/volumes/dat", "").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert_eq!(
            json_of(&body),
            json!({"message": "get dat: no such volume"})
        );

        // An existing name goes to its node whatever the labels ask; a new one is placed.
        let (status, body) = http(
            &addr,
            "POST",
            "/volumes/create",
            r#"{"Name":"logs","Labels":{"wharf.node":"n1"}}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 201 Created");
        assert_eq!(json_of(&body)["Mountpoint"], "/n2/logs");
        let (status, body) = http(
            &addr,
            "POST",
            "/volumes/create",
            r#"{"Name":"fresh","Labels":{"wharf.node":"n2"}}"#,
        )
        .await;
        assert_eq!(status, "HTTP/1.1 201 Created");
        assert_eq!(json_of(&body)["Mountpoint"], "/n2/fresh");
        let (status, body) = http(&addr, "POST", "/volumes/create", "").await;
        assert_eq!(status, "HTTP/1.1 201 Created");
        assert_eq!(json_of(&body)["Mountpoint"], "/n1/anon");

        let (status, _) = http(&addr, "DELETE", "/volumes/data", "").await;
        assert_eq!(status, "HTTP/1.1 204 No Content");
        let (status, body) = http(&addr, "DELETE", "/volumes/busy", "").await;
        assert_eq!(status, "HTTP/1.1 409 Conflict");
        assert_eq!(
            json_of(&body),
            json!({"message": "remove busy: volume is in use - [abc123]"})
        );
        let (status, body) = http(&addr, "DELETE", "/volumes/gone", "").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert_eq!(
            json_of(&body),
            json!({"message": "get gone: no such volume"})
        );
        let (status, _) = http(&addr, "DELETE", "/volumes/gone?force=1", "").await;
        assert_eq!(status, "HTTP/1.1 204 No Content");

        let (status, body) = http(&addr, "POST", "/volumes/prune", "").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            json_of(&body),
            json!({"VolumesDeleted": ["anon-n1", "anon-n2"], "SpaceReclaimed": 200})
        );
    }
}

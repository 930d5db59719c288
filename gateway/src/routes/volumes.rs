//! `/volumes/...`: volumes live on runtime nodes. Finding one by name, listing and pruning over
//! every node, and where a new one goes are [`crate::cluster::volumes`]; these handlers read
//! dockerd's requests and call the node that holds (or gets) the volume.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use wharf_bus::api;
use wharf_bus::container::{VolumeCreateRequest, VolumePruneResponse, VolumeRemoveRequest};

use crate::cluster::volumes::{self, no_such_volume};
use crate::error::ApiResult;
use crate::query::Query;
use crate::state::AppState;

/// Removing a volume deletes its data, which may be large.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(120);
/// Creating may run a driver's setup (a mount, a directory tree).
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// dockerd's reading of a volume create body (`httputils.ReadJSON`): an empty body is an
/// anonymous volume; otherwise JSON only, one document.
pub fn parse_create_body(body: &[u8]) -> ApiResult<VolumeCreateRequest> {
    crate::json_body::read_json(body)
}

pub async fn create(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let request = parse_create_body(&body)?;
    let node = volumes::node_for_create(&state, &request).await?;
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
    Ok(axum::Json(serde_json::json!({
        "Volumes": volumes::list(&state, q.filters()?).await?,
        "Warnings": [],
    })))
}

pub async fn inspect(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    match volumes::locate(&state, &name).await? {
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
    let Some(found) = volumes::locate(&state, &name).await? else {
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
    Ok(axum::Json(volumes::prune(&state, q.filters()?).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    use serde_json::{json, Value};
    use wharf_bus::container::*;
    use wharf_bus::testkit::NatsServer;
    use wharf_bus::BusError;

    use crate::testutil::{gateway, http, json_of};

    /// A node holding `volumes`; `busy` is in use by a container.
    async fn fake_node(
        client: &async_nats::Client,
        name: &'static str,
        running: u64,
        volumes: &'static [&'static str],
    ) {
        let info = NodeInfo {
            name: name.into(),
            running,
            containers: running,
            ..Default::default()
        };
        let vol = move |n: &str| json!({"Name": n, "Driver": "local", "Mountpoint": format!("/{name}/{n}")});
        crate::testutil::fake_node(client, info, move |operation, payload| {
            let answer: Result<Value, BusError> = match operation {
                op::VOLUME_LIST => {
                    let r: VolumeListRequest = serde_json::from_slice(payload).unwrap();
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
                    let r: VolumeCreateRequest = serde_json::from_slice(payload).unwrap();
                    let n = if r.name.is_empty() {
                        "anon".to_string()
                    } else {
                        r.name
                    };
                    Ok(vol(&n))
                }
                op::VOLUME_REMOVE => {
                    let r: VolumeRemoveRequest = serde_json::from_slice(payload).unwrap();
                    if r.name == "busy" {
                        Err(BusError::conflict(
                            "remove busy: volume is in use - [abc123]",
                        ))
                    } else {
                        Ok(json!({}))
                    }
                }
                _ => return None,
            };
            Some(answer)
        })
        .await;
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

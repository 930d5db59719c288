//! `/containers/...`: the container half of the Engine API. Containers live on runtime nodes;
//! a path's name or ID is resolved on every node ([`resolve::locate`]) and the request goes to
//! the node that holds the container; a new one goes where [`placement::for_container`] puts it.

pub(super) mod archive;
mod attach;
#[cfg(test)]
mod bus_tests;
pub mod exec;
mod hijack;
mod list;
mod logs;
mod names;
mod prune;
mod stats;
mod update;
mod wait;

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use serde_json::Value;
use wharf_bus::api;
use wharf_bus::container::{
    ById, Changed, CreateBody, CreateRequest, CreateResponse, HostConfig, InspectRequest,
    InspectResponse, KillRequest, RemoveRequest, RenameRequest, ResizeRequest, StopRequest,
    TopRequest,
};
use wharf_bus::endpoint::{Endpoint, NodeSubject};
use wharf_bus::rpc::DEFAULT_TIMEOUT;

pub use attach::attach;
pub use list::list;
pub use logs::logs;
pub use prune::prune;
pub use stats::stats;
pub use update::update;
pub use wait::wait;

use crate::cluster::nodes::note_counts;
use crate::cluster::{placement, resolve};
use crate::error::{ApiError, ApiResult};
use crate::json_body;
use crate::query::Query;
use crate::state::AppState;
use crate::version::ApiVersion;

/// Extra time a node gets beyond a stop's grace period before the gateway gives up on it.
const STOP_MARGIN: Duration = Duration::from_secs(30);
/// Deadline of a stop whose grace period is the container's own (unknown here) or unbounded.
const LONG_STOP: Duration = Duration::from_secs(600);
/// Removing a container may delete a large writable layer.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(120);

/// dockerd's reading of a create body: one JSON document with a config in it (the content type
/// was checked by the route, `content_type::json_post`), decoded as Go decodes it
/// (`json_body`). `HostConfig` and `NetworkingConfig` are read apart from the config fields
/// around them, as dockerd's `ContainerConfigWrapper` holds them.
fn parse_create_body(body: &[u8]) -> ApiResult<CreateBody> {
    let value = json_body::read_document(body)?
        .ok_or_else(|| ApiError::bad_request("invalid JSON: got EOF while reading request body"))?;
    // A config key allocates the config in Go, even when its value is null.
    let has_config = value
        .as_object()
        .map(|o| {
            o.keys().any(|k| {
                !k.eq_ignore_ascii_case("HostConfig") && !k.eq_ignore_ascii_case("NetworkingConfig")
            })
        })
        .unwrap_or(false);
    let (Value::Object(mut config), true) = (value, has_config) else {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    };
    let host_config = create_body_part(&mut config, "HostConfig")?;
    let networking_config = create_body_part(&mut config, "NetworkingConfig")?;
    Ok(CreateBody {
        config: json_body::decode(Value::Object(config))
            .map_err(|e| json_body::invalid(e.root_named("ContainerConfigWrapper")))?,
        host_config,
        networking_config,
    })
}

/// The struct `field` of a create body, taken out of it.
fn create_body_part<T: serde::de::DeserializeOwned>(
    body: &mut serde_json::Map<String, Value>,
    field: &str,
) -> ApiResult<T> {
    let value = json_body::take_field(body, field).unwrap_or(Value::Null);
    json_body::decode(value)
        .map_err(|e| json_body::invalid(e.within("ContainerConfigWrapper", field)))
}

/// dockerd's create: a PIDs limit of 0 or less (unlimited) and a memory swappiness of -1 (the
/// kernel's) are no setting at all, `null` in inspect.
fn no_limit_is_unset(host: &mut HostConfig) {
    if host.pids_limit.is_some_and(|p| p <= 0) {
        host.pids_limit = None;
    }
    if host.memory_swappiness == Some(-1) {
        host.memory_swappiness = None;
    }
}

pub async fn create(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let mut body = parse_create_body(&body)?;
    no_limit_is_unset(&mut body.host_config);
    let name = q.get("name").unwrap_or("");
    if !name.is_empty() {
        names::check_name(name)?;
        resolve::ensure_name_free(&state, name).await?;
    }
    let node = placement::for_container(&state, &body).await?;
    let request = CreateRequest {
        name: if name.is_empty() {
            String::new()
        } else {
            resolve::slashed(name)
        },
        body,
        platform: q
            .get("platform")
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    };
    // Creating may unpack the image's layers first.
    let created: CreateResponse = state
        .node(&node)
        .call::<api::ContainerCreate>(&request, Duration::from_secs(300))
        .await?;
    note_counts(&state, &node, |n| {
        n.containers += 1;
        n.stopped += 1;
    })
    .await;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

pub async fn inspect(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<InspectResponse>> {
    let q = Query::parse(raw.as_deref());
    let target = resolve::locate(&state, &name).await?;
    let request = InspectRequest {
        id: target.id.clone(),
        size: q.flag("size"),
    };
    Ok(axum::Json(
        state
            .node(&target.node)
            .call::<api::ContainerInspect>(&request, DEFAULT_TIMEOUT)
            .await?,
    ))
}

pub async fn top(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let q = Query::parse(raw.as_deref());
    let target = resolve::locate(&state, &name).await?;
    let request = TopRequest {
        id: target.id.clone(),
        // dockerd's default when the client gives none.
        ps_args: q
            .get("ps_args")
            .filter(|a| !a.is_empty())
            .unwrap_or("-ef")
            .to_string(),
    };
    Ok(axum::Json(
        state
            .node(&target.node)
            .call::<api::ContainerTop>(&request, DEFAULT_TIMEOUT)
            .await?,
    ))
}

fn no_content_or_not_modified(changed: Changed) -> StatusCode {
    if changed.changed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    }
}

pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    // A non-nil JSON object is at least 7 bytes; an unknown length is a body too.
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.map(|l| l > 7).unwrap_or(false) || headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(ApiError::bad_request(
            "starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24",
        ));
    }
    let target = resolve::locate(&state, &name).await?;
    let request = ById {
        id: target.id.clone(),
    };
    // Starting may mount the rootfs and set up the network.
    let changed: Changed = state
        .node(&target.node)
        .call::<api::ContainerStart>(&request, Duration::from_secs(120))
        .await?;
    if changed.changed {
        note_counts(&state, &target.node, |n| {
            n.running += 1;
            n.stopped = n.stopped.saturating_sub(1);
        })
        .await;
    }
    Ok(no_content_or_not_modified(changed))
}

/// `t` and (API 1.42 on) `signal` of a stop or restart.
fn stop_request(id: String, q: &Query, version: ApiVersion) -> ApiResult<StopRequest> {
    let timeout = match q.get("t").filter(|t| !t.is_empty()) {
        Some(t) => Some(t.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("strconv.Atoi: parsing \"{t}\": invalid syntax"))
        })?),
        None => None,
    };
    let signal = if version.at_least(1, 42) {
        q.get("signal")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    } else {
        None
    };
    Ok(StopRequest {
        id,
        signal,
        timeout,
    })
}

fn stop_deadline(request: &StopRequest) -> Duration {
    match request.timeout {
        Some(t) if t >= 0 => Duration::from_secs(t as u64) + STOP_MARGIN,
        _ => LONG_STOP,
    }
}

pub async fn stop(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let q = Query::parse(raw.as_deref());
    let mut request = stop_request(String::new(), &q, version)?;
    let target = resolve::locate(&state, &name).await?;
    request.id = target.id.clone();
    let changed: Changed = state
        .node(&target.node)
        .call::<api::ContainerStop>(&request, stop_deadline(&request))
        .await?;
    Ok(no_content_or_not_modified(changed))
}

pub async fn restart(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let q = Query::parse(raw.as_deref());
    let mut request = stop_request(String::new(), &q, version)?;
    let target = resolve::locate(&state, &name).await?;
    request.id = target.id.clone();
    let deadline = stop_deadline(&request) + Duration::from_secs(90);
    state
        .node(&target.node)
        .call::<api::ContainerRestart>(&request, deadline)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn kill(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let q = Query::parse(raw.as_deref());
    // dockerd puts every kill failure, a missing container included, in this context.
    let context = |e: ApiError| {
        ApiError::new(
            e.status,
            format!("cannot kill container: {name}: {}", e.message),
        )
    };
    let target = resolve::locate(&state, &name).await.map_err(context)?;
    let request = KillRequest {
        id: target.id.clone(),
        signal: q.get("signal").unwrap_or("").to_string(),
    };
    state
        .node(&target.node)
        .call::<api::ContainerKill>(&request, DEFAULT_TIMEOUT)
        .await
        .map_err(|e| context(e.into()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Operation `E` on the container `name` names, for its success alone.
async fn by_id_command<E>(state: &AppState, name: &str) -> ApiResult<StatusCode>
where
    E: Endpoint<Request = ById> + NodeSubject,
{
    let target = resolve::locate(state, name).await?;
    let request = ById {
        id: target.id.clone(),
    };
    state
        .node(&target.node)
        .call::<E>(&request, DEFAULT_TIMEOUT)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    by_id_command::<api::ContainerPause>(&state, &name).await
}

pub async fn unpause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    by_id_command::<api::ContainerUnpause>(&state, &name).await
}

pub async fn rename(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let q = Query::parse(raw.as_deref());
    let new_name = q.get("name").unwrap_or("");
    if new_name.is_empty() {
        return Err(ApiError::bad_request(
            "Neither old nor new names may be empty",
        ));
    }
    let target = resolve::locate(&state, &name).await?;
    let new_name = resolve::slashed(new_name);
    if resolve::slashed(&target.name) == new_name {
        return Err(ApiError::bad_request(
            "Renaming a container with the same name as its current name",
        ));
    }
    let allocating = |e: ApiError| {
        ApiError::new(
            e.status,
            format!("Error when allocating new name: {}", e.message),
        )
    };
    names::check_name(&new_name).map_err(allocating)?;
    resolve::ensure_name_free(&state, &new_name)
        .await
        .map_err(allocating)?;
    let request = RenameRequest {
        id: target.id.clone(),
        name: new_name.trim_start_matches('/').to_string(),
    };
    state
        .node(&target.node)
        .call::<api::ContainerRename>(&request, DEFAULT_TIMEOUT)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A terminal dimension as dockerd reads it: absent is 0.
fn dimension(q: &Query, key: &str, what: &str) -> ApiResult<u16> {
    let v = q.get(key).unwrap_or("");
    if v.is_empty() {
        return Ok(0);
    }
    v.parse::<u16>()
        .map_err(|e| ApiError::bad_request(format!("invalid resize {what} \"{v}\": {e}")))
}

pub async fn resize(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let q = Query::parse(raw.as_deref());
    let height = dimension(&q, "h", "height")?;
    let width = dimension(&q, "w", "width")?;
    let target = resolve::locate(&state, &name).await?;
    let request = ResizeRequest {
        id: target.id.clone(),
        height,
        width,
    };
    state
        .node(&target.node)
        .call::<api::ContainerResize>(&request, DEFAULT_TIMEOUT)
        .await?;
    Ok(StatusCode::OK)
}

pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let q = Query::parse(raw.as_deref());
    let target = resolve::locate(&state, &name).await?;
    if q.flag("link") {
        // A container's own name is not a link. dockerd answers 500 for this client error;
        // 409 says what its text says (the CLI prints the same).
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict, cannot remove the default link name of the container",
        ));
    }
    let request = RemoveRequest {
        id: target.id.clone(),
        force: q.flag("force"),
        volumes: q.flag("v"),
        link: None,
    };
    state
        .node(&target.node)
        .call::<api::ContainerRemove>(&request, REMOVE_TIMEOUT)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /containers/{parent}/{alias}?link=1` (`docker rm --link /parent/alias`): the
/// legacy link goes, on the parent's node. Without `link`, or when either is missing, the
/// name `parent/alias` names no container, as in dockerd.
pub async fn remove_link(
    State(state): State<AppState>,
    Path((parent, alias)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let q = Query::parse(raw.as_deref());
    let missing = || ApiError::not_found(format!("No such container: {parent}/{alias}"));
    if !q.flag("link") {
        return Err(missing());
    }
    let target = resolve::locate(&state, &parent)
        .await
        .map_err(|e| match e.status {
            StatusCode::NOT_FOUND => missing(),
            _ => e,
        })?;
    let request = RemoveRequest {
        id: target.id.clone(),
        force: false,
        volumes: false,
        link: Some(alias.clone()),
    };
    state
        .node(&target.node)
        .call::<api::ContainerRemove>(&request, REMOVE_TIMEOUT)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_are_json_with_a_config() {
        let body = parse_create_body(br#"{"Image":"busybox","Cmd":["true"]}"#).unwrap();
        assert_eq!(body.config.image, "busybox");
        assert_eq!(
            parse_create_body(b"").unwrap_err().message,
            "invalid JSON: got EOF while reading request body"
        );
        assert!(parse_create_body(b"{\"Image\":")
            .unwrap_err()
            .message
            .starts_with("invalid JSON: "));
        assert_eq!(
            parse_create_body(br#"{"HostConfig":{}}"#)
                .unwrap_err()
                .message,
            "config cannot be empty in order to create a container"
        );
    }

    /// What docker-compose 1.29.2 (docker-py) sends for a service whose health check sets only
    /// `test`: the check's other fields as null.
    const COMPOSE_CREATE_BODY: &str = r#"{
        "Image": "busybox", "Cmd": ["sleep", "300"], "Labels": {"com.docker.compose.service": "web"},
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": null, "Timeout": null,
                        "Retries": null, "StartPeriod": null},
        "Volumes": {}, "Env": null, "StopSignal": null,
        "HostConfig": {"NetworkMode": "default", "VolumesFrom": [], "Binds": [], "PortBindings": {},
                       "Links": [], "LogConfig": {"Type": "", "Config": {}}, "Init": null,
                       "Memory": null, "RestartPolicy": null, "ComposeOnly": {"x": 1}},
        "NetworkingConfig": {"EndpointsConfig": {"default": {"Aliases": ["web"], "IPAMConfig": {}}}}
    }"#;

    #[test]
    fn a_compose_create_body_with_null_fields_reads_as_dockerd_reads_it() {
        let body = parse_create_body(COMPOSE_CREATE_BODY.as_bytes()).unwrap();
        let health = body.config.healthcheck.as_ref().unwrap();
        assert_eq!(health.test.as_deref().unwrap(), ["CMD-SHELL", "true"]);
        assert_eq!((health.interval, health.timeout, health.retries), (0, 0, 0));
        assert_eq!(body.config.stop_signal, None);
        assert_eq!(body.host_config.binds, Some(Vec::new()));
        assert_eq!(body.host_config.memory, 0);
        assert_eq!(body.host_config.init, None);
        assert_eq!(body.host_config.restart_policy, Default::default());
        assert_eq!(
            body.networking_config.endpoints_config["default"].aliases,
            ["web"]
        );
    }

    #[test]
    fn unlimited_pids_and_the_kernels_swappiness_are_no_setting() {
        for (pids, swappiness, kept) in [
            (Some(0), Some(-1), (None, None)),
            (Some(-1), Some(0), (None, Some(0))),
            (Some(50), Some(60), (Some(50), Some(60))),
        ] {
            let mut host = HostConfig {
                pids_limit: pids,
                memory_swappiness: swappiness,
                ..Default::default()
            };
            no_limit_is_unset(&mut host);
            assert_eq!((host.pids_limit, host.memory_swappiness), kept);
        }
    }

    #[test]
    fn create_fields_match_in_any_case_and_wrong_types_are_400s() {
        let body =
            parse_create_body(br#"{"image":"busybox","hostconfig":{"memory":8388608}}"#).unwrap();
        assert_eq!(
            (body.config.image.as_str(), body.host_config.memory),
            ("busybox", 8 << 20)
        );
        let refused = |json: &str| {
            let e = parse_create_body(json.as_bytes()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            e.message
        };
        assert_eq!(
            refused(r#"{"Image":"busybox","HostConfig":{"Memory":"1g"}}"#),
            "invalid JSON: json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Memory of type int64"
        );
        assert_eq!(
            refused(r#"{"Image":"busybox","Healthcheck":{"Interval":"5s"}}"#),
            "invalid JSON: json: cannot unmarshal string into Go struct field HealthConfig.Healthcheck.Interval of type int64"
        );
        assert_eq!(
            refused(r#"{"Image":"busybox","HostConfig":"x"}"#),
            "invalid JSON: json: cannot unmarshal string into Go struct field ContainerConfigWrapper.HostConfig of type HostConfig"
        );
        assert_eq!(
            refused(r#"{"Image":"busybox","Tty":1}"#),
            "invalid JSON: json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Tty of type bool"
        );
        assert_eq!(
            refused(r#"{"Image":"busybox","Cmd":5}"#),
            "invalid JSON: json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Cmd of type string"
        );
        assert_eq!(
            refused(r#"{"Image":"busybox"} x"#),
            "unexpected content after JSON"
        );
        // Cmd and Entrypoint: a string is one argument; a null in the list is "".
        let body =
            parse_create_body(br#"{"Image":"busybox","Cmd":["echo",null],"Entrypoint":"sh"}"#)
                .unwrap();
        assert_eq!(body.config.cmd.unwrap(), ["echo", ""]);
        assert_eq!(body.config.entrypoint.unwrap(), ["sh"]);
    }

    #[test]
    fn stop_takes_t_and_the_signal_from_api_1_42() {
        let q = Query::parse(Some("t=5&signal=SIGINT"));
        let r = stop_request("c".into(), &q, ApiVersion(1, 45)).unwrap();
        assert_eq!((r.timeout, r.signal.as_deref()), (Some(5), Some("SIGINT")));
        assert_eq!(stop_deadline(&r), Duration::from_secs(5) + STOP_MARGIN);
        let r = stop_request("c".into(), &q, ApiVersion(1, 41)).unwrap();
        assert_eq!(r.signal, None);
        let r = stop_request("c".into(), &Query::parse(Some("t=-1")), ApiVersion(1, 45)).unwrap();
        assert_eq!(stop_deadline(&r), LONG_STOP);
        assert!(stop_request("c".into(), &Query::parse(Some("t=x")), ApiVersion(1, 45)).is_err());
    }

    #[test]
    fn resize_dimensions_default_to_zero_and_must_be_numbers() {
        let q = Query::parse(Some("h=40&w=abc"));
        assert_eq!(dimension(&q, "h", "height").unwrap(), 40);
        assert_eq!(dimension(&q, "x", "height").unwrap(), 0);
        assert!(dimension(&q, "w", "width")
            .unwrap_err()
            .message
            .starts_with("invalid resize width \"abc\""));
    }
}

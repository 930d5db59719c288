//! A container's files: `docker cp` (`/containers/{name}/archive`: HEAD stat, GET a tar, PUT a
//! tar), `docker export`, `docker diff` and `docker commit` (`POST /commit`). The node holding
//! the container does the work; this translates.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use wharf_bus::container::{
    ArchiveRequest, ById, CommitRequest, ContainerConfig, PathStat, ResolveMatch,
};
use wharf_bus::reference::Reference;
use wharf_bus::stream::Receiver;
use wharf_bus::BusError;

use crate::cluster::resolve;
use crate::error::{ApiError, ApiResult};
use crate::json_body::{self, read_json};
use crate::query::Query;
use crate::state::AppState;
use crate::version::ApiVersion;
use wharf_bus::api;
use wharf_bus::rpc::DEFAULT_TIMEOUT;

const PATH_STAT_HEADER: &str = "X-Docker-Container-Path-Stat";
/// Committing tars and stores the whole writable layer.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(600);

/// The request of a `/containers/{name}/archive` call, the container located.
async fn archive_request(
    state: &AppState,
    name: &str,
    q: &Query,
) -> ApiResult<(ResolveMatch, ArchiveRequest)> {
    let path = q.get("path").unwrap_or("");
    if path.is_empty() {
        return Err(ApiError::bad_request("bad parameter: pathcannot be empty"));
    }
    let target = resolve::locate(state, name).await?;
    let request = ArchiveRequest {
        id: target.id.clone(),
        path: path.to_string(),
        no_overwrite_dir_non_dir: q.flag("noOverwriteDirNonDir"),
        copy_uid_gid: q.flag("copyUIDGID"),
    };
    Ok((target, request))
}

/// dockerd names the container as the client did in its not-found message.
fn as_named(err: BusError, target: &ResolveMatch, name: &str) -> ApiError {
    let mut err = ApiError::from(err);
    if err.message.starts_with("Could not find the file") {
        err.message = err.message.replace(&target.id, name);
    }
    err
}

fn stat_header(stat: &PathStat) -> ApiResult<HeaderValue> {
    let json =
        serde_json::to_vec(stat).map_err(|e| ApiError::from(BusError::internal(e.to_string())))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    HeaderValue::from_str(&encoded).map_err(|e| ApiError::from(BusError::internal(e.to_string())))
}

/// A tar download from a node; an error after the headers cuts the body short.
fn tar_body(rx: Receiver) -> Body {
    let body = rx
        .into_stream()
        .map(|item| item.map_err(|e| std::io::Error::other(e.message)));
    Body::from_stream(body)
}

/// `HEAD /containers/{name}/archive?path=`.
pub async fn head(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let (target, request) = archive_request(&state, &name, &q).await?;
    let stat = state
        .node(&target.node)
        .call::<api::ArchiveStat>(&request, DEFAULT_TIMEOUT)
        .await
        .map_err(|e| as_named(e, &target, &name))?;
    Ok(([(PATH_STAT_HEADER, stat_header(&stat)?)], StatusCode::OK).into_response())
}

/// `GET /containers/{name}/archive?path=`: a tar of the path.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let (target, request) = archive_request(&state, &name, &q).await?;
    let (rx, stat) = state
        .node(&target.node)
        .download::<api::ArchiveGet>(&request)
        .await
        .map_err(|e| as_named(e, &target, &name))?;
    Ok((
        [
            (
                header::HeaderName::from_static("x-docker-container-path-stat"),
                stat_header(&stat)?,
            ),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-tar"),
            ),
        ],
        tar_body(rx),
    )
        .into_response())
}

/// `PUT /containers/{name}/archive?path=`: extracts the body (a tar) into that directory.
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let (target, request) = archive_request(&state, &name, &q).await?;
    let named = |e: BusError| as_named(e, &target, &name);
    let (upload, _) = state
        .node(&target.node)
        .upload::<api::ArchivePut>(&request)
        .await
        .map_err(named)?;
    let (upload, _) = upload.send_body(body).await.map_err(named)?;
    upload.finish().await.map_err(named)?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /containers/{name}/export`.
pub async fn export(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let target = resolve::locate(&state, &name).await?;
    let (rx, _) = state
        .node(&target.node)
        .download::<api::ContainerExport>(&ById { id: target.id })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], tar_body(rx)).into_response())
}

/// `GET /containers/{name}/changes`.
pub async fn changes(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let target = resolve::locate(&state, &name).await?;
    let request = ById { id: target.id };
    let rows: Value = state
        .node(&target.node)
        .call::<api::ContainerChanges>(&request, DEFAULT_TIMEOUT)
        .await?;
    Ok(axum::Json(rows).into_response())
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=` (body: a config).
pub async fn commit(
    State(state): State<AppState>,
    axum::Extension(version): axum::Extension<ApiVersion>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let config: Value = read_json(&body)?;
    // dockerd decodes the body as a container config: a field of the wrong type is a 400.
    if !config.is_null() {
        json_body::decode::<ContainerConfig>(config.clone()).map_err(json_body::invalid)?;
    }
    let reference = match q.get("repo").unwrap_or("") {
        "" => String::new(),
        repo => {
            let mut r = Reference::parse(repo)?;
            if let Some(t) = q.get("tag").filter(|t| !t.is_empty()) {
                r = Reference::parse(&format!("{}:{t}", r.name()))?;
            }
            r.with_default_tag().to_string()
        }
    };
    // dockerd pauses unless told not to (API 1.13 on).
    let pause = match q.get("pause") {
        None | Some("") => version.at_least(1, 13),
        Some(_) => q.flag("pause"),
    };
    let name = q.get("container").unwrap_or("");
    let target = resolve::locate(&state, name).await?;
    let request = CommitRequest {
        id: target.id.clone(),
        reference,
        comment: q.get("comment").unwrap_or("").to_string(),
        author: q.get("author").unwrap_or("").to_string(),
        pause,
        changes: q.all("changes"),
        config: (!config.is_null()).then_some(config),
    };
    let created: Value = state
        .node(&target.node)
        .call::<api::ContainerCommit>(&request, COMMIT_TIMEOUT)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

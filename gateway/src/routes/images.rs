//! `/images/...`: list, inspect, history, tag, remove, prune, pull, import, save and load.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use wharf_bus::endpoint::{ServiceSubject, Upload};
use wharf_bus::image::{
    DeleteItem, ImageDelete, ImageExport, ImageImport, ImageList, ImageLoad, ImagePrune,
    ImageRecord, ImageResolve, ImageTag,
};
use wharf_bus::progress::JsonMessage;
use wharf_bus::reference::{valid_digest, Reference};
use wharf_bus::registry::{Platform, PullRequest, PushRequest, RegistryAuth};
use wharf_bus::stream::Receiver;
use wharf_bus::{api, endpoint, BusError};

use crate::cluster;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::render;
use crate::state::AppState;
use crate::version::ApiVersion;

async fn resolve(state: &AppState, name: &str) -> ApiResult<ImageRecord> {
    let request = ImageResolve {
        name: name.to_string(),
    };
    Ok(endpoint::call::<api::ImageResolveName>(&state.bus, &request).await?)
}

/// The image `name` and its parents, as far as its history has rows for them (dockerd's
/// `ImageHistory` stops at the first parent it cannot find, too).
async fn lineage(state: &AppState, name: &str) -> ApiResult<Vec<ImageRecord>> {
    let image = resolve(state, name).await?;
    let depth = render::history_depth(&image);
    let mut lineage = vec![image];
    while lineage.len() < depth {
        let Some(parent) = lineage.last().and_then(|r| r.parent.clone()) else {
            break;
        };
        match resolve(state, &parent).await {
            Ok(record) => lineage.push(record),
            Err(_) => break,
        }
    }
    Ok(lineage)
}

pub async fn list(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let q = Query::parse(raw.as_deref());
    let mut filters = q.filters()?;
    // Old clients pass a reference as `filter=`.
    if let Some(f) = q.get("filter").filter(|f| !f.is_empty()) {
        filters
            .entry("reference".to_string())
            .or_default()
            .push(f.to_string());
    }
    let request = ImageList {
        all: q.flag("all"),
        filters,
    };
    let records = endpoint::call::<api::ImageListAll>(&state.bus, &request).await?;
    Ok(axum::Json(Value::Array(
        records
            .iter()
            .map(|r| render::summary(r, version))
            .collect(),
    )))
}

/// Splits `/images/{name}/{op}` where the name itself may hold slashes.
fn split_op<'a>(rest: &'a str, ops: &[&str]) -> Option<(&'a str, &'a str)> {
    let (name, op) = rest.rsplit_once('/')?;
    ops.contains(&op).then_some((name, op))
}

pub async fn get_dispatch(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(rest): Path<String>,
) -> ApiResult<Response> {
    let Some((name, op)) = split_op(&rest, &["json", "history", "get"]) else {
        return Err(ApiError::not_found("page not found"));
    };
    match op {
        "json" => {
            Ok(axum::Json(render::inspect(&resolve(&state, name).await?, version)).into_response())
        }
        "history" => Ok(axum::Json(render::history(&lineage(&state, name).await?)).into_response()),
        _ => save(&state, vec![name.to_string()]).await,
    }
}

pub async fn post_dispatch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let Some((name, op)) = split_op(&rest, &["tag", "push"]) else {
        return Err(ApiError::not_found("page not found"));
    };
    let q = Query::parse(raw.as_deref());
    match op {
        "tag" => tag(&state, name, &q).await,
        _ => push(&state, name, &q, &headers).await,
    }
}

/// `POST /images/{name}/push?tag=`: registry-sync pushes; its progress streams back. Without
/// a tag (`docker push --all-tags`) every tag of the repository goes, as in dockerd; the CLI
/// names `latest` itself otherwise.
async fn push(state: &AppState, name: &str, q: &Query, headers: &HeaderMap) -> ApiResult<Response> {
    let mut reference = Reference::parse(name)?;
    if let Some(t) = q.get("tag").filter(|t| !t.is_empty()) {
        // The "tag" may be a digest, as dockerd reads it (and then refuses to push it).
        reference = if t.contains(':') {
            Reference::parse(&format!("{}@{t}", reference.name()))?
        } else {
            Reference::parse(&format!("{}:{t}", reference.name()))?
        };
    }
    let auth = headers
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .and_then(RegistryAuth::from_header);
    let request = PushRequest {
        reference: reference.to_string(),
        auth,
    };
    let (rx, _) = endpoint::download::<api::Push>(&state.bus, &request)
        .await
        .map_err(registry_error)?;
    progress_response(rx).await
}

async fn tag(state: &AppState, name: &str, q: &Query) -> ApiResult<Response> {
    let repo = q.get("repo").unwrap_or("");
    let tag = q.get("tag").unwrap_or("");
    let mut target = Reference::parse(repo)?;
    if target.digest.is_some() {
        return Err(ApiError::bad_request(
            "refusing to create a tag with a digest reference",
        ));
    }
    if !tag.is_empty() {
        target = Reference::parse(&format!("{}:{tag}", target.name()))?;
    }
    let target = target.with_default_tag();
    let request = ImageTag {
        source: name.to_string(),
        target: target.to_string(),
    };
    endpoint::call::<api::ImageTagName>(&state.bus, &request).await?;
    Ok(StatusCode::CREATED.into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Vec<DeleteItem>>> {
    let q = Query::parse(raw.as_deref());
    let request = ImageDelete {
        name,
        force: q.flag("force"),
        no_prune: q.flag("noprune"),
        in_use: cluster::containers::images_in_use(&state).await?,
    };
    Ok(axum::Json(
        endpoint::call::<api::ImageDeleteName>(&state.bus, &request).await?,
    ))
}

pub async fn prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let q = Query::parse(raw.as_deref());
    let request = ImagePrune {
        filters: q.filters()?,
        in_use: cluster::containers::images_in_use(&state).await?,
    };
    let report = endpoint::call::<api::ImagePruneUnused>(&state.bus, &request).await?;
    let deleted = if report.deleted.is_empty() {
        Value::Null
    } else {
        json!(report.deleted)
    };
    Ok(axum::Json(
        json!({"ImagesDeleted": deleted, "SpaceReclaimed": report.space_reclaimed}),
    ))
}

pub(super) fn json_line(msg: &JsonMessage) -> Bytes {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.extend_from_slice(b"\r\n");
    Bytes::from(line)
}

/// dockerd answers a registry's refusal of credentials (on pull or push) as a server error: a 401 would make
/// the CLI prompt for a login instead of printing the registry's reason.
pub(super) fn registry_error(err: BusError) -> ApiError {
    match err.kind {
        wharf_bus::ErrorKind::Unauthorized => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.message)
        }
        _ => err.into(),
    }
}

/// A JSON-progress response from a stream of messages. An error before the first message becomes
/// an HTTP error status (nothing was sent yet, as in dockerd); a later one is the stream's last line.
pub(super) async fn progress_response(rx: Receiver) -> ApiResult<Response> {
    progress_response_with(rx, |e| e).await
}

/// [`progress_response`] with the stream's errors reworded by `word` first (say, to name the
/// service that stopped answering).
pub(super) async fn progress_response_with(
    mut rx: Receiver,
    word: fn(BusError) -> BusError,
) -> ApiResult<Response> {
    let first = match rx.next_json::<JsonMessage>().await {
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => return Err(registry_error(word(e))),
        None => None,
    };
    let rest = futures::stream::unfold(Some(rx), move |rx| async move {
        let mut rx = rx?;
        match rx.next_json::<JsonMessage>().await {
            Some(Ok(m)) => Some((json_line(&m), Some(rx))),
            Some(Err(e)) => Some((json_line(&JsonMessage::error(word(e).message)), None)),
            None => None,
        }
    });
    let body = futures::stream::iter(first.map(|m| json_line(&m)))
        .chain(rest)
        .map(Ok::<_, std::io::Error>);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

pub(super) fn parse_platform(q: &Query) -> ApiResult<Option<Platform>> {
    match q.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => Platform::parse(p)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("invalid platform: {p}"))),
        None => Ok(None),
    }
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    if let Some(src) = q.get("fromSrc") {
        return import(&state, src, &q, body).await;
    }
    let from = q.get("fromImage").unwrap_or("");
    if from.is_empty() {
        return Err(ApiError::bad_request("invalid reference format"));
    }
    let mut reference = Reference::parse(from)?;
    match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if valid_digest(t) => {
            reference.tag = None;
            reference.digest = Some(t.to_string());
        }
        Some(t) => reference = Reference::parse(&format!("{}:{t}", reference.name()))?,
        None => {}
    }
    let reference = reference.with_default_tag();
    let platform = parse_platform(&q)?;
    let auth = headers
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .and_then(RegistryAuth::from_header);
    let request = PullRequest {
        reference: reference.to_string(),
        platform,
        auth,
    };
    let (rx, _) = endpoint::download::<api::Pull>(&state.bus, &request)
        .await
        .map_err(registry_error)?;
    progress_response(rx).await
}

/// Streams an HTTP request body into upload `E` of image-store and returns its result. Body
/// chunks (often 8-32 KiB from the CLI) are gathered into full frames.
async fn upload<E: Upload + ServiceSubject>(
    state: &AppState,
    request: &E::Request,
    body: Body,
) -> ApiResult<E::Result> {
    let (tx, _) = endpoint::upload::<E>(&state.bus, request).await?;
    let (tx, _) = crate::body::send(tx, body).await?;
    Ok(tx.finish_json::<E::Result>().await?)
}

async fn import(state: &AppState, src: &str, q: &Query, body: Body) -> ApiResult<Response> {
    if src != "-" {
        return Err(ApiError::bad_request(format!(
            "importing from a URL is not supported by Wharf: {src}"
        )));
    }
    let repo = q.get("repo").unwrap_or("");
    let tag = match repo {
        "" => None,
        repo => {
            let mut r = Reference::parse(repo)?;
            if let Some(t) = q.get("tag").filter(|t| !t.is_empty()) {
                r = Reference::parse(&format!("{}:{t}", r.name()))?;
            }
            Some(r.with_default_tag().to_string())
        }
    };
    let platform = parse_platform(q)?;
    let request = ImageImport {
        tag,
        changes: q.all("changes"),
        message: q
            .get("message")
            .filter(|m| !m.is_empty())
            .map(str::to_string),
        os: platform.as_ref().map(|p| p.os.clone()),
        architecture: platform.as_ref().map(|p| p.architecture.clone()),
        variant: platform.and_then(|p| p.variant),
    };
    let record = upload::<api::ImageImportTar>(state, &request, body).await?;
    let line = json_line(&JsonMessage::status(record.id.clone(), None));
    Ok(([(header::CONTENT_TYPE, "application/json")], line).into_response())
}

pub async fn load(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let request = ImageLoad {
        quiet: q.flag("quiet"),
    };
    let report = upload::<api::ImageLoadTar>(&state, &request, body).await?;
    let mut out = Vec::new();
    for line in &report.lines {
        out.extend_from_slice(&json_line(&JsonMessage::stream(format!("{line}\n"))));
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

pub async fn save_many(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let names = Query::parse(raw.as_deref()).all("names");
    if names.is_empty() {
        return Err(ApiError::bad_request("no images specified"));
    }
    save(&state, names).await
}

async fn save(state: &AppState, names: Vec<String>) -> ApiResult<Response> {
    let (mut rx, _) =
        endpoint::download::<api::ImageExportTar>(&state.bus, &ImageExport { names }).await?;
    // Errors before the first byte (an unknown image) become an HTTP error.
    let first = match rx.next().await {
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return Err(e.into()),
        None => None,
    };
    let rest = rx
        .into_stream()
        .map(|r| r.map_err(|e: BusError| std::io::Error::other(e.message)));
    let body = futures::stream::iter(first.map(Ok)).chain(rest);
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_split_names_with_slashes() {
        assert_eq!(
            split_op("localhost:5000/a/b/json", &["json"]),
            Some(("localhost:5000/a/b", "json"))
        );
        assert_eq!(
            split_op("busybox/history", &["json", "history"]),
            Some(("busybox", "history"))
        );
        assert_eq!(split_op("busybox", &["json"]), None);
    }

    /// A record with `rows` history entries (one layer), tagged as given, with a parent.
    fn record(id: char, rows: usize, tags: &[&str], parent: Option<&ImageRecord>) -> ImageRecord {
        let history: Vec<Value> = (0..rows)
            .map(|i| json!({"created": "2024-05-01T10:00:00Z", "created_by": format!("step {i}"), "empty_layer": i > 0}))
            .collect();
        serde_json::from_value(json!({
            "id": format!("sha256:{}", id.to_string().repeat(64)),
            "repo_tags": tags,
            "repo_digests": [],
            "layers": [],
            "config": {"history": history, "rootfs": {"type": "layers", "diff_ids": []}},
            "config_size": 2,
            "size": 0,
            "stored_at": "2024-05-01T10:00:00Z",
            "parent": parent.map(|p| p.id.clone()),
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn history_walks_the_parents_over_the_bus_as_dockerd_does() {
        use wharf_bus::service::Reply;
        use wharf_bus::subjects::{group, image_store};
        let nats = wharf_bus::testkit::NatsServer::start();
        let client = nats.client().await;
        // A pulled base (two rows, no parent), a build step on it and the tagged result.
        let base = record('1', 2, &["docker.io/library/busybox:latest"], None);
        let step = record('2', 3, &[], Some(&base));
        let app = record('3', 4, &["docker.io/library/app:v1"], Some(&step));
        let images = std::sync::Arc::new(vec![base.clone(), step.clone(), app.clone()]);
        let mut store =
            wharf_bus::service::start(&client, "wharf-image-store", "fake", group::IMAGE_STORE)
                .await
                .unwrap();
        store
            .serve(group::IMAGE_STORE, image_store::IMAGE_RESOLVE, move |req| {
                let images = images.clone();
                async move {
                    let r: ImageResolve = wharf_bus::rpc::decode(&req.message.payload)?;
                    let found = images.iter().find(|i| {
                        i.id == r.name
                            || i.repo_tags.iter().any(|t| {
                                Reference::parse(&r.name)
                                    .is_ok_and(|n| n.with_default_tag().to_string() == *t)
                            })
                    });
                    match found {
                        Some(i) => Reply::json(i),
                        None => Err(BusError::not_found(format!("No such image: {}", r.name))),
                    }
                }
            })
            .await
            .unwrap();
        let state = AppState::new(client, crate::Options::default()).await;
        let get = |path: &str| {
            let state = state.clone();
            let path = path.to_string();
            async move {
                let response =
                    get_dispatch(State(state), Extension(ApiVersion::CURRENT), Path(path))
                        .await
                        .unwrap();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                serde_json::from_slice::<Value>(&body).unwrap()
            }
        };

        let rows = get("app:v1/history").await;
        let ids: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [app.id.as_str(), &step.id, &base.id, "<missing>"]);
        let tags: Vec<&Value> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["Tags"])
            .collect();
        assert_eq!(
            tags,
            [
                &json!(["app:v1"]),
                &Value::Null,
                &json!(["busybox:latest"]),
                &Value::Null
            ]
        );
        assert_eq!(rows[0]["CreatedBy"], "step 3");
        // The base's own history knows no parent: its second row is missing.
        let ids: Vec<Value> = get("busybox/history")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Id"].clone())
            .collect();
        assert_eq!(ids, [json!(base.id), json!("<missing>")]);

        assert_eq!(get("app:v1/json").await["Parent"], json!(step.id));
        assert_eq!(get("busybox/json").await["Parent"], "");
    }
}

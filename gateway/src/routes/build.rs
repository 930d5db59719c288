//! `POST /build` (the classic builder's API): the context goes to image-store as a blob, a
//! builder from the queue group builds it, and its JSON output streams back as dockerd's.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::StreamExt;
use wharf_bus::build::{BuildRequest, ContextAccept, ContextPull, FifoOffer};
use wharf_bus::reference::Reference;
use wharf_bus::stream::{Sender, OPEN_TIMEOUT};
use wharf_bus::{api, endpoint, BusError};

use super::images::progress_response_with;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::state::AppState;

/// dockerd's `sanitizeRepoAndTags`: each `-t` normalized with `latest` by default, duplicates
/// dropped, digests refused.
fn tags(q: &Query) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in q.all("t") {
        if t.is_empty() {
            continue;
        }
        let r = Reference::parse(&t)?;
        if r.digest.is_some() {
            return Err(ApiError::bad_request("build tag cannot contain a digest"));
        }
        let full = r.with_default_tag().to_string();
        if !out.contains(&full) {
            out.push(full);
        }
    }
    Ok(out)
}

fn json_param<T: serde::de::DeserializeOwned + Default>(
    q: &Query,
    key: &str,
    what: &str,
) -> ApiResult<T> {
    match q.get(key).filter(|v| !v.is_empty()) {
        None => Ok(T::default()),
        Some(v) => serde_json::from_str(v)
            .map_err(|e| ApiError::bad_request(format!("error reading {what}: {e}"))),
    }
}

fn int_param(q: &Query, key: &str) -> ApiResult<i64> {
    match q.get(key).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!("strconv.ParseInt: parsing \"{v}\": invalid syntax"))
        }),
    }
}

/// The options of a `POST /build` query, as dockerd's `newImageBuildOptions` reads them.
pub fn options(q: &Query, headers: &HeaderMap) -> ApiResult<BuildRequest> {
    if let Some(v) = q.get("version").filter(|v| !v.is_empty()) {
        if v != "1" {
            return Err(ApiError::bad_request(format!(
                "BuildKit is not supported by Wharf: use the classic builder (got builder version {v:?})"
            )));
        }
    }
    if !q.all("securityopt").is_empty() {
        return Err(ApiError::bad_request(
            "The daemon on this platform does not support setting security options on build",
        ));
    }
    if q.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "remote build contexts (git or URL) are not supported by Wharf",
        ));
    }
    let build_args: BTreeMap<String, Option<String>> = json_param(q, "buildargs", "build args")?;
    let labels: BTreeMap<String, String> = json_param(q, "labels", "labels")?;
    let cache_from: Vec<String> = json_param(q, "cachefrom", "cache from")?;
    let extra_hosts = q.all("extrahosts");
    let mut host_config = wharf_bus::container::HostConfig {
        extra_hosts: (!extra_hosts.is_empty()).then_some(extra_hosts),
        shm_size: int_param(q, "shmsize")?,
        memory: int_param(q, "memory")?,
        memory_swap: int_param(q, "memswap")?,
        cpu_shares: int_param(q, "cpushares")?,
        cpu_period: int_param(q, "cpuperiod")?,
        cpu_quota: int_param(q, "cpuquota")?,
        cpuset_cpus: q.get("cpusetcpus").unwrap_or("").to_string(),
        ..Default::default()
    };
    host_config.ulimits = json_param(q, "ulimits", "ulimit settings")?;
    // X-Registry-Config: base64url JSON of {registry: AuthConfig}.
    let auth = headers
        .get("X-Registry-Config")
        .and_then(|v| v.to_str().ok())
        .map(wharf_bus::registry::auth_configs_from_header)
        .unwrap_or_default();
    // `rm` defaults to true; `forcerm` implies it.
    let rm = q.flag("forcerm") || q.get("rm").is_none_or(|v| v.is_empty()) || q.flag("rm");
    Ok(BuildRequest {
        context_source: String::new(),
        dockerfile: q.get("dockerfile").unwrap_or("").to_string(),
        tags: tags(q)?,
        build_args,
        target: q.get("target").unwrap_or("").to_string(),
        no_cache: q.flag("nocache"),
        pull: q.flag("pull"),
        labels,
        cache_from,
        network_mode: q.get("networkmode").unwrap_or("").to_string(),
        quiet: q.flag("q"),
        rm,
        force_rm: q.flag("forcerm"),
        // Refused before the build starts, as dockerd refuses it.
        platform: super::images::parse_platform(q)?
            .map(|_| q.get("platform").unwrap_or("").to_string()),
        auth,
        host_config,
    })
}

pub async fn build(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let mut request = options(&q, &headers)?;
    tracing::debug!("build requested");
    // The body goes straight to the builder that takes the build: it pulls it from a one-off
    // subject of this gateway, and unpacks it as it arrives.
    request.context_source = format!("{}.build-context", state.bus.new_inbox());
    let mut pulls = state
        .bus
        .subscribe(request.context_source.clone())
        .await
        .map_err(|e| BusError::unavailable(format!("cannot serve the build context: {e}")))?;
    let (rx, _) = endpoint::download::<api::Build>(&state.bus, &request).await?;
    let bus = state.bus.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        // The builder asks as soon as it has accepted the build.
        let Ok(Some(pull)) = tokio::time::timeout(OPEN_TIMEOUT, pulls.next()).await else {
            return;
        };
        drop(pulls);
        match send_body(&bus, &pull, body).await {
            Ok(size) => tracing::debug!(elapsed = ?started.elapsed(), size, "build context sent"),
            Err(e) => tracing::info!("build context not sent: {}", e.message),
        }
    });
    progress_response_with(rx, builder_error).await
}

/// Streams the HTTP body to the builder that asked for it with `pull`, in full frames.
async fn send_body(
    bus: &async_nats::Client,
    pull: &async_nats::Message,
    body: Body,
) -> Result<u64, BusError> {
    let offer = wharf_bus::rpc::decode::<ContextPull>(&pull.payload)
        .ok()
        .and_then(|p| p.fifo);
    if let Some(fifo) = offer.as_ref().and_then(open_fifo) {
        let accept = wharf_bus::rpc::encode(&ContextAccept { fifo: true })?;
        let tx = Sender::accept_message(bus, pull, accept).await?;
        return send_through_fifo(tx, fifo, body).await;
    }
    let tx = Sender::accept_message(bus, pull, bytes::Bytes::new()).await?;
    let (tx, size) = crate::body::send(tx, body).await?;
    tx.finish().await?;
    Ok(size)
}

/// The builder's FIFO, when it is on this host and the file opened is the one it offered.
/// The builder holds the read end open already, so this open does not wait (and fails, so
/// the bus is used, if the builder is gone).
fn open_fifo(offer: &FifoOffer) -> Option<tokio::net::unix::pipe::Sender> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    if wharf_bus::image::host_id().as_deref() != Some(offer.host.as_str()) {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&offer.path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_fifo() || meta.dev() != offer.dev || meta.ino() != offer.ino {
        return None;
    }
    tokio::net::unix::pipe::Sender::from_file(file).ok()
}

/// Writes the body into the builder's FIFO; the stream stays open meanwhile so that a builder
/// that goes away stops the writing, and it ends (or fails) once the body is written.
async fn send_through_fifo(
    mut tx: Sender,
    mut fifo: tokio::net::unix::pipe::Sender,
    body: Body,
) -> Result<u64, BusError> {
    use tokio::io::AsyncWriteExt;
    let mut data = body.into_data_stream();
    let mut size = 0u64;
    let outcome: Result<(), BusError> = loop {
        let chunk = tokio::select! {
            chunk = data.next() => chunk,
            why = tx.gone() => break Err(why),
        };
        let chunk = match chunk {
            None => break Ok(()),
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                break Err(BusError::invalid(format!(
                    "error reading request body: {e}"
                )))
            }
        };
        size += chunk.len() as u64;
        let written = tokio::select! {
            w = fifo.write_all(&chunk) => w.map_err(|e| BusError::unavailable(format!("build context pipe: {e}"))),
            why = tx.gone() => Err(why),
        };
        if let Err(e) = written {
            break Err(e);
        }
    };
    // The builder reads to the end of the pipe, then waits for the stream's end (or error).
    drop(fifo);
    match outcome {
        Ok(()) => {
            tx.finish().await?;
            Ok(size)
        }
        Err(e) => {
            tx.fail(&e).await;
            Err(e)
        }
    }
}

/// A builder that died mid-build (killed, its host gone) leaves the stream silent or dropped:
/// say so in the user's terms. Nothing was tagged: tags are set only after the last step.
fn builder_error(e: BusError) -> BusError {
    let lost = e.message == "the sending side of the stream stopped answering"
        || e.message == "the sending side went away";
    if lost {
        BusError::unavailable(format!(
            "the builder stopped answering mid-build ({}): the build was abandoned and no image was tagged",
            e.message
        ))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_like_dockerd() {
        let q = Query::parse(Some(
            "t=App:1&t=app&t=app:latest&buildargs=%7B%22A%22%3A%221%22%2C%22B%22%3Anull%7D&nocache=1&q=1&labels=%7B%22l%22%3A%22v%22%7D",
        ));
        let err = options(&q, &HeaderMap::new()).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        let q = Query::parse(Some(
            "t=app:1&t=app&t=app:latest&buildargs=%7B%22A%22%3A%221%22%2C%22B%22%3Anull%7D&nocache=1&q=1&labels=%7B%22l%22%3A%22v%22%7D",
        ));
        let o = options(&q, &HeaderMap::new()).unwrap();
        assert_eq!(
            o.tags,
            vec![
                "docker.io/library/app:1".to_string(),
                "docker.io/library/app:latest".to_string()
            ]
        );
        assert_eq!(o.build_args["A"], Some("1".to_string()));
        assert_eq!(o.build_args["B"], None);
        assert!(o.no_cache && o.quiet && o.rm && !o.force_rm);
        assert_eq!(o.labels["l"], "v");
        let o = options(&Query::parse(Some("rm=0")), &HeaderMap::new()).unwrap();
        assert!(!o.rm);
        let o = options(&Query::parse(Some("rm=0&forcerm=1")), &HeaderMap::new()).unwrap();
        assert!(o.rm && o.force_rm);
        let err = options(&Query::parse(Some("platform=a/b/c/d")), &HeaderMap::new()).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        let o = options(
            &Query::parse(Some("platform=linux/amd64")),
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(o.platform.as_deref(), Some("linux/amd64"));
        let err = options(&Query::parse(Some("buildargs=nope")), &HeaderMap::new()).unwrap_err();
        assert!(err.message.starts_with("error reading build args"));
    }
}

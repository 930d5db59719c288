//! `/_ping`, `/version`, `/info`, `/events`, `/system/df` and `/build/prune`.

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use sha2::Digest;
use wharf_bus::build::{CachePrune, CachePruneReport, CacheRecord};
use wharf_bus::events::Event;
use wharf_bus::image::{ImageList, ImageRecord};
use wharf_bus::subjects;
use wharf_bus::ErrorKind;

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::render;
use crate::state::AppState;
use crate::version::{ApiVersion, API_VERSION, MIN_API_VERSION};

/// Name of the JetStream stream that keeps recent events for `docker events --since`.
pub const EVENTS_STREAM: &str = "WHARF_EVENTS";

pub async fn ping() -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("API-Version", HeaderValue::from_static(API_VERSION));
    headers.insert("Builder-Version", HeaderValue::from_static("1"));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert("OSType", HeaderValue::from_static("linux"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    (StatusCode::OK, headers, "OK").into_response()
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn go_arch() -> String {
    wharf_bus::registry::Platform::host().architecture
}

pub async fn version() -> axum::Json<Value> {
    let kernel = kernel_version();
    let engine = json!({
        "Name": "Engine",
        "Version": wharf_bus::VERSION,
        "Details": {
            "ApiVersion": API_VERSION,
            "Arch": go_arch(),
            "BuildTime": "",
            "Experimental": "false",
            "GitCommit": option_env!("WHARF_GIT_COMMIT").unwrap_or(""),
            "GoVersion": "rust",
            "KernelVersion": kernel,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux"
        }
    });
    axum::Json(json!({
        "Platform": { "Name": "Wharf" },
        "Components": [engine],
        "Version": wharf_bus::VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": option_env!("WHARF_GIT_COMMIT").unwrap_or(""),
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": ""
    }))
}

fn os_pretty_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".to_string())
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn cgroup_version() -> &'static str {
    // cgroup2 at the root means a unified hierarchy; anything else (v1 or hybrid) is v1 to Docker.
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => "2",
        _ => "1",
    }
}

/// What every node enforces (a protection one node lacks is not listed): seccomp always,
/// `userns` where every node remaps.
fn security_options(nodes: &[wharf_bus::container::NodeInfo]) -> Vec<String> {
    let Some(first) = nodes.first() else {
        return vec!["name=seccomp,profile=builtin".to_string()];
    };
    first
        .security_options
        .iter()
        .filter(|o| nodes.iter().all(|n| n.security_options.contains(o)))
        .cloned()
        .collect()
}

pub async fn info(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    // Counts come from the services; a service that is down leaves its count at zero rather than
    // failing `docker info`.
    let images: Vec<wharf_bus::image::ImageRecord> = wharf_bus::call(
        &state.bus,
        &subjects::subject(
            subjects::group::IMAGE_STORE,
            subjects::image_store::IMAGE_LIST,
        ),
        &wharf_bus::image::ImageList {
            all: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_default();
    let registry: wharf_bus::registry::RegistrySettings = wharf_bus::call(
        &state.bus,
        &subjects::subject(
            subjects::group::REGISTRY_SYNC,
            subjects::registry_sync::INFO,
        ),
        &json!({}),
    )
    .await
    .unwrap_or_default();
    let mut insecure_cidrs = vec!["::1/128".to_string(), "127.0.0.0/8".to_string()];
    let mut index_configs = serde_json::Map::new();
    index_configs.insert(
        "docker.io".to_string(),
        json!({"Name": "docker.io", "Mirrors": registry.mirrors, "Secure": true, "Official": true}),
    );
    for r in &registry.insecure_registries {
        if r.contains('/') {
            insecure_cidrs.push(r.clone());
        } else {
            index_configs.insert(
                r.clone(),
                json!({"Name": r, "Mirrors": [], "Secure": false, "Official": false}),
            );
        }
    }
    // Container counts are the sums of the runtime nodes' last announcements.
    let nodes = match state.roster().await {
        Ok(roster) => roster.nodes_or_discover().await,
        Err(_) => Vec::new(),
    };
    let count = |f: fn(&wharf_bus::container::NodeInfo) -> u64| nodes.iter().map(f).sum::<u64>();
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    Ok(axum::Json(json!({
        "ID": state.engine_id,
        "Containers": count(|n| n.containers),
        "ContainersRunning": count(|n| n.running),
        "ContainersPaused": count(|n| n.paused),
        "ContainersStopped": count(|n| n.stopped),
        "Images": images.len(),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": null,
            "Log": ["json-file"]
        },
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "BridgeNfIptables": false,
        "BridgeNfIp6tables": false,
        "Debug": false,
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "OomKillDisable": false,
        "NGoroutines": 0,
        "SystemTime": now,
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": os_pretty_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": insecure_cidrs,
            "IndexConfigs": index_configs,
            "Mirrors": registry.mirrors
        },
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total(),
        "GenericResources": null,
        "DockerRootDir": state.options.data_root.display().to_string(),
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": wharf_bus::VERSION,
        "Runtimes": {"wharf": {"path": "wharf-runtime"}},
        "DefaultRuntime": "wharf",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null
        },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": security_options(&nodes),
        "Warnings": []
    })))
}

/// A point in time as `docker events --since/--until` sends it: unix seconds with optional
/// fraction, or RFC 3339.
fn parse_time(s: &str) -> ApiResult<i64> {
    if let Some((secs, frac)) = s.split_once('.') {
        if let (Ok(secs), true) = (
            secs.parse::<i64>(),
            frac.chars().all(|c| c.is_ascii_digit()),
        ) {
            let frac = format!("{frac:0<9}");
            let nanos: i64 = frac[..9].parse().unwrap_or(0);
            return secs
                .checked_mul(1_000_000_000)
                .and_then(|n| n.checked_add(nanos))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("failed to parse value {s} as a time"))
                });
        }
    }
    if let Ok(secs) = s.parse::<i64>() {
        return secs
            .checked_mul(1_000_000_000)
            .ok_or_else(|| ApiError::bad_request(format!("failed to parse value {s} as a time")));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_nanos_opt().unwrap_or(0))
        .map_err(|_| ApiError::bad_request(format!("failed to parse value {s} as a time")))
}

const EVENT_FILTERS: &[&str] = &[
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "service",
    "type",
    "volume",
    "config",
    "secret",
];

/// True when `event` passes dockerd's event filters.
fn matches(event: &Event, filters: &BTreeMap<String, Vec<String>>) -> bool {
    let attr = |k: &str| event.actor.attributes.get(k).map(String::as_str);
    let any = |key: &str, f: &dyn Fn(&str) -> bool| {
        filters
            .get(key)
            .map(|vs| vs.iter().any(|v| f(v)))
            .unwrap_or(true)
    };
    any("type", &|v| v == event.kind)
        && any("event", &|v| {
            v == event.action || event.action.starts_with(&format!("{v}:"))
        })
        && any("scope", &|v| v == event.scope)
        && any("container", &|v| {
            event.kind == "container" && (event.actor.id.starts_with(v) || attr("name") == Some(v))
        })
        && any("image", &|v| {
            let name = attr("image").or(if event.kind == "image" {
                attr("name")
            } else {
                None
            });
            event.actor.id == v
                || name == Some(v)
                || name
                    .map(|n| n.split(':').next() == Some(v))
                    .unwrap_or(false)
                || (event.kind == "image"
                    && event
                        .actor
                        .id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:")))
        })
        && any("label", &|v| match v.split_once('=') {
            Some((k, val)) => attr(k) == Some(val),
            None => attr(v).is_some(),
        })
        && any("volume", &|v| {
            event.kind == "volume" && (event.actor.id == v || attr("name") == Some(v))
        })
        && any("network", &|v| {
            event.kind == "network" && (event.actor.id.starts_with(v) || attr("name") == Some(v))
        })
        && any("daemon", &|v| {
            event.kind == "daemon" && (event.actor.id == v || attr("name") == Some(v))
        })
}

/// Docker's event JSON; container and image events also carry the `status`, `id` and `from`
/// fields that every API version up to 1.51 keeps.
fn render_event(event: &Event) -> Vec<u8> {
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    if event.kind == "container" || event.kind == "image" {
        if let Some(o) = v.as_object_mut() {
            o.insert("status".into(), json!(event.action));
            o.insert("id".into(), json!(event.actor.id));
            if let Some(from) = event.actor.attributes.get("image") {
                o.insert("from".into(), json!(from));
            }
        }
    }
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Creates (or finds) the JetStream stream that records every event, so `--since` can replay them.
pub async fn ensure_events_stream(
    js: &async_nats::jetstream::Context,
) -> Result<async_nats::jetstream::stream::Stream, async_nats::jetstream::context::CreateStreamError>
{
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: EVENTS_STREAM.to_string(),
        subjects: vec![subjects::EVENTS_ALL.to_string()],
        max_age: std::time::Duration::from_secs(24 * 3600),
        max_messages: 100_000,
        ..Default::default()
    })
    .await
}

/// An event as read from the bus, with how many recorded events follow it (JetStream only).
struct Recorded {
    payload: Vec<u8>,
    pending: Option<u64>,
}

/// Source of events: JetStream (history for `--since`) when the bus has it, a plain
/// subscription otherwise. Also returns how many recorded events the replay holds (`None`
/// without JetStream).
async fn event_source(
    state: &AppState,
    since: Option<i64>,
) -> ApiResult<(futures::stream::BoxStream<'static, Recorded>, Option<u64>)> {
    let unavailable = |e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read events: {e}"),
        )
    };
    match ensure_events_stream(&state.jetstream).await {
        Ok(stream) => {
            let deliver_policy = match since {
                Some(nanos) => async_nats::jetstream::consumer::DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                },
                None => async_nats::jetstream::consumer::DeliverPolicy::New,
            };
            let mut consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable(&e))?;
            let recorded = consumer
                .info()
                .await
                .map(|i| i.num_pending)
                .map_err(|e| unavailable(&e))?;
            let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
            let source = messages.filter_map(|m| async move {
                let m = m.ok()?;
                let pending = m.info().ok().map(|i| i.pending);
                Some(Recorded {
                    payload: m.payload.to_vec(),
                    pending,
                })
            });
            Ok((source.boxed(), Some(recorded)))
        }
        Err(e) => {
            tracing::debug!("JetStream unavailable for events ({e}); live events only");
            let sub = state
                .bus
                .subscribe(subjects::EVENTS_ALL.to_string())
                .await
                .map_err(|e| unavailable(&e))?;
            Ok((
                sub.map(|m| Recorded {
                    payload: m.payload.to_vec(),
                    pending: None,
                })
                .boxed(),
                None,
            ))
        }
    }
}

/// When the response ends: with an `until` in the past, once the recorded events are replayed;
/// with one in the future, at that time; without one, never.
enum End {
    AfterReplay,
    At(tokio::time::Instant),
    Never,
}

pub async fn events(State(state): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let filters = q.filters()?;
    for key in filters.keys() {
        if !EVENT_FILTERS.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
        }
    }
    let since = q
        .get("since")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()?;
    let until = q
        .get("until")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()?;
    let (source, recorded) = event_source(&state, since).await?;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let end = match until {
        Some(u) if u <= now && recorded.is_some() => End::AfterReplay,
        Some(u) => End::At(
            tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64),
        ),
        None => End::Never,
    };
    if matches!(end, End::AfterReplay) && recorded == Some(0) {
        return Ok(([(header::CONTENT_TYPE, "application/json")], Body::empty()).into_response());
    }
    let body = futures::stream::unfold(Some(source), move |source| {
        let filters = filters.clone();
        let end_at = match end {
            End::At(t) => Some(t),
            _ => None,
        };
        let after_replay = matches!(end, End::AfterReplay);
        async move {
            let mut source = source?;
            loop {
                let next = match end_at {
                    Some(t) => tokio::time::timeout_at(t, source.next()).await.ok()?,
                    None => source.next().await,
                }?;
                let last = after_replay && next.pending == Some(0);
                let event = serde_json::from_slice::<Event>(&next.payload).ok();
                let wanted = event.as_ref().filter(|e| {
                    until.map(|u| e.time_nano <= u).unwrap_or(true)
                        && since.map(|s| e.time_nano >= s).unwrap_or(true)
                        && matches(e, &filters)
                });
                match (wanted, last) {
                    (Some(e), last) => {
                        let rest = if last { None } else { Some(source) };
                        return Some((Ok::<_, std::io::Error>(render_event(e)), rest));
                    }
                    (None, true) => return None,
                    (None, false) => continue,
                }
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// A byte count parameter of `POST /build/prune`, as dockerd parses it.
fn bytes_param(q: &Query, key: &str) -> ApiResult<u64> {
    match q.get(key).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v.parse::<i64>().map(|n| n.max(0) as u64).map_err(|_| {
            ApiError::bad_request(format!("{key} is in bytes and expects an integer, got {v}"))
        }),
    }
}

/// dockerd's `POST /build/prune` answer: a null list when nothing was deleted.
pub fn prune_json(report: &CachePruneReport) -> Value {
    let deleted = if report.caches_deleted.is_empty() {
        Value::Null
    } else {
        json!(report.caches_deleted)
    };
    json!({"CachesDeleted": deleted, "SpaceReclaimed": report.space_reclaimed})
}

/// `POST /build/prune`: a builder removes the cache entries the filters select and deletes
/// the images only they kept; the images containers use stay.
pub async fn build_prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let q = Query::parse(raw.as_deref());
    let filters = q.filters()?;
    // `reserved-space` (API 1.48) replaces `keep-storage`.
    let keep_storage = match bytes_param(&q, "reserved-space")? {
        0 => bytes_param(&q, "keep-storage")?,
        n => n,
    };
    let request = CachePrune {
        all: q.flag("all"),
        filters,
        keep_storage,
        in_use: super::images::images_in_use(&state).await?,
    };
    let report: CachePruneReport = wharf_bus::call(
        &state.bus,
        &subjects::subject(subjects::group::BUILDER, subjects::builder::CACHE_PRUNE),
        &request,
    )
    .await
    .map_err(|e| match e.kind {
        ErrorKind::Unavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot prune the build cache: {}", e.message),
        ),
        _ => e.into(),
    })?;
    Ok(axum::Json(prune_json(&report)))
}

/// What `GET /system/df` reports: everything before API 1.42 or without `type`, otherwise
/// the types asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfParts {
    pub containers: bool,
    pub images: bool,
    pub volumes: bool,
    pub build_cache: bool,
}

pub fn df_parts(q: &Query, version: ApiVersion) -> ApiResult<DfParts> {
    let types = q.all("type");
    if !version.at_least(1, 42) || types.is_empty() {
        return Ok(DfParts {
            containers: true,
            images: true,
            volumes: true,
            build_cache: true,
        });
    }
    let mut parts = DfParts {
        containers: false,
        images: false,
        volumes: false,
        build_cache: false,
    };
    for t in types {
        match t.as_str() {
            "container" => parts.containers = true,
            "image" => parts.images = true,
            "volume" => parts.volumes = true,
            "build-cache" => parts.build_cache = true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown object type: {other}"
                )))
            }
        }
    }
    Ok(parts)
}

/// An image's layers as dockerd's layer store knows them: by chain ID (the layer with
/// everything under it), each with its unpacked size.
fn chain_ids(record: &ImageRecord) -> Vec<(String, u64)> {
    let mut chain = String::new();
    record
        .layers
        .iter()
        .map(|layer| {
            chain = if chain.is_empty() {
                layer.diff_id.clone()
            } else {
                let digest = sha2::Sha256::digest(format!("{chain} {}", layer.diff_id));
                format!("sha256:{}", hex::encode(digest))
            };
            (chain.clone(), layer.unpacked_size)
        })
        .collect()
}

/// dockerd's image part of `/system/df`: `LayersSize` is the size of every distinct layer of
/// every image (`all`, intermediate ones too); each image `docker images` shows (`shown`) gets
/// its `SharedSize` (its layers some other image also has) and how many containers use it.
pub fn image_usage(
    all: &[ImageRecord],
    shown: &[ImageRecord],
    containers: &[Value],
    version: ApiVersion,
) -> (u64, Vec<Value>) {
    let mut layers: HashMap<String, (usize, u64)> = HashMap::new();
    for record in all {
        for (chain, size) in chain_ids(record) {
            layers.entry(chain).or_insert((0, size)).0 += 1;
        }
    }
    let layers_size = layers.values().map(|(_, size)| size).sum();
    let images = shown
        .iter()
        .map(|record| {
            let shared: u64 = chain_ids(record)
                .iter()
                .filter(|(chain, _)| layers.get(chain).is_some_and(|(refs, _)| *refs > 1))
                .map(|(_, size)| size)
                .sum();
            let used = containers
                .iter()
                .filter(|c| c["ImageID"].as_str() == Some(record.id.as_str()))
                .count();
            let mut summary = render::summary(record, version);
            summary["SharedSize"] = json!(shared);
            summary["Containers"] = json!(used);
            summary
        })
        .collect();
    (layers_size, images)
}

/// Volumes with dockerd's `UsageData`: `RefCount` counts the containers (in any state) that
/// mount the volume; `Size` is the node's figure when it gives one, else -1 ("not available").
pub fn volume_usage(volumes: Vec<Value>, containers: &[Value]) -> Vec<Value> {
    volumes
        .into_iter()
        .map(|mut volume| {
            let name = volume["Name"].as_str().unwrap_or("").to_string();
            let refs = containers
                .iter()
                .filter(|c| {
                    c["Mounts"].as_array().is_some_and(|mounts| {
                        mounts
                            .iter()
                            .any(|m| m["Type"] == "volume" && m["Name"].as_str() == Some(&name))
                    })
                })
                .count();
            let size = volume["UsageData"]["Size"].as_i64().unwrap_or(-1);
            volume["UsageData"] = json!({"Size": size, "RefCount": refs});
            volume
        })
        .collect()
}

/// A build cache record as dockerd shows it: from API 1.42 the deprecated `Parent` gives way
/// to `Parents`; times in Go's format.
pub fn cache_record_json(record: &CacheRecord, version: ApiVersion) -> Value {
    let time = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| render::go_time(&t.with_timezone(&chrono::Utc)))
            .unwrap_or_else(|_| t.to_string())
    };
    let mut v = Map::new();
    v.insert("ID".into(), json!(record.id));
    if version.at_least(1, 42) {
        if !record.parent.is_empty() {
            v.insert("Parents".into(), json!([record.parent]));
        }
    } else {
        v.insert("Parent".into(), json!(record.parent));
    }
    v.insert("Type".into(), json!(record.kind));
    v.insert("Description".into(), json!(record.description));
    v.insert("InUse".into(), json!(record.in_use));
    v.insert("Shared".into(), json!(record.shared));
    v.insert("Size".into(), json!(record.size));
    v.insert("CreatedAt".into(), json!(time(&record.created_at)));
    v.insert(
        "LastUsedAt".into(),
        json!(record.last_used_at.as_deref().map(time)),
    );
    v.insert("UsageCount".into(), json!(record.usage_count));
    Value::Object(v)
}

/// What the services answered for `/system/df`; `None` for a part not asked for (or, for the
/// build cache, when no builder answers).
#[derive(Debug, Default)]
pub struct Usage {
    /// Every image, and those `docker images` shows.
    pub images: Option<(Vec<ImageRecord>, Vec<ImageRecord>)>,
    /// Every container (with sizes when the containers part is asked for).
    pub containers: Option<Vec<Value>>,
    pub volumes: Option<Vec<Value>>,
    pub build_cache: Option<Vec<CacheRecord>>,
}

/// dockerd's `GET /system/df` body (`types.DiskUsage`).
pub fn disk_usage_json(usage: Usage, parts: DfParts, version: ApiVersion) -> Value {
    let containers = usage.containers.unwrap_or_default();
    let (layers_size, images) = match &usage.images {
        Some((all, shown)) => {
            let (size, images) = image_usage(all, shown, &containers, version);
            (size, json!(images))
        }
        None => (0, Value::Null),
    };
    let volumes = usage
        .volumes
        .map(|v| json!(volume_usage(v, &containers)))
        .unwrap_or(Value::Null);
    let build_cache = usage.build_cache.as_ref().map(|records| {
        records
            .iter()
            .map(|r| cache_record_json(r, version))
            .collect::<Vec<_>>()
    });
    let mut out = json!({
        "LayersSize": layers_size,
        "Images": images,
        "Containers": if parts.containers { json!(containers) } else { Value::Null },
        "Volumes": volumes,
        "BuildCache": build_cache,
    });
    // Before API 1.42 dockerd also sums the build cache up.
    if !version.at_least(1, 42) {
        let size: u64 = usage.build_cache.iter().flatten().map(|r| r.size).sum();
        if size > 0 {
            out["BuilderSize"] = json!(size);
        }
    }
    out
}

async fn list_images(state: &AppState, all: bool) -> ApiResult<Vec<ImageRecord>> {
    Ok(wharf_bus::call(
        &state.bus,
        &subjects::subject(
            subjects::group::IMAGE_STORE,
            subjects::image_store::IMAGE_LIST,
        ),
        &ImageList {
            all,
            ..Default::default()
        },
    )
    .await?)
}

/// The build cache records; `None` when no builder answers (`docker system df` still works).
async fn build_cache(state: &AppState) -> ApiResult<Option<Vec<CacheRecord>>> {
    let listed = wharf_bus::call(
        &state.bus,
        &subjects::subject(subjects::group::BUILDER, subjects::builder::CACHE_LIST),
        &json!({}),
    )
    .await;
    match listed {
        Ok(records) => Ok(Some(records)),
        Err(e) if e.kind == ErrorKind::Unavailable => {
            tracing::debug!("no build cache in df: {}", e.message);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /system/df`: the same bus requests as `docker images`, `docker ps -as` and
/// `docker volume ls`, plus the builders' cache index, asked at once.
pub async fn disk_usage(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let parts = df_parts(&Query::parse(raw.as_deref()), version)?;
    let containers = async {
        if !(parts.containers || parts.images || parts.volumes) {
            return Ok(None);
        }
        // Sizes cost a walk of each container's files: only when they are shown.
        let query = if parts.containers {
            "all=1&size=1"
        } else {
            "all=1"
        };
        let listed =
            super::containers::list(State(state.clone()), RawQuery(Some(query.to_string())))
                .await?;
        Ok::<_, ApiError>(Some(listed.0.as_array().cloned().unwrap_or_default()))
    };
    let images = async {
        if !parts.images {
            return Ok(None);
        }
        let (all, shown) = tokio::try_join!(list_images(&state, true), list_images(&state, false))?;
        Ok::<_, ApiError>(Some((all, shown)))
    };
    let volumes = async {
        if !parts.volumes {
            return Ok(None);
        }
        let listed = super::volumes::list(State(state.clone()), RawQuery(None)).await?;
        Ok::<_, ApiError>(Some(
            listed.0["Volumes"].as_array().cloned().unwrap_or_default(),
        ))
    };
    let cache = async {
        if !parts.build_cache {
            return Ok(None);
        }
        build_cache(&state).await
    };
    let (containers, images, volumes, build_cache) =
        tokio::try_join!(containers, images, volumes, cache)?;
    let usage = Usage {
        images,
        containers,
        volumes,
        build_cache,
    };
    Ok(axum::Json(disk_usage_json(usage, parts, version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_parse_as_the_cli_sends_them() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert!(parse_time("2024-01-01T00:00:00Z").is_ok());
        assert!(parse_time("yesterday").is_err());
        assert!(
            parse_time("99999999999999999").is_err(),
            "overflow is a bad request, not a panic"
        );
    }

    fn image(id: char, layers: &[(char, u64)], tags: &[&str], parent: Option<char>) -> ImageRecord {
        let hex = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let layers: Vec<Value> = layers
            .iter()
            .map(|(d, size)| {
                json!({"digest": hex(*d), "media_type": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                       "size": size / 2, "diff_id": format!("sha256:diff{d}"), "unpacked_size": size})
            })
            .collect();
        let size: u64 = layers
            .iter()
            .map(|l| l["unpacked_size"].as_u64().unwrap())
            .sum();
        serde_json::from_value(json!({
            "id": hex(id), "repo_tags": tags, "repo_digests": [], "layers": layers,
            "config": {"created": "2024-05-01T10:00:00Z"}, "config_size": 100, "size": size,
            "stored_at": "2024-05-01T10:00:00Z", "parent": parent.map(hex),
        }))
        .unwrap()
    }

    fn cache_record(id: &str, parent: &str, size: u64) -> CacheRecord {
        CacheRecord {
            id: id.into(),
            parent: parent.into(),
            kind: "regular".into(),
            description: "/bin/sh -c echo hi > /f".into(),
            in_use: false,
            shared: false,
            size,
            created_at: "2024-05-01T10:00:00.500+00:00".into(),
            last_used_at: None,
            usage_count: 0,
        }
    }

    #[test]
    fn build_prune_answers_as_dockerd() {
        assert_eq!(
            prune_json(&CachePruneReport::default()),
            json!({"CachesDeleted": null, "SpaceReclaimed": 0})
        );
        let report = CachePruneReport {
            caches_deleted: vec!["k1".into(), "k2".into()],
            images_deleted: vec!["sha256:x".into()],
            space_reclaimed: 4096,
        };
        assert_eq!(
            prune_json(&report),
            json!({"CachesDeleted": ["k1", "k2"], "SpaceReclaimed": 4096})
        );
        let q = Query::parse(Some("keep-storage=1e3"));
        assert_eq!(
            bytes_param(&q, "keep-storage").unwrap_err().message,
            "keep-storage is in bytes and expects an integer, got 1e3"
        );
        assert_eq!(
            bytes_param(&Query::parse(Some("keep-storage=512")), "keep-storage").unwrap(),
            512
        );
    }

    #[test]
    fn df_types_are_read_from_api_1_42() {
        let all = DfParts {
            containers: true,
            images: true,
            volumes: true,
            build_cache: true,
        };
        let q = Query::parse(Some("type=image&type=build-cache"));
        assert_eq!(
            df_parts(&q, ApiVersion::CURRENT).unwrap(),
            DfParts {
                containers: false,
                images: true,
                volumes: false,
                build_cache: true,
            }
        );
        assert_eq!(df_parts(&q, ApiVersion(1, 41)).unwrap(), all);
        assert_eq!(
            df_parts(&Query::parse(None), ApiVersion::CURRENT).unwrap(),
            all
        );
        let err = df_parts(&Query::parse(Some("type=network")), ApiVersion::CURRENT).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "unknown object type: network");
    }

    #[test]
    fn image_usage_counts_distinct_layers_shared_sizes_and_containers() {
        // A base, a build step on it (hidden from `docker images`) and the tagged result with
        // the step's layers; another image whose layer has the same diff ID on another base.
        let base = image(
            '1',
            &[('a', 1000)],
            &["docker.io/library/base:latest"],
            None,
        );
        let step = image('2', &[('a', 1000), ('b', 200)], &[], Some('1'));
        let app = image(
            '3',
            &[('a', 1000), ('b', 200)],
            &["docker.io/library/app:v1"],
            Some('2'),
        );
        let other = image(
            '4',
            &[('c', 50), ('b', 200)],
            &["docker.io/library/other:v1"],
            None,
        );
        let all = vec![base.clone(), step, app.clone(), other.clone()];
        let shown = vec![app.clone(), base.clone(), other.clone()];
        let containers = vec![
            json!({"Id": "c1", "ImageID": app.id}),
            json!({"Id": "c2", "ImageID": app.id}),
            json!({"Id": "c3", "ImageID": base.id}),
        ];
        let (layers_size, images) = image_usage(&all, &shown, &containers, ApiVersion::CURRENT);
        // a, a+b (one chain for step and app), c, c+b: b counts twice, under two chains.
        assert_eq!(layers_size, 1000 + 200 + 50 + 200);
        assert_eq!(images.len(), 3);
        assert_eq!(images[0]["Id"], json!(app.id));
        assert_eq!(images[0]["RepoTags"], json!(["app:v1"]));
        assert_eq!(images[0]["Size"], 1200);
        assert_eq!(images[0]["SharedSize"], 1200);
        assert_eq!(images[0]["Containers"], 2);
        assert_eq!(images[1]["SharedSize"], 1000);
        assert_eq!(images[1]["Containers"], 1);
        assert_eq!(images[2]["SharedSize"], 0);
        assert_eq!(images[2]["Containers"], 0);
    }

    #[test]
    fn volume_usage_counts_the_containers_that_mount_each_volume() {
        let volumes = vec![
            json!({"Name": "data", "Driver": "local"}),
            json!({"Name": "idle", "Driver": "local", "UsageData": {"Size": 4096, "RefCount": 7}}),
        ];
        let containers = vec![
            json!({"Id": "c1", "Mounts": [{"Type": "volume", "Name": "data"}, {"Type": "bind", "Source": "/data"}]}),
            json!({"Id": "c2", "Mounts": [{"Type": "volume", "Name": "data"}]}),
            json!({"Id": "c3", "Mounts": [{"Type": "bind", "Name": "idle"}]}),
        ];
        let out = volume_usage(volumes, &containers);
        assert_eq!(out[0]["UsageData"], json!({"Size": -1, "RefCount": 2}));
        assert_eq!(out[0]["Driver"], "local");
        assert_eq!(out[1]["UsageData"], json!({"Size": 4096, "RefCount": 0}));
    }

    #[test]
    fn cache_records_follow_the_api_version() {
        let r = cache_record("k1", "sha256:p", 42);
        assert_eq!(
            cache_record_json(&r, ApiVersion::CURRENT),
            json!({
                "ID": "k1", "Parents": ["sha256:p"], "Type": "regular",
                "Description": "/bin/sh -c echo hi > /f", "InUse": false, "Shared": false,
                "Size": 42, "CreatedAt": "2024-05-01T10:00:00.5Z", "LastUsedAt": null,
                "UsageCount": 0,
            })
        );
        let old = cache_record_json(&r, ApiVersion(1, 41));
        assert_eq!(old["Parent"], "sha256:p");
        assert!(old.get("Parents").is_none());
        let root = cache_record_json(&cache_record("k0", "", 0), ApiVersion::CURRENT);
        assert!(root.get("Parents").is_none() && root.get("Parent").is_none());
    }

    #[test]
    fn df_leaves_out_what_was_not_asked_for() {
        let parts = DfParts {
            containers: false,
            images: false,
            volumes: false,
            build_cache: true,
        };
        let usage = Usage {
            build_cache: Some(vec![cache_record("k1", "", 10), cache_record("k2", "", 5)]),
            ..Default::default()
        };
        let v = disk_usage_json(usage, parts, ApiVersion::CURRENT);
        assert_eq!(
            v,
            json!({
                "LayersSize": 0, "Images": null, "Containers": null, "Volumes": null,
                "BuildCache": [
                    cache_record_json(&cache_record("k1", "", 10), ApiVersion::CURRENT),
                    cache_record_json(&cache_record("k2", "", 5), ApiVersion::CURRENT),
                ],
            })
        );
        let all = DfParts {
            containers: true,
            images: true,
            volumes: true,
            build_cache: true,
        };
        let usage = Usage {
            images: Some((vec![], vec![])),
            containers: Some(vec![]),
            volumes: Some(vec![]),
            build_cache: Some(vec![cache_record("k1", "", 10)]),
        };
        let v = disk_usage_json(usage, all, ApiVersion(1, 41));
        assert_eq!(v["Images"], json!([]));
        assert_eq!(v["Containers"], json!([]));
        assert_eq!(v["BuilderSize"], 10, "old clients get the sum");
    }

    /// A fake image-store, runtime node and (optionally) builder on a real nats-server, and
    /// the df and prune handlers against them.
    #[tokio::test]
    async fn df_and_build_prune_over_the_bus() {
        use std::sync::{Arc, Mutex};
        use wharf_bus::container::{op, ListRequest, ListResponse, NodeInfo, VolumeListResponse};
        use wharf_bus::service::Reply;
        use wharf_bus::subjects::{builder, group, image_store};

        let nats = wharf_bus::testkit::NatsServer::start();
        let client = nats.client().await;
        let base = image(
            '1',
            &[('a', 1000)],
            &["docker.io/library/base:latest"],
            None,
        );
        let step = image('2', &[('a', 1000), ('b', 200)], &[], Some('1'));
        let app = image(
            '3',
            &[('a', 1000), ('b', 200)],
            &["docker.io/library/app:v1"],
            Some('2'),
        );
        let images = Arc::new(vec![app.clone(), step.clone(), base.clone()]);
        let mut store =
            wharf_bus::service::start(&client, "wharf-image-store", "fake", group::IMAGE_STORE)
                .await
                .unwrap();
        store
            .serve(group::IMAGE_STORE, image_store::IMAGE_LIST, move |req| {
                let images = images.clone();
                async move {
                    let r: ImageList = wharf_bus::rpc::decode(&req.message.payload)?;
                    let shown: Vec<&ImageRecord> = images
                        .iter()
                        .filter(|i| r.all || !i.repo_tags.is_empty())
                        .collect();
                    Reply::json(&shown)
                }
            })
            .await
            .unwrap();

        let all = "wharf.v1.runtime.all";
        let sizes_asked = Arc::new(Mutex::new(Vec::new()));
        let mut node = wharf_bus::service::start(&client, "fake-runtime", "test", all)
            .await
            .unwrap();
        node.serve(all, op::PING, |_| async move {
            Reply::json(&NodeInfo {
                name: "n1".into(),
                ..Default::default()
            })
        })
        .await
        .unwrap();
        let (asked, app_id) = (sizes_asked.clone(), app.id.clone());
        node.serve(all, op::LIST, move |req| {
            let (asked, app_id) = (asked.clone(), app_id.clone());
            async move {
                let r: ListRequest = wharf_bus::rpc::decode(&req.message.payload)?;
                asked.lock().unwrap().push((r.all, r.size));
                Reply::json(&ListResponse {
                    node: "n1".into(),
                    containers: vec![json!({
                        "Id": "c1", "Names": ["/web"], "ImageID": app_id, "Created": 5,
                        "_created_nanos": 5_000_000_000i64, "State": "exited",
                        "SizeRw": 300, "SizeRootFs": 1500,
                        "Mounts": [{"Type": "volume", "Name": "data"}],
                    })],
                })
            }
        })
        .await
        .unwrap();
        node.serve(all, op::VOLUME_LIST, |_| async move {
            Reply::json(&VolumeListResponse {
                node: "n1".into(),
                volumes: vec![
                    json!({"Name": "data", "Driver": "local"}),
                    json!({"Name": "spare", "Driver": "local"}),
                ],
            })
        })
        .await
        .unwrap();

        let state = AppState::new(client.clone(), crate::Options::default()).await;
        let df = |query: Option<&str>| {
            let state = state.clone();
            let query = query.map(str::to_string);
            async move {
                disk_usage(
                    State(state),
                    Extension(ApiVersion::CURRENT),
                    RawQuery(query),
                )
                .await
                .map(|j| j.0)
            }
        };

        // No builder yet: df still answers, without a build cache; prune is unavailable.
        let v = df(None).await.unwrap();
        assert_eq!(v["LayersSize"], 1200);
        let shown: Vec<&str> = v["Images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["Id"].as_str().unwrap())
            .collect();
        assert_eq!(shown, [app.id.as_str(), base.id.as_str()]);
        assert_eq!(v["Images"][0]["Containers"], 1);
        assert_eq!(
            v["Images"][0]["SharedSize"], 1200,
            "the hidden step holds the same layers"
        );
        assert_eq!(v["Images"][1]["SharedSize"], 1000);
        assert_eq!(v["Containers"][0]["SizeRw"], 300);
        assert!(v["Containers"][0].get("_created_nanos").is_none());
        assert_eq!(
            v["Volumes"][0]["UsageData"],
            json!({"Size": -1, "RefCount": 1})
        );
        assert_eq!(
            v["Volumes"][1]["UsageData"],
            json!({"Size": -1, "RefCount": 0})
        );
        assert_eq!(v["BuildCache"], Value::Null);
        assert_eq!(sizes_asked.lock().unwrap().pop(), Some((true, true)));

        let err = build_prune(State(state.clone()), RawQuery(None))
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            err.message
                .starts_with("cannot prune the build cache: the builder service is not running"),
            "{}",
            err.message
        );

        let pruned = Arc::new(Mutex::new(None));
        let mut fake_builder =
            wharf_bus::service::start(&client, "wharf-builder", "fake", group::BUILDER)
                .await
                .unwrap();
        fake_builder
            .serve(group::BUILDER, builder::CACHE_LIST, |_| async move {
                Reply::json(&vec![cache_record("k1", "sha256:p", 200)])
            })
            .await
            .unwrap();
        let seen = pruned.clone();
        fake_builder
            .serve(group::BUILDER, builder::CACHE_PRUNE, move |req| {
                let seen = seen.clone();
                async move {
                    let r: CachePrune = wharf_bus::rpc::decode(&req.message.payload)?;
                    *seen.lock().unwrap() = Some(r);
                    Reply::json(&CachePruneReport {
                        caches_deleted: vec!["k1".into()],
                        images_deleted: vec![],
                        space_reclaimed: 77,
                    })
                }
            })
            .await
            .unwrap();

        let v = df(Some("type=build-cache&type=volume")).await.unwrap();
        assert_eq!(v["Images"], Value::Null);
        assert_eq!(v["Containers"], Value::Null);
        assert_eq!(v["Volumes"][0]["UsageData"]["RefCount"], 1);
        assert_eq!(v["BuildCache"][0]["ID"], "k1");
        assert_eq!(v["BuildCache"][0]["Size"], 200);
        assert_eq!(
            sizes_asked.lock().unwrap().pop(),
            Some((true, false)),
            "no sizes unless shown"
        );

        let query = "all=1&keep-storage=1000&filters=%7B%22until%22%3A%7B%2224h%22%3Atrue%7D%7D";
        let v = build_prune(State(state.clone()), RawQuery(Some(query.into())))
            .await
            .unwrap()
            .0;
        assert_eq!(v, json!({"CachesDeleted": ["k1"], "SpaceReclaimed": 77}));
        let req = pruned.lock().unwrap().take().unwrap();
        assert!(req.all);
        assert_eq!(req.keep_storage, 1000);
        assert_eq!(req.filters["until"], ["24h"]);
        assert_eq!(
            req.in_use,
            BTreeMap::from([(app.id.clone(), "c1".to_string())])
        );

        // The docker CLI reads both answers.
        let listener = crate::listen::bind("tcp://127.0.0.1:0", None, None)
            .await
            .unwrap();
        let host = listener.describe();
        tokio::spawn(crate::listen::serve(
            listener,
            super::super::router(state.clone()),
            tokio_util::sync::CancellationToken::new(),
            crate::limits::Limits::default(),
        ));
        let config = std::env::temp_dir().join(format!("wharf-df-cli-{}", std::process::id()));
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(config.join("config.json"), "{}").unwrap();
        let docker = |args: &'static [&'static str]| {
            let (host, config) = (host.clone(), config.clone());
            async move {
                let bin = ["/usr/local/bin/docker", "/usr/bin/docker"]
                    .into_iter()
                    .find(|p| std::path::Path::new(p).exists())
                    .expect("the docker CLI is installed");
                let out = tokio::process::Command::new(bin)
                    .args(args)
                    .env("DOCKER_HOST", &host)
                    .env("DOCKER_CONFIG", &config)
                    .output()
                    .await
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                let err = String::from_utf8_lossy(&out.stderr).to_string();
                assert!(out.status.success(), "docker {args:?}: {text}{err}");
                text
            }
        };
        let summary = docker(&["system", "df"]).await;
        let rows: Vec<Vec<&str>> = summary
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        // TYPE TOTAL ACTIVE SIZE RECLAIMABLE. The CLI counts an image in use as holding only
        // its unshared bytes: app shares all of its layers with the hidden step.
        assert_eq!(
            rows[1],
            ["Images", "2", "1", "1.2kB", "1.2kB", "(100%)"],
            "{summary}"
        );
        assert_eq!(
            rows[2],
            ["Containers", "1", "0", "300B", "300B", "(100%)"],
            "{summary}"
        );
        assert_eq!(rows[3][..4], ["Local", "Volumes", "2", "1"], "{summary}");
        assert_eq!(
            rows[4],
            ["Build", "Cache", "1", "0", "200B", "200B"],
            "{summary}"
        );
        let verbose = docker(&["system", "df", "-v"]).await;
        assert!(verbose.contains("Build cache usage: 200B"), "{verbose}");
        assert!(
            verbose
                .lines()
                .any(|l| l.starts_with("k1 ") && l.contains("regular")),
            "{verbose}"
        );
        assert!(
            verbose
                .lines()
                .any(|l| l.starts_with("app ") && l.contains("v1")),
            "{verbose}"
        );
        let pruned = docker(&["builder", "prune", "-f"]).await;
        assert!(
            pruned.contains("Deleted build cache objects:\nk1\n"),
            "{pruned}"
        );
        assert!(pruned.contains("Total reclaimed space: 77B"), "{pruned}");
        let _ = std::fs::remove_dir_all(&config);
    }

    #[test]
    fn event_filters_follow_dockerd() {
        let ev = Event::now(
            "image",
            "tag",
            "sha256:abc",
            wharf_bus::events::image_attributes("busybox:latest"),
        );
        let f = |k: &str, v: &str| BTreeMap::from([(k.to_string(), vec![v.to_string()])]);
        assert!(matches(&ev, &f("type", "image")));
        assert!(!matches(&ev, &f("type", "container")));
        assert!(matches(&ev, &f("event", "tag")));
        assert!(matches(&ev, &f("image", "busybox")));
        assert!(!matches(&ev, &f("image", "alpine")));
    }
}

//! Docker's views of a container: `docker inspect`, `docker ps` entries and their filters,
//! and which containers a name or ID prefix may mean.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use wharf_bus::container::{
    ContainerState, ContainerSummary, EndpointView, GraphDriver, HealthLogEntry, HealthState,
    HostConfig, InspectResponse, ListRequest, ListResponse, MatchKind, NetworkSettings,
    OverlayDirs, PortBinding, PortSummary, ResolveMatch, ResolveResponse, SummaryHostConfig,
    SummaryNetworkSettings,
};
use wharf_bus::BusError;

use super::record::{ContainerRecord, MountPoint, NetworkState, Status};
use super::{Container, Node};
use crate::container::{MASKED_PATHS, READONLY_PATHS};

/// go-units' `HumanDuration`, which `docker ps` uses for "Up 5 minutes".
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    let minutes = d.num_minutes();
    let hours = (d.num_milliseconds() as f64 / 3_600_000.0).round() as i64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The STATUS column: `Up 3 seconds`, `Exited (0) 2 minutes ago`, `Created`, ...
pub fn status_text(rec: &ContainerRecord) -> String {
    let now = Utc::now();
    let since = |t: &str| {
        parse_time(t)
            .map(|t| human_duration(now - t))
            .unwrap_or_default()
    };
    match rec.state.status {
        Status::Running => {
            let health = match rec.state.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => " (health: starting)",
                Some("healthy") => " (healthy)",
                Some("unhealthy") => " (unhealthy)",
                _ => "",
            };
            format!("Up {}{health}", since(&rec.state.started_at))
        }
        Status::Paused => format!("Up {} (Paused)", since(&rec.state.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            rec.state.exit_code,
            since(&rec.state.finished_at)
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Created => "Created".into(),
        Status::Exited => {
            if rec.state.finished_at.starts_with("0001-") {
                "Created".into()
            } else {
                format!(
                    "Exited ({}) {} ago",
                    rec.state.exit_code,
                    since(&rec.state.finished_at)
                )
            }
        }
    }
}

fn mount_view(m: &MountPoint) -> wharf_bus::container::MountPoint {
    let volume = m.kind == "volume";
    wharf_bus::container::MountPoint {
        kind: m.kind.clone(),
        name: volume.then(|| m.name.clone()),
        source: m.source.clone(),
        destination: m.destination.clone(),
        driver: volume.then(|| "local".to_string()),
        mode: m.mode.clone(),
        rw: m.rw,
        propagation: m.propagation.clone(),
    }
}

/// `NetworkSettings.Ports`: every exposed port, with its bindings or `null`.
fn published_ports(rec: &ContainerRecord) -> BTreeMap<String, Option<Vec<PortBinding>>> {
    let mut ports = BTreeMap::new();
    if let Some(exposed) = &rec.config.exposed_ports {
        for p in exposed.keys() {
            ports.insert(p.clone(), None);
        }
    }
    if let Some(net) = &rec.network {
        for p in &net.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            ports
                .entry(key)
                .or_insert(None)
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port.to_string(),
                });
        }
    }
    ports
}

fn network_mode(rec: &ContainerRecord) -> String {
    match rec.host_config.network_mode.as_str() {
        "" => "default".into(),
        m => m.into(),
    }
}

fn network_name(rec: &ContainerRecord) -> String {
    match rec.host_config.network_mode.as_str() {
        "" | "default" => "bridge".into(),
        m => m.into(),
    }
}

/// An endpoint as Docker shows it: attached (`state`, with its address) or only configured
/// (a container not running); `docker ps` (`short`) leaves `Aliases` out.
fn endpoint_view(id: &str, state: Option<&NetworkState>, short: bool) -> EndpointView {
    let net = state.cloned().unwrap_or_default();
    let aliases = match (short, net.aliases.is_empty()) {
        (true, _) => None,
        (false, true) => Some(None),
        (false, false) => Some(Some(net.aliases.clone())),
    };
    EndpointView {
        ipam_config: None,
        links: None,
        aliases,
        network_id: net.network_id,
        endpoint_id: if state.is_some() {
            id.to_string()
        } else {
            String::new()
        },
        gateway: net.gateway,
        ip_address: net.address,
        ip_prefix_len: net.prefix,
        ipv6_gateway: String::new(),
        global_ipv6_address: String::new(),
        global_ipv6_prefix_len: 0,
        mac_address: net.mac,
        driver_opts: None,
        gw_priority: 0,
        dns_names: None,
    }
}

/// `NetworkSettings.Networks`: the `NetworkMode` network (unless the container was
/// disconnected from it), every further network it joined, and, while it does not run, the
/// networks it will join at start.
fn networks_view(rec: &ContainerRecord, short: bool) -> BTreeMap<String, EndpointView> {
    let mut out = BTreeMap::new();
    if rec.host_config.network_mode == "none" {
        out.insert("none".to_string(), endpoint_view(&rec.id, None, short));
        return out;
    }
    if !rec.primary_detached {
        out.insert(
            network_name(rec),
            endpoint_view(&rec.id, rec.network.as_ref(), short),
        );
    }
    for state in &rec.connected {
        out.insert(
            state.network_name.clone(),
            endpoint_view(&rec.id, Some(state), short),
        );
    }
    if !rec.state.status.is_live() {
        for name in rec.networking_config.endpoints_config.keys() {
            if !super::networks::is_predefined(name) && !out.contains_key(name) {
                out.insert(name.clone(), endpoint_view(&rec.id, None, short));
            }
        }
    }
    // The names the embedded DNS server answers for it on each user network it is on.
    for view in out.values_mut() {
        if view.network_id.is_empty() || view.endpoint_id.is_empty() {
            continue;
        }
        let state = rec
            .networks()
            .into_iter()
            .find(|n| n.network_id == view.network_id);
        let mut names = vec![rec.short_name().to_string()];
        names.extend(state.iter().flat_map(|n| n.aliases.iter().cloned()));
        names.push(rec.id[..12.min(rec.id.len())].to_string());
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        view.dns_names = Some(names);
    }
    // What the endpoint config asked for: links on a user network (aliases only this
    // container resolves) and `--ip`.
    if !short {
        for (name, view) in out.iter_mut() {
            let Some(e) = rec.networking_config.endpoints_config.get(name) else {
                continue;
            };
            view.links = Some(e.links.clone()).filter(|l| !l.is_empty());
            view.gw_priority = e.gw_priority;
            view.ipam_config = e
                .ipam_config
                .as_ref()
                .filter(|c| !c.ipv4_address.is_empty())
                .and_then(|c| serde_json::to_value(c).ok());
        }
    }
    out
}

/// The default IPC mode of dockerd 20.10 and later (`--default-ipc-mode`): a namespace of the
/// container's own, not shared.
const DEFAULT_IPC_MODE: &str = "private";
/// /dev/shm's size when the create names none (dockerd's `--default-shm-size`), as the
/// container gets it.
const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The container's `HostConfig` as dockerd shows it: what the create sent, with what dockerd
/// fills in at create where it sent nothing (`adaptContainerSettings`). The log options stay when only the driver is
/// the default's. `CgroupnsMode` is `host`: the node never gives a container a cgroup
/// namespace of its own (dockerd's default on a cgroup v1 host; on v2 dockerd's is `private`).
fn inspect_host_config(rec: &ContainerRecord) -> HostConfig {
    let mut h = rec.host_config.clone();
    h.network_mode = network_mode(rec);
    if h.log_config.r#type.is_empty() {
        h.log_config.r#type = "json-file".into();
    }
    if h.ipc_mode.is_empty() {
        h.ipc_mode = DEFAULT_IPC_MODE.into();
    }
    if h.cgroupns_mode.is_empty() {
        h.cgroupns_mode = "host".into();
    }
    if h.shm_size == 0 {
        h.shm_size = DEFAULT_SHM_SIZE;
    }
    // A memory limit without a swap limit allows as much swap again (the cgroup gets so).
    if h.memory > 0 && h.memory_swap == 0 {
        h.memory_swap = h.memory.saturating_mul(2);
    }
    if h.runtime.is_empty() {
        h.runtime = "runc".into();
    }
    // Legacy links are kept by the child's ID and shown with today's names by the caller
    // (`links::shown`); on a user network they are the endpoint's.
    h.links = None;
    // dockerd disables SELinux labelling for a container sharing the host's processes, unless
    // the create chose a label itself (`generateSecurityOpt`).
    let shares_host = h.privileged || h.ipc_mode == "host" || h.pid_mode == "host";
    let labelled = h
        .security_opt
        .iter()
        .flatten()
        .any(|o| o.split('=').next() == Some("label"));
    if shares_host && !labelled {
        h.security_opt
            .get_or_insert_with(Vec::new)
            .push("label=disable".into());
    }
    h.console_size.get_or_insert([0, 0]);
    h.oom_kill_disable.get_or_insert(false);
    if !h.privileged {
        let list =
            |paths: &[&str]| -> Vec<String> { paths.iter().map(|p| p.to_string()).collect() };
        h.masked_paths.get_or_insert_with(|| list(&MASKED_PATHS));
        h.readonly_paths
            .get_or_insert_with(|| list(&READONLY_PATHS));
    }
    h
}

/// `GET /containers/{id}/json`.
pub async fn inspect(node: &Arc<Node>, c: &Arc<Container>, size: bool) -> InspectResponse {
    let rec = c.snapshot();
    let s = &rec.state;
    let net = rec.network.clone().unwrap_or_default();
    let mut host_config = inspect_host_config(&rec);
    host_config.links = super::links::shown(node, &rec);
    let endpoint_id = if rec.network.is_some() {
        rec.id.clone()
    } else {
        String::new()
    };
    let mut out = InspectResponse {
        id: rec.id.clone(),
        created: rec.created.clone(),
        path: rec.path.clone(),
        args: rec.args.clone(),
        state: ContainerState {
            status: s.status.as_str().to_string(),
            running: s.status.is_live(),
            paused: s.status == Status::Paused,
            restarting: s.status == Status::Restarting,
            oom_killed: s.oom_killed,
            dead: s.status == Status::Dead,
            pid: s.pid.into(),
            exit_code: s.exit_code,
            error: s.error.clone(),
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            health: s.health.as_ref().map(|h| HealthState {
                status: h.status.clone(),
                failing_streak: h.failing_streak,
                log: h
                    .log
                    .iter()
                    .map(|l| HealthLogEntry {
                        start: l.start.clone(),
                        end: l.end.clone(),
                        exit_code: l.exit_code,
                        output: l.output.clone(),
                    })
                    .collect(),
            }),
        },
        image: rec.image_id.clone(),
        resolv_conf_path: c.paths.resolv_conf().display().to_string(),
        hostname_path: c.paths.hostname().display().to_string(),
        hosts_path: c.paths.hosts().display().to_string(),
        log_path: if rec.has_been_started {
            c.paths.log(&rec.id).display().to_string()
        } else {
            String::new()
        },
        name: rec.name.clone(),
        restart_count: rec.restart_count,
        driver: "overlay2".into(),
        platform: rec.platform.clone(),
        mount_label: String::new(),
        process_label: String::new(),
        app_armor_profile: String::new(),
        exec_ids: None,
        host_config,
        graph_driver: GraphDriver {
            data: OverlayDirs {
                lower_dir: rec
                    .chain_ids
                    .iter()
                    .rev()
                    .filter_map(|c| node.snapshots.fs_path(c).ok())
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
                merged_dir: c.paths.rootfs().display().to_string(),
                upper_dir: c.paths.upper().display().to_string(),
                work_dir: c.paths.work().display().to_string(),
            },
            name: "overlay2".into(),
        },
        mounts: rec.mounts.iter().map(mount_view).collect(),
        config: rec.config.clone(),
        network_settings: NetworkSettings {
            sandbox_id: endpoint_id.clone(),
            ports: published_ports(&rec),
            sandbox_key: if s.status.is_live() && rec.host_config.network_mode != "host" {
                c.paths.netns().display().to_string()
            } else {
                String::new()
            },
            endpoint_id,
            gateway: net.gateway,
            ip_address: net.address,
            ip_prefix_len: net.prefix,
            mac_address: net.mac,
            networks: networks_view(&rec, false),
            ..Default::default()
        },
        size_rw: None,
        size_root_fs: None,
    };
    if size {
        let (rw, root) = sizes(node, c).await;
        out.size_rw = Some(rw);
        out.size_root_fs = Some(root);
    }
    out
}

/// `SizeRw` (the upper directory) and `SizeRootFs` (upper plus the image).
async fn sizes(node: &Arc<Node>, c: &Arc<Container>) -> (u64, u64) {
    let upper = c.paths.upper();
    let image_id = c.with(|r| r.image_id.clone());
    let rw = tokio::task::spawn_blocking(move || du(&upper))
        .await
        .unwrap_or(0);
    let image: Result<wharf_bus::image::ImageRecord, _> = wharf_bus::call(
        &node.client,
        &wharf_bus::subjects::subject(
            wharf_bus::subjects::group::IMAGE_STORE,
            wharf_bus::subjects::image_store::IMAGE_RESOLVE,
        ),
        &wharf_bus::image::ImageResolve { name: image_id },
    )
    .await;
    let image_size = image.map(|i| i.size).unwrap_or(0);
    (rw, rw + image_size)
}

/// Bytes of regular files under `dir` (not following symlinks, not crossing mounts).
pub(crate) fn du(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    let dev = std::fs::symlink_metadata(dir).map(|m| m.dev()).unwrap_or(0);
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.size();
            }
        }
    }
    total
}

fn command_text(rec: &ContainerRecord) -> String {
    let mut parts = vec![rec.path.clone()];
    parts.extend(rec.args.iter().cloned());
    parts.join(" ")
}

fn summary(rec: &ContainerRecord) -> ContainerSummary {
    let mut ports = Vec::new();
    if let Some(net) = &rec.network {
        for p in &net.ports {
            ports.push(PortSummary {
                ip: Some(p.host_ip.clone()),
                private_port: p.container_port,
                public_port: Some(p.host_port),
                protocol: p.protocol.clone(),
            });
        }
    }
    if let Some(exposed) = &rec.config.exposed_ports {
        for key in exposed.keys() {
            let (n, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let n: u16 = n.parse().unwrap_or(0);
            let published = rec.network.as_ref().is_some_and(|net| {
                net.ports
                    .iter()
                    .any(|p| p.container_port == n && p.protocol == proto)
            });
            if !published {
                ports.push(PortSummary {
                    ip: None,
                    private_port: n,
                    public_port: None,
                    protocol: proto.to_string(),
                });
            }
        }
    }
    ContainerSummary {
        id: rec.id.clone(),
        names: vec![rec.name.clone()],
        image: rec.image_name.clone(),
        image_id: rec.image_id.clone(),
        command: command_text(rec),
        created: rec.created_nanos / 1_000_000_000,
        created_nanos: rec.created_nanos,
        ports,
        labels: rec.config.labels.clone(),
        state: rec.state.status.as_str().to_string(),
        status: status_text(rec),
        host_config: SummaryHostConfig {
            network_mode: network_mode(rec),
            annotations: rec.host_config.annotations.clone(),
        },
        network_settings: SummaryNetworkSettings {
            networks: networks_view(rec, true),
        },
        mounts: rec.mounts.iter().map(mount_view).collect(),
        size_rw: None,
        size_root_fs: None,
    }
}

/// Docker's container filters, as far as this node can judge them.
struct Filters<'a>(&'a BTreeMap<String, Vec<String>>);

impl Filters<'_> {
    fn check(&self) -> Result<(), BusError> {
        const KNOWN: &[&str] = &[
            "id",
            "name",
            "label",
            "status",
            "exited",
            "ancestor",
            "before",
            "since",
            "volume",
            "network",
            "publish",
            "expose",
            "health",
            "isolation",
            "is-task",
        ];
        for key in self.0.keys() {
            if !KNOWN.contains(&key.as_str()) {
                return Err(BusError::invalid(format!("invalid filter '{key}'")));
            }
        }
        if let Some(statuses) = self.0.get("status") {
            for s in statuses {
                if !matches!(
                    s.as_str(),
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                ) {
                    return Err(BusError::invalid(format!("invalid filter 'status={s}'")));
                }
            }
        }
        Ok(())
    }

    fn matches(&self, rec: &ContainerRecord) -> bool {
        for (key, values) in self.0 {
            if values.is_empty() {
                continue;
            }
            let ok = match key.as_str() {
                "id" => values.iter().any(|v| rec.id.starts_with(v.as_str())),
                "name" => values.iter().any(|v| {
                    let pattern = v.trim_start_matches('/');
                    regex_lite_match(pattern, rec.short_name())
                }),
                "label" => values.iter().all(|v| match v.split_once('=') {
                    Some((k, val)) => rec.config.labels.get(k).map(String::as_str) == Some(val),
                    None => rec.config.labels.contains_key(v.as_str()),
                }),
                "status" => values.iter().any(|v| v == rec.state.status.as_str()),
                "exited" => {
                    rec.state.status == Status::Exited
                        && values
                            .iter()
                            .any(|v| v.parse::<i64>().ok() == Some(rec.state.exit_code))
                }
                "ancestor" => values.iter().any(|v| {
                    v == &rec.image_name
                        || rec
                            .image_id
                            .trim_start_matches("sha256:")
                            .starts_with(v.trim_start_matches("sha256:"))
                        || format!("{v}:latest") == rec.image_name
                }),
                "volume" => values.iter().any(|v| {
                    rec.mounts
                        .iter()
                        .any(|m| &m.name == v || &m.destination == v || &m.source == v)
                }),
                "network" => values.iter().any(|v| v == &network_name(rec)),
                "publish" => values.iter().any(|v| {
                    rec.network.as_ref().is_some_and(|n| {
                        n.ports.iter().any(|p| {
                            v == &p.host_port.to_string()
                                || v == &format!("{}/{}", p.host_port, p.protocol)
                        })
                    })
                }),
                "expose" => values.iter().any(|v| {
                    rec.config
                        .exposed_ports
                        .as_ref()
                        .is_some_and(|e| e.contains_key(v) || e.contains_key(&format!("{v}/tcp")))
                }),
                _ => true,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// The `name` filter is a regular expression in dockerd; Wharf supports the common forms:
/// `^x`, `x$`, and plain substrings.
fn regex_lite_match(pattern: &str, name: &str) -> bool {
    let anchored_start = pattern.starts_with('^');
    let anchored_end = pattern.ends_with('$');
    let core = pattern.trim_start_matches('^').trim_end_matches('$');
    let core = core.trim_start_matches('/');
    match (anchored_start, anchored_end) {
        (true, true) => name == core,
        (true, false) => name.starts_with(core),
        (false, true) => name.ends_with(core),
        (false, false) => name.contains(core),
    }
}

/// `GET /containers/json` on this node: matching containers, newest first, at most `limit`.
pub async fn list(node: &Arc<Node>, req: &ListRequest) -> Result<ListResponse, BusError> {
    let filters = Filters(&req.filters);
    filters.check()?;
    let limit = req.limit.filter(|l| *l > 0);
    // No copies of the records: each is read under its lock once, newest first.
    let mut entries: Vec<(i64, Arc<Container>)> = node
        .all()
        .into_iter()
        .map(|c| (c.with(|r| r.created_nanos), c))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    // before/since compare creation order against named containers of this node.
    let by_ref = |v: &str| {
        entries
            .iter()
            .find(|(_, c)| {
                c.with(|r| r.id.starts_with(v) || r.short_name() == v.trim_start_matches('/'))
            })
            .map(|(n, _)| *n)
    };
    let before = req
        .filters
        .get("before")
        .and_then(|v| v.first())
        .and_then(|v| by_ref(v));
    let since = req
        .filters
        .get("since")
        .and_then(|v| v.first())
        .and_then(|v| by_ref(v));
    let all = req.all
        || limit.is_some()
        || req.filters.contains_key("status")
        || req.filters.contains_key("exited");
    let link_names = super::links::names_by_child(node);
    let mut out = Vec::new();
    for (created, c) in &entries {
        if before.is_some_and(|b| *created >= b) || since.is_some_and(|s| *created <= s) {
            continue;
        }
        let entry = c.with(|rec| {
            if !all && !rec.state.status.is_live() && rec.state.status != Status::Restarting {
                return None;
            }
            if !filters.matches(rec) {
                return None;
            }
            let mut v = summary(rec);
            v.names
                .extend(link_names.get(&rec.id).into_iter().flatten().cloned());
            Some(v)
        });
        if let Some(v) = entry {
            out.push((v, c.clone()));
            if limit.is_some_and(|l| out.len() as i64 >= l) {
                break;
            }
        }
    }
    let mut containers = Vec::with_capacity(out.len());
    for (mut v, c) in out {
        if req.size {
            let (rw, root) = sizes(node, &c).await;
            v.size_rw = Some(rw);
            v.size_root_fs = Some(root);
        }
        containers.push(v);
    }
    Ok(ListResponse {
        node: node.options.name.clone(),
        containers,
    })
}

/// Which of this node's containers `query` may mean.
pub fn resolve(node: &Node, query: &str) -> ResolveResponse {
    let mut matches = Vec::new();
    let q = query.trim_start_matches('/');
    if !q.is_empty() {
        for c in node.all() {
            let (id, name) = c.with(|r| (r.id.clone(), r.name.clone()));
            let how = if id == q {
                Some(MatchKind::Id)
            } else if name.trim_start_matches('/') == q {
                Some(MatchKind::Name)
            } else if id.starts_with(q) && !query.starts_with('/') {
                Some(MatchKind::Prefix)
            } else {
                None
            };
            if let Some(how) = how {
                matches.push(ResolveMatch {
                    id,
                    name,
                    node: node.options.name.clone(),
                    how,
                });
            }
        }
    }
    ResolveResponse {
        node: node.options.name.clone(),
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_read_as_docker_ps() {
        let s = chrono::Duration::seconds;
        assert_eq!(
            human_duration(chrono::Duration::milliseconds(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(45)), "45 seconds");
        assert_eq!(human_duration(s(61)), "About a minute");
        assert_eq!(human_duration(s(600)), "10 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
    }

    #[test]
    fn name_filters_take_anchors() {
        assert!(regex_lite_match("web", "my-web-1"));
        assert!(regex_lite_match("^my", "my-web-1"));
        assert!(!regex_lite_match("^web", "my-web-1"));
        assert!(regex_lite_match("^my-web-1$", "my-web-1"));
    }
}

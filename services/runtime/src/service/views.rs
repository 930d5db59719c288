//! Docker's views of a container: `docker inspect`, `docker ps` entries and their filters,
//! and which containers a name or ID prefix may mean.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use wharf_bus::container::{ListRequest, ListResponse, MatchKind, ResolveMatch, ResolveResponse};
use wharf_bus::BusError;

use super::record::{ContainerRecord, MountPoint, Status};
use super::{Container, Node};

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

fn mount_json(m: &MountPoint) -> Value {
    let mut v = Map::new();
    v.insert("Type".into(), json!(m.kind));
    if m.kind == "volume" {
        v.insert("Name".into(), json!(m.name));
    }
    v.insert("Source".into(), json!(m.source));
    v.insert("Destination".into(), json!(m.destination));
    if m.kind == "volume" {
        v.insert("Driver".into(), json!("local"));
    }
    v.insert("Mode".into(), json!(m.mode));
    v.insert("RW".into(), json!(m.rw));
    v.insert("Propagation".into(), json!(m.propagation));
    Value::Object(v)
}

fn ports_json(rec: &ContainerRecord) -> Value {
    // NetworkSettings.Ports: every exposed port, with its bindings or null.
    let mut ports = Map::new();
    if let Some(exposed) = &rec.config.exposed_ports {
        for p in exposed.keys() {
            ports.insert(p.clone(), Value::Null);
        }
    }
    if let Some(net) = &rec.network {
        for p in &net.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            let entry = ports.entry(key).or_insert(Value::Null);
            if entry.is_null() {
                *entry = json!([]);
            }
            entry.as_array_mut().expect("array").push(json!({
                "HostIp": p.host_ip,
                "HostPort": p.host_port.to_string(),
            }));
        }
    }
    Value::Object(ports)
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

fn endpoint_json(rec: &ContainerRecord, short: bool) -> Value {
    let net = rec.network.clone().unwrap_or_default();
    let mut v = json!({
        "IPAMConfig": null,
        "Links": null,
        "Aliases": null,
        "NetworkID": "",
        "EndpointID": if rec.network.is_some() { rec.id.clone() } else { String::new() },
        "Gateway": net.gateway,
        "IPAddress": net.address,
        "IPPrefixLen": net.prefix,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": net.mac,
        "DriverOpts": null,
    });
    if short {
        v.as_object_mut().expect("object").remove("Aliases");
    }
    v
}

/// `GET /containers/{id}/json`.
pub async fn inspect(node: &Arc<Node>, c: &Arc<Container>, size: bool) -> Value {
    let rec = c.snapshot();
    let s = &rec.state;
    let net = rec.network.clone().unwrap_or_default();
    let networks = if rec.host_config.network_mode == "none" {
        json!({"none": endpoint_json(&rec, false)})
    } else {
        let mut m = Map::new();
        m.insert(network_name(&rec), endpoint_json(&rec, false));
        Value::Object(m)
    };
    let mut host_config = serde_json::to_value(&rec.host_config).unwrap_or(Value::Null);
    if let Some(h) = host_config.as_object_mut() {
        if h.get("NetworkMode").and_then(|v| v.as_str()) == Some("") {
            h.insert("NetworkMode".into(), json!("default"));
        }
        if h.get("LogConfig")
            .and_then(|l| l.get("Type"))
            .and_then(|v| v.as_str())
            == Some("")
        {
            h.insert(
                "LogConfig".into(),
                json!({"Type": "json-file", "Config": {}}),
            );
        }
    }
    let mut config = serde_json::to_value(&rec.config).unwrap_or(Value::Null);
    if let Some(cfg) = config.as_object_mut() {
        if rec.config.labels.is_empty() {
            cfg.insert("Labels".into(), json!({}));
        }
    }
    let mut out = json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": rec.path,
        "Args": rec.args,
        "State": {
            "Status": s.status.as_str(),
            "Running": matches!(s.status, Status::Running | Status::Paused),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at,
            "FinishedAt": s.finished_at,
        },
        "Image": rec.image_id,
        "ResolvConfPath": c.paths.resolv_conf(),
        "HostnamePath": c.paths.hostname(),
        "HostsPath": c.paths.hosts(),
        "LogPath": if rec.has_been_started { c.paths.log(&rec.id).display().to_string() } else { String::new() },
        "Name": rec.name,
        "RestartCount": rec.restart_count,
        "Driver": "overlay2",
        "Platform": rec.platform,
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config,
        "GraphDriver": {
            "Data": {
                "LowerDir": rec.chain_ids.iter().rev().filter_map(|c| node.snapshots.fs_path(c).ok()).map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
                "MergedDir": c.paths.rootfs(),
                "UpperDir": c.paths.upper(),
                "WorkDir": c.paths.work(),
            },
            "Name": "overlay2",
        },
        "Mounts": rec.mounts.iter().map(mount_json).collect::<Vec<_>>(),
        "Config": config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": if rec.network.is_some() { rec.id.clone() } else { String::new() },
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports_json(&rec),
            "SandboxKey": if s.status.is_live() && rec.host_config.network_mode != "host" { c.paths.netns().display().to_string() } else { String::new() },
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": if rec.network.is_some() { rec.id.clone() } else { String::new() },
            "Gateway": net.gateway,
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": net.address,
            "IPPrefixLen": net.prefix,
            "IPv6Gateway": "",
            "MacAddress": net.mac,
            "Networks": networks,
        },
    });
    if let Some(h) = &s.health {
        out["State"]["Health"] = json!({
            "Status": h.status,
            "FailingStreak": h.failing_streak,
            "Log": h.log.iter().map(|l| json!({
                "Start": l.start, "End": l.end, "ExitCode": l.exit_code, "Output": l.output,
            })).collect::<Vec<_>>(),
        });
    }
    if size {
        let (rw, root) = sizes(node, c).await;
        out["SizeRw"] = json!(rw);
        out["SizeRootFs"] = json!(root);
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

fn summary(rec: &ContainerRecord) -> Value {
    let mut ports = Vec::new();
    if let Some(net) = &rec.network {
        for p in &net.ports {
            ports.push(json!({
                "IP": p.host_ip,
                "PrivatePort": p.container_port,
                "PublicPort": p.host_port,
                "Type": p.protocol,
            }));
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
                ports.push(json!({"PrivatePort": n, "Type": proto}));
            }
        }
    }
    let mut networks = Map::new();
    networks.insert(network_name(rec), endpoint_json(rec, true));
    json!({
        "Id": rec.id,
        "Names": [rec.name],
        "Image": rec.image_name,
        "ImageID": rec.image_id,
        "Command": command_text(rec),
        "Created": rec.created_nanos / 1_000_000_000,
        "_created_nanos": rec.created_nanos,
        "Ports": ports,
        "Labels": rec.config.labels,
        "State": rec.state.status.as_str(),
        "Status": status_text(rec),
        "HostConfig": {"NetworkMode": network_mode(rec)},
        "NetworkSettings": {"Networks": networks},
        "Mounts": rec.mounts.iter().map(mount_json).collect::<Vec<_>>(),
    })
}

/// Docker's container filters, as far as this node can judge them.
struct Filters<'a>(&'a std::collections::BTreeMap<String, Vec<String>>);

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
            Some(summary(rec))
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
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(root);
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

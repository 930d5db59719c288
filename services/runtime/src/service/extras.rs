//! `docker stats`, `docker top`, `docker update` and `docker container prune`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wharf_bus::container::{ContainerPruneResponse, ListRequest, StatsRequest, TopRequest};
use wharf_bus::stream::Sender;
use wharf_bus::BusError;

use crate::cgroups::{self, Stats};
use crate::logs::format_go_rfc3339_nano;

use super::record::Status;
use super::{internal, Container, Node};

/// Host CPU time in nanoseconds, as dockerd reads `/proc/stat` (the `cpu` line's jiffies).
fn system_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = text.lines().next().unwrap_or("");
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    ticks * 10_000_000
}

fn network_stats(pid: i32) -> Value {
    let mut out = serde_json::Map::new();
    if pid <= 0 {
        return Value::Object(out);
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 16 {
            continue;
        }
        out.insert(
            name.to_string(),
            json!({
                "rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11],
            }),
        );
    }
    Value::Object(out)
}

fn cpu_json(stats: &Stats, system: u64) -> Value {
    let cpu = stats.cpu.clone().unwrap_or_default();
    let online = cgroups::host_cpus();
    json!({
        "cpu_usage": {
            "total_usage": cpu.usage_total_ns,
            "percpu_usage": if cpu.usage_per_cpu_ns.is_empty() { Value::Null } else { json!(cpu.usage_per_cpu_ns) },
            "usage_in_kernelmode": cpu.usage_system_ns,
            "usage_in_usermode": cpu.usage_user_ns,
        },
        "system_cpu_usage": system,
        "online_cpus": online,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

fn sample(node: &Node, c: &Container) -> (Stats, u64) {
    let stats = node
        .cgroups
        .as_ref()
        .and_then(|l| cgroups::open(l, &format!("wharf/{}", c.id)).ok())
        .and_then(|g| g.stats().ok())
        .unwrap_or_default();
    (stats, system_cpu_ns())
}

/// One `docker stats` object: `pre` is the previous sample (zero on the first).
fn stats_json(
    c: &Container,
    now: &(Stats, u64),
    pre: &(Stats, u64),
    read: &str,
    preread: &str,
    v2: bool,
) -> Value {
    let rec = c.snapshot();
    let running = rec.state.status.is_live();
    if !running {
        // dockerd answers a stopped container with zeros.
        return json!({
            "read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z",
            "pids_stats": {}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {},
            "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "memory_stats": {}, "name": rec.name, "id": rec.id,
        });
    }
    let mem = now.0.memory.clone().unwrap_or_default();
    let inactive_key = if v2 {
        "inactive_file"
    } else {
        "total_inactive_file"
    };
    let pids = now.0.pids.clone().unwrap_or_default();
    json!({
        "read": read,
        "preread": preread,
        "pids_stats": {"current": pids.current, "limit": pids.limit},
        "blkio_stats": {"io_service_bytes_recursive": null, "io_serviced_recursive": null,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(&now.0, now.1),
        "precpu_stats": cpu_json(&pre.0, pre.1),
        "memory_stats": {
            "usage": mem.usage,
            "stats": {inactive_key: mem.cache},
            "limit": mem.limit.unwrap_or_else(host_memory),
        },
        "name": rec.name,
        "id": rec.id,
        "networks": network_stats(rec.state.pid),
    })
}

fn host_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// `GET /containers/{id}/stats`: one object per second while streaming.
pub async fn stats(
    node: &Arc<Node>,
    c: Arc<Container>,
    req: StatsRequest,
    request: &async_nats::service::Request,
) -> Result<(), BusError> {
    let mut sender = Sender::accept(&node.client, request, bytes::Bytes::new()).await?;
    let node = node.clone();
    let v2 = matches!(node.cgroups, Some(cgroups::Layout::V2 { .. }));
    tokio::spawn(async move {
        let zero = (Stats::default(), 0u64);
        let mut pre = zero.clone();
        let mut preread = "0001-01-01T00:00:00Z".to_string();
        if !req.one_shot {
            let n2 = node.clone();
            let c2 = c.clone();
            pre = tokio::task::spawn_blocking(move || sample(&n2, &c2))
                .await
                .unwrap_or(zero);
            preread = format_go_rfc3339_nano(chrono::Utc::now());
            if !req.stream {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        loop {
            let n2 = node.clone();
            let c2 = c.clone();
            let now = tokio::task::spawn_blocking(move || sample(&n2, &c2))
                .await
                .unwrap_or_default();
            let read = format_go_rfc3339_nano(chrono::Utc::now());
            let value = stats_json(&c, &now, &pre, &read, &preread, v2);
            let Ok(payload) = serde_json::to_vec(&value) else {
                break;
            };
            if sender.send(bytes::Bytes::from(payload)).await.is_err() {
                return;
            }
            if !req.stream || !c.status().is_live() {
                break;
            }
            pre = now;
            preread = read;
            tokio::time::sleep(Duration::from_secs(1)).await;
            if c.phase.borrow().removed {
                break;
            }
        }
        let _ = sender.finish().await;
    });
    Ok(())
}

/// `GET /containers/{id}/top`: the host's `ps` rows of the container's processes.
pub async fn top(node: &Arc<Node>, c: &Arc<Container>, req: TopRequest) -> Result<Value, BusError> {
    if !c.status().is_live() {
        return Err(BusError::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    let Some(layout) = node.cgroups.clone() else {
        return Err(BusError::unavailable(
            "cgroups are not available on this node",
        ));
    };
    let id = c.id.clone();
    let args = if req.ps_args.is_empty() {
        "-ef".to_string()
    } else {
        req.ps_args.clone()
    };
    tokio::task::spawn_blocking(move || -> Result<Value, BusError> {
        let pids: Vec<i32> = cgroups::open(&layout, &format!("wharf/{id}"))
            .and_then(|g| g.pids())
            .map_err(|e| internal("cgroup", e))?
            .into_iter()
            .map(|p| p.as_raw())
            .collect();
        // Arguments `ps` refuses, or whose output has no PID column, are the client's: 400
        // (dockerd answers 500 with the same texts).
        if args.contains('\0') {
            return Err(BusError::invalid("ps: arguments contain a NUL byte"));
        }
        let out = std::process::Command::new("ps")
            .args(args.split_whitespace())
            .output()
            .map_err(|e| internal("cannot run ps", e))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(BusError::invalid(format!(
                "ps: {}",
                stderr.lines().next().unwrap_or_default().trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    })
    .await
    .map_err(|e| internal("top", e))?
}

/// dockerd's parsing of `ps` output: the PID column found in the header, rows kept when their
/// PID belongs to the container, the last column taking the rest of the line.
fn parse_ps(output: &str, pids: &[i32]) -> Result<Value, BusError> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<&str> = header.split_whitespace().collect();
    let pid_index = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or_else(|| BusError::invalid("Couldn't find PID field in ps output"))?;
    let mut processes = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_index].parse::<i32>() else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        let mut row: Vec<String> = fields[..titles.len() - 1]
            .iter()
            .map(|s| s.to_string())
            .collect();
        row.push(fields[titles.len() - 1..].join(" "));
        processes.push(row);
    }
    Ok(json!({"Titles": titles, "Processes": processes}))
}

/// `POST /containers/{id}/update`: resources and the restart policy.
pub async fn update(node: &Arc<Node>, c: &Arc<Container>, body: Value) -> Result<Value, BusError> {
    let mut host = c.with(|r| r.host_config.clone());
    let num = |k: &str| body.get(k).and_then(|v| v.as_i64());
    if let Some(v) = num("Memory").filter(|v| *v != 0) {
        host.memory = v;
    }
    if let Some(v) = num("MemorySwap").filter(|v| *v != 0) {
        host.memory_swap = v;
    }
    if let Some(v) = num("NanoCpus").filter(|v| *v != 0) {
        host.nano_cpus = v;
    }
    if let Some(v) = num("CpuShares").filter(|v| *v != 0) {
        host.cpu_shares = v;
    }
    if let Some(v) = num("CpuQuota").filter(|v| *v != 0) {
        host.cpu_quota = v;
    }
    if let Some(v) = num("CpuPeriod").filter(|v| *v != 0) {
        host.cpu_period = v;
    }
    if let Some(v) = num("PidsLimit").filter(|v| *v != 0) {
        host.pids_limit = Some(v);
    }
    if let Some(p) = body.get("RestartPolicy").filter(|p| !p.is_null()) {
        if let Ok(policy) = serde_json::from_value(p.clone()) {
            let policy: wharf_bus::container::RestartPolicy = policy;
            if !policy.name.is_empty() {
                if host.auto_remove && policy.name != "no" {
                    return Err(BusError::invalid(
                        "Restart policy cannot be updated because AutoRemove is enabled for the container",
                    ));
                }
                host.restart_policy = policy;
            }
        }
    }
    if c.status().is_live() {
        if let Some(layout) = node.cgroups.clone() {
            let id = c.id.clone();
            let resources = super::limits::resources(&host);
            tokio::task::spawn_blocking(move || {
                cgroups::open(&layout, &format!("wharf/{id}"))
                    .and_then(|g| g.apply(&resources))
                    .map_err(|e| BusError::invalid(format!("Cannot update container {id}: {e}")))
            })
            .await
            .map_err(|e| internal("update", e))??;
        }
    }
    c.update(|r| r.host_config = host)?;
    node.publish_event(&c.snapshot(), "update", &[]).await;
    Ok(json!({"Warnings": []}))
}

/// `docker container prune` on this node: every stopped container passing the filters.
pub async fn prune(
    node: &Arc<Node>,
    req: &ListRequest,
) -> Result<ContainerPruneResponse, BusError> {
    for key in req.filters.keys() {
        if !matches!(key.as_str(), "label" | "label!" | "until") {
            return Err(BusError::invalid(format!("invalid filter '{key}'")));
        }
    }
    // A value that is no time is refused, as dockerd does, rather than ignored (which pruned
    // every stopped container).
    let until = match req.filters.get("until").and_then(|v| v.first()) {
        Some(v) => Some(
            parse_until(v)
                .ok_or_else(|| BusError::invalid(format!("failed to parse value {v} as a time")))?,
        ),
        None => None,
    };
    let mut report = ContainerPruneResponse::default();
    for c in node.all() {
        let rec = c.snapshot();
        if !matches!(
            rec.state.status,
            Status::Exited | Status::Created | Status::Dead
        ) {
            continue;
        }
        let labels = &rec.config.labels;
        let label_ok = |spec: &str| match spec.split_once('=') {
            Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
            None => labels.contains_key(spec),
        };
        if let Some(want) = req.filters.get("label") {
            if !want.iter().all(|s| label_ok(s)) {
                continue;
            }
        }
        if let Some(refuse) = req.filters.get("label!") {
            if refuse.iter().any(|s| label_ok(s)) {
                continue;
            }
        }
        if until.is_some_and(|u| rec.created_nanos >= u) {
            continue;
        }
        let upper = c.paths.upper();
        let size = tokio::task::spawn_blocking(move || super::views::du(&upper))
            .await
            .unwrap_or(0);
        if super::remove::remove(node, &c, false, false).await.is_ok() {
            report.containers_deleted.push(rec.id.clone());
            report.space_reclaimed += size;
        }
    }
    Ok(report)
}

/// `until=` as a Unix time (with fraction), an RFC 3339 time or a duration like `10m`.
fn parse_until(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<f64>() {
        return Some((secs * 1e9) as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return t.timestamp_nanos_opt();
    }
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    // Checked: `99999999999999h` overflowed and panicked the request's task.
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }?;
    chrono::Utc::now()
        .timestamp_nanos_opt()?
        .checked_sub(secs.checked_mul(1_000_000_000)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_of_the_container_only() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init splash\nroot 4242 4200 0 10:01 ? 00:00:00 sleep 300\n";
        let v = parse_ps(out, &[4242]).unwrap();
        assert_eq!(v["Titles"][1], "PID");
        assert_eq!(v["Processes"].as_array().unwrap().len(), 1);
        assert_eq!(v["Processes"][0][7], "sleep 300");
    }

    /// Found by deploy/fuzz-api.sh (`GET /containers/{id}/top?ps_args=-e -o pid=`): output
    /// without a PID column comes from the client's arguments, a 400 rather than a 500.
    #[test]
    fn ps_output_without_a_pid_column_is_the_clients_error() {
        let err = parse_ps("  1\n  2\n", &[1]).unwrap_err();
        assert_eq!(err.kind, wharf_bus::ErrorKind::Invalid);
        assert_eq!(err.message, "Couldn't find PID field in ps output");
    }

    /// Found next to deploy/fuzz-api.sh's overflow in `update`: a prune's `until` of
    /// `99999999999999h` overflowed and panicked the task (no answer), and one that was no time
    /// at all was ignored, so the prune took every stopped container.
    #[test]
    fn until_values_never_overflow_and_bad_ones_are_none() {
        assert_eq!(parse_until("99999999999999h"), None);
        assert_eq!(parse_until("9223372036854775807s"), None);
        assert_eq!(parse_until("abc"), None);
        assert_eq!(parse_until("10x"), None);
        let ten_minutes_ago = parse_until("10m").unwrap();
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        assert!((now - ten_minutes_ago - 600_000_000_000).abs() < 5_000_000_000);
        assert_eq!(parse_until("1.5"), Some(1_500_000_000));
    }
}

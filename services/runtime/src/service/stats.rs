//! `docker stats`: a container's cgroup counters, network counters and the host's CPU time,
//! sampled once a second and streamed in dockerd's JSON shape.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wharf_bus::api;
use wharf_bus::container::StatsRequest;
use wharf_bus::endpoint::{Empty, StreamRequest};
use wharf_bus::BusError;

use crate::cgroups::{self, Stats};
use crate::logs::format_go_rfc3339_nano;

use super::{Container, Node};

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
        .and_then(|l| cgroups::open(l, &c.with(|r| r.cgroup_path())).ok())
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
    request: &StreamRequest<api::ContainerStats>,
) -> Result<(), BusError> {
    let mut sender = request.accept_download(&node.client, &Empty).await?;
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

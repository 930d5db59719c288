//! `docker update`: a container's resources, applied to its cgroup while it runs, and its
//! restart policy.

use std::sync::Arc;

use serde_json::{json, Value};
use wharf_bus::BusError;

use crate::cgroups;

use super::{internal, limits, Container, Node};

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
            let cgroup = c.with(|r| r.cgroup_path());
            let resources = limits::resources(&host);
            tokio::task::spawn_blocking(move || {
                cgroups::open(&layout, &cgroup)
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

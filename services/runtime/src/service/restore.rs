//! What the node does with the containers it finds at start: records loaded, removals a
//! restart interrupted finished, containers whose shims still run adopted, exits that
//! happened while no runtime watched recorded, and containers whose restart policy says so
//! started again.

use std::sync::Arc;

use wharf_bus::container::RestartPolicy;

use super::record::{ContainerPaths, ContainerRecord, Status};
use super::{exits, names, remove, start, Container, Node};

/// The embedded DNS server of an adopted container on a user network (the last runtime's went
/// with its process).
async fn serve_dns_again(node: &Arc<Node>, rec: &ContainerRecord) {
    let on_user_network = super::networks::resolve_mode(node, &rec.host_config.network_mode)
        .is_ok_and(|n| n.is_some());
    if !on_user_network {
        return;
    }
    let (node2, rec2) = (node.clone(), rec.clone());
    let server = tokio::task::spawn_blocking(move || {
        let joined: Vec<_> = rec2.network.iter().chain(rec2.connected.iter()).collect();
        start::dns_server(&node2, &rec2, &joined, &super::host::HostResolvers::read())
    })
    .await;
    if let Ok(Some((listeners, config))) = server {
        if let Err(e) = node.dns.serve(listeners, config) {
            tracing::warn!(container = %rec.id, "embedded DNS server: {e}");
        }
    }
}

/// Loads every container record and adopts the containers whose shims still run; applies the
/// restart policy to those that ended while no runtime watched.
pub async fn restore(node: &Arc<Node>) {
    let entries = match std::fs::read_dir(&node.containers_dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("cannot read {}: {e}", node.containers_dir.display());
            return;
        }
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let rec = match ContainerRecord::load(&dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "skipping container without a readable record: {e}");
                continue;
            }
        };
        if rec.state.status == Status::Removing {
            // A remove was interrupted: finish it.
            let paths = ContainerPaths::new(&node.containers_dir, &rec.id);
            let node2 = node.clone();
            let id = rec.id.clone();
            let states = rec.networks();
            let cgroup = rec.cgroup_path();
            let _ = tokio::task::spawn_blocking(move || {
                start::teardown(&node2, &id, &paths, &states, &cgroup);
                remove::discard(&*node2.host, &paths);
            })
            .await;
            continue;
        }
        let c = Container::new(
            ContainerPaths::new(&node.containers_dir, &rec.id),
            rec.clone(),
        );
        names::restore_name(node, &rec.name, &rec.id).await;
        node.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rec.id.clone(), c.clone());
        match rec.state.status {
            Status::Running | Status::Paused => {
                let shim = node.host.shim_state(&c.paths.dir).await;
                match shim {
                    Ok(state) if state.exit_code.is_none() => {
                        tracing::info!(container = %rec.id, "adopted running container");
                        serve_dns_again(node, &rec).await;
                        tokio::spawn(exits::monitor(node.clone(), c.clone()));
                    }
                    Ok(state) => {
                        tokio::spawn(exits::on_exit(node.clone(), c.clone(), state));
                    }
                    Err(_) => {
                        let state = exits::final_state_without_shim(node, &c).await;
                        tokio::spawn(exits::on_exit(node.clone(), c.clone(), state));
                    }
                }
            }
            Status::Restarting => {
                c.update_logged(|r| r.state.status = Status::Exited);
                restart_on_boot(node, &c);
            }
            Status::Exited | Status::Created => restart_on_boot(node, &c),
            _ => {}
        }
    }
}

/// Starts an exited container whose policy says it should run whenever the engine does.
fn restart_on_boot(node: &Arc<Node>, c: &Arc<Container>) {
    let rec = c.snapshot();
    if runs_at_boot(
        &rec.host_config.restart_policy,
        rec.has_been_started,
        rec.state.stopped_by_user,
    ) {
        let node = node.clone();
        let c = c.clone();
        tokio::spawn(async move {
            let _held = c.op_lock.lock().await;
            if let Err(e) = start::start_locked(&node, &c).await {
                tracing::warn!(container = %c.id, "restart at boot failed: {}", e.message);
            }
        });
    }
}

/// Whether a container the node finds stopped at start runs again: one started before whose
/// policy is `always`, or `unless-stopped` when no user stopped it.
fn runs_at_boot(policy: &RestartPolicy, has_been_started: bool, stopped_by_user: bool) -> bool {
    has_been_started
        && match policy.name.as_str() {
            "always" => true,
            "unless-stopped" => !stopped_by_user,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_and_unless_stopped_containers_run_again_at_boot() {
        let policy = |name: &str| RestartPolicy {
            name: name.into(),
            maximum_retry_count: 0,
        };
        assert!(runs_at_boot(&policy("always"), true, false));
        assert!(runs_at_boot(&policy("always"), true, true));
        assert!(runs_at_boot(&policy("unless-stopped"), true, false));
        assert!(!runs_at_boot(&policy("unless-stopped"), true, true));
        assert!(!runs_at_boot(&policy("on-failure"), true, false));
        assert!(!runs_at_boot(&policy("no"), true, false));
        // Never started: `docker create` alone does not make it run at boot.
        assert!(!runs_at_boot(&policy("always"), false, false));
    }
}

//! What happens when a container's process ends: its shim watched ([`monitor`]), the exit
//! recorded and what the start set up released ([`on_exit`]), then the restart policy or
//! `--rm` applied; and `docker wait`, which waits for those exits.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use wharf_bus::container::{RestartPolicy, WaitResponse};
use wharf_bus::BusError;

use crate::logs::format_go_rfc3339_nano;
use crate::shim::ShimState;

use super::record::{Status, ZERO_TIME};
use super::{remove, start, Container, Node};

/// Waits for the container's exit (through its shim) and records it.
pub(super) async fn monitor(node: Arc<Node>, c: Arc<Container>) {
    let state = match node.host.shim_wait(&c.paths.dir).await {
        Ok(state) => state,
        Err(e) => match ShimState::read(&c.paths.state()) {
            // A short-lived container's shim may record the exit and leave before we ask.
            Ok(state) if state.exit_code.is_some() => state,
            _ => {
                tracing::warn!(container = %c.id, "lost the shim ({e}); reading its state file");
                final_state_without_shim(&node, &c).await
            }
        },
    };
    on_exit(node, c, state).await;
}

/// The exit as the state file recorded it; when the shim died before recording one, the
/// container's processes are killed through its cgroup and the exit is 137.
pub(super) async fn final_state_without_shim(node: &Arc<Node>, c: &Arc<Container>) -> ShimState {
    let path = c.paths.state();
    if let Ok(state) = ShimState::read(&path) {
        if state.exit_code.is_some() {
            return state;
        }
    }
    let node2 = node.clone();
    let cgroup = c.with(|r| r.cgroup_path());
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(layout) = &node2.cgroups {
            if let Ok(group) = node2.host.cgroup_open(layout, &cgroup) {
                let _ = group.kill_all(nix::sys::signal::Signal::SIGKILL);
            }
        }
    })
    .await;
    let mut state = ShimState::read(&path).unwrap_or_else(|_| ShimState {
        pid: 0,
        status: crate::shim::Status::Exited,
        started_at: ZERO_TIME.into(),
        exit_code: None,
        finished_at: None,
        oom_killed: None,
    });
    state.exit_code = Some(137);
    state.finished_at = Some(format_go_rfc3339_nano(Utc::now()));
    state
}

/// Records an exit, releases the host resources, then applies the restart policy or `--rm`.
pub(super) async fn on_exit(node: Arc<Node>, c: Arc<Container>, state: ShimState) {
    let code = state.exit_code.unwrap_or(255) as i64;
    let node2 = node.clone();
    let id = c.id.clone();
    let paths = c.paths.clone();
    let states = c.with(|r| r.networks());
    let cgroup = c.with(|r| r.cgroup_path());
    let oom = tokio::task::spawn_blocking(move || {
        let oom = node2.cgroups.as_ref().and_then(|layout| {
            node2
                .host
                .cgroup_open(layout, &cgroup)
                .ok()
                .and_then(|g| g.oom_killed().ok())
        });
        start::teardown(&node2, &id, &paths, &states, &cgroup);
        oom.unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    let oom = oom || state.oom_killed.unwrap_or(false);
    let finished = state
        .finished_at
        .clone()
        .unwrap_or_else(|| format_go_rfc3339_nano(Utc::now()));
    c.update_logged(|r| {
        r.state.status = Status::Exited;
        r.state.pid = 0;
        r.state.exit_code = code;
        r.state.finished_at = finished;
        r.state.oom_killed = oom;
        r.network = None;
    });
    c.phase.send_modify(|p| {
        p.exits += 1;
        p.exit_code = code;
        p.running = false;
    });
    let rec = c.snapshot();
    if oom {
        node.publish_event(&rec, "oom", &[]).await;
    }
    node.publish_event(&rec, "die", &[("exitCode", code.to_string())])
        .await;

    let policy = &rec.host_config.restart_policy;
    if restarts_after_exit(policy, rec.state.stopped_by_user, code, rec.restart_count) {
        let delay = restart_delay(rec.restart_count);
        c.update_logged(|r| {
            r.state.status = Status::Restarting;
            r.restart_count += 1;
        });
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _held = c.op_lock.lock().await;
            if c.status() != Status::Restarting {
                return;
            }
            if let Err(e) = start::start_locked(&node, &c).await {
                tracing::warn!(container = %c.id, "restart failed: {}", e.message);
                c.update_logged(|r| r.state.status = Status::Exited);
            }
        });
        return;
    }
    if rec.host_config.auto_remove {
        if let Err(e) = remove::remove(&node, &c, true, true).await {
            tracing::warn!(container = %c.id, "--rm: {}", e.message);
        }
    }
}

/// Whether the restart policy `policy` starts a container again after an exit with `code`:
/// never once a user stopped it; always with `always` and `unless-stopped`; with
/// `on-failure`, after a non-zero exit while fewer restarts than its maximum (0: no maximum)
/// were made.
fn restarts_after_exit(
    policy: &RestartPolicy,
    stopped_by_user: bool,
    code: i64,
    restart_count: i64,
) -> bool {
    !stopped_by_user
        && match policy.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                code != 0
                    && (policy.maximum_retry_count == 0
                        || restart_count < policy.maximum_retry_count)
            }
            _ => false,
        }
}

/// The pause before a restart after `restart_count` earlier ones: 100 ms, doubling with each
/// restart up to 51.2 s.
fn restart_delay(restart_count: i64) -> Duration {
    Duration::from_millis(100u64 << restart_count.clamp(0, 9))
}

/// Waits until the container has exited more than `seen` times, at most `timeout`.
pub(super) async fn exited_after(c: &Container, seen: u64, timeout: Option<Duration>) -> bool {
    let mut rx = c.phase.subscribe();
    let done = async {
        loop {
            if rx.borrow_and_update().exits > seen {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, done).await.is_ok(),
        None => {
            done.await;
            true
        }
    }
}

/// `docker wait` with its conditions.
pub async fn wait(node: &Arc<Node>, id: &str, condition: &str) -> Result<WaitResponse, BusError> {
    let c = node.get(id)?;
    let mut rx = c.phase.subscribe();
    let start = rx.borrow_and_update().clone();
    let response = |code: i64| WaitResponse {
        status_code: code,
        error: None,
    };
    match condition {
        "" | "not-running" => {
            let status = c.status();
            if !status.is_live() && status != Status::Restarting {
                return Ok(response(c.with(|r| r.state.exit_code)));
            }
            loop {
                if rx.changed().await.is_err() {
                    return Ok(response(start.exit_code));
                }
                let p = rx.borrow_and_update().clone();
                if p.exits > start.exits && !p.running && c.status() != Status::Restarting {
                    return Ok(response(p.exit_code));
                }
                if p.removed {
                    return Ok(response(p.exit_code));
                }
            }
        }
        "next-exit" => loop {
            if rx.changed().await.is_err() {
                return Ok(response(start.exit_code));
            }
            let p = rx.borrow_and_update().clone();
            if p.exits > start.exits || p.removed {
                return Ok(response(p.exit_code));
            }
        },
        "removed" => {
            if start.removed {
                return Ok(response(start.exit_code));
            }
            loop {
                if rx.changed().await.is_err() {
                    let code = c.with(|r| r.state.exit_code);
                    return Ok(response(code));
                }
                let p = rx.borrow_and_update().clone();
                if p.removed {
                    return Ok(response(p.exit_code));
                }
            }
        }
        other => Err(BusError::invalid(format!("invalid condition: \"{other}\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, maximum_retry_count: i64) -> RestartPolicy {
        RestartPolicy {
            name: name.into(),
            maximum_retry_count,
        }
    }

    #[test]
    fn the_restart_policy_decides_after_each_exit() {
        for name in ["always", "unless-stopped"] {
            assert!(restarts_after_exit(&policy(name, 0), false, 0, 0));
            assert!(restarts_after_exit(&policy(name, 0), false, 1, 100));
            assert!(!restarts_after_exit(&policy(name, 0), true, 1, 0));
        }
        for name in ["", "no"] {
            assert!(!restarts_after_exit(&policy(name, 0), false, 1, 0));
        }
        let on_failure = policy("on-failure", 0);
        assert!(!restarts_after_exit(&on_failure, false, 0, 0));
        assert!(restarts_after_exit(&on_failure, false, 137, 1000));
        assert!(!restarts_after_exit(&on_failure, true, 137, 0));
        let three = policy("on-failure", 3);
        assert!(restarts_after_exit(&three, false, 1, 2));
        assert!(!restarts_after_exit(&three, false, 1, 3));
    }

    #[test]
    fn restarts_back_off_up_to_a_limit() {
        assert_eq!(restart_delay(0), Duration::from_millis(100));
        assert_eq!(restart_delay(1), Duration::from_millis(200));
        assert_eq!(restart_delay(9), Duration::from_millis(51_200));
        assert_eq!(restart_delay(1000), Duration::from_millis(51_200));
        assert_eq!(restart_delay(-1), Duration::from_millis(100));
    }
}

//! Stopping and signalling a running container: `docker stop` (its stop signal, then SIGKILL
//! after the grace period), `docker restart`, `docker kill`, and `docker pause` and `unpause`
//! through the cgroup freezer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wharf_bus::container::Changed;
use wharf_bus::BusError;

use super::blocking::blocking;
use super::kernel::Host;
use super::record::Status;
use super::{exits, internal, start, Container, Node};

/// Default grace period of `docker stop`.
const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// Parses a signal as Docker accepts it: `SIGKILL`, `KILL`, `9`.
fn parse_signal(text: &str) -> Result<i32, BusError> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        if n > 0 && n <= 64 {
            return Ok(n);
        }
        return Err(BusError::invalid(format!("Invalid signal: {text}")));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| BusError::invalid(format!("Invalid signal: {text}")))
}

/// Sends `signal` to the container's process through its shim.
pub(super) async fn signal(node: &Node, c: &Container, signal: i32) -> Result<(), BusError> {
    signal_shim(&*node.host, &c.paths.dir, &c.id, signal).await
}

/// A container whose process ended (its shim gone, or still there with nothing left to signal)
/// before its exit was recorded is not an error: dockerd, too, takes containerd's "no such
/// process" as done and lets the exit event follow (found by deploy/fuzz-api.sh: a kill racing
/// a restart answered 500).
async fn signal_shim(host: &dyn Host, dir: &Path, id: &str, signal: i32) -> Result<(), BusError> {
    match host.shim_kill(dir, signal).await {
        Ok(()) => Ok(()),
        Err(crate::shim::ShimError::Gone { .. }) => Ok(()),
        Err(crate::shim::ShimError::Refused(m)) if m.ends_with("is not running") => Ok(()),
        Err(e) => Err(internal(format!("cannot signal container {id}"), e)),
    }
}

/// `docker stop`: the stop signal, then SIGKILL after the grace period.
pub async fn stop(
    node: &Arc<Node>,
    c: &Arc<Container>,
    sig: Option<String>,
    timeout: Option<i64>,
) -> Result<Changed, BusError> {
    let _held = c.op_lock.lock().await;
    stop_locked(node, c, sig, timeout).await
}

/// [`stop`] with the container's op_lock already held (by `docker restart` too).
async fn stop_locked(
    node: &Arc<Node>,
    c: &Arc<Container>,
    sig: Option<String>,
    timeout: Option<i64>,
) -> Result<Changed, BusError> {
    let rec = c.snapshot();
    if rec.state.status == Status::Restarting {
        c.update(|r| {
            r.state.status = Status::Exited;
            r.state.stopped_by_user = true;
        })?;
        return Ok(Changed { changed: true });
    }
    if !rec.state.status.is_live() {
        return Ok(Changed { changed: false });
    }
    c.update(|r| r.state.stopped_by_user = true)?;
    let seen = c.phase.borrow().exits;
    let signal_name = sig
        .filter(|s| !s.is_empty())
        .or(rec.config.stop_signal.clone())
        .unwrap_or_else(|| "SIGTERM".into());
    let number = parse_signal(&signal_name)?;
    let timeout = timeout
        .or(rec.config.stop_timeout)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    if rec.state.status == Status::Paused {
        freeze(node, c, false).await?;
    }
    node.publish_event(&rec, "kill", &[("signal", number.to_string())])
        .await;
    let _ = signal(node, c, number).await;
    let grace = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
    if !exits::exited_after(c, seen, grace).await {
        node.publish_event(&rec, "kill", &[("signal", "9".into())])
            .await;
        let _ = signal(node, c, 9).await;
        exits::exited_after(c, seen, Some(Duration::from_secs(30))).await;
    }
    node.publish_event(&c.snapshot(), "stop", &[]).await;
    Ok(Changed { changed: true })
}

/// `docker restart`.
pub async fn restart(
    node: &Arc<Node>,
    c: &Arc<Container>,
    sig: Option<String>,
    timeout: Option<i64>,
) -> Result<Changed, BusError> {
    let _held = c.op_lock.lock().await;
    stop_locked(node, c, sig, timeout).await?;
    c.update(|r| r.state.stopped_by_user = false)?;
    start::start_locked(node, c).await?;
    node.publish_event(&c.snapshot(), "restart", &[]).await;
    Ok(Changed { changed: true })
}

/// `docker kill`.
pub async fn kill(node: &Arc<Node>, c: &Arc<Container>, sig: &str) -> Result<(), BusError> {
    let rec = c.snapshot();
    let number = if sig.is_empty() {
        9
    } else {
        parse_signal(sig)?
    };
    if !rec.state.status.is_live() {
        return Err(BusError::conflict(format!(
            "Cannot kill container: {}: Container {} is not running",
            rec.id, rec.id
        )));
    }
    if rec.state.status == Status::Paused && number == 9 {
        let _ = freeze(node, c, false).await;
    }
    signal(node, c, number).await?;
    node.publish_event(&rec, "kill", &[("signal", number.to_string())])
        .await;
    Ok(())
}

/// Freezes (`on`) or thaws the container's processes through its cgroup.
pub(super) async fn freeze(node: &Arc<Node>, c: &Arc<Container>, on: bool) -> Result<(), BusError> {
    let Some(layout) = node.cgroups.clone() else {
        return Err(BusError::unavailable(
            "cgroups are not available on this node",
        ));
    };
    let cgroup = c.with(|r| r.cgroup_path());
    let host = node.host.clone();
    blocking(move || {
        let group = host
            .cgroup_open(&layout, &cgroup)
            .map_err(|e| internal("cgroup", e))?;
        if on { group.freeze() } else { group.thaw() }.map_err(|e| internal("cgroup", e))
    })
    .await
}

/// `docker pause` (`on`) and `docker unpause`.
pub async fn pause(node: &Arc<Node>, c: &Arc<Container>, on: bool) -> Result<(), BusError> {
    let _held = c.op_lock.lock().await;
    let rec = c.snapshot();
    match (rec.state.status, on) {
        (Status::Running, true) => {}
        (Status::Paused, false) => {}
        (Status::Paused, true) => {
            return Err(BusError::conflict(format!(
                "Container {} is already paused",
                rec.id
            )))
        }
        (Status::Running, false) => {
            return Err(BusError::conflict(format!(
                "Container {} is not paused",
                rec.id
            )))
        }
        _ => {
            return Err(BusError::conflict(format!(
                "Container {} is not running",
                rec.id
            )))
        }
    }
    freeze(node, c, on).await?;
    c.update(|r| r.state.status = if on { Status::Paused } else { Status::Running })?;
    node.publish_event(&rec, if on { "pause" } else { "unpause" }, &[])
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals_by_name_or_number_as_docker_takes_them() {
        for text in ["SIGKILL", "KILL", "kill", "9", " 9 "] {
            assert_eq!(super::parse_signal(text).unwrap(), 9);
        }
        assert_eq!(super::parse_signal("hup").unwrap(), 1);
        for text in ["0", "65", "-1", "SIGNOPE", ""] {
            let e = super::parse_signal(text).unwrap_err();
            assert_eq!(e.kind, wharf_bus::ErrorKind::Invalid);
            assert_eq!(e.message, format!("Invalid signal: {text}"));
        }
    }

    /// Found by deploy/fuzz-api.sh: `POST /containers/{id}/kill` racing the container's exit
    /// (its shim already gone) answered 500.
    #[tokio::test]
    async fn a_signal_to_a_container_whose_shim_is_gone_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let host = super::super::kernel::RealHost;
        super::signal_shim(&host, dir.path(), "gone", 9)
            .await
            .unwrap();
        super::signal_shim(&host, &dir.path().join("removed"), "removed", 15)
            .await
            .unwrap();
    }
}

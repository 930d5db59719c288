//! Removing a container (`docker rm`, `--rm`, prune): stopped first when forced, its host
//! resources and volumes released, its name freed, and its files discarded on a background
//! thread, which the runtime drains before it exits.

use std::sync::Arc;
use std::time::Duration;

use wharf_bus::BusError;

use crate::worker::Worker;

use super::blocking::blocking;
use super::kernel::Host;
use super::record::{ContainerPaths, Status};
use super::{exits, host, names, start, stop, Container, Node};

/// `docker rm`.
pub async fn remove(
    node: &Arc<Node>,
    c: &Arc<Container>,
    force: bool,
    volumes: bool,
) -> Result<(), BusError> {
    let _held = c.op_lock.lock().await;
    let rec = c.snapshot();
    if rec.state.status == Status::Removing {
        return Err(BusError::conflict(format!(
            "removal of container {} is already in progress",
            rec.id
        )));
    }
    if rec.state.status.is_live() || rec.state.status == Status::Restarting {
        if !force {
            let what = if rec.state.status == Status::Paused {
                "paused"
            } else {
                "running"
            };
            return Err(BusError::conflict(format!(
                "You cannot remove a {what} container {}. Stop the container before attempting removal or force remove",
                rec.id
            )));
        }
        c.update(|r| r.state.stopped_by_user = true)?;
        if rec.state.status == Status::Restarting {
            c.update(|r| r.state.status = Status::Exited)?;
        } else {
            let seen = c.phase.borrow().exits;
            if rec.state.status == Status::Paused {
                let _ = stop::freeze(node, c, false).await;
            }
            node.publish_event(&rec, "kill", &[("signal", "9".into())])
                .await;
            let _ = stop::signal(node, c, 9).await;
            exits::exited_after(c, seen, Some(Duration::from_secs(30))).await;
        }
    }
    c.update(|r| r.state.status = Status::Removing)?;
    let rec = c.snapshot();
    let node2 = node.clone();
    let paths = c.paths.clone();
    let id = c.id.clone();
    let mounts = rec.mounts.clone();
    let states = rec.networks();
    let cgroup = rec.cgroup_path();
    blocking(move || {
        start::teardown(&node2, &id, &paths, &states, &cgroup);
        for m in mounts.iter().filter(|m| m.kind == "volume") {
            if let Err(e) = node2.volumes.release(&m.name, &id) {
                tracing::warn!(volume = %m.name, container = %id, "cannot release the volume: {e}");
            }
            if volumes && m.anonymous {
                if let Err(e) = node2.volumes.remove(&m.name, false) {
                    tracing::warn!(volume = %m.name, "cannot remove anonymous volume: {e}");
                }
            }
        }
        discard_later(node2.host.clone(), paths);
        Ok(())
    })
    .await?;
    node.containers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&c.id);
    names::release_name(node, &rec.name, &rec.id).await;
    super::exec::forget_container(node, &rec.id);
    c.phase.send_modify(|p| p.removed = true);
    node.publish_event(&rec, "destroy", &[]).await;
    Ok(())
}

/// Removes what create made (after a failed create or at remove).
pub(super) fn discard(system: &dyn Host, paths: &ContainerPaths) {
    let _ = system.unmount_rootfs(&paths.rootfs(), &host::layers_dir(&paths.upper()));
    let _ = system.remove_netns(&paths.netns());
    if let Err(e) = std::fs::remove_dir_all(&paths.dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %paths.dir.display(), "cannot remove container files: {e}");
        }
    }
}

/// [`discard`] off the caller's path, on one background thread: unmounting the root makes
/// overlayfs write back what its file system holds dirty, a second or more after a large image
/// was unpacked, and the removal is done once the container is gone from the node. Its
/// directory still holds the record (status `Removing`) until then, so a restart of the
/// runtime finishes an unfinished discard ([`restore`](super::restore::restore)).
fn discard_later(system: Arc<dyn Host>, paths: ContainerPaths) {
    static REAPER: Worker<(Arc<dyn Host>, ContainerPaths)> =
        Worker::new("container-discard", |queue| {
            for (system, paths) in queue {
                discard(&*system, &paths);
                PENDING_DISCARDS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    PENDING_DISCARDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if let Err((system, paths)) = REAPER.send((system, paths)) {
        discard(&*system, &paths);
        PENDING_DISCARDS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Removals handed to the background thread and not done yet.
static PENDING_DISCARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Waits (blocking) until the background removals are done, at most `limit`; whether they are.
pub fn drain_removals(limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while PENDING_DISCARDS.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

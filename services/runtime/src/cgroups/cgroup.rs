//! The one interface over both cgroup versions, and the choice between them.

use std::fmt::Debug;
use std::path::PathBuf;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::error::Result;
use super::group_path::GroupPath;
use super::layout::Layout;
use super::resources::Resources;
use super::stats::Stats;
use super::v1::V1Group;
use super::v2::V2Group;

/// A container's cgroup. Calls block on cgroupfs (and sleep briefly while freezing or
/// removing): async callers use `spawn_blocking`.
pub trait Cgroup: Debug + Send + Sync {
    /// The group's path relative to each hierarchy root (`wharf/<id>`).
    fn path(&self) -> &GroupPath;
    /// The group's directories (one per v1 hierarchy, one on v2).
    fn dirs(&self) -> Vec<PathBuf>;
    /// Moves a process (all its threads) into the group.
    fn add_process(&self, pid: Pid) -> Result<()>;
    /// Sets the limits that `resources` gives, leaving the others as they are.
    fn apply(&self, resources: &Resources) -> Result<()>;
    /// Stops every task of the group (`docker pause`); returns once they are all frozen.
    fn freeze(&self) -> Result<()>;
    /// Lets the group's tasks run again (`docker unpause`).
    fn thaw(&self) -> Result<()>;
    /// Current usage for `docker stats`.
    fn stats(&self) -> Result<Stats>;
    /// Whether the kernel's OOM killer has killed a task of this group.
    fn oom_killed(&self) -> Result<bool>;
    /// The processes in the group and its descendants (`docker top`).
    fn pids(&self) -> Result<Vec<Pid>>;
    /// Sends `signal` to every process in the group. SIGKILL is delivered so that no task
    /// can escape by forking meanwhile.
    fn kill_all(&self, signal: Signal) -> Result<()>;
    /// Removes the group's directories, deepest first, waiting briefly for exiting tasks.
    /// The `wharf` parent stays (other containers use it). Removing a removed group is fine.
    fn destroy(&self) -> Result<()>;
}

/// Creates `path` (e.g. `wharf/<container-id>`) in the version `layout` calls for.
pub fn create(layout: &Layout, path: &str) -> Result<Box<dyn Cgroup>> {
    let path = GroupPath::new(path)?;
    Ok(match layout {
        Layout::V1 {
            controllers,
            unified,
        } => Box::new(V1Group::create(controllers, unified.as_deref(), path)?),
        Layout::V2 { root } => Box::new(V2Group::create(root, path)?),
    })
}

/// Opens a group that already exists (a container that outlived a runtime restart).
pub fn open(layout: &Layout, path: &str) -> Result<Box<dyn Cgroup>> {
    let path = GroupPath::new(path)?;
    Ok(match layout {
        Layout::V1 {
            controllers,
            unified,
        } => Box::new(V1Group::open(controllers, unified.as_deref(), path)?),
        Layout::V2 { root } => Box::new(V2Group::open(root, path)?),
    })
}

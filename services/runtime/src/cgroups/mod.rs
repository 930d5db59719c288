//! Control groups for containers: limits (`--memory`, `--cpus`, `--cpu-shares`,
//! `--pids-limit`), pause/unpause, `docker stats`/`top`/`kill`, and OOM detection, on cgroup
//! v1 (including hybrid hosts) and v2 behind one [`Cgroup`] trait.
//!
//! - `layout`: which version this host runs, from /proc/self/mountinfo ([`Layout::detect`]).
//! - `group_path`: `wharf/<container-id>`, always under Wharf's own parent group.
//! - `resources`: Docker's limits, validated and converted per version.
//! - `v1`, `v2`: the two implementations; `files`: cgroupfs reads, writes and removal.
//! - `devices`: which device nodes a group may use (runc's defaults, `--device`);
//!   `device_program`: the same rules on v2, as a BPF program attached to the group.
//! - `stats`: what `docker stats` reads.
//!
//! This is blocking code (cgroupfs I/O, short sleeps while freezing or removing): async
//! callers use `spawn_blocking`.

mod cgroup;
mod device_program;
mod devices;
mod error;
mod files;
mod group_path;
mod layout;
mod resources;
mod signal;
mod stats;
mod v1;
mod v2;

pub use cgroup::{create, open, Cgroup};
pub use devices::{default_rules as default_device_rules, DeviceRule};
pub use error::{CgroupError, Result};
pub use group_path::{GroupPath, PARENT};
pub use layout::{Layout, V1_CONTROLLERS};
pub use resources::{
    cpuset_within, host_cpus, shares_to_weight, BlockLimit, BlockLimitKind, MemorySwap, Resources,
    CPU_PERIOD_US,
};
pub use stats::{CpuStats, MemoryStats, PidsStats, Stats};

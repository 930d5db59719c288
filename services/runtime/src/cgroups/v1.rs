//! cgroup v1: one directory per controller hierarchy (co-mounted controllers share one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::cgroup::Cgroup;
use super::error::{CgroupError, Result};
use super::files::{self, keyed_value};
use super::group_path::GroupPath;
use super::layout::V1_CONTROLLERS;
use super::resources::{MemorySwap, Resources};
use super::signal::{signal_each, signal_frozen};
use super::stats::{CpuStats, MemoryStats, PidsStats, Stats};

/// v1 reports "no limit" as the largest page-aligned i64; anything this large is unlimited.
const UNLIMITED_FLOOR: u64 = 1 << 62;
/// How long freezing may take before it is abandoned (and the group thawed again).
const FREEZE_PATIENCE: Duration = Duration::from_secs(5);

/// The key of a hybrid host's cgroup2 hierarchy among a group's directories.
const UNIFIED: &str = "cgroup2";

/// A group in the v1 hierarchies: one directory per controller hierarchy, and, as runc places
/// containers, in the named hierarchies (`name=systemd`) and a hybrid host's controller-less
/// cgroup2 hierarchy too. The launcher moves the container into every one of them and mounts
/// each (read-only) at /sys/fs/cgroup, so a container sees its own groups there, never the
/// host's whole hierarchy.
#[derive(Debug)]
pub(crate) struct V1Group {
    path: GroupPath,
    /// Controller (or `name=...`, or [`UNIFIED`]) -> the group's directory in that hierarchy.
    dirs: BTreeMap<String, PathBuf>,
}

impl V1Group {
    fn at(
        controllers: &BTreeMap<String, PathBuf>,
        unified: Option<&Path>,
        path: GroupPath,
    ) -> Self {
        let mut dirs: BTreeMap<String, PathBuf> = controllers
            .iter()
            .map(|(name, root)| (name.clone(), path.under(root)))
            .collect();
        if let Some(root) = unified {
            dirs.insert(UNIFIED.to_string(), path.under(root));
        }
        V1Group { path, dirs }
    }

    pub(crate) fn create(
        controllers: &BTreeMap<String, PathBuf>,
        unified: Option<&Path>,
        path: GroupPath,
    ) -> Result<Self> {
        let group = Self::at(controllers, unified, path);
        let made = (|| {
            let cpuset_root = controllers.get("cpuset");
            let mut roots: BTreeSet<&Path> = controllers.values().map(PathBuf::as_path).collect();
            roots.extend(unified);
            for root in roots {
                for level in group.path.levels(root) {
                    files::make_group(&level)?;
                    if Some(root) == cpuset_root.map(PathBuf::as_path) {
                        inherit_cpuset(&level)?;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = group.destroy();
            return Err(e);
        }
        Ok(group)
    }

    pub(crate) fn open(
        controllers: &BTreeMap<String, PathBuf>,
        unified: Option<&Path>,
        path: GroupPath,
    ) -> Result<Self> {
        let mut group = Self::at(controllers, unified, path);
        // Groups made before Wharf joined the named and cgroup2 hierarchies have none there.
        group
            .dirs
            .retain(|name, dir| V1_CONTROLLERS.contains(&name.as_str()) || dir.is_dir());
        match group.unique_dirs().into_iter().find(|d| !d.is_dir()) {
            Some(missing) => Err(CgroupError::NotFound(missing)),
            None => Ok(group),
        }
    }

    fn dir(&self, controller: &'static str) -> Result<&Path> {
        self.dirs
            .get(controller)
            .map(PathBuf::as_path)
            .ok_or(CgroupError::ControllerUnavailable(controller))
    }

    fn unique_dirs(&self) -> Vec<PathBuf> {
        let set: BTreeSet<&PathBuf> = self.dirs.values().collect();
        set.into_iter().cloned().collect()
    }

    fn apply_memory(&self, resources: &Resources, memory: u64) -> Result<()> {
        let dir = self.dir("memory")?;
        let limit = dir.join("memory.limit_in_bytes");
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if !memsw.exists() {
            // No swap accounting (swapaccount=0): the kernel cannot limit swap.
            if resources.memory_swap != MemorySwap::Default {
                tracing::warn!(group = %self.path, "no swap accounting: memory limited without a swap limit");
            }
            return files::write(&limit, &memory.to_string());
        }
        let total = resources.memsw_v1().unwrap_or(-1);
        // The kernel insists on memory <= memory+swap after every write, so the order
        // depends on whether the new total fits above the current memory limit.
        let current = files::read_u64(&limit)?;
        if total < 0 || total as u64 >= current {
            files::write(&memsw, &total.to_string())?;
            files::write(&limit, &memory.to_string())
        } else {
            files::write(&limit, &memory.to_string())?;
            files::write(&memsw, &total.to_string())
        }
    }

    fn freezer_state(&self) -> Result<String> {
        Ok(files::read(&self.dir("freezer")?.join("freezer.state"))?
            .trim()
            .to_string())
    }

    /// The directory whose `cgroup.procs` lists the group's processes.
    fn procs_dir(&self) -> Result<&Path> {
        ["pids", "freezer", "memory", "cpu"]
            .iter()
            .find_map(|c| self.dirs.get(*c))
            .or_else(|| self.dirs.values().next())
            .map(PathBuf::as_path)
            .ok_or(CgroupError::NoHierarchy("no v1 controllers".into()))
    }
}

/// A new cpuset group starts with no CPUs and no memory nodes, and a task cannot join it until
/// they are set: give it its parent's.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    for name in ["cpuset.cpus", "cpuset.mems"] {
        let file = dir.join(name);
        if files::read(&file)?.trim().is_empty() {
            let value = files::read(&parent.join(name))?;
            files::write(&file, value.trim())?;
        }
    }
    Ok(())
}

impl Cgroup for V1Group {
    fn path(&self) -> &GroupPath {
        &self.path
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.unique_dirs()
    }

    fn add_process(&self, pid: Pid) -> Result<()> {
        for dir in self.unique_dirs() {
            files::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn apply(&self, resources: &Resources) -> Result<()> {
        resources.validate()?;
        if let Some(memory) = resources.memory {
            self.apply_memory(resources, memory)?;
        }
        if let Some(quota) = resources.cpu_quota_us() {
            let dir = self.dir("cpu")?;
            files::write(
                &dir.join("cpu.cfs_period_us"),
                &super::resources::CPU_PERIOD_US.to_string(),
            )?;
            files::write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if let Some(shares) = resources.cpu_shares_v1() {
            files::write(&self.dir("cpu")?.join("cpu.shares"), &shares.to_string())?;
        }
        if let Some(rules) = &resources.devices {
            let dir = self.dir("devices")?;
            for rule in rules {
                let file = if rule.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                files::write(&dir.join(file), &rule.to_v1())?;
            }
        }
        if let Some(max) = resources.pids_limit {
            files::write(&self.dir("pids")?.join("pids.max"), &max.to_string())?;
        }
        for (name, value) in [
            ("cpuset.cpus", &resources.cpuset_cpus),
            ("cpuset.mems", &resources.cpuset_mems),
        ] {
            if let Some(value) = value {
                files::write(&self.dir("cpuset")?.join(name), value)?;
            }
        }
        if let Some(bytes) = resources.memory_reservation {
            let file = self.dir("memory")?.join("memory.soft_limit_in_bytes");
            files::write(&file, &bytes.to_string())?;
        }
        if let Some(swappiness) = resources.memory_swappiness {
            let file = self.dir("memory")?.join("memory.swappiness");
            files::write(&file, &swappiness.to_string())?;
        }
        if resources.oom_kill_disable {
            files::write(&self.dir("memory")?.join("memory.oom_control"), "1")?;
        }
        if let Some(weight) = resources.blkio_weight {
            files::write(
                &self.dir("blkio")?.join("blkio.weight"),
                &weight.to_string(),
            )?;
        }
        for limit in &resources.block_devices {
            let (file, line) = limit.v1();
            files::write(&self.dir("blkio")?.join(file), &line)?;
        }
        // The period first: the runtime must fit in it (the kernel refuses it otherwise, and
        // refuses any runtime its parent group has no budget for: the start fails then).
        if let Some(period) = resources.cpu_rt_period {
            files::write(
                &self.dir("cpu")?.join("cpu.rt_period_us"),
                &period.to_string(),
            )?;
        }
        if let Some(runtime) = resources.cpu_rt_runtime {
            files::write(
                &self.dir("cpu")?.join("cpu.rt_runtime_us"),
                &runtime.to_string(),
            )?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        let state = self.dir("freezer")?.join("freezer.state");
        files::write(&state, "FROZEN")?;
        // FREEZING means some task has not stopped yet; writing FROZEN again retries it.
        let frozen = files::wait_until(FREEZE_PATIENCE, || {
            Ok(match self.freezer_state()?.as_str() {
                "FROZEN" => true,
                _ => {
                    files::write(&state, "FROZEN")?;
                    false
                }
            })
        })?;
        if !frozen {
            let _ = files::write(&state, "THAWED");
            return Err(CgroupError::Timeout(format!(
                "{} did not reach FROZEN",
                state.display()
            )));
        }
        Ok(())
    }

    fn thaw(&self) -> Result<()> {
        let state = self.dir("freezer")?.join("freezer.state");
        files::write(&state, "THAWED")?;
        let thawed = files::wait_until(FREEZE_PATIENCE, || Ok(self.freezer_state()? == "THAWED"))?;
        if !thawed {
            return Err(CgroupError::Timeout(format!(
                "{} did not reach THAWED",
                state.display()
            )));
        }
        Ok(())
    }

    fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        if let Some(dir) = self.dirs.get("memory") {
            let limit = files::read_u64(&dir.join("memory.limit_in_bytes"))?;
            let stat = files::read_keyed(&dir.join("memory.stat"))?;
            stats.memory = Some(MemoryStats {
                usage: files::read_u64(&dir.join("memory.usage_in_bytes"))?,
                limit: (limit < UNLIMITED_FLOOR).then_some(limit),
                cache: keyed_value(&stat, "total_cache")
                    .or_else(|| keyed_value(&stat, "cache"))
                    .unwrap_or(0),
            });
        }
        if let Some(dir) = self.dirs.get("cpuacct") {
            let per_cpu_file = dir.join("cpuacct.usage_percpu");
            let per_cpu_text = files::read(&per_cpu_file)?;
            let usage_per_cpu_ns = per_cpu_text
                .split_whitespace()
                .map(|n| n.parse())
                .collect::<Result<Vec<u64>, _>>()
                .map_err(|_| files::parse_error(&per_cpu_file, &per_cpu_text))?;
            // cpuacct.stat counts clock ticks (USER_HZ).
            let tick_ns = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
                Ok(Some(hz)) if hz > 0 => 1_000_000_000 / hz as u64,
                _ => 10_000_000,
            };
            let stat = files::read_keyed(&dir.join("cpuacct.stat"))?;
            stats.cpu = Some(CpuStats {
                usage_total_ns: files::read_u64(&dir.join("cpuacct.usage"))?,
                usage_user_ns: keyed_value(&stat, "user").unwrap_or(0) * tick_ns,
                usage_system_ns: keyed_value(&stat, "system").unwrap_or(0) * tick_ns,
                usage_per_cpu_ns,
            });
        }
        if let Some(dir) = self.dirs.get("pids") {
            stats.pids = Some(PidsStats {
                current: files::read_u64(&dir.join("pids.current"))?,
                limit: files::read_limit(&dir.join("pids.max"))?,
            });
        }
        Ok(stats)
    }

    fn oom_killed(&self) -> Result<bool> {
        let control = files::read_keyed(&self.dir("memory")?.join("memory.oom_control"))?;
        Ok(match keyed_value(&control, "oom_kill") {
            Some(kills) => kills > 0,
            // Kernels before 4.13 have no counter: a group stuck under OOM is the best sign.
            None => keyed_value(&control, "under_oom") == Some(1),
        })
    }

    fn pids(&self) -> Result<Vec<Pid>> {
        let mut pids = Vec::new();
        files::pids_recursive(self.procs_dir()?, &mut pids)?;
        pids.sort();
        pids.dedup();
        Ok(pids)
    }

    fn kill_all(&self, signal: Signal) -> Result<()> {
        if signal != Signal::SIGKILL || !self.dirs.contains_key("freezer") {
            return signal_each(&self.pids()?, signal);
        }
        signal_frozen(self, signal)
    }

    fn destroy(&self) -> Result<()> {
        let mut first_error = None;
        for dir in self.unique_dirs() {
            if let Err(e) = files::remove_group(&dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

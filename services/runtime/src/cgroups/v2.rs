//! cgroup v2: one directory in the unified hierarchy; controllers are enabled for children by
//! each parent's `cgroup.subtree_control`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::cgroup::Cgroup;
use super::error::{CgroupError, Result};
use super::files::{self, keyed_value};
use super::group_path::GroupPath;
use super::resources::{Resources, CPU_PERIOD_US};
use super::signal::{signal_each, signal_frozen};
use super::stats::{CpuStats, MemoryStats, PidsStats, Stats};

/// The controllers Wharf enables for its groups, where the parent offers them.
const WANTED: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];
const FREEZE_PATIENCE: Duration = Duration::from_secs(5);

/// A group in the unified hierarchy.
#[derive(Debug)]
pub(crate) struct V2Group {
    path: GroupPath,
    dir: PathBuf,
}

impl V2Group {
    pub(crate) fn create(root: &Path, path: GroupPath) -> Result<Self> {
        if !root.join("cgroup.controllers").exists() {
            return Err(CgroupError::NoHierarchy(format!(
                "{} is not a cgroup2 hierarchy",
                root.display()
            )));
        }
        let group = V2Group {
            dir: path.under(root),
            path,
        };
        let made = (|| {
            let mut parent = root.to_path_buf();
            for level in group.path.levels(root) {
                // Only inner groups delegate: a group with processes may not enable
                // controllers for children (the no-internal-process rule).
                enable_controllers(&parent)?;
                files::make_group(&level)?;
                parent = level;
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = group.destroy();
            return Err(e);
        }
        Ok(group)
    }

    pub(crate) fn open(root: &Path, path: GroupPath) -> Result<Self> {
        let dir = path.under(root);
        if !dir.is_dir() {
            return Err(CgroupError::NotFound(dir));
        }
        Ok(V2Group { path, dir })
    }

    /// A controller's interface file, or the error that the controller is not enabled here.
    fn file(&self, controller: &'static str, name: &str) -> Result<PathBuf> {
        let file = self.dir.join(name);
        if file.exists() {
            Ok(file)
        } else {
            Err(CgroupError::ControllerUnavailable(controller))
        }
    }

    fn frozen(&self) -> Result<bool> {
        let events = files::read_keyed(&self.dir.join("cgroup.events"))?;
        Ok(keyed_value(&events, "frozen") == Some(1))
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let file = self.file("freezer", "cgroup.freeze")?;
        files::write(&file, if frozen { "1" } else { "0" })?;
        let reached = files::wait_until(FREEZE_PATIENCE, || Ok(self.frozen()? == frozen))?;
        if !reached {
            if frozen {
                let _ = files::write(&file, "0");
            }
            return Err(CgroupError::Timeout(format!(
                "{} did not report frozen {}",
                self.dir.join("cgroup.events").display(),
                frozen as u8
            )));
        }
        Ok(())
    }
}

/// Enables in `parent`'s `cgroup.subtree_control` the wanted controllers it offers and has
/// not enabled yet.
fn enable_controllers(parent: &Path) -> Result<()> {
    let offered = files::read(&parent.join("cgroup.controllers"))?;
    let enabled = files::read(&parent.join("cgroup.subtree_control"))?;
    let control = parent.join("cgroup.subtree_control");
    for controller in WANTED {
        let offered = offered.split_whitespace().any(|c| c == controller);
        let on = enabled.split_whitespace().any(|c| c == controller);
        if offered && !on {
            files::write(&control, &format!("+{controller}"))?;
        }
    }
    Ok(())
}

impl Cgroup for V2Group {
    fn path(&self) -> &GroupPath {
        &self.path
    }

    fn dirs(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn add_process(&self, pid: Pid) -> Result<()> {
        files::write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    fn apply(&self, resources: &Resources) -> Result<()> {
        resources.validate()?;
        if let Some(memory) = resources.memory {
            files::write(&self.file("memory", "memory.max")?, &memory.to_string())?;
            // memory.swap.max is absent without swap accounting: nothing to limit then.
            let swap_file = self.dir.join("memory.swap.max");
            if let (true, Some(swap)) = (swap_file.exists(), resources.swap_max_v2()) {
                let value = swap.map_or("max".to_string(), |s| s.to_string());
                files::write(&swap_file, &value)?;
            }
        }
        if let Some(quota) = resources.cpu_quota_us() {
            files::write(
                &self.file("cpu", "cpu.max")?,
                &format!("{quota} {CPU_PERIOD_US}"),
            )?;
        }
        if let Some(weight) = resources.cpu_weight_v2() {
            files::write(&self.file("cpu", "cpu.weight")?, &weight.to_string())?;
        }
        if let Some(rules) = &resources.devices {
            // No devices controller on v2: a BPF program attached to the group decides.
            super::device_program::apply(&self.dir, rules)?;
        }
        if let Some(max) = resources.pids_limit {
            files::write(&self.file("pids", "pids.max")?, &max.to_string())?;
        }
        for (name, value) in [
            ("cpuset.cpus", &resources.cpuset_cpus),
            ("cpuset.mems", &resources.cpuset_mems),
        ] {
            if let Some(value) = value {
                files::write(&self.file("cpuset", name)?, value)?;
            }
        }
        if let Some(bytes) = resources.memory_reservation {
            files::write(&self.file("memory", "memory.low")?, &bytes.to_string())?;
        }
        if let Some(weight) = resources.blkio_weight {
            files::write(&self.file("io", "io.weight")?, &format!("default {weight}"))?;
        }
        for limit in &resources.block_devices {
            let (file, line) = limit.v2();
            files::write(&self.file("io", file)?, &line)?;
        }
        if resources.cpu_rt_period.is_some() || resources.cpu_rt_runtime.is_some() {
            return Err(CgroupError::InvalidResources(
                "CPU real-time scheduling needs cgroup v1 (cgroup v2 has no cpu.rt_runtime_us)"
                    .into(),
            ));
        }
        // Swappiness and the OOM killer switch have no v2 files: the node discards them at
        // create with a warning, as dockerd does on such hosts.
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        let current = self.dir.join("memory.current");
        if current.exists() {
            let stat = files::read_keyed(&self.dir.join("memory.stat"))?;
            stats.memory = Some(MemoryStats {
                usage: files::read_u64(&current)?,
                limit: files::read_limit(&self.dir.join("memory.max"))?,
                cache: keyed_value(&stat, "file").unwrap_or(0),
            });
        }
        // cpu.stat's usage lines are there even without the cpu controller.
        let cpu = files::read_keyed(&self.dir.join("cpu.stat"))?;
        let ns = |key| keyed_value(&cpu, key).unwrap_or(0) * 1_000;
        stats.cpu = Some(CpuStats {
            usage_total_ns: ns("usage_usec"),
            usage_user_ns: ns("user_usec"),
            usage_system_ns: ns("system_usec"),
            usage_per_cpu_ns: Vec::new(),
        });
        let pids_current = self.dir.join("pids.current");
        if pids_current.exists() {
            stats.pids = Some(PidsStats {
                current: files::read_u64(&pids_current)?,
                limit: files::read_limit(&self.dir.join("pids.max"))?,
            });
        }
        Ok(stats)
    }

    fn oom_killed(&self) -> Result<bool> {
        let events = files::read_keyed(&self.file("memory", "memory.events")?)?;
        Ok(keyed_value(&events, "oom_kill").unwrap_or(0) > 0)
    }

    fn pids(&self) -> Result<Vec<Pid>> {
        let mut pids = Vec::new();
        files::pids_recursive(&self.dir, &mut pids)?;
        pids.sort();
        pids.dedup();
        Ok(pids)
    }

    fn kill_all(&self, signal: Signal) -> Result<()> {
        if signal != Signal::SIGKILL {
            return signal_each(&self.pids()?, signal);
        }
        // cgroup.kill (Linux 5.14) kills the whole subtree atomically, forks included.
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            return files::write(&kill, "1");
        }
        signal_frozen(self, signal)
    }

    fn destroy(&self) -> Result<()> {
        files::remove_group(&self.dir)
    }
}

//! The limits Wharf puts on a container, in Docker's terms (`--memory`, `--memory-swap`,
//! `--cpus`, `--cpu-shares`, `--pids-limit`), checked against what the kernel and this host
//! allow, and translated to the numbers each cgroup version wants.

use super::error::{CgroupError, Result};

/// Docker's smallest accepted memory limit (6 MiB).
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// The CFS period Docker uses for `--cpus` (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The kernel's smallest CFS quota (1 ms), i.e. `--cpus 0.01`.
const MIN_CPU_QUOTA_US: u64 = 1_000;
/// The kernel's range of v1 `cpu.shares`.
pub const CPU_SHARES_MIN: u64 = 2;
pub const CPU_SHARES_MAX: u64 = 262_144;
/// The kernel's range of v2 `cpu.weight`.
pub const CPU_WEIGHT_MIN: u64 = 1;
pub const CPU_WEIGHT_MAX: u64 = 10_000;

/// `--memory-swap`: the limit on memory plus swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemorySwap {
    /// Not given: as documented by Docker, the container may use as much swap as memory,
    /// i.e. memory + swap = 2 x `--memory`.
    #[default]
    Default,
    /// `--memory-swap -1`: swap is not limited.
    Unlimited,
    /// `--memory-swap N`: memory + swap <= N bytes (N >= `--memory`; equal means no swap).
    Total(u64),
}

/// Limits for one group. `None` leaves that limit as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// `--memory`, in bytes.
    pub memory: Option<u64>,
    /// `--memory-swap`; only meaningful with `memory`.
    pub memory_swap: MemorySwap,
    /// `--cpus` in billionths of a CPU (Docker's `NanoCpus`): 1.5 CPUs = 1_500_000_000.
    pub nano_cpus: Option<u64>,
    /// `--cpu-shares` (relative weight; 1024 is the default).
    pub cpu_shares: Option<u64>,
    /// `--pids-limit`: the most tasks the group may hold.
    pub pids_limit: Option<u64>,
    /// Device access, in order (the first usually denies everything); set once, at start.
    pub devices: Option<Vec<super::DeviceRule>>,
    /// `--cpuset-cpus`: the CPUs the group may run on (`0-1,3`).
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`: the memory nodes the group may allocate from.
    pub cpuset_mems: Option<String>,
    /// `--memory-reservation`, in bytes: the soft limit the kernel reclaims down to under
    /// memory pressure (v1 `memory.soft_limit_in_bytes`, v2 `memory.low`).
    pub memory_reservation: Option<u64>,
    /// `--memory-swappiness` (0 to 100; v1 only, as in dockerd).
    pub memory_swappiness: Option<u64>,
    /// `--oom-kill-disable` (v1 only, as in dockerd).
    pub oom_kill_disable: bool,
    /// `--blkio-weight` (10 to 1000).
    pub blkio_weight: Option<u64>,
    /// `--blkio-weight-device` and the throttles (`--device-read-bps`, ...), per device.
    pub block_devices: Vec<BlockLimit>,
    /// `--cpu-rt-period` and `--cpu-rt-runtime`, in microseconds (v1 only).
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
}

/// A limit on one block device (`major:minor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimit {
    pub major: u64,
    pub minor: u64,
    pub kind: BlockLimitKind,
    pub value: u64,
}

/// Which limit a [`BlockLimit`] sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLimitKind {
    Weight,
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

impl BlockLimit {
    /// The v1 blkio file and its line.
    pub fn v1(&self) -> (&'static str, String) {
        let file = match self.kind {
            BlockLimitKind::Weight => "blkio.weight_device",
            BlockLimitKind::ReadBps => "blkio.throttle.read_bps_device",
            BlockLimitKind::WriteBps => "blkio.throttle.write_bps_device",
            BlockLimitKind::ReadIops => "blkio.throttle.read_iops_device",
            BlockLimitKind::WriteIops => "blkio.throttle.write_iops_device",
        };
        (
            file,
            format!("{}:{} {}", self.major, self.minor, self.value),
        )
    }

    /// The v2 io file and its line.
    pub fn v2(&self) -> (&'static str, String) {
        let (file, key) = match self.kind {
            BlockLimitKind::Weight => ("io.weight", ""),
            BlockLimitKind::ReadBps => ("io.max", "rbps="),
            BlockLimitKind::WriteBps => ("io.max", "wbps="),
            BlockLimitKind::ReadIops => ("io.max", "riops="),
            BlockLimitKind::WriteIops => ("io.max", "wiops="),
        };
        (
            file,
            format!("{}:{} {key}{}", self.major, self.minor, self.value),
        )
    }
}

/// Whether `list` is a cpuset list (`0-1,3`) whose numbers are all below `count`: the CPUs or
/// memory nodes of this host.
pub fn cpuset_within(list: &str, count: u64) -> bool {
    !list.is_empty()
        && list.split(',').all(|part| {
            let (first, last) = part.split_once('-').unwrap_or((part, part));
            match (first.trim().parse::<u64>(), last.trim().parse::<u64>()) {
                (Ok(first), Ok(last)) => first <= last && last < count,
                _ => false,
            }
        })
}

impl Resources {
    /// `--cpus` as a fraction (1.5 -> 1_500_000_000 nano CPUs).
    pub fn with_cpus(mut self, cpus: f64) -> Self {
        self.nano_cpus = Some((cpus * 1e9).round() as u64);
        self
    }

    /// Refuses values the kernel would reject or that exceed this host.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(CgroupError::InvalidResources(m));
        if let Some(memory) = self.memory {
            if memory < MIN_MEMORY {
                return invalid(format!(
                    "memory limit {memory} is below the minimum of {MIN_MEMORY} bytes (6 MiB)"
                ));
            }
            if let MemorySwap::Total(total) = self.memory_swap {
                if total < memory {
                    return invalid(format!(
                        "memory+swap limit {total} is smaller than the memory limit {memory}"
                    ));
                }
            }
        } else if self.memory_swap != MemorySwap::Default {
            return invalid("a memory+swap limit needs a memory limit".into());
        }
        if let Some(nano) = self.nano_cpus {
            let host = host_cpus();
            if self.cpu_quota_us().unwrap_or(0) < MIN_CPU_QUOTA_US || nano > host * 1_000_000_000 {
                return invalid(format!(
                    "cpus {:.2}: the range is 0.01 to {host}.00 (this host has {host} CPUs)",
                    nano as f64 / 1e9
                ));
            }
        }
        if self.pids_limit == Some(0) {
            return invalid("pids limit must be at least 1".into());
        }
        if let Some(cpus) = &self.cpuset_cpus {
            if !cpuset_within(cpus, host_cpus()) {
                return invalid(format!(
                    "cpuset cpus {cpus:?}: this host has CPUs 0-{}",
                    host_cpus() - 1
                ));
            }
        }
        if self.memory_swappiness.is_some_and(|s| s > 100) {
            return invalid("memory swappiness must be 0 to 100".into());
        }
        Ok(())
    }

    /// The CFS quota (µs per [`CPU_PERIOD_US`]) for `nano_cpus`: 1.5 CPUs -> 150000.
    pub fn cpu_quota_us(&self) -> Option<u64> {
        self.nano_cpus
            .map(|nano| (nano as u128 * CPU_PERIOD_US as u128 / 1_000_000_000) as u64)
    }

    /// The v1 `cpu.shares` value: the kernel's range is 2..=262144 and it clamps silently;
    /// clamping here keeps what is written equal to what is in effect.
    pub fn cpu_shares_v1(&self) -> Option<u64> {
        self.cpu_shares
            .map(|s| s.clamp(CPU_SHARES_MIN, CPU_SHARES_MAX))
    }

    /// The v2 `cpu.weight` for `cpu_shares`.
    pub fn cpu_weight_v2(&self) -> Option<u64> {
        self.cpu_shares_v1().map(shares_to_weight)
    }

    /// The v1 `memory.memsw.limit_in_bytes` value (memory + swap); -1 for unlimited.
    pub fn memsw_v1(&self) -> Option<i64> {
        let memory = self.memory?;
        Some(match self.memory_swap {
            MemorySwap::Default => memory.saturating_mul(2).min(i64::MAX as u64) as i64,
            MemorySwap::Unlimited => -1,
            MemorySwap::Total(total) => total.min(i64::MAX as u64) as i64,
        })
    }

    /// The v2 `memory.swap.max` value (swap alone); `None` inside means `max`.
    pub fn swap_max_v2(&self) -> Option<Option<u64>> {
        let memory = self.memory?;
        Some(match self.memory_swap {
            MemorySwap::Default => Some(memory),
            MemorySwap::Unlimited => None,
            MemorySwap::Total(total) => Some(total.saturating_sub(memory)),
        })
    }
}

/// Maps v1 shares (2..=262144, default 1024) onto v2 weight (1..=10000, default 100) the way
/// current runc does: on a log scale, through a quadratic in log2(shares) chosen so that the
/// two ends and the defaults line up (2 -> 1, 1024 -> 100, 262144 -> 10000). The older linear
/// mapping sent the default 1024 to 39, starving containers next to v2-native services.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(CPU_SHARES_MIN, CPU_SHARES_MAX);
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(CPU_WEIGHT_MIN, CPU_WEIGHT_MAX)
}

/// CPUs online on this host (what `--cpus` may not exceed, as Docker checks it).
pub fn host_cpus() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuset_lists_are_numbers_and_ranges_below_the_count() {
        assert!(cpuset_within("0", 2));
        assert!(cpuset_within("0-1", 2));
        assert!(cpuset_within("0,1", 2));
        assert!(cpuset_within("1-3,5", 6));
        for bad in ["", "2", "0-2", "1-0", "a", "0,", "-1", "0--1"] {
            assert!(!cpuset_within(bad, 2), "{bad:?}");
        }
    }

    #[test]
    fn cpus_become_a_quota_per_100ms_period() {
        let r = Resources::default().with_cpus(1.5);
        assert_eq!(r.cpu_quota_us(), Some(150_000));
        assert_eq!(
            Resources::default().with_cpus(0.01).cpu_quota_us(),
            Some(1_000)
        );
    }

    #[test]
    fn unset_swap_allows_as_much_swap_as_memory() {
        let r = Resources {
            memory: Some(64 << 20),
            ..Default::default()
        };
        assert_eq!(r.memsw_v1(), Some(128 << 20));
        assert_eq!(r.swap_max_v2(), Some(Some(64 << 20)));
        let no_swap = Resources {
            memory_swap: MemorySwap::Total(64 << 20),
            ..r.clone()
        };
        assert_eq!(no_swap.memsw_v1(), Some(64 << 20));
        assert_eq!(no_swap.swap_max_v2(), Some(Some(0)));
        let unlimited = Resources {
            memory_swap: MemorySwap::Unlimited,
            ..r
        };
        assert_eq!(unlimited.memsw_v1(), Some(-1));
        assert_eq!(unlimited.swap_max_v2(), Some(None));
    }

    #[test]
    fn shares_map_to_weight_keeping_ends_and_default() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        assert!(shares_to_weight(512) < 100 && shares_to_weight(2048) > 100);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let tiny = Resources {
            memory: Some(1 << 20),
            ..Default::default()
        };
        assert!(tiny.validate().is_err());
        let too_many_cpus = Resources::default().with_cpus((host_cpus() + 1) as f64);
        assert!(too_many_cpus.validate().is_err());
        assert!(Resources::default().with_cpus(0.001).validate().is_err());
        let swap_below_memory = Resources {
            memory: Some(64 << 20),
            memory_swap: MemorySwap::Total(32 << 20),
            ..Default::default()
        };
        assert!(swap_below_memory.validate().is_err());
        let zero_pids = Resources {
            pids_limit: Some(0),
            ..Default::default()
        };
        assert!(zero_pids.validate().is_err());
        assert!(Resources::default().with_cpus(1.0).validate().is_ok());
        assert_eq!(
            Resources {
                cpu_shares: Some(1),
                ..Default::default()
            }
            .cpu_shares_v1(),
            Some(2)
        );
    }
}

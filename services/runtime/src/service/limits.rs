//! The limits a container's host config sets: its cgroup resources (memory, CPUs, shares,
//! PIDs), applied at start and by `docker update`, and the size its JSON log may grow to.

use wharf_bus::container::HostConfig;
use wharf_bus::BusError;

use crate::cgroups::{self, Resources};

/// A size as `--log-opt max-size` takes it (`10m`, `1g`, `512k`, bytes); `None` for text that
/// is no size or too large.
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1024),
        'm' => (&t[..t.len() - 1], 1024 * 1024),
        'g' => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t.as_str(), 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult))
}

/// The cgroup limits `h` asks for: `--memory` and `--memory-swap`, `--cpus` (or
/// `--cpu-quota` over `--cpu-period`), `--cpu-shares`, `--pids-limit`, `--cpuset-cpus`,
/// `--cpuset-mems`, `--memory-reservation`, `--memory-swappiness` and `--oom-kill-disable`.
pub(super) fn resources(h: &HostConfig) -> Resources {
    let mut r = Resources::default();
    if h.memory > 0 {
        r.memory = Some(h.memory as u64);
        r.memory_swap = match h.memory_swap {
            0 => cgroups::MemorySwap::Default,
            -1 => cgroups::MemorySwap::Unlimited,
            n => cgroups::MemorySwap::Total(n as u64),
        };
    }
    if h.nano_cpus > 0 {
        r.nano_cpus = Some(h.nano_cpus as u64);
    } else if h.cpu_quota > 0 {
        let period = if h.cpu_period > 0 {
            h.cpu_period
        } else {
            100_000
        };
        // In u128: a quota near i64::MAX overflowed u64 and panicked the request's task (found
        // by deploy/fuzz-api.sh); the cgroup's own check then refuses what is out of range.
        let nano = h.cpu_quota as u128 * 1_000_000_000 / period as u128;
        r.nano_cpus = Some(u64::try_from(nano).unwrap_or(u64::MAX));
    }
    if h.cpu_shares > 0 {
        r.cpu_shares = Some(h.cpu_shares as u64);
    }
    if let Some(p) = h.pids_limit.filter(|p| *p > 0) {
        r.pids_limit = Some(p as u64);
    }
    let set = |s: &String| (!s.is_empty()).then(|| s.clone());
    r.cpuset_cpus = set(&h.cpuset_cpus);
    r.cpuset_mems = set(&h.cpuset_mems);
    if h.memory_reservation > 0 {
        r.memory_reservation = Some(h.memory_reservation as u64);
    }
    r.memory_swappiness = h.memory_swappiness.filter(|s| *s >= 0).map(|s| s as u64);
    r.oom_kill_disable = h.oom_kill_disable == Some(true);
    if h.blkio_weight > 0 {
        r.blkio_weight = Some(h.blkio_weight as u64);
    }
    if h.cpu_realtime_period > 0 {
        r.cpu_rt_period = Some(h.cpu_realtime_period as u64);
    }
    if h.cpu_realtime_runtime != 0 {
        r.cpu_rt_runtime = Some(h.cpu_realtime_runtime);
    }
    r
}

/// The per-device block IO limits of `h` (`--blkio-weight-device`, `--device-read-bps`,
/// `--device-write-bps`, `--device-read-iops`, `--device-write-iops`), each device found by
/// its path on the host, as dockerd finds it (a missing one fails in its words).
pub(super) fn block_devices(h: &HostConfig) -> Result<Vec<cgroups::BlockLimit>, BusError> {
    use cgroups::BlockLimitKind as Kind;
    let device = |path: &str| -> Result<(u64, u64), BusError> {
        let st = nix::sys::stat::stat(path).map_err(|e| {
            let text = std::io::Error::from(e).to_string();
            let text = text
                .split(" (os error")
                .next()
                .unwrap_or(&text)
                .to_lowercase();
            BusError::invalid(format!("stat {path}: {text}"))
        })?;
        Ok((
            nix::sys::stat::major(st.st_rdev),
            nix::sys::stat::minor(st.st_rdev),
        ))
    };
    let mut out = Vec::new();
    for w in h.blkio_weight_device.iter().flatten() {
        let (major, minor) = device(&w.path)?;
        out.push(cgroups::BlockLimit {
            major,
            minor,
            kind: Kind::Weight,
            value: w.weight as u64,
        });
    }
    for (list, kind) in [
        (&h.blkio_device_read_bps, Kind::ReadBps),
        (&h.blkio_device_write_bps, Kind::WriteBps),
        (&h.blkio_device_read_iops, Kind::ReadIops),
        (&h.blkio_device_write_iops, Kind::WriteIops),
    ] {
        for t in list.iter().flatten() {
            let (major, minor) = device(&t.path)?;
            out.push(cgroups::BlockLimit {
                major,
                minor,
                kind,
                value: t.rate,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use wharf_bus::container::HostConfig;

    /// Found by deploy/fuzz-api.sh: `POST /containers/{id}/update` with `CpuQuota`
    /// 9223372036854775806 overflowed the quota's conversion to CPUs and panicked the task, so
    /// the request never got an answer; a log `max-size` of too many gigabytes did the same.
    #[test]
    fn huge_cpu_quotas_and_sizes_do_not_overflow() {
        let host = HostConfig {
            cpu_quota: i64::MAX - 1,
            ..HostConfig::default()
        };
        assert_eq!(super::resources(&host).nano_cpus, Some(u64::MAX));
        let host = HostConfig {
            cpu_quota: 150_000,
            cpu_period: 100_000,
            ..HostConfig::default()
        };
        assert_eq!(super::resources(&host).nano_cpus, Some(1_500_000_000));
        assert_eq!(super::parse_size("99999999999999999999g"), None);
        assert_eq!(super::parse_size("17179869184g"), None);
        assert_eq!(super::parse_size("10m"), Some(10 << 20));
    }
}

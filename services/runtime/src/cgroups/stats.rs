//! What `docker stats` and `docker inspect` read from a group.

/// A snapshot of a group's usage. A part is `None` when its controller is not available.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory: Option<MemoryStats>,
    pub cpu: Option<CpuStats>,
    pub pids: Option<PidsStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes charged to the group now (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage: u64,
    /// The limit in bytes; `None` when unlimited.
    pub limit: Option<u64>,
    /// Page cache (v1 `total_cache`, v2 `file`), which `docker stats` subtracts from usage.
    pub cache: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// CPU time used by the group's tasks, in nanoseconds.
    pub usage_total_ns: u64,
    pub usage_user_ns: u64,
    pub usage_system_ns: u64,
    /// Per-CPU usage in nanoseconds (v1 `cpuacct.usage_percpu`); empty where the kernel does
    /// not report it (v2).
    pub usage_per_cpu_ns: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
    /// `None` when unlimited.
    pub limit: Option<u64>,
}

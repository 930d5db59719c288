//! The state file: how the runtime learns a container's state, also after it restarted
//! (the shim outlives it). Written whole to a temporary file and renamed over, so a reader
//! sees the old state or the new one, never half of either.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{Result, ShimError};

/// Whether the container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The shim is up; the container is not started yet (`pid` is 0).
    Created,
    Running,
    Exited,
}

/// A container's state as its shim records it; times are RFC 3339 with nanoseconds, as Docker
/// spells them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    /// The init's PID in the host's PID namespace (0 before start).
    pub pid: i32,
    pub status: Status,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Only known when the container has a cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<bool>,
}

impl ShimState {
    /// Reads the state file at `path`.
    pub fn read(path: &Path) -> Result<ShimState> {
        let bytes = std::fs::read(path).map_err(|source| ShimError::State {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ShimError::CorruptState {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Replaces the state file at `path` atomically. Not synced: it describes a process,
    /// which a power loss ends anyway (the runtime then finds the shim gone), and a crash of
    /// ours leaves the old or the new file; a sync would make container starts and exits wait
    /// behind whatever else the file system is writing.
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |source| ShimError::State {
            path: path.to_path_buf(),
            source,
        };
        let json = serde_json::to_vec(self).expect("a ShimState serializes");
        wharf_bus::files::write_atomic(path, &json, wharf_bus::files::Durability::Unsynced)
            .map_err(io)
    }
}

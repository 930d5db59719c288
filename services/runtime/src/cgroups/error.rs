//! What can go wrong while managing cgroups. Every kernel-facing error names the file (and the
//! value, for writes) so a failed `docker run --memory` says exactly what the kernel refused.

use std::path::PathBuf;

/// Errors of the cgroup library.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable cgroup hierarchy is mounted (per /proc/self/mountinfo).
    #[error("no usable cgroup hierarchy: {0}")]
    NoHierarchy(String),
    /// The group path is not a safe relative path under Wharf's parent group.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// The requested limits are out of the range the kernel or this host allows.
    #[error("invalid resources: {0}")]
    InvalidResources(String),
    /// A limit needs a controller this host does not offer to the group.
    #[error("cgroup controller {0:?} is not available")]
    ControllerUnavailable(&'static str),
    /// The group does not exist (opening a group that was never created or was destroyed).
    #[error("cgroup {0} does not exist")]
    NotFound(PathBuf),
    /// The kernel refused a value.
    #[error("cannot write {value:?} to {file}: {source}")]
    Write {
        file: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    /// A cgroup file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A cgroup file held something this library does not understand.
    #[error("unexpected content in {file}: {content:?}")]
    Parse { file: PathBuf, content: String },
    /// Creating or removing a group directory failed.
    #[error("{op} {dir}: {source}")]
    Dir {
        op: &'static str,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Signalling a process of the group failed (other than it having exited already).
    #[error("cannot send {signal} to pid {pid}: {source}")]
    Signal {
        pid: i32,
        signal: nix::sys::signal::Signal,
        #[source]
        source: nix::Error,
    },
    /// The kernel refused a v2 group's device program (or attaching it); `detail` holds the
    /// verifier's log when there is one.
    #[error("device program of {dir}: cannot {op}: {source}{detail}")]
    DeviceProgram {
        op: &'static str,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
        detail: String,
    },
    /// The kernel did not reach the wanted state in time (freezing, emptying before removal).
    #[error("timed out: {0}")]
    Timeout(String),
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

//! How the runtime talks to a detached shim process (`wharf-shim <bundle-dir>`).
//!
//! The runtime starts `wharf-shim <bundle>` with a pipe as stdin, and writes [`ShimLaunch`] (JSON)
//! to it once the container is prepared, then closes it: the process starts meanwhile. An empty
//! stdin means the start was called off (the shim exits, silent). The shim detaches (new
//! session), binds the unix socket `<bundle>/shim.sock`, and writes one line to its stdout:
//! `ready\n`, or `error <message>\n` if it could not get that far; then it closes stdout. The container is not launched until a client sends [`ShimRequest::Start`], so
//! attaches made before start see all of the container's output.
//!
//! Bundle paths can exceed the 108 bytes of `sun_path`: both sides bind and connect through
//! `/proc/self/fd/<dirfd>/shim.sock` with `dirfd` an open descriptor of the bundle directory.
//!
//! Every connection starts with one JSON line, a [`ShimRequest`]. The shim answers with one JSON
//! line, a [`ShimReply`]. After a successful `attach` answer the connection carries the stream:
//! shim to client the container's output (with a TTY raw bytes; without, Docker's 8-byte
//! multiplex header per chunk: `[stream, 0, 0, 0, len_be_u32]`, stream 1 stdout / 2 stderr),
//! client to shim the bytes for the container's stdin (when the attach asked for stdin). The
//! shim closes an attach connection once the container's output has ended (after the last byte).
//! A client shutting down its write half ends its stdin; with `stdin_once` that closes the
//! container's stdin.
//!
//! The shim exits once the container has exited, its output is logged, the state file says
//! `exited`, every `wait` has been answered and every attach connection has been given the
//! last of the output.
//!
//! An exec shim (`docker exec`) is the same program with a bundle of its own and
//! [`ShimLaunch::exec`] set: its process joins a running container (its cgroups and
//! namespaces) instead of being a new one. Everything else is the same, except that its output
//! goes to attach clients only, never to a log, as Docker does not log exec output. When the
//! container's init dies the exec's process dies with its PID namespace and the shim records
//! that exit like any other.

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::state::ShimState;

/// File name of the socket in the bundle.
pub const SOCKET_FILE: &str = "shim.sock";
/// File name of the state file in the bundle.
pub const STATE_FILE: &str = "state.json";

/// Everything the shim needs, sent by the runtime on the shim's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimLaunch {
    pub id: String,
    pub spec: Spec,
    /// The prepared root file system (overlay mounted by the runtime). Unused with `exec`.
    pub rootfs: PathBuf,
    /// The json-file log. Unused with `no_log` or `exec`.
    pub log_path: PathBuf,
    /// Write no log at all (Docker's `--log-driver none`); attach clients still get the output.
    #[serde(default)]
    pub no_log: bool,
    #[serde(default)]
    pub log_max_size: Option<u64>,
    pub log_max_files: u32,
    /// Allocate a pseudo-terminal (`-t`): stdin, stdout and stderr are its slave side.
    #[serde(default)]
    pub tty: bool,
    /// Keep stdin open (`-i`): a pipe (or the TTY) the attach clients write to; else /dev/null.
    #[serde(default)]
    pub open_stdin: bool,
    /// Close the container's stdin when the first attached client ends its stdin.
    #[serde(default)]
    pub stdin_once: bool,
    /// Initial terminal size (height, width).
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Cgroup directories the init joins before exec (each gets its PID in `cgroup.procs`).
    /// For an exec, the container's.
    #[serde(default)]
    pub cgroup_dirs: Vec<PathBuf>,
    /// Run `spec.process` inside this running container instead of starting a container:
    /// the spec's root, mounts and namespaces are ignored then, and nothing is logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecInto>,
    /// `spec.linux.seccomp` compiled by the runtime (the shim compiles it when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<crate::seccomp::Program>,
}

/// The running container an exec joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecInto {
    /// The container init's PID in the host's PID namespace (its shim's state `pid`).
    pub pid: i32,
}

/// The first line of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ShimRequest {
    /// Launch the container (once). Answer: `ok` with `state` (running, with its pid), or the
    /// launch error in Docker's words.
    Start,
    /// Stream output (and take stdin) from now on.
    Attach {
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdout: bool,
        #[serde(default)]
        stderr: bool,
    },
    /// Signal the init (by the PID the shim reaps, so never another process).
    Kill { signal: i32 },
    /// Set the TTY's size.
    Resize { height: u16, width: u16 },
    /// Close the container's stdin.
    CloseStdin,
    /// Answer once the container has exited, with its final state.
    Wait,
    /// Answer with the current state at once.
    State,
}

/// The answer line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ShimState>,
}

impl ShimReply {
    pub fn ok() -> ShimReply {
        ShimReply {
            ok: true,
            error: None,
            state: None,
        }
    }

    pub fn with_state(state: ShimState) -> ShimReply {
        ShimReply {
            ok: true,
            error: None,
            state: Some(state),
        }
    }

    pub fn error(message: impl Into<String>) -> ShimReply {
        ShimReply {
            ok: false,
            error: Some(message.into()),
            state: None,
        }
    }
}

//! What can go wrong between the runtime and a shim.

use std::path::PathBuf;

/// Errors of the shim client and the state file.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The state file could not be written or read.
    #[error("state file {}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file is not a shim state.
    #[error("state file {}: {source}", path.display())]
    CorruptState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// No shim answers for this bundle (socket missing, refused, or closed before answering):
    /// the container's last state is in the state file.
    #[error("shim of {} is gone", bundle.display())]
    Gone { bundle: PathBuf },
    /// The shim refused the request; its message (a launch error in Docker's words).
    #[error("{0}")]
    Refused(String),
    /// Starting or talking to the shim failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The shim's answer was not what the protocol says.
    #[error("shim protocol: {0}")]
    Protocol(String),
}

impl ShimError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ShimError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = ShimError> = std::result::Result<T, E>;

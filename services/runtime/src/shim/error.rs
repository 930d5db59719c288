//! What can go wrong in a shim.

use std::path::PathBuf;

use crate::container::LaunchError;
use crate::logs::LogError;

/// Errors of the shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The container could not be started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The container's log could not be written.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A kernel call failed.
    #[error("{context}: {source}")]
    Os {
        context: String,
        #[source]
        source: nix::Error,
    },
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
    /// `wait` was called twice, or `kill` after the container was reaped.
    #[error("container {0} has already exited")]
    Exited(String),
}

impl ShimError {
    pub(crate) fn os(context: impl Into<String>, source: nix::Error) -> Self {
        ShimError::Os {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = ShimError> = std::result::Result<T, E>;

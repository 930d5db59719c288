//! The per-container shim as a library: it starts a container's init, owns its stdio, and
//! outlives the runtime service (a later step runs it as a detached `wharf shim` process).
//!
//! - `config`: what the runtime hands a shim ([`ShimConfig`]).
//! - `state`: the state file the runtime reads back after a restart ([`ShimState`]).
//! - `pump`: copying the container's stdout and stderr into its json-file log.
//! - `exit`: Docker's exit-code convention.
//! - `running`: [`Shim::start`], [`Shim::wait`] and [`Shim::kill`].
//!
//! This is blocking code: async callers use `spawn_blocking`.

mod config;
mod error;
mod exit;
mod pump;
mod running;
mod state;

pub use config::ShimConfig;
pub use error::{Result, ShimError};
pub use exit::exit_code;
pub use running::Shim;
pub use state::{ShimState, Status};

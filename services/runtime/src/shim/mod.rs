//! The per-container shim: a detached `wharf-shim <bundle>` process per container that starts
//! the container's init, owns its stdio (json-file log, attach clients, TTY), reaps it and
//! records its state, and outlives the runtime service that started it.
//!
//! - `protocol`: the contract between runtime and shim ([`ShimLaunch`], [`ShimRequest`],
//!   [`ShimReply`], the bundle's file names).
//! - `state`: the state file the runtime reads back once the shim is gone ([`ShimState`]).
//! - `server`: the shim process itself, one thread and one poll loop ([`serve`]).
//! - `conn`: one client connection of the shim, with bounded buffers.
//! - `client`: the runtime's async side ([`ShimClient`]).
//! - `exit`: Docker's exit-code convention.
//!
//! `server` is blocking, single-threaded code meant for its own process; `client` is async.

mod client;
mod conn;
mod error;
mod exit;
mod protocol;
mod server;
mod state;

pub use client::{default_shim_binary, ShimClient, StartingShim, SHIM_NAME};
pub use error::{Result, ShimError};
pub use exit::exit_code;
pub use protocol::{ExecInto, ShimLaunch, ShimReply, ShimRequest, SOCKET_FILE, STATE_FILE};
pub use server::serve;
pub use state::{ShimState, Status};

//! The bus contract of Wharf: every subject, every message type, every error and the streaming
//! primitive that the gateway and the services share. Nothing else defines wire types.

#![forbid(unsafe_code)]

pub mod api;
pub mod blob;
pub mod build;
pub mod changes;
pub mod connect;
pub mod container;
pub mod digest;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod files;
pub mod image;
pub mod layer;
pub mod nodes;
pub mod paths;
pub mod permissions;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod rpc;
pub mod service;
pub mod stream;
pub mod subjects;
pub mod testkit;

pub use connect::{connect, NatsOptions};
pub use error::{BusError, ErrorKind};
pub use rpc::call;

/// Version string every service reports to the NATS service API.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

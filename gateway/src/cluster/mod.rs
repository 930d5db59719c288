//! The cluster layer: what the gateway knows about runtime nodes beyond one request.
//!
//! - [`node`]: one node as the gateway calls it ([`node::NodeClient`]).
pub mod node;

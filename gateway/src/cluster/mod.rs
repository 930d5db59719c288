//! The cluster layer: what the gateway knows and decides about the runtime nodes, so that route
//! handlers only translate HTTP into calls of this layer or of the bus and back.
//!
//! - [`node`]: one node as the gateway calls it ([`node::NodeClient`], from
//!   [`AppState::node`](crate::state::AppState::node)): its endpoints by their api.rs
//!   declarations.
//! - [`nodes`]: the connected nodes, their counts and what all of them enforce.
//! - [`placement`]: which node a new container, network or volume goes to.
//! - [`resolve`]: which container a name or an ID prefix means, across the nodes.
//! - [`execs`]: which node holds an exec.
//! - [`containers`]: every node's containers as one list, prune reports added up, the images
//!   containers use.
//! - [`networks`]: networks across the nodes: merged lists, dockerd's lookup, the node a
//!   container's networks put it on, connects within one node.
//! - [`volumes`]: volumes across the nodes: merged lists, exact names, where a new one goes.
//! - [`disk_usage`]: `docker system df`'s figures, gathered and accounted.
//! - [`events`]: `docker events` replayed from the recorded stream and followed live.
//!
//! Broadcasts go out through the roster ([`wharf_bus::nodes::Roster::gather`]); the merge and
//! decision functions are pure and tested on their own.

pub mod containers;
pub mod disk_usage;
pub mod events;
pub mod execs;
pub mod networks;
pub mod node;
pub mod nodes;
pub mod placement;
pub mod resolve;
pub mod volumes;

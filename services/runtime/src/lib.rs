//! runtime: runs containers on its host (issue 3); for now it registers on the bus as a node and
//! answers health so the stack and `nats micro ls` see it. [`snapshot`] unpacks image layers
//! into overlayfs lower directories (used by container creation); [`cgroups`] limits, pauses,
//! measures and kills containers' processes.

pub mod cgroups;
pub mod container;
pub mod logs;
pub mod network;
pub mod shim;
pub mod snapshot;
pub mod volume;

use std::path::PathBuf;

/// Settings of one runtime node.
#[derive(Debug, Clone)]
pub struct Options {
    /// Wharf's data root; the runtime keeps its files under `<data_root>/runtime`.
    pub data_root: PathBuf,
    /// Node name (defaults to the host name).
    pub node_name: String,
}

/// Registers the service and serves until the bus connection ends.
pub async fn run(client: async_nats::Client, options: Options) -> anyhow::Result<()> {
    let _ = options;
    let running = wharf_bus::service::start(
        &client,
        wharf_bus::subjects::service_name::RUNTIME,
        "Wharf runtime: containers on this node",
        wharf_bus::subjects::group::RUNTIME,
    )
    .await?;
    running.wait().await;
    Ok(())
}

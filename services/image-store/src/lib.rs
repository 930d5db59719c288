//! image-store: content-addressed blobs and image metadata, served on the bus.

use std::path::PathBuf;

/// Settings of one image-store instance.
#[derive(Debug, Clone)]
pub struct Options {
    /// Wharf's data root; the store keeps its files under `<data_root>/image-store`.
    pub data_root: PathBuf,
}

/// Registers the service and serves until the bus connection ends.
pub async fn run(client: async_nats::Client, options: Options) -> anyhow::Result<()> {
    let _ = options;
    let running = wharf_bus::service::start(
        &client,
        wharf_bus::subjects::service_name::IMAGE_STORE,
        "Wharf image store: blobs, manifests, configs, tags",
        wharf_bus::subjects::group::IMAGE_STORE,
    )
    .await?;
    running.wait().await;
    Ok(())
}

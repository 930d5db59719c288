//! registry-sync: moves images between OCI Distribution registries and the image-store.

/// Settings of registry-sync workers.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Mirrors tried before Docker Hub for `docker.io` images (`http://host:port`).
    pub registry_mirrors: Vec<String>,
    /// Registries (`host[:port]` or CIDR) that may be reached over plain HTTP or unverified TLS.
    pub insecure_registries: Vec<String>,
}

/// Registers the service and serves until the bus connection ends.
pub async fn run(client: async_nats::Client, options: Options) -> anyhow::Result<()> {
    let _ = options;
    let running = wharf_bus::service::start(
        &client,
        wharf_bus::subjects::service_name::REGISTRY_SYNC,
        "Wharf registry sync: pull and push over the OCI Distribution protocol",
        wharf_bus::subjects::group::REGISTRY_SYNC,
    )
    .await?;
    running.wait().await;
    Ok(())
}

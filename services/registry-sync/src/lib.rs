//! registry-sync: moves images between OCI Distribution registries and the image-store.
//!
//! The library ([`client`], [`auth`], [`manifest`], [`pull`], [`login`], [`distribution`]) works
//! without NATS; [`bus`] puts it on the bus.

pub mod auth;
pub mod bus;
pub mod client;
pub mod distribution;
pub mod login;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod sync;

use std::sync::Arc;

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
    let registries = Arc::new(client::Registries::new(
        &options.registry_mirrors,
        &options.insecure_registries,
    )?);
    let mut running = wharf_bus::service::start(
        &client,
        wharf_bus::subjects::service_name::REGISTRY_SYNC,
        "Wharf registry sync: pull and push over the OCI Distribution protocol",
        wharf_bus::subjects::group::REGISTRY_SYNC,
    )
    .await?;
    bus::serve(&mut running, client.clone(), registries).await?;
    running.wait().await;
    Ok(())
}

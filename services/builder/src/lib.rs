//! builder: turns a build context and a Dockerfile into an image, as dockerd's classic builder
//! does. Any number of builders serve `wharf.v1.builder.build` in one queue group; the cache
//! index they share is a JetStream key-value bucket.

#![forbid(unsafe_code)]

pub mod build;
pub mod cache_endpoints;
pub mod context;
pub mod dockerfile;
pub mod ignore;

use std::path::PathBuf;
use std::sync::Arc;

/// A builder's settings.
pub struct Options {
    /// Where a builder keeps the contexts of running builds (removed after each build).
    pub work_dir: PathBuf,
    /// Bounds of `ADD <url>` downloads.
    pub download: build::download::DownloadLimits,
}

/// Registers the service and serves until the bus connection ends.
pub async fn run(client: async_nats::Client, options: Options) -> anyhow::Result<()> {
    let mut running = wharf_bus::service::start(
        &client,
        wharf_bus::subjects::service_name::BUILDER,
        "Wharf builder: Dockerfile builds",
        wharf_bus::subjects::group::BUILDER,
    )
    .await?;
    let builder =
        Arc::new(build::Builder::new(client.clone(), options.work_dir, options.download).await?);
    cache_endpoints::serve(&mut running, client.clone(), builder.cache.clone()).await?;
    running
        .serve_stream::<wharf_bus::api::Build, _, _>(
            wharf_bus::subjects::group::BUILDER,
            move |incoming| {
                let builder = builder.clone();
                async move { build::handle(builder, incoming).await }
            },
        )
        .await?;
    running.wait().await;
    Ok(())
}

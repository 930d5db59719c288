//! builder: turns a build context and a Dockerfile into an image (issue 4); for now it registers
//! on the bus and answers health so the stack and `nats micro ls` see it.

pub mod context;
pub mod dockerfile;
pub mod ignore;

/// Registers the service and serves until the bus connection ends.
pub async fn run(client: async_nats::Client) -> anyhow::Result<()> {
    let running = wharf_bus::service::start(
        &client,
        wharf_bus::subjects::service_name::BUILDER,
        "Wharf builder: Dockerfile builds",
        wharf_bus::subjects::group::BUILDER,
    )
    .await?;
    running.wait().await;
    Ok(())
}

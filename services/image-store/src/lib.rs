//! image-store: content-addressed blobs and image metadata, served on the bus.
//!
//! The domain logic ([`blob_store`], [`image_index`], [`store`], [`archive_export`],
//! [`archive_load`], [`import`]) works without NATS; [`bus`] is the thin adapter that serves it.

pub mod archive_export;
pub mod archive_load;
pub mod blob_store;
pub mod bus;
mod chunks;
pub mod filters;
pub mod image_index;
pub mod import;
pub mod layer_scan;
pub mod store;

use std::path::PathBuf;

/// Settings of one image-store instance.
#[derive(Debug, Clone)]
pub struct Options {
    /// Wharf's data root; the store keeps its files under `<data_root>/image-store`.
    pub data_root: PathBuf,
}

/// Registers the service and serves until the bus connection ends.
pub async fn run(client: async_nats::Client, options: Options) -> anyhow::Result<()> {
    let root = options.data_root.join("image-store");
    let store = tokio::task::spawn_blocking(move || {
        let store = store::ImageStore::open(&root)?;
        // Image content is root's: another user of the host reads no private image's layers.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
        anyhow::Ok(store)
    })
    .await??;
    let store = std::sync::Arc::new(store);
    // Unreferenced blobs (build contexts, abandoned pulls) go once idle for the grace period.
    let sweeper = std::sync::Arc::downgrade(&store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(blob_store::GC_GRACE);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(store) = sweeper.upgrade() else {
                break;
            };
            match tokio::task::spawn_blocking(move || store.sweep()).await {
                Ok(Ok(freed)) if freed > 0 => tracing::info!(freed, "unreferenced blobs removed"),
                Ok(Err(e)) => tracing::warn!("blob sweep: {}", e.message),
                _ => {}
            }
        }
    });
    let running = bus::serve(client, store).await?;
    running.wait().await;
    Ok(())
}

/// An I/O failure as a [`wharf_bus::BusError`]: a bus error carried inside (a stream that
/// failed) comes back as it was; anything else is described with `context`.
pub(crate) fn bus_error_from_io(err: std::io::Error, context: &str) -> wharf_bus::BusError {
    // One check, as `wharf_bus::error::from_io` makes it, but keeping `context` for the rest.
    let err = match err.downcast::<wharf_bus::BusError>() {
        Ok(carried) => return carried,
        Err(err) => err,
    };
    match err.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
            wharf_bus::BusError::invalid(format!("{context}: {err}"))
        }
        _ => wharf_bus::BusError::internal(format!("{context}: {err}")),
    }
}

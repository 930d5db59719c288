//! Blocking work of the handlers (mounts, file systems, netlink, cgroups) run on tokio's
//! blocking threads, so the node's async tasks keep answering meanwhile.

use wharf_bus::BusError;

/// A blocking task that panicked or was cancelled, as the request's error.
fn blocking_err(e: tokio::task::JoinError) -> BusError {
    BusError::internal(format!("runtime task failed: {e}"))
}

/// Runs `f` on a blocking thread; a panic in it becomes an internal error of the request.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    tokio::task::spawn_blocking(f).await.map_err(blocking_err)?
}

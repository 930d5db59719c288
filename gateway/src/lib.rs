#![recursion_limit = "256"]
//! The gateway: the Docker Engine API over HTTP, translated into bus requests. It keeps no state
//! that another gateway would need, so any number can run behind a load balancer.

mod body;
mod cluster;
mod content_type;
mod error;
mod json_body;
mod limits;
mod listen;
mod query;
mod render;
mod routes;
mod state;
#[cfg(test)]
mod testutil;
mod version;

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use version::{API_VERSION, MIN_API_VERSION};

/// TLS settings of the TCP listeners (dockerd's `--tls*` flags).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require and verify client certificates against `ca`.
    pub verify: bool,
}

/// Settings of one gateway instance.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Listen addresses: `unix:///run/wharf/docker.sock`, `tcp://127.0.0.1:2375`.
    pub hosts: Vec<String>,
    pub tls: Option<TlsOptions>,
    /// Group that may use the unix socket (dockerd's `-G`); root's group when unset.
    pub socket_group: Option<String>,
    /// Shown by `docker info`.
    pub data_root: PathBuf,
}

/// Checks the listen addresses, TLS files and socket group without binding anything, so a bad
/// setting fails `wharf up` at once instead of a gateway that restarts forever.
pub async fn check(options: &Options) -> anyhow::Result<()> {
    for host in &options.hosts {
        listen::resolve(host, options.tls.as_ref())
            .await
            .with_context(|| format!("cannot serve the API on {host}"))?;
    }
    listen::socket_gid(options.socket_group.as_deref())?;
    Ok(())
}

/// Serves the API on every host until the bus connection or the process ends.
pub async fn run(client: async_nats::Client, options: Options) -> anyhow::Result<()> {
    let service = wharf_bus::service::start(
        &client,
        wharf_bus::subjects::service_name::GATEWAY,
        "Wharf gateway: the Docker Engine API",
        wharf_bus::subjects::group::GATEWAY,
    )
    .await?;
    let state = state::AppState::new(client.clone(), options.clone()).await;
    // Record events from the start, not only once somebody runs `docker events`.
    if let Err(e) = cluster::events::ensure_events_stream(&state.jetstream).await {
        tracing::warn!(
            "no JetStream on the bus ({e}): docker events --since will only show live events"
        );
    }
    let app = routes::router(state);
    let open_files = match limits::raise_open_file_limit() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot read the open-file limit: {e}");
            1024
        }
    };
    let limits = limits::Limits::new(open_files, options.hosts.len());
    tracing::info!(
        "API limits: {} connections per listener (open-file limit {open_files}), request headers within {:?}, TLS handshakes within {:?}",
        limits.max_connections,
        limits.header_read_timeout,
        limits.tls_handshake_timeout
    );
    let stop = CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    for host in &options.hosts {
        let listener = listen::bind(host, options.tls.as_ref(), options.socket_group.as_deref())
            .await
            .with_context(|| format!("cannot serve the API on {host}"))?;
        tracing::info!("API listening on {}", listener.describe());
        servers.spawn(listen::serve(listener, app.clone(), stop.clone(), limits));
    }
    let _guard = stop.clone().drop_guard();
    tokio::select! {
        _ = service.wait() => {}
        _ = servers.join_next() => {}
    }
    Ok(())
}

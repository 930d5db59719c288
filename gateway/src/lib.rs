//! The gateway: the Docker Engine API over HTTP, translated into bus requests.

use std::path::PathBuf;

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

/// Serves the API on every host until the process is told to stop.
pub async fn run(client: async_nats::Client, options: Options) -> anyhow::Result<()> {
    let _ = (client, options);
    Ok(())
}

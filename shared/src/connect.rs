//! Connecting to NATS with the credentials and TLS settings every service accepts.

use std::path::PathBuf;
use std::time::Duration;

/// How to reach and authenticate to NATS. Every service and the gateway take the same options.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Comma-separated server URLs (`nats://host:4222`, `tls://host:4222`).
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An nkey seed (`SU...`), read from a file.
    pub nkey_file: Option<PathBuf>,
    /// A `.creds` file (JWT + nkey seed), as `nsc` writes them.
    pub creds_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub require_tls: bool,
}

/// Connects with endless reconnects: services ride out a NATS restart instead of dying with it.
pub async fn connect(opts: &NatsOptions, name: &str) -> Result<async_nats::Client, std::io::Error> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        // Inboxes under a per-service prefix let NATS permissions give each service its own
        // replies and streams only (deploy/nats/accounts.conf).
        .custom_inbox_prefix(format!("_INBOX.{name}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(30)))
        .subscription_capacity(4096)
        .reconnect_delay_callback(|attempt| {
            // Quick first retries (a supervised nats-server restarts in well under a second),
            // then back off to at most two seconds.
            Duration::from_millis((50u64 << attempt.min(6) as u64).min(2000))
        })
        .event_callback(|event| async move {
            tracing::info!(%event, "nats connection event");
        });
    if let (Some(user), Some(password)) = (&opts.user, &opts.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &opts.token {
        options = options.token(token.clone());
    }
    if let Some(path) = &opts.nkey_file {
        let seed = std::fs::read_to_string(path)?;
        options = options.nkey(seed.trim().to_string());
    }
    if let Some(path) = &opts.creds_file {
        options = options.credentials_file(path).await?;
    }
    if let Some(ca) = &opts.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if opts.require_tls || opts.tls_ca.is_some() {
        options = options.require_tls(true);
    }
    let urls: Vec<async_nats::ServerAddr> = opts
        .url
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad NATS URL {}: {e}", opts.url),
            )
        })?;
    options
        .connect(urls)
        .await
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e.to_string()))
}

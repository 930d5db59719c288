//! Connecting to NATS with the credentials and TLS settings every service accepts.

use std::path::PathBuf;
use std::time::Duration;

/// How to reach and authenticate to NATS. Every service and the gateway take the same options.
#[derive(Clone, Default)]
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

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsOptions")
            .field("url", &redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("nkey_file", &self.nkey_file)
            .field("creds_file", &self.creds_file)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

/// The URL list with any `user:password@` taken out, for messages and logs.
pub fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}<redacted>@{}", &u[..scheme + 3], &u[at + 1..])
            }
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects with endless reconnects: services ride out a NATS restart instead of dying with it.
/// The wait before connection attempt `attempt` (async-nats counts from 1, the first connection
/// included): none for the first, then quick retries (a supervised nats-server restarts in well
/// under a second), backing off to at most two seconds.
fn reconnect_delay(attempt: usize) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    Duration::from_millis((50u64 << (attempt - 2).min(6) as u64).min(2000))
}

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
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(|event| async move {
            tracing::info!(%event, "nats connection event");
        });
    match (&opts.user, &opts.password) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.clone(), password.clone())
        }
        (None, None) => {}
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NATS user and password go together: give both or neither",
            ))
        }
    }
    if let Some(token) = &opts.token {
        options = options.token(token.clone());
    }
    if let Some(path) = &opts.nkey_file {
        let seed = tokio::fs::read_to_string(path).await?;
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
                format!("bad NATS URL {}: {e}", redact_url(&opts.url)),
            )
        })?;
    options.connect(urls).await.map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("{} ({})", e, redact_url(&opts.url)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_connection_is_not_delayed_and_retries_back_off_to_two_seconds() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(50));
        assert_eq!(reconnect_delay(3), Duration::from_millis(100));
        assert_eq!(reconnect_delay(100), Duration::from_millis(2000));
    }

    #[test]
    fn urls_and_debug_output_never_show_secrets() {
        assert_eq!(
            redact_url("nats://u:pw@h:4222,nats://h2:4222"),
            "nats://<redacted>@h:4222,nats://h2:4222"
        );
        let o = NatsOptions {
            url: "nats://a:b@h".into(),
            password: Some("hunter2".into()),
            ..Default::default()
        };
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("a:b@"),
            "{shown}"
        );
    }
}

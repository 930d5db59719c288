//! `wharf sync SRC DST`: asks registry-sync, over the bus, to copy a repository from one
//! registry to another, once or every `--every`. Credentials are the docker CLI's: the logins
//! of its config.json (`auths`, `credsStore`, `credHelpers`), so `docker login` to both
//! registries is all the setup a sync needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use wharf_bus::progress::JsonMessage;
use wharf_bus::reference::Reference;
use wharf_bus::registry::{auth_key_domain, AuthConfigs, RegistryAuth, SyncRequest, SyncSummary};
use wharf_bus::{api, endpoint};

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    /// Source repository: `registry/repo`, or `registry/repo:tag` for that tag alone.
    pub source: String,
    /// Destination repository: `registry/repo` (tags keep their names).
    pub destination: String,
    /// A tag to copy (repeatable); default: every tag of the source.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Sync again every DURATION (`90s`, `15m`, `6h`) until stopped. A failed run is reported
    /// and the next one still comes.
    #[arg(long, value_parser = interval)]
    pub every: Option<Duration>,
    /// The docker CLI's configuration directory, whose logins are used.
    #[arg(long = "docker-config", env = "DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,
    /// Print only each run's summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--every`: a duration people write, and more than nothing.
fn interval(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("the interval must be longer than 0s".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// How long `wharf sync` waits for its NATS connection before it says it has none.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Waits for the NATS connection, so that no server (or refused credentials) is said at once
/// rather than as a request that timed out.
/// `looked_in` is the data root whose `wharf up` was looked for, when no NATS URL was given.
pub async fn wait_connected(
    client: &async_nats::Client,
    url: &str,
    looked_in: Option<&Path>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    while client.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() >= deadline {
            match looked_in {
                Some(root) => anyhow::bail!(
                    "cannot reach NATS at {}: is `wharf up` running with data root {}? \
                     (or give --nats-url)",
                    wharf_bus::connect::redact_url(url),
                    root.display()
                ),
                None => anyhow::bail!(
                    "cannot reach NATS at {} (or it refused the credentials given)",
                    wharf_bus::connect::redact_url(url)
                ),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs the sync once, or every `--every` until a signal.
pub async fn run(client: async_nats::Client, args: SyncArgs) -> anyhow::Result<()> {
    let Some(every) = args.every else {
        let request = request(&args).await?;
        return once(&client, &request, args.quiet).await.map(drop);
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Logins are read again for every run: helpers' tokens expire, logins change.
        let run = async {
            let request = request(&args).await?;
            once(&client, &request, args.quiet).await
        };
        if let Err(e) = run.await {
            eprintln!("wharf: {e:#}");
        }
        let next = chrono::Local::now() + chrono::Duration::from_std(every).unwrap_or_default();
        println!("Next sync at {}", next.format("%Y-%m-%d %H:%M:%S"));
    }
}

/// The request, with the credentials the docker CLI holds for each registry.
async fn request(args: &SyncArgs) -> anyhow::Result<SyncRequest> {
    let source = Reference::parse(&args.source).map_err(|e| anyhow::anyhow!(e.message))?;
    let destination =
        Reference::parse(&args.destination).map_err(|e| anyhow::anyhow!(e.message))?;
    let dir = args.docker_config.clone();
    let (source_domain, destination_domain) = (source.domain.clone(), destination.domain.clone());
    // Credential helpers are programs that may wait on a keychain: off the async threads.
    let (source_auth, destination_auth) = tokio::task::spawn_blocking(move || {
        let config = DockerConfig::load(dir.as_deref())?;
        anyhow::Ok((
            config.auth_for(&source_domain)?,
            config.auth_for(&destination_domain)?,
        ))
    })
    .await??;
    Ok(SyncRequest {
        source_auth,
        destination_auth,
        source: source.to_string(),
        destination: destination.to_string(),
        tags: args.tags.clone(),
    })
}

/// One sync: its progress as the docker CLI prints a push's without a terminal, then the
/// summary.
async fn once(
    client: &async_nats::Client,
    request: &SyncRequest,
    quiet: bool,
) -> anyhow::Result<SyncSummary> {
    let (mut rx, _) = endpoint::download::<api::RegistrySync>(client, request)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let mut summary = None;
    let mut failure = None;
    while let Some(message) = rx.next_json::<JsonMessage>().await {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                failure = Some(e.message);
                break;
            }
        };
        if let Some(s) = message.aux.as_ref().and_then(|a| a.get("Summary")) {
            summary = serde_json::from_value::<SyncSummary>(s.clone()).ok();
            continue;
        }
        // Progress bars are for terminals; the lines around them say the same.
        let bar = message
            .progress_detail
            .as_ref()
            .is_some_and(|d| d.total.is_some());
        let Some(status) = message.status.filter(|_| !bar) else {
            continue;
        };
        let line = match message.id {
            Some(id) => format!("{id}: {status}"),
            None => status,
        };
        if !quiet || message_is_summary(&line) {
            println!("{line}");
        }
    }
    match (failure, summary) {
        (Some(e), _) => Err(anyhow::anyhow!(e)),
        (None, Some(summary)) => Ok(summary),
        (None, None) => Err(anyhow::anyhow!("the sync ended without a summary")),
    }
}

/// The human summary registry-sync ends a sync with.
fn message_is_summary(line: &str) -> bool {
    line.starts_with("Synced ")
}

/// The parts of the docker CLI's config.json that hold logins.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: AuthConfigs,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

/// What a docker credential helper's `get` prints.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperCredentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

impl DockerConfig {
    /// `dir/config.json`, or `~/.docker/config.json`; none at all means no logins.
    fn load(dir: Option<&Path>) -> anyhow::Result<DockerConfig> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".docker"),
                None => return Ok(DockerConfig::default()),
            },
        };
        let path = dir.join("config.json");
        match std::fs::read(&path) {
            Ok(raw) => serde_json::from_slice(&raw)
                .with_context(|| format!("cannot read {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The login for registry `domain`: its credential helper's, else the store's, else the
    /// one in `auths`, as the docker CLI looks them up.
    fn auth_for(&self, domain: &str) -> anyhow::Result<Option<RegistryAuth>> {
        let key = self
            .auths
            .keys()
            .find(|k| auth_key_domain(k) == domain)
            .cloned()
            .unwrap_or_else(|| server_key(domain));
        let helper = self
            .cred_helpers
            .iter()
            .find(|(k, _)| auth_key_domain(k) == domain)
            .map(|(_, h)| h)
            .or(self.creds_store.as_ref());
        if let Some(helper) = helper {
            return helper_get(helper, &key);
        }
        Ok(self.auths.get(&key).cloned())
    }
}

/// How the docker CLI keys a registry's login: Docker Hub by its v1 URL, others by host.
fn server_key(domain: &str) -> String {
    if domain == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        domain.to_string()
    }
}

/// `docker-credential-<helper> get`, as the docker CLI calls it; "no credentials" is no login.
fn helper_get(helper: &str, server: &str) -> anyhow::Result<Option<RegistryAuth>> {
    use std::io::Write;
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        // Helpers say "credentials not found in native keychain" and fail: no login.
        return Ok(None);
    }
    // Its answer holds a secret: a parse error could quote it, so it is not passed on.
    let creds: HelperCredentials = serde_json::from_slice(&out.stdout)
        .map_err(|_| anyhow::anyhow!("{program} answered something else than credentials"))?;
    Ok(Some(if creds.username == "<token>" {
        RegistryAuth {
            identity_token: Some(creds.secret),
            server_address: Some(server.to_string()),
            ..Default::default()
        }
    } else {
        RegistryAuth {
            username: Some(creds.username),
            password: Some(creds.secret),
            server_address: Some(server.to_string()),
            ..Default::default()
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn logins_come_from_auths_by_registry() {
        let c = config(
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dTpw"},"https://index.docker.io/v1/":{"identitytoken":"tok"}}}"#,
        );
        let local = c.auth_for("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(local.basic(), Some(("u".into(), "p".into())));
        let hub = c.auth_for("docker.io").unwrap().unwrap();
        assert_eq!(hub.identity_token.as_deref(), Some("tok"));
        assert!(c.auth_for("127.0.0.1:5001").unwrap().is_none());
    }

    #[test]
    fn a_missing_credential_helper_is_an_error_that_names_it() {
        let c = config(r#"{"auths":{},"credsStore":"wharf-test-absent"}"#);
        let err = c.auth_for("127.0.0.1:5000").unwrap_err();
        assert!(
            format!("{err:#}").contains("docker-credential-wharf-test-absent"),
            "{err:#}"
        );
    }

    #[test]
    fn every_takes_human_durations_above_zero() {
        assert_eq!(interval("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(interval("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(interval("0s").unwrap_err().contains("longer than 0s"));
        assert!(interval("soon").is_err());
    }

    #[test]
    fn no_config_file_means_no_logins() {
        let dir = tempfile::tempdir().unwrap();
        let c = DockerConfig::load(Some(dir.path())).unwrap();
        assert!(c.auth_for("docker.io").unwrap().is_none());
    }
}

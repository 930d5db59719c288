//! Command line and config file. Flags use dockerd's spelling where dockerd has one; flags win
//! over the config file (`--config-file`, JSON in the shape of dockerd's `daemon.json`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

pub const DEFAULT_HOST: &str = "unix:///run/wharf/docker.sock";
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/wharf";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/wharf/daemon.json";

// No Debug on the types that hold the NATS password: nothing can print it by accident.
#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "A Docker-compatible container engine built as services on a NATS bus"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub common: Common,
}

// Parsed once at start: the size of the `up` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the whole stack on this machine: every service as a supervised child process, plus a
    /// private nats-server when no --nats-url is given.
    Up(UpArgs),
    /// Run the Docker API gateway alone.
    Gateway(GatewayArgs),
    /// Run the image store alone.
    ImageStore,
    /// Run a registry-sync worker alone.
    RegistrySync(RegistryArgs),
    /// Run a builder worker alone.
    Builder(BuilderArgs),
    /// Run a runtime node alone.
    Runtime(RuntimeArgs),
    /// Copy a repository from one registry to another (every tag and platform, or chosen
    /// tags), once or every --every; uses the docker CLI's logins.
    Sync(crate::sync::SyncArgs),
}

/// Options every command takes.
#[derive(Args, Clone, Default)]
pub struct Common {
    /// NATS server URL(s), comma-separated. `wharf up` starts its own nats-server without it.
    #[arg(long, global = true, env = "WHARF_NATS_URL")]
    pub nats_url: Option<String>,
    #[arg(long, global = true, env = "WHARF_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password (prefer the environment variable: arguments are visible to other users).
    #[arg(
        long,
        global = true,
        env = "WHARF_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub nats_password: Option<String>,
    #[arg(long, global = true, env = "WHARF_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// File holding an nkey seed.
    #[arg(long, global = true, env = "WHARF_NATS_NKEY")]
    pub nats_nkey: Option<PathBuf>,
    /// NATS credentials file (JWT and seed).
    #[arg(long, global = true, env = "WHARF_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    #[arg(long, global = true)]
    pub nats_tlscacert: Option<PathBuf>,
    #[arg(long, global = true)]
    pub nats_tlscert: Option<PathBuf>,
    #[arg(long, global = true)]
    pub nats_tlskey: Option<PathBuf>,
    /// Root of Wharf's persistent state.
    #[arg(long, global = true, env = "WHARF_DATA_ROOT")]
    pub data_root: Option<PathBuf>,
    /// JSON config file (dockerd's daemon.json keys); flags win over it.
    #[arg(long, global = true, env = "WHARF_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Debug logging.
    #[arg(short = 'D', long, global = true)]
    pub debug: bool,
    /// Log level: debug, info, warn, error.
    #[arg(short = 'l', long, global = true)]
    pub log_level: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GatewayArgs {
    /// Daemon socket(s) to listen on: unix:///path or tcp://host:port. Repeatable.
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Use TLS on TCP listeners.
    #[arg(long)]
    pub tls: bool,
    /// Use TLS and require and verify client certificates.
    #[arg(long)]
    pub tlsverify: bool,
    #[arg(long)]
    pub tlscacert: Option<PathBuf>,
    #[arg(long)]
    pub tlscert: Option<PathBuf>,
    #[arg(long)]
    pub tlskey: Option<PathBuf>,
    /// Group for the unix socket.
    #[arg(short = 'G', long = "group")]
    pub group: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Registry mirror for docker.io images. Repeatable.
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// Registry reachable over plain HTTP or unverified TLS (host[:port] or CIDR). Repeatable.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct BuilderArgs {
    /// Largest file `ADD <url>` may download: bytes, or with a unit (512MiB, 10GiB)
    /// [default: 10GiB].
    #[arg(long, env = "WHARF_ADD_MAX_SIZE", value_parser = add_max_size)]
    pub add_max_size: Option<u64>,
    /// Longest an `ADD <url>` download may take, headers and body (90s, 10m) [default: 10m];
    /// connecting has 30s.
    #[arg(long, env = "WHARF_ADD_TIMEOUT", value_parser = add_timeout)]
    pub add_timeout: Option<std::time::Duration>,
}

fn add_max_size(text: &str) -> Result<u64, String> {
    wharf_builder::build::download::parse_size(text)
}

fn add_timeout(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("the timeout must be longer than 0s".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl BuilderArgs {
    pub fn download_limits(&self) -> wharf_builder::build::download::DownloadLimits {
        let mut limits = wharf_builder::build::download::DownloadLimits::default();
        if let Some(size) = self.add_max_size {
            limits.max_size = size;
        }
        if let Some(timeout) = self.add_timeout {
            limits.timeout = timeout;
        }
        limits
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct RuntimeArgs {
    /// Name of this runtime node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Label of this node (`key=value`, repeatable) for placement (`--label wharf.node=NAME`).
    #[arg(long = "node-label")]
    pub node_labels: Vec<String>,
    /// Bridge of the default network (dockerd's `--bridge`; Wharf's default is wharf0).
    #[arg(long)]
    pub bridge: Option<String>,
    /// Subnet of the default network, CIDR (default 172.30.0.0/16; never docker0's).
    #[arg(long)]
    pub fixed_cidr: Option<String>,
    /// nftables table (family ip) holding Wharf's NAT rules (default wharf).
    #[arg(long)]
    pub firewall_table: Option<String>,
    /// The wharf-shim program (default: next to this binary, else on PATH).
    #[arg(long, env = "WHARF_SHIM")]
    pub shim_binary: Option<PathBuf>,
    /// dockerd's `--userns-remap`: `default` (the user dockremap, made when missing) or
    /// `USER[:GROUP]` with ranges in /etc/subuid and /etc/subgid; container root is then the
    /// range's first ID on the host (`docker run --userns=host` opts out).
    #[arg(long)]
    pub userns_remap: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct UpArgs {
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub builder: BuilderArgs,
    /// Address the private nats-server listens on (only without --nats-url). Without it:
    /// 127.0.0.1:4222, or a free loopback port when another server has that one (a second
    /// engine on the host); the address is recorded under the data root for `wharf sync`.
    #[arg(long)]
    pub nats_listen: Option<String>,
    /// The nats-server binary for the private server.
    #[arg(long, env = "WHARF_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
    /// How many builder processes to run (0: builds go to builders started elsewhere on the
    /// bus with `wharf builder`).
    #[arg(long, default_value_t = 1)]
    pub builders: usize,
}

/// The subset of dockerd's daemon.json that Wharf reads, plus its NATS settings.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub hosts: Vec<String>,
    pub data_root: Option<PathBuf>,
    #[serde(default)]
    pub registry_mirrors: Vec<String>,
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    #[serde(default)]
    pub tls: Option<bool>,
    #[serde(default)]
    pub tlsverify: Option<bool>,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
    pub group: Option<String>,
    pub debug: Option<bool>,
    pub log_level: Option<String>,
    pub nats_url: Option<String>,
    pub nats_creds: Option<PathBuf>,
    pub nats_nkey: Option<PathBuf>,
    pub nats_tlscacert: Option<PathBuf>,
    pub nats_tlscert: Option<PathBuf>,
    pub nats_tlskey: Option<PathBuf>,
    pub node_name: Option<String>,
    pub bridge: Option<String>,
    pub fixed_cidr: Option<String>,
}

impl ConfigFile {
    /// Reads `path`; the default path may be absent, an explicit one may not.
    pub fn load(path: Option<&Path>) -> anyhow::Result<ConfigFile> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        match std::fs::read(&path) {
            Ok(raw) => serde_json::from_slice(&raw).with_context(|| {
                format!(
                    "unable to configure the Wharf daemon with file {}",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(ConfigFile::default())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }
}

/// Settings after merging flags over the config file.
#[derive(Clone)]
pub struct Settings {
    pub common: Common,
    pub data_root: PathBuf,
    pub gateway: GatewayArgs,
    pub registry: RegistryArgs,
    pub runtime: RuntimeArgs,
}

fn or<T>(flag: Option<T>, file: Option<T>) -> Option<T> {
    flag.or(file)
}

fn or_list(flag: &[String], file: Vec<String>) -> Vec<String> {
    if flag.is_empty() {
        file
    } else {
        flag.to_vec()
    }
}

pub fn merge(
    common: &Common,
    gateway: &GatewayArgs,
    registry: &RegistryArgs,
    runtime: &RuntimeArgs,
) -> anyhow::Result<Settings> {
    let file = ConfigFile::load(common.config_file.as_deref())?;
    let mut c = common.clone();
    c.nats_url = or(c.nats_url, file.nats_url);
    c.nats_creds = or(c.nats_creds, file.nats_creds);
    c.nats_nkey = or(c.nats_nkey, file.nats_nkey);
    c.nats_tlscacert = or(c.nats_tlscacert, file.nats_tlscacert);
    c.nats_tlscert = or(c.nats_tlscert, file.nats_tlscert);
    c.nats_tlskey = or(c.nats_tlskey, file.nats_tlskey);
    c.debug = c.debug || file.debug.unwrap_or(false);
    c.log_level = or(c.log_level, file.log_level);
    let data_root =
        or(c.data_root.clone(), file.data_root).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT));
    c.data_root = Some(data_root.clone());
    let mut g = gateway.clone();
    g.hosts = or_list(&g.hosts, file.hosts);
    if g.hosts.is_empty() {
        g.hosts.push(DEFAULT_HOST.to_string());
    }
    g.tls = g.tls || file.tls.unwrap_or(false);
    g.tlsverify = g.tlsverify || file.tlsverify.unwrap_or(false);
    g.tlscacert = or(g.tlscacert, file.tlscacert);
    g.tlscert = or(g.tlscert, file.tlscert);
    g.tlskey = or(g.tlskey, file.tlskey);
    g.group = or(g.group, file.group);
    let r = RegistryArgs {
        registry_mirrors: or_list(&registry.registry_mirrors, file.registry_mirrors),
        insecure_registries: or_list(&registry.insecure_registries, file.insecure_registries),
    };
    let rt = RuntimeArgs {
        node_name: or(runtime.node_name.clone(), file.node_name),
        bridge: or(runtime.bridge.clone(), file.bridge),
        fixed_cidr: or(runtime.fixed_cidr.clone(), file.fixed_cidr),
        ..runtime.clone()
    };
    Ok(Settings {
        common: c,
        data_root,
        gateway: g,
        registry: r,
        runtime: rt,
    })
}

pub fn nats_options(c: &Common) -> wharf_bus::NatsOptions {
    wharf_bus::NatsOptions {
        url: c
            .nats_url
            .clone()
            .unwrap_or_else(|| "nats://127.0.0.1:4222".to_string()),
        user: c.nats_user.clone(),
        password: c.nats_password.clone(),
        token: c.nats_token.clone(),
        nkey_file: c.nats_nkey.clone(),
        creds_file: c.nats_creds.clone(),
        tls_ca: c.nats_tlscacert.clone(),
        tls_cert: c.nats_tlscert.clone(),
        tls_key: c.nats_tlskey.clone(),
        require_tls: false,
    }
}

/// Logging as the merged settings ask (so `debug` and `log-level` in the config file count too).
pub fn init_logging(common: &Common) {
    let level = if common.debug {
        "debug".to_string()
    } else {
        common
            .log_level
            .clone()
            .unwrap_or_else(|| "info".to_string())
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},async_nats=warn,hyper=warn,reqwest=warn"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn gateway_options(s: &Settings) -> anyhow::Result<wharf_gateway::Options> {
    let g = &s.gateway;
    let tls = if g.tls || g.tlsverify {
        Some(wharf_gateway::TlsOptions {
            ca: g.tlscacert.clone(),
            cert: g
                .tlscert
                .clone()
                .context("--tlscert is required with --tls/--tlsverify")?,
            key: g
                .tlskey
                .clone()
                .context("--tlskey is required with --tls/--tlsverify")?,
            verify: g.tlsverify,
        })
    } else {
        None
    };
    Ok(wharf_gateway::Options {
        hosts: g.hosts.clone(),
        tls,
        socket_group: g.group.clone(),
        data_root: s.data_root.clone(),
    })
}

fn node_name(s: &Settings) -> String {
    s.runtime.node_name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "node".to_string())
    })
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let none_g = GatewayArgs::default();
    let none_r = RegistryArgs::default();
    let none_rt = RuntimeArgs::default();
    let (g, r, rt) = match &cli.command {
        Command::Up(up) => (&up.gateway, &up.registry, &up.runtime),
        Command::Gateway(g) => (g, &none_r, &none_rt),
        Command::RegistrySync(r) => (&none_g, r, &none_rt),
        Command::Runtime(rt) => (&none_g, &none_r, rt),
        _ => (&none_g, &none_r, &none_rt),
    };
    let mut settings = merge(&cli.common, g, r, rt)?;
    if matches!(cli.command, Command::Sync(_)) && !settings.common.debug {
        // A command, not a service: its output is the sync's, logs only when something is wrong.
        settings
            .common
            .log_level
            .get_or_insert_with(|| "warn".to_string());
    }
    init_logging(&settings.common);
    if let Command::Up(up) = &cli.command {
        // Refuse bad API settings before starting anything.
        wharf_gateway::check(&gateway_options(&settings)?).await?;
        return crate::supervisor::up(settings, up.clone()).await;
    }
    if let Command::Sync(args) = &cli.command {
        let mut common = settings.common.clone();
        let looked_in = common
            .nats_url
            .is_none()
            .then_some(settings.data_root.as_path());
        if common.nats_url.is_none() {
            // Next to a `wharf up` with its private server: that server, as root can read it.
            if let Some((url, user, password)) =
                crate::supervisor::private_nats_client(&settings.data_root)
            {
                common.nats_url = Some(url);
                common.nats_user = Some(user);
                common.nats_password = Some(password);
            }
        }
        let options = nats_options(&common);
        // Inboxes under `_INBOX.wharf-sync.`: the `sync` user (wharf_bus::permissions).
        let client = wharf_bus::connect(&options, wharf_bus::permissions::SYNC_CLIENT_NAME)
            .await
            .context("cannot connect to NATS")?;
        crate::sync::wait_connected(&client, &options.url, looked_in).await?;
        return tokio::select! {
            r = crate::sync::run(client, args.clone()) => r,
            // A schedule ends when told to; a single sync cut short did not happen.
            _ = crate::supervisor::shutdown_signal() => match args.every {
                Some(_) => Ok(()),
                None => anyhow::bail!(
                    "sync interrupted: a tag is written only once all it refers to is copied, \
                     so the destination has whole tags only"
                ),
            },
        };
    }
    let name = match &cli.command {
        Command::Gateway(_) => "wharf-gateway",
        Command::ImageStore => "wharf-image-store",
        Command::RegistrySync(_) => "wharf-registry-sync",
        Command::Builder(_) => "wharf-builder",
        Command::Runtime(_) => "wharf-runtime",
        Command::Up(_) | Command::Sync(_) => unreachable!(),
    };
    let client = wharf_bus::connect(&nats_options(&settings.common), name)
        .await
        .context("cannot connect to NATS")?;
    let service = async {
        match &cli.command {
            Command::Gateway(_) => wharf_gateway::run(client, gateway_options(&settings)?).await,
            Command::ImageStore => {
                wharf_image_store::run(
                    client,
                    wharf_image_store::Options {
                        data_root: settings.data_root.clone(),
                    },
                )
                .await
            }
            Command::RegistrySync(_) => {
                wharf_registry_sync::run(
                    client,
                    wharf_registry_sync::Options {
                        registry_mirrors: settings.registry.registry_mirrors.clone(),
                        insecure_registries: settings.registry.insecure_registries.clone(),
                    },
                )
                .await
            }
            Command::Builder(args) => {
                wharf_builder::run(
                    client,
                    wharf_builder::Options {
                        work_dir: settings.data_root.join("builder"),
                        download: args.download_limits(),
                    },
                )
                .await
            }
            Command::Runtime(_) => {
                let rt = &settings.runtime;
                let mut labels = std::collections::BTreeMap::new();
                for l in &rt.node_labels {
                    let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                    labels.insert(k.to_string(), v.to_string());
                }
                wharf_runtime::run(
                    client,
                    wharf_runtime::Options {
                        data_root: settings.data_root.clone(),
                        node_name: node_name(&settings),
                        labels,
                        bridge: rt.bridge.clone(),
                        subnet: rt.fixed_cidr.clone(),
                        firewall_table: rt.firewall_table.clone(),
                        shim_binary: rt.shim_binary.clone(),
                        userns_remap: rt.userns_remap.clone(),
                    },
                )
                .await
            }
            Command::Up(_) | Command::Sync(_) => unreachable!(),
        }
    };
    let runtime = matches!(cli.command, Command::Runtime(_));
    tokio::select! {
        r = service => r,
        _ = crate::supervisor::shutdown_signal() => {
            if runtime {
                // Removed containers still being unmounted and deleted: finish (the supervisor
                // waits 10 s); a restart would finish what is left.
                let _ = tokio::task::spawn_blocking(|| {
                    wharf_runtime::service::drain_removals(std::time::Duration::from_secs(8))
                })
                .await;
            }
            Ok(())
        }
    }
}

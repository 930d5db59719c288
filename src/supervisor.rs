//! `wharf up`: the whole stack on one machine. Each service runs as its own child process and is
//! restarted when it dies; without `--nats-url` a private nats-server (JetStream on, data under the
//! data root) is started and supervised too, with one NATS user per service holding the
//! permissions of `wharf_bus::permissions` (the split deployment's `deploy/nats/accounts.conf`)
//! and a password generated and kept under the data root. SIGTERM or Ctrl-C stops the services,
//! then NATS.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::cli::{Settings, UpArgs};

/// Resolves when the process is asked to stop (SIGTERM or SIGINT).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// One supervised child: how to start it again.
#[derive(Clone)]
struct Spec {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs `spec` until `stop` is cancelled, restarting it when it exits, with a backoff that resets
/// once a run lasted a while.
async fn supervise(spec: Spec, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; it asks the kernel to stop the child if we die.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot start {}: {e}", spec.name);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        tracing::info!(pid = child.id(), "started {}", spec.name);
        tokio::select! {
            status = child.wait() => {
                tracing::warn!("{} exited ({}); restarting", spec.name, status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()));
            }
            _ = stop.cancelled() => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
                }
                if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                    tracing::warn!("{} did not stop in {:?}; killing it", spec.name, STOP_GRACE);
                    let _ = child.kill().await;
                }
                tracing::info!("stopped {}", spec.name);
                return;
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn find_nats_server(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([
        "/usr/sbin".into(),
        "/usr/bin".into(),
        "/usr/local/bin".into(),
    ]) {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("nats-server not found: install it (Debian: apt-get install nats-server) or pass --nats-url")
}

/// The passwords of the private server's users: generated once each, kept readable by root
/// only in `<dir>/passwords/<user>`.
struct Passwords(std::collections::BTreeMap<&'static str, String>);

impl Passwords {
    fn load_or_create(dir: &Path) -> anyhow::Result<Passwords> {
        let dir = dir.join("passwords");
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let mut out = std::collections::BTreeMap::new();
        for user in wharf_bus::permissions::user_names() {
            let path = dir.join(user);
            let kept = std::fs::read_to_string(&path)
                .ok()
                .map(|p| p.trim().to_string())
                .filter(|p| p.len() >= 32 && p.bytes().all(|b| b.is_ascii_hexdigit()));
            let password = match kept {
                Some(p) => p,
                None => {
                    let p = hex::encode(rand::random::<[u8; 24]>());
                    write_private(&path, &p)?;
                    p
                }
            };
            out.insert(user, password);
        }
        Ok(Passwords(out))
    }

    fn of(&self, user: &str) -> &str {
        self.0.get(user).map(String::as_str).unwrap_or_default()
    }
}

/// Writes `text` to `path`, readable by its owner only from the start.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The private server's configuration: listening on `host:port`, JetStream under `store`, and
/// the users of `wharf_bus::permissions` with their passwords.
fn private_config(host: &str, port: &str, store: &Path, passwords: &Passwords) -> String {
    format!(
        "# Written by wharf up; rewritten at every start. The users and their permissions come\n\
         # from shared/src/permissions.rs, as deploy/nats/accounts.conf does.\n\
         server_name: wharf\n\
         host: \"{host}\"\n\
         port: {port}\n\
         max_payload: 1MB\n\
         jetstream {{\n  store_dir: \"{store}\"\n}}\n\n{accounts}",
        store = store.display(),
        accounts =
            wharf_bus::permissions::accounts_block(&|user| format!("\"{}\"", passwords.of(user))),
    )
}

/// Writes the private nats-server's config and returns its spec, client URL and the users'
/// passwords.
fn private_nats(settings: &Settings, up: &UpArgs) -> anyhow::Result<(Spec, String, Passwords)> {
    let dir = settings.data_root.join("nats");
    std::fs::create_dir_all(dir.join("jetstream"))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let passwords = Passwords::load_or_create(&dir)?;
    // The one password of earlier versions (user `wharf`, every service): no longer valid.
    let _ = std::fs::remove_file(dir.join("password"));
    let listen = nats_listen(up.nats_listen.as_deref())?;
    let (host, port) = listen
        .rsplit_once(':')
        .with_context(|| format!("--nats-listen wants host:port, got {listen}"))?;
    let config = private_config(host, port, &dir.join("jetstream"), &passwords);
    let conf = dir.join("nats-server.conf");
    let _ = std::fs::remove_file(&conf);
    write_private(&conf, &config)?;
    let spec = Spec {
        name: "nats-server".to_string(),
        program: find_nats_server(up.nats_server.as_deref())?,
        args: vec!["-c".to_string(), conf.display().to_string()],
        env: vec![],
    };
    let url = format!("nats://{host}:{port}");
    // For commands run next to the stack (`wharf sync`): where the private server listens.
    let url_file = dir.join("url");
    std::fs::write(&url_file, &url)?;
    std::fs::set_permissions(&url_file, std::fs::Permissions::from_mode(0o600))?;
    Ok((spec, url, passwords))
}

/// The default address of the private nats-server.
const DEFAULT_NATS_LISTEN: &str = "127.0.0.1:4222";

/// Where the private nats-server will listen. An address the user gave must be free: taken, the
/// stack would talk to whatever server has it (and fail its logins forever), so it stops here.
/// Without one, the default port, or a free loopback port when the default is taken (another
/// engine on the same host).
fn nats_listen(given: Option<&str>) -> anyhow::Result<String> {
    let free = |addr: &str| std::net::TcpListener::bind(addr).is_ok();
    match given {
        Some(addr) => {
            anyhow::ensure!(
                free(addr),
                "--nats-listen {addr}: the address is in use (another nats-server, or another \
                 `wharf up`?); give a free one, or leave --nats-listen out to have one chosen"
            );
            Ok(addr.to_string())
        }
        None if free(DEFAULT_NATS_LISTEN) => Ok(DEFAULT_NATS_LISTEN.to_string()),
        None => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")
                .context("finding a free port for the private nats-server")?;
            let addr = listener.local_addr()?;
            tracing::info!(
                "{DEFAULT_NATS_LISTEN} is in use; the private nats-server listens on {addr}"
            );
            Ok(addr.to_string())
        }
    }
}

/// The private nats-server of a `wharf up` using `data_root`: its URL, and the `sync` user and
/// its password, for `wharf sync` run on the same host without NATS settings of its own.
pub fn private_nats_client(data_root: &Path) -> Option<(String, String, String)> {
    let dir = data_root.join("nats");
    let url = std::fs::read_to_string(dir.join("url")).ok()?;
    let user = wharf_bus::permissions::SYNC;
    let password = std::fs::read_to_string(dir.join("passwords").join(user)).ok()?;
    Some((
        url.trim().to_string(),
        user.to_string(),
        password.trim().to_string(),
    ))
}

async fn wait_for_tcp(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nats-server did not start listening on {addr} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// True once the API answers `GET /_ping` on `host`.
async fn api_answers(host: &str) -> bool {
    const PING: &[u8] = b"GET /_ping HTTP/1.0\r\nHost: wharf\r\n\r\n";
    let mut buf = [0u8; 64];
    let n = if let Some(path) = host.strip_prefix("unix://") {
        let Ok(mut s) = tokio::net::UnixStream::connect(path).await else {
            return false;
        };
        if s.write_all(PING).await.is_err() {
            return false;
        }
        s.read(&mut buf).await.unwrap_or(0)
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        // A TLS listener will not answer plain HTTP; accepting the connection is enough.
        return tokio::net::TcpStream::connect(addr).await.is_ok();
    } else {
        return false;
    };
    buf[..n].starts_with(b"HTTP/1.") && buf[..n].windows(3).any(|w| w == b"200")
}

fn common_args(settings: &Settings) -> Vec<String> {
    let c = &settings.common;
    let mut args = vec![
        "--data-root".to_string(),
        settings.data_root.display().to_string(),
    ];
    let mut opt = |flag: &str, v: &Option<PathBuf>| {
        if let Some(v) = v {
            args.push(flag.to_string());
            args.push(v.display().to_string());
        }
    };
    opt("--nats-nkey", &c.nats_nkey);
    opt("--nats-creds", &c.nats_creds);
    opt("--nats-tlscacert", &c.nats_tlscacert);
    opt("--nats-tlscert", &c.nats_tlscert);
    opt("--nats-tlskey", &c.nats_tlskey);
    if c.debug {
        args.push("--debug".to_string());
    }
    if let Some(l) = &c.log_level {
        args.push("--log-level".to_string());
        args.push(l.clone());
    }
    args
}

/// The services' specs. `env(service)` is the environment of `wharf <service>`.
fn service_specs(
    settings: &Settings,
    env: &dyn Fn(&str) -> Vec<(String, String)>,
    up: &UpArgs,
) -> anyhow::Result<Vec<Spec>> {
    let exe = std::env::current_exe().context("cannot find the wharf binary")?;
    let base = common_args(settings);
    let g = &settings.gateway;
    let mut gateway = vec!["gateway".to_string()];
    for h in &g.hosts {
        gateway.extend(["-H".to_string(), h.clone()]);
    }
    if g.tls {
        gateway.push("--tls".to_string());
    }
    if g.tlsverify {
        gateway.push("--tlsverify".to_string());
    }
    for (flag, v) in [
        ("--tlscacert", &g.tlscacert),
        ("--tlscert", &g.tlscert),
        ("--tlskey", &g.tlskey),
    ] {
        if let Some(v) = v {
            gateway.extend([flag.to_string(), v.display().to_string()]);
        }
    }
    if let Some(group) = &g.group {
        gateway.extend(["--group".to_string(), group.clone()]);
    }
    let mut registry = vec!["registry-sync".to_string()];
    for m in &settings.registry.registry_mirrors {
        registry.extend(["--registry-mirror".to_string(), m.clone()]);
    }
    for r in &settings.registry.insecure_registries {
        registry.extend(["--insecure-registry".to_string(), r.clone()]);
    }
    let mut runtime = vec!["runtime".to_string()];
    let rt = &settings.runtime;
    if let Some(n) = &rt.node_name {
        runtime.extend(["--node-name".to_string(), n.clone()]);
    }
    for l in &rt.node_labels {
        runtime.extend(["--node-label".to_string(), l.clone()]);
    }
    for (flag, value) in [
        ("--bridge", &rt.bridge),
        ("--fixed-cidr", &rt.fixed_cidr),
        ("--firewall-table", &rt.firewall_table),
        ("--userns-remap", &rt.userns_remap),
    ] {
        if let Some(v) = value {
            runtime.extend([flag.to_string(), v.clone()]);
        }
    }
    if let Some(shim) = &rt.shim_binary {
        runtime.extend(["--shim-binary".to_string(), shim.display().to_string()]);
    }
    let mut builder = vec!["builder".to_string()];
    if let Some(size) = up.builder.add_max_size {
        builder.extend(["--add-max-size".to_string(), size.to_string()]);
    }
    if let Some(timeout) = up.builder.add_timeout {
        builder.extend([
            "--add-timeout".to_string(),
            humantime::format_duration(timeout).to_string(),
        ]);
    }
    let mut specs = vec![
        ("image-store".to_string(), vec!["image-store".to_string()]),
        ("registry-sync".to_string(), registry),
    ];
    for i in 0..up.builders {
        let name = match i {
            0 => "builder".to_string(),
            i => format!("builder-{}", i + 1),
        };
        specs.push((name, builder.clone()));
    }
    specs.push(("runtime".to_string(), runtime));
    specs.push(("gateway".to_string(), gateway));
    Ok(specs
        .into_iter()
        .map(|(name, mut args)| {
            let env = env(&args[0]);
            args.extend(base.iter().cloned());
            Spec {
                name,
                program: exe.clone(),
                args,
                env,
            }
        })
        .collect())
}

pub async fn up(settings: Settings, up: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_root)
        .with_context(|| format!("cannot create data root {}", settings.data_root.display()))?;
    std::fs::set_permissions(&settings.data_root, std::fs::Permissions::from_mode(0o711))?;

    let stop_services = CancellationToken::new();
    let stop_nats = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut env: Vec<(String, String)> = Vec::new();
    let c = &settings.common;
    let mut nats_task = None;
    // With the private server, each service connects as its own user.
    let mut passwords = None;
    match &c.nats_url {
        Some(url) => {
            env.push(("WHARF_NATS_URL".to_string(), url.clone()));
            for (k, v) in [
                ("WHARF_NATS_USER", &c.nats_user),
                ("WHARF_NATS_PASSWORD", &c.nats_password),
                ("WHARF_NATS_TOKEN", &c.nats_token),
            ] {
                if let Some(v) = v {
                    env.push((k.to_string(), v.clone()));
                }
            }
        }
        None => {
            let (spec, url, kept) = private_nats(&settings, &up)?;
            nats_task = Some(tokio::spawn(supervise(spec, stop_nats.clone())));
            wait_for_tcp(url.trim_start_matches("nats://"), Duration::from_secs(15)).await?;
            env.push(("WHARF_NATS_URL".to_string(), url));
            passwords = Some(kept);
        }
    }
    let service_env = |service: &str| {
        let mut env = env.clone();
        if let Some(passwords) = &passwords {
            let user = wharf_bus::permissions::user_of_service(service).unwrap_or_default();
            env.push(("WHARF_NATS_USER".to_string(), user.to_string()));
            env.push((
                "WHARF_NATS_PASSWORD".to_string(),
                passwords.of(user).to_string(),
            ));
        }
        env
    };
    for spec in service_specs(&settings, &service_env, &up)? {
        tasks.spawn(supervise(spec, stop_services.clone()));
    }

    let host = settings.gateway.hosts.first().cloned().unwrap_or_default();
    let ready = async {
        let started = Instant::now();
        while !api_answers(&host).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "Wharf is up in {:.2}s: API on {host}",
            started.elapsed().as_secs_f64()
        );
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = ready => {}
    }
    tracing::info!("stopping the stack");
    stop_services.cancel();
    while tasks.join_next().await.is_some() {}
    stop_nats.cancel();
    if let Some(t) = nats_task {
        let _ = t.await;
    }
    println!("Wharf stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_nats_address_is_refused() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().to_string();
        let err = nats_listen(Some(&taken)).unwrap_err().to_string();
        assert!(err.contains("the address is in use"), "{err}");
        let free = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().to_string()
        };
        assert_eq!(nats_listen(Some(&free)).unwrap(), free);
        // Without an address: the default port or, while it is taken, another loopback port
        // (tests/stack.rs holds the default port for that; not here, where tests run in parallel).
        let chosen = nats_listen(None).unwrap();
        assert!(chosen.starts_with("127.0.0.1:"), "{chosen}");
    }

    #[test]
    fn the_private_server_has_a_user_and_password_per_service() {
        let dir = tempfile::tempdir().unwrap();
        let passwords = Passwords::load_or_create(dir.path()).unwrap();
        let again = Passwords::load_or_create(dir.path()).unwrap();
        for user in wharf_bus::permissions::user_names() {
            assert_eq!(passwords.of(user).len(), 48, "{user}");
            assert_eq!(
                passwords.of(user),
                again.of(user),
                "kept across starts: {user}"
            );
            let mode = std::fs::metadata(dir.path().join("passwords").join(user))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{user}");
        }
        let gateway = passwords.of("gateway");
        assert_ne!(gateway, passwords.of("builder"));
        let config = private_config("127.0.0.1", "4222", Path::new("/js"), &passwords);
        assert!(!config.contains("$WHARF_NATS"), "{config}");
        assert!(config.contains(&format!("user: gateway\n        password: \"{gateway}\"")));
        for service in [
            "gateway",
            "image-store",
            "registry-sync",
            "builder",
            "runtime",
        ] {
            let user = wharf_bus::permissions::user_of_service(service).unwrap();
            assert!(config.contains(&format!("user: {user}\n")), "{service}");
        }
    }

    /// nats-server itself accepts the configuration (when it is installed).
    #[test]
    fn nats_server_accepts_the_private_configuration() {
        let Ok(server) = find_nats_server(None) else {
            eprintln!("skipped: no nats-server");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let passwords = Passwords::load_or_create(dir.path()).unwrap();
        let conf = dir.path().join("nats-server.conf");
        std::fs::write(
            &conf,
            private_config("127.0.0.1", "4222", &dir.path().join("js"), &passwords),
        )
        .unwrap();
        let out = std::process::Command::new(server)
            .arg("-t")
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The names the table gives JetStream are the ones the builder and the gateway use.
    #[test]
    fn the_permissions_name_the_builders_bucket() {
        assert_eq!(
            wharf_builder::build::cache::BUCKET,
            wharf_bus::build::CACHE_BUCKET
        );
        let builder = wharf_bus::permissions::user("builder").unwrap();
        assert!(builder.may_publish(&format!("$KV.{}.key", wharf_builder::build::cache::BUCKET)));
    }
}

//! Test harness shared by the end-to-end test binaries (`mod support;`).
//!
//! Everything here runs the real thing: a real `nats-server`, a real registry
//! (`docker-registry`, distribution 2.8), the `wharf` binary under test, the real `docker` CLI.
//! Every process is started through [`spawn`], owned by a guard that stops it by its PID on drop
//! (also when a test panics), and dies with the test process if that one is killed.
#![allow(dead_code)]

pub mod dockerd;
pub mod fixtures;
pub mod proxy;
pub mod token;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;

// ---------------------------------------------------------------------------------------------
// Ports

/// A loopback TCP port nobody listens on now, never handed out twice in this process.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(addr: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Processes

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Starts `cmd` so that it is killed (with `death_signal`) when this test process dies.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, and the test runner runs
/// each test on a short-lived thread; so every child is forked by one spawner thread that lives
/// as long as the process.
pub fn spawn(mut cmd: Command, death_signal: i32) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("test-spawner".to_string())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, death_signal);
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap()
        .send((cmd, tx))
        .expect("spawner alive");
    rx.recv().expect("spawner answered")
}

/// A started process, stopped by its PID when dropped: `stop_signal`, a grace period, then
/// SIGKILL. When `own_group` the process leads its own process group and the whole group is
/// killed at the end, so nothing it started survives it.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    stop_signal: i32,
    grace: Duration,
    own_group: bool,
    pub log: Option<PathBuf>,
    /// Print the tail of the log when dropped during a panic.
    pub show_log_on_panic: bool,
}

impl Proc {
    /// Starts `cmd`, its stdout and stderr appended to `log` when given.
    pub fn start(
        name: &str,
        mut cmd: Command,
        log: Option<&Path>,
        stop_signal: i32,
        grace: Duration,
        own_group: bool,
    ) -> Proc {
        cmd.stdin(Stdio::null());
        if let Some(log) = log {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("open log");
            cmd.stdout(f.try_clone().unwrap()).stderr(f);
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        if own_group {
            cmd.process_group(0);
        }
        let child = spawn(cmd, stop_signal).unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            stop_signal,
            grace,
            own_group,
            log: log.map(Path::to_path_buf),
            show_log_on_panic: true,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stops the process (see the type's doc) and returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id() as i32;
        let mut status = child.try_wait().ok().flatten();
        if status.is_none() {
            // SAFETY: plain kill(2) on a PID we started and have not reaped yet.
            unsafe { libc::kill(pid, self.stop_signal) };
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline {
                if let Ok(Some(s)) = child.try_wait() {
                    status = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if status.is_none() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                status = child.wait().ok();
            }
        }
        if self.own_group {
            // Whatever it started and left behind (the group is named by the PID we started).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        status
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() && self.show_log_on_panic {
            eprintln!(
                "---- last lines of {} (pid {}) ----\n{}\n----",
                self.name,
                self.pid(),
                self.log_tail(60)
            );
        }
        self.stop();
    }
}

/// PIDs of the direct children of `pid` (from /proc/<pid>/task/*/children).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The command line of `pid`, split at NULs.
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Finds `program`: the given candidates first, then PATH.
pub fn find_program(program: &str, candidates: &[&str]) -> Option<PathBuf> {
    for c in candidates {
        if Path::new(c).is_file() {
            return Some(PathBuf::from(c));
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Output of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole output unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Output {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics with the whole output unless the command failed.
    #[track_caller]
    pub fn failed(self) -> Output {
        assert!(
            !self.success(),
            "command succeeded but should have failed: {self}"
        );
        self
    }

    pub fn lines(&self) -> Vec<String> {
        self.stdout.lines().map(str::to_string).collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion (killed by its PID after `timeout`), feeding it `stdin`.
pub fn run(mut cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let program = format!("{:?}", cmd.get_program());
    let mut child =
        spawn(cmd, libc::SIGKILL).unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let feeder = stdin.map(|data| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the PID we started.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let stdout = String::from_utf8_lossy(&out.join().unwrap()).into_owned();
    let mut stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {timeout:?}]"));
    }
    Output {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
    }
}

/// Runs `cmd` in its own process group until it exits, or until `timeout` (then the whole group
/// is killed and `code` is None); stdout and stderr go through files, so children that keep them
/// open cannot hold the call up. Whatever the process left in its group is killed at the end.
pub fn run_group(mut cmd: Command, timeout: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0);
    let program = format!("{:?}", cmd.get_program());
    let mut child =
        spawn(cmd, libc::SIGKILL).unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let pid = child.id() as i32;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group led by the PID we started.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: as above; the group is named by the PID we started.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let mut stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n[still running after {timeout:?}: killed]"));
    }
    Output {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------------------------
// nats-server

/// A private nats-server on a free loopback port.
pub struct Nats {
    // Fields drop in order: the process goes before its directory.
    proc: Proc,
    pub port: u16,
    pub url: String,
    pub user: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts a nats-server, with user/password auth when `user` is given.
    pub fn start(user: Option<(&str, &str)>) -> Nats {
        let bin = find_program("nats-server", &[]).expect("nats-server is not installed");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth = user
            .map(|(u, p)| format!("authorization {{\n user: \"{u}\"\n password: \"{p}\"\n}}\n"))
            .unwrap_or_default();
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: \"{}\" }}\n{auth}",
                dir.path().join("js").display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&conf);
        let log = dir.path().join("nats.log");
        let mut proc = Proc::start(
            "nats-server",
            cmd,
            Some(&log),
            libc::SIGKILL,
            Duration::from_secs(2),
            false,
        );
        proc.show_log_on_panic = false;
        assert!(
            wait_for_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(15)),
            "nats-server did not listen: {}",
            proc.log_tail(20)
        );
        Nats {
            port,
            url: format!("nats://127.0.0.1:{port}"),
            user: user.map(|(u, p)| (u.to_string(), p.to_string())),
            _dir: dir,
            proc,
        }
    }
}

/// Connects to NATS at `url` as `user`/`password`.
pub async fn nats_connect(url: &str, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.to_string(), password.to_string())
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to NATS at {url}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Registry

/// How a test registry authenticates clients.
pub enum RegistryAuth {
    None,
    /// htpasswd basic auth with one user.
    Basic {
        user: String,
        password: String,
    },
    /// Bearer tokens from a token server of this harness.
    Token(token::TokenServer),
}

/// A real registry (`docker-registry serve`), filesystem storage in a temp dir.
pub struct Registry {
    // Fields drop in order: the process goes before its storage and its token server.
    proc: Proc,
    pub port: u16,
    /// `127.0.0.1:PORT`, the registry part of image references.
    pub host: String,
    pub root: tempfile::TempDir,
    pub auth: RegistryAuth,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(RegistryAuth::None)
    }

    /// A registry that requires `user`/`password` (htpasswd, bcrypt).
    pub fn start_basic(user: &str, password: &str) -> Registry {
        Registry::start_with(RegistryAuth::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// A registry that requires bearer tokens from a token server that knows `user`/`password`.
    pub fn start_token(user: &str, password: &str) -> Registry {
        Registry::start_with(RegistryAuth::Token(token::TokenServer::start(
            user, password,
        )))
    }

    pub fn start_with(auth: RegistryAuth) -> Registry {
        let bin = find_program("docker-registry", &["/usr/bin/docker-registry"])
            .expect("docker-registry is not installed");
        let root = tempfile::tempdir().unwrap();
        let storage = root.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let auth_yaml = match &auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Basic { user, password } => {
                let out = run(
                    {
                        let mut c = Command::new(
                            find_program("htpasswd", &[]).expect("htpasswd is not installed"),
                        );
                        c.args(["-Bbn", user, password]);
                        c
                    },
                    None,
                    Duration::from_secs(30),
                )
                .ok();
                let path = root.path().join("htpasswd");
                std::fs::write(&path, out.stdout.trim()).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: wharf-test\n    path: {}\n",
                    path.display()
                )
            }
            RegistryAuth::Token(t) => {
                let bundle = root.path().join("token-root.pem");
                std::fs::write(&bundle, &t.cert_pem).unwrap();
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    t.realm,
                    token::SERVICE,
                    token::ISSUER,
                    bundle.display()
                )
            }
        };
        // A port can be taken between free_port() and the bind: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = root.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: wharf-test-secret\n{auth_yaml}",
                    storage.display()
                ),
            )
            .unwrap();
            let mut cmd = Command::new(&bin);
            cmd.arg("serve").arg(&config);
            let log = root.path().join("registry.log");
            let mut proc = Proc::start(
                "docker-registry",
                cmd,
                Some(&log),
                libc::SIGKILL,
                Duration::from_secs(2),
                false,
            );
            proc.show_log_on_panic = false;
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && proc.exited().is_none() {
                if let Ok((status, _, _)) = http_get(&format!("127.0.0.1:{port}"), "/v2/", &[]) {
                    if status == 200 || status == 401 {
                        return Registry {
                            port,
                            host: format!("127.0.0.1:{port}"),
                            root,
                            auth,
                            proc,
                        };
                    }
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            eprintln!("registry did not start on {port}: {}", proc.log_tail(20));
        }
        panic!("could not start docker-registry");
    }

    /// Path of a blob's data file in the registry's storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.root
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `user:password` when the registry needs credentials.
    pub fn credentials(&self) -> Option<(String, String)> {
        match &self.auth {
            RegistryAuth::None => None,
            RegistryAuth::Basic { user, password } => Some((user.clone(), password.clone())),
            RegistryAuth::Token(t) => Some((t.user.clone(), t.password.clone())),
        }
    }
}

/// An HTTP answer: status, headers, body.
pub type HttpAnswer = (u16, Vec<(String, String)>, Vec<u8>);

/// A minimal HTTP/1.0 GET over TCP: (status, headers, body).
pub fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<HttpAnswer> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(parse_http_response(&raw))
}

/// Splits a whole HTTP/1.x response into (status, headers, body); chunked bodies are decoded.
pub fn parse_http_response(raw: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        body = out;
    }
    (status, headers, body)
}

// ---------------------------------------------------------------------------------------------
// The Wharf stack

/// Options of `wharf up`.
#[derive(Default, Clone)]
pub struct StackOptions {
    pub registry_mirrors: Vec<String>,
    pub insecure_registries: Vec<String>,
    /// More arguments of `wharf up` (`-G`, more `-H`, `--tls*`), after the harness's own.
    pub extra_args: Vec<String>,
    /// Environment of `wharf up` (and so of its services).
    pub env: Vec<(String, String)>,
    /// Leave `--nats-listen` out: `wharf up` picks the private server's port itself (the
    /// default one, or a free one when that is taken).
    pub default_nats_listen: bool,
    /// The `wharf` program to run (default: the one cargo built, with `wharf-shim` beside it).
    pub binary: Option<PathBuf>,
}

/// `wharf up` with its own data root, API socket and private nats-server.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub data_root: PathBuf,
    pub socket: PathBuf,
    /// `unix:///.../docker.sock`
    pub host: String,
    pub nats_port: u16,
    pub options: StackOptions,
    /// `wharf up`; None when the tests run against a reference engine (see [`reference_host`]).
    pub proc: Option<Proc>,
    /// This stack's own bridge, subnet and nftables table (stacks run side by side).
    pub net: Option<StackNet>,
}

/// A bridge name, subnet and firewall table no other test stack on this host uses, held by an
/// exclusive lock on `/tmp/wharf-e2e-net-<n>.lock` for the stack's life.
pub struct StackNet {
    pub index: u32,
    pub bridge: String,
    pub subnet: String,
    pub table: String,
    _lock: std::fs::File,
}

impl StackNet {
    pub fn claim() -> StackNet {
        use std::os::fd::AsRawFd;
        for index in 0..250u32 {
            let path = format!("/tmp/wharf-e2e-net-{index}.lock");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap();
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                let net = StackNet {
                    index,
                    bridge: format!("wharfe2e{index}"),
                    subnet: format!("10.231.{index}.0/24"),
                    table: format!("wharf_e2e_{index}"),
                    _lock: file,
                };
                net.clean();
                return net;
            }
        }
        panic!("no free test network (250 stacks at once?)");
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--bridge".into(),
            self.bridge.clone(),
            "--fixed-cidr".into(),
            self.subnet.clone(),
            "--firewall-table".into(),
            self.table.clone(),
        ]
    }

    /// Removes the bridge (and its veths) and the table a stack left behind, and those of its
    /// user networks (tables `<table>_<id>`, bridges `wh-<id>`: they outlive the stack, as
    /// dockerd's networks outlive dockerd, but not the test's data root).
    pub fn clean(&self) {
        let quiet = |program: &str, args: &[&str]| {
            if let Some(p) = find_program(
                program,
                &[&format!("/usr/sbin/{program}"), &format!("/sbin/{program}")],
            ) {
                let _ = Command::new(p)
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        };
        let user_networks: Vec<String> = find_program("nft", &["/usr/sbin/nft", "/sbin/nft"])
            .and_then(|nft| Command::new(nft).args(["list", "tables"]).output().ok())
            .map(|out| {
                let prefix = format!("{}_", self.table);
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.strip_prefix("table ip ")?.strip_prefix(&prefix))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut networks = vec![(self.table.clone(), self.bridge.clone())];
        for id in user_networks {
            networks.push((format!("{}_{id}", self.table), format!("wh-{id}")));
        }
        for (table, bridge) in networks {
            quiet("nft", &["delete", "table", "ip", &table]);
            quiet("ip", &["link", "delete", &bridge]);
            // The network's accept chain in iptables' FORWARD (runtime's network::forward).
            let chain = format!("WHARF-{bridge}");
            quiet("iptables", &["-w", "-D", "FORWARD", "-j", &chain]);
            quiet("iptables", &["-w", "-F", &chain]);
            quiet("iptables", &["-w", "-X", &chain]);
        }
    }
}

/// `WHARF_E2E_REFERENCE_HOST=unix:///tmp/cmp-docker.sock`: run the CLI tests against that engine
/// (a real dockerd) instead of starting Wharf, to check the tests themselves. Tests that need
/// Wharf's insides (its bus, its processes, its flags) skip themselves then.
pub fn reference_host() -> Option<String> {
    std::env::var("WHARF_E2E_REFERENCE_HOST")
        .ok()
        .filter(|h| !h.is_empty())
}

/// Returns true (and says so) when running against a reference engine.
pub fn skip_on_reference(why: &str) -> bool {
    if reference_host().is_some() {
        eprintln!("skipped against the reference engine: {why}");
        return true;
    }
    false
}

pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

impl Stack {
    pub fn start() -> Stack {
        Stack::start_with(StackOptions::default())
    }

    pub fn start_with(options: StackOptions) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("wharf-e2e-")
            .tempdir()
            .unwrap();
        let data_root = dir.path().join("data");
        let socket = dir.path().join("docker.sock");
        let host = format!("unix://{}", socket.display());
        let log = dir.path().join("wharf.log");
        if let Some(reference) = reference_host() {
            let socket = PathBuf::from(reference.trim_start_matches("unix://"));
            return Stack {
                dir,
                data_root,
                socket,
                host: reference,
                nats_port: 0,
                options,
                proc: None,
                net: None,
            };
        }
        let net = StackNet::claim();
        for attempt in 0..3 {
            let nats_port = free_port();
            let bin = options
                .binary
                .clone()
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wharf")));
            let mut cmd = Command::new(bin);
            cmd.arg("up")
                .arg("--data-root")
                .arg(&data_root)
                .arg("-H")
                .arg(&host);
            if !options.default_nats_listen {
                cmd.arg("--nats-listen")
                    .arg(format!("127.0.0.1:{nats_port}"));
            }
            for m in &options.registry_mirrors {
                cmd.arg("--registry-mirror").arg(m);
            }
            for r in &options.insecure_registries {
                cmd.arg("--insecure-registry").arg(r);
            }
            cmd.args(net.args());
            cmd.args(&options.extra_args);
            // A config file the test controls, so /etc/wharf/daemon.json of the machine is not read.
            let config = dir.path().join("daemon.json");
            std::fs::write(&config, "{}").unwrap();
            cmd.arg("--config-file").arg(&config);
            cmd.env("RUST_BACKTRACE", "1");
            cmd.envs(options.env.iter().map(|(k, v)| (k, v)));
            let mut proc = Proc::start(
                "wharf up",
                cmd,
                Some(&log),
                libc::SIGTERM,
                Duration::from_secs(20),
                true,
            );
            let deadline = Instant::now() + READY_TIMEOUT;
            let mut exited = false;
            while Instant::now() < deadline {
                if proc.exited().is_some() {
                    exited = true;
                    break;
                }
                if ping(&socket) {
                    // Where the private server listens, as `wharf up` recorded it.
                    let nats_port = std::fs::read_to_string(data_root.join("nats/url"))
                        .ok()
                        .and_then(|url| url.trim().rsplit_once(':')?.1.parse().ok())
                        .unwrap_or(nats_port);
                    return Stack {
                        dir,
                        data_root,
                        socket,
                        host,
                        nats_port,
                        options,
                        proc: Some(proc),
                        net: Some(net),
                    };
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let tail = proc.log_tail(40);
            drop(proc);
            if !exited || attempt == 2 {
                panic!(
                    "wharf up did not answer /_ping on {host} within {READY_TIMEOUT:?}:\n{tail}"
                );
            }
            eprintln!("wharf up exited early (attempt {attempt}), retrying:\n{tail}");
        }
        unreachable!()
    }

    /// The API answers `GET /_ping` with 200 OK.
    pub fn answers(&self) -> bool {
        ping(&self.socket)
    }

    /// The password of `user` (`gateway`, `runtime`, `ops`, ...) on the private nats-server.
    pub fn nats_password(&self, user: &str) -> String {
        std::fs::read_to_string(self.data_root.join("nats/passwords").join(user))
            .unwrap_or_else(|e| panic!("<data-root>/nats/passwords/{user}: {e}"))
            .trim()
            .to_string()
    }

    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.nats_port)
    }

    /// A client of the private nats-server as the `ops` user (discovery, events).
    pub async fn nats(&self) -> async_nats::Client {
        self.nats_as("ops").await
    }

    /// A client of the private nats-server as `user`.
    pub async fn nats_as(&self, user: &str) -> async_nats::Client {
        nats_connect(&self.nats_url(), user, &self.nats_password(user)).await
    }

    /// PID of the supervised child running `wharf <service> ...` (`image-store`, `gateway`, ...),
    /// or of `nats-server` for "nats-server".
    pub fn service_pid(&self, service: &str) -> Option<u32> {
        let up = self.proc.as_ref().map(Proc::pid)?;
        children_of(up).into_iter().find(|pid| {
            let argv = cmdline(*pid);
            if service == "nats-server" {
                argv.first().is_some_and(|a| a.ends_with("nats-server"))
            } else {
                argv.get(1).is_some_and(|a| a == service)
            }
        })
    }

    /// Waits for a running `service` child whose PID differs from `old`.
    pub fn wait_service_restarted(&self, service: &str, old: u32, timeout: Duration) -> u32 {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(pid) = self.service_pid(service) {
                if pid != old {
                    return pid;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{service} was not restarted within {timeout:?}");
    }

    /// A docker CLI talking to this stack.
    pub fn docker(&self) -> DockerCli {
        DockerCli::new(&self.host)
    }

    /// Stops the stack (SIGTERM, grace, SIGKILL) and returns how `wharf up` ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.proc.as_mut().and_then(Proc::stop)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("wharf.log")).unwrap_or_default()
    }
}

impl Stack {
    /// Removes every container (their shims outlive `wharf up` by design), then anything still
    /// mounted under the stack's directory.
    fn remove_containers(&self) {
        if self.proc.is_none() {
            return;
        }
        if self.answers() {
            let docker = self.docker();
            let ids = docker.run_timeout(&["ps", "-aq"], Duration::from_secs(30));
            let ids: Vec<String> = ids.lines();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.iter().map(String::as_str));
                let _ = docker.run_timeout(&args, Duration::from_secs(60));
            }
        }
    }

    /// Kills (by the PIDs their state files record) containers left behind, and unmounts what
    /// is still mounted under the stack's directory.
    fn reap_leftovers(&self) {
        let containers = self.data_root.join("runtime/containers");
        if let Ok(entries) = std::fs::read_dir(&containers) {
            for e in entries.flatten() {
                let cgroup_procs = [
                    format!(
                        "/sys/fs/cgroup/pids/wharf/{}/cgroup.procs",
                        e.file_name().to_string_lossy()
                    ),
                    format!(
                        "/sys/fs/cgroup/wharf/{}/cgroup.procs",
                        e.file_name().to_string_lossy()
                    ),
                ];
                for procs in cgroup_procs {
                    if let Ok(text) = std::fs::read_to_string(&procs) {
                        for pid in text
                            .split_whitespace()
                            .filter_map(|p| p.parse::<i32>().ok())
                        {
                            // SAFETY: a signal to a PID listed in the container's own cgroup.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                }
            }
        }
        let prefix = self.dir.path().display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .map(str::to_string)
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            if let Ok(c) = std::ffi::CString::new(p) {
                // SAFETY: unmounting a path under our own temporary directory.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// A slot's network goes with the slot, whoever used it (a stack, or services a test runs
/// one by one): its bridge, table and chains are removed before the lock is released.
impl Drop for StackNet {
    fn drop(&mut self) {
        self.clean();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.remove_containers();
        // Stop (and on a panic, show the log of) the stack before its directory goes.
        drop(self.proc.take());
        if self.net.is_some() {
            self.reap_leftovers();
        }
        if let Some(net) = &self.net {
            net.clean();
        }
    }
}

/// `GET /_ping` over the unix socket answers 200.
pub fn ping(socket: &Path) -> bool {
    match unix_request(socket, "GET", "/_ping", &[], None) {
        Ok((status, _, _)) => status == 200,
        Err(_) => false,
    }
}

/// One HTTP/1.0 request over a unix socket: (status, headers, body).
pub fn unix_request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<HttpAnswer> {
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: docker\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(parse_http_response(&raw))
}

// ---------------------------------------------------------------------------------------------
// The docker CLI

/// The real docker CLI with `DOCKER_HOST` set and a private `DOCKER_CONFIG`.
pub struct DockerCli {
    pub host: String,
    pub config: tempfile::TempDir,
    pub bin: PathBuf,
}

pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(300);

pub fn docker_bin() -> PathBuf {
    find_program("docker", &["/usr/local/bin/docker"]).expect("the docker CLI is not installed")
}

impl DockerCli {
    pub fn new(host: &str) -> DockerCli {
        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("config.json"), "{}").unwrap();
        DockerCli {
            host: host.to_string(),
            config,
            bin: docker_bin(),
        }
    }

    /// Gives the CLI credentials for `registry` (`auths` in config.json, as `docker login` writes).
    pub fn login(&self, registry: &str, user: &str, password: &str) {
        let path = self.config.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        config["auths"][registry] = serde_json::json!({ "auth": auth });
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.config.path())
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_API_VERSION");
        cmd
    }

    /// Runs `docker ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        run(self.command(args), None, DOCKER_TIMEOUT)
    }

    /// Runs `docker ARGS...`, killed after `timeout`.
    pub fn run_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        run(self.command(args), None, timeout)
    }

    /// Runs `docker ARGS...` with `stdin`.
    pub fn run_stdin(&self, args: &[&str], stdin: Vec<u8>) -> Output {
        run(self.command(args), Some(stdin), DOCKER_TIMEOUT)
    }

    /// Runs `docker ARGS...` and panics unless it succeeds.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.success(), "docker {} failed: {out}", args.join(" "));
        out
    }

    /// Runs `docker ARGS...`, which must fail; its error line (`Error response from daemon:
    /// ...`, without the CLI's `docker: ` before it).
    #[track_caller]
    pub fn refusal(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.success(), "docker {} succeeded: {out}", args.join(" "));
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("Error"))
            .unwrap_or_default();
        line.trim_start_matches("docker: ").to_string()
    }

    /// `docker inspect -f FORMAT WHAT`, trimmed.
    #[track_caller]
    pub fn field(&self, format: &str, what: &str) -> String {
        self.ok(&["inspect", "-f", format, what])
            .stdout
            .trim()
            .to_string()
    }

    /// The address of `container` on `network`.
    #[track_caller]
    pub fn ip_on(&self, container: &str, network: &str) -> String {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        self.field(&format, container)
    }

    /// `docker image inspect` parsed.
    #[track_caller]
    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let out = self.ok(&["image", "inspect", image]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("docker image inspect printed no JSON ({e}): {out}"));
        v.as_array()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_else(|| panic!("docker image inspect printed no image: {out}"))
    }

    /// Full IDs (`sha256:...`) of `docker images --no-trunc -q` with extra arguments.
    pub fn image_ids(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["images", "--no-trunc", "-q"];
        args.extend_from_slice(extra);
        let mut ids = self.ok(&args).lines();
        ids.dedup();
        ids
    }

    /// `docker images` rows as (repository, tag, full id, size text).
    pub fn images(&self, extra: &[&str]) -> Vec<(String, String, String, String)> {
        let mut args = vec![
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
            .lines()
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f.get(3).unwrap_or(&"").to_string(),
                )
            })
            .collect()
    }
}

/// Size as the docker CLI prints it (go-units HumanSizeWithPrecision(size, 3): decimal units,
/// three significant digits, `%g` style).
pub fn human_size(size: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{v:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

/// Strings of a JSON array (`Config.Cmd`, `RepoTags`, ...), sorted when `sort`.
pub fn strings(v: &serde_json::Value, sort: bool) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if sort {
        out.sort();
    }
    out
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

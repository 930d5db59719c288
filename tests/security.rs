//! Exposure of the API, end to end with `wharf up` and the real docker CLI: the unix socket's
//! mode, owner and group; TCP listeners (plain on loopback only, anything else only with TLS
//! client verification); mutual TLS with certificates made here by rcgen; hosts from the config
//! file and flags winning over it.

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use support::{
    free_port, ping, run, run_group, skip_on_reference, wait_for_tcp, DockerCli, Output, Proc,
    Stack, StackNet, StackOptions, READY_TIMEOUT,
};

/// How long `wharf up` may take to give up on a configuration it refuses.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(20);
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Certificates

/// PEM files in a temp dir: a CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate signed by it, and a client certificate signed by another CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn ca(&self) -> String {
        self.path("ca.pem")
    }
    fn server_cert(&self) -> String {
        self.path("server.pem")
    }
    fn server_key(&self) -> String {
        self.path("server-key.pem")
    }
    fn client_cert(&self) -> String {
        self.path("cert.pem")
    }
    fn client_key(&self) -> String {
        self.path("key.pem")
    }
    fn rogue_cert(&self) -> String {
        self.path("rogue-cert.pem")
    }
    fn rogue_key(&self) -> String {
        self.path("rogue-key.pem")
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// (certificate PEM, key PEM) of a leaf signed by `ca`.
fn new_leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let dir = tempfile::Builder::new()
        .prefix("wharf-e2e-pki-")
        .tempdir()
        .unwrap();
    let ca = new_ca("wharf test CA");
    let rogue_ca = new_ca("wharf test CA"); // same name, different key: must not be trusted
    let (server, server_key) = new_leaf(
        &ca,
        "wharf test server",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = new_leaf(&ca, "client", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let (rogue, rogue_key) = new_leaf(
        &rogue_ca,
        "client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    for (name, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server),
        ("server-key.pem", server_key),
        ("cert.pem", client),
        ("key.pem", client_key),
        ("rogue-ca.pem", rogue_ca.pem()),
        ("rogue-cert.pem", rogue),
        ("rogue-key.pem", rogue_key),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    Pki { dir }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `wharf up` with its own data root and NATS port, reading `config` (never the machine's
/// /etc/wharf/daemon.json), plus `args`.
/// The stack's default network is `net`'s own bridge, subnet and table (removed when `net` is
/// dropped), so that it never takes another engine's on a shared host.
fn wharf_up(net: &StackNet, dir: &Path, config: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("up")
        .args(net.args())
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--nats-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--config-file")
        .arg(config)
        .args(args)
        .env("RUST_BACKTRACE", "1");
    cmd
}

/// An empty config file in `dir`.
fn empty_config(dir: &Path) -> PathBuf {
    let config = dir.join("daemon.json");
    std::fs::write(&config, "{}").unwrap();
    config
}

/// Starts `cmd` (a `wharf up`) and waits until the API answers on `socket`.
fn start_up(cmd: Command, dir: &Path, socket: &Path) -> Proc {
    let mut proc = Proc::start(
        "wharf up",
        cmd,
        Some(&dir.join("wharf.log")),
        libc::SIGTERM,
        Duration::from_secs(20),
        true,
    );
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = proc.exited() {
            panic!(
                "wharf up exited ({status}) before answering on {}:\n{}",
                socket.display(),
                proc.log_tail(40)
            );
        }
        if ping(socket) {
            return proc;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "wharf up did not answer on {} within {READY_TIMEOUT:?}:\n{}",
        socket.display(),
        proc.log_tail(40)
    );
}

/// `wharf up` must give up at once: exit non-zero (not be killed at the timeout).
#[track_caller]
fn assert_refused(out: &Output) {
    let tail: Vec<&str> = out.stderr.lines().rev().take(12).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    assert!(
        out.code.is_some(),
        "wharf up kept running instead of refusing to start; last lines of its stderr:\n{}",
        tail.join("\n")
    );
    assert!(
        !out.success(),
        "wharf up exited 0 but should have refused: {out}"
    );
}

/// The docker CLI at `tcp://127.0.0.1:port` with the given TLS arguments, running `version`.
fn docker_version(port: u16, tls: &[String]) -> Output {
    let host = format!("tcp://127.0.0.1:{port}");
    let docker = DockerCli::new(&host);
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    args.extend(["-H", &host, "version"]);
    docker.run_timeout(&args, CLI_TIMEOUT)
}

/// The API version printed in the Server section of `docker version`.
fn server_api_version(out: &Output) -> Option<String> {
    let server = out.stdout.split("\nServer:").nth(1)?;
    server
        .lines()
        .find_map(|l| l.trim().strip_prefix("API version:"))
        .map(|v| v.split_whitespace().next().unwrap_or_default().to_string())
}

/// The CLI's failure is a TLS one (not, say, a refused connection).
#[track_caller]
fn assert_tls_failure(out: &Output) {
    assert!(
        !out.success(),
        "docker version succeeded but should have failed: {out}"
    );
    assert_eq!(server_api_version(out), None, "the server answered: {out}");
    let text = out.stderr.to_lowercase();
    assert!(
        text.contains("tls") || text.contains("certificate"),
        "the failure is not a TLS refusal: {out}"
    );
}

/// A stack serving mutual TLS on `tcp://0.0.0.0:port` (plus its unix socket).
fn mtls_stack(pki: &Pki) -> (Stack, u16) {
    let port = free_port();
    let stack = Stack::start_with(StackOptions {
        extra_args: strings(&[
            "-H",
            &format!("tcp://0.0.0.0:{port}"),
            "--tlsverify",
            "--tlscacert",
            &pki.ca(),
            "--tlscert",
            &pki.server_cert(),
            "--tlskey",
            &pki.server_key(),
        ]),
        ..Default::default()
    });
    assert!(
        wait_for_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(30)),
        "nothing listens on port {port}:\n{}",
        stack.log()
    );
    (stack, port)
}

fn client_tls(pki: &Pki) -> Vec<String> {
    strings(&[
        "--tlsverify",
        "--tlscacert",
        &pki.ca(),
        "--tlscert",
        &pki.client_cert(),
        "--tlskey",
        &pki.client_key(),
    ])
}

// ---------------------------------------------------------------------------------------------
// The unix socket

#[test]
fn unix_socket_is_mode_0660_owned_by_root() {
    if skip_on_reference("checks Wharf's own socket") {
        return;
    }
    let stack = Stack::start();
    let meta = std::fs::metadata(&stack.socket).unwrap();
    assert!(meta.file_type().is_socket(), "{:?}", meta.file_type());
    assert_eq!(
        meta.mode() & 0o7777,
        0o660,
        "mode {:o}",
        meta.mode() & 0o7777
    );
    assert_eq!(meta.uid(), 0, "owner uid");
    assert_eq!(meta.gid(), 0, "group without -G");
}

/// A group to give the socket to: `daemon` when the machine has it, else a group made (and
/// removed on drop) with groupadd.
struct TestGroup {
    name: String,
    gid: u32,
    created: bool,
}

impl TestGroup {
    fn get() -> TestGroup {
        if let Ok(Some(g)) = nix::unistd::Group::from_name("daemon") {
            return TestGroup {
                name: g.name,
                gid: g.gid.as_raw(),
                created: false,
            };
        }
        let name = format!("wharftest{}", std::process::id());
        run(
            {
                let mut c = Command::new("groupadd");
                c.arg(&name);
                c
            },
            None,
            Duration::from_secs(30),
        )
        .ok();
        let g = nix::unistd::Group::from_name(&name)
            .unwrap()
            .expect("group just made");
        TestGroup {
            name,
            gid: g.gid.as_raw(),
            created: true,
        }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        if self.created {
            let mut c = Command::new("groupdel");
            c.arg(&self.name);
            let _ = run(c, None, Duration::from_secs(30));
        }
    }
}

#[test]
fn group_flag_gives_the_unix_socket_to_that_group() {
    if skip_on_reference("uses wharf up's -G") {
        return;
    }
    let group = TestGroup::get();
    assert_ne!(group.gid, 0);
    let stack = Stack::start_with(StackOptions {
        extra_args: strings(&["-G", &group.name]),
        ..Default::default()
    });
    let meta = std::fs::metadata(&stack.socket).unwrap();
    assert_eq!(meta.gid(), group.gid, "socket group (want {})", group.name);
    assert_eq!(meta.uid(), 0, "owner uid");
    assert_eq!(
        meta.mode() & 0o7777,
        0o660,
        "mode {:o}",
        meta.mode() & 0o7777
    );
    // Still the API.
    stack.docker().ok(&["version"]);
}

// ---------------------------------------------------------------------------------------------
// TCP listeners that must be refused

#[test]
fn plain_tcp_on_all_interfaces_is_refused() {
    if skip_on_reference("starts wharf up") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let socket = dir.path().join("docker.sock");
    let net = StackNet::claim();
    let out = run_group(
        wharf_up(
            &net,
            dir.path(),
            &empty_config(dir.path()),
            &strings(&[
                "-H",
                &format!("unix://{}", socket.display()),
                "-H",
                &format!("tcp://0.0.0.0:{port}"),
            ]),
        ),
        REFUSE_TIMEOUT,
    );
    assert!(
        out.stderr.contains(&format!(
            "refusing to listen on tcp://0.0.0.0:{port} without TLS client verification"
        )),
        "stderr does not say why: {out}"
    );
    assert_refused(&out);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on {port}"
    );
}

#[test]
fn tls_without_client_verification_on_all_interfaces_is_refused() {
    if skip_on_reference("starts wharf up") {
        return;
    }
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let net = StackNet::claim();
    let out = run_group(
        wharf_up(
            &net,
            dir.path(),
            &empty_config(dir.path()),
            &strings(&[
                "-H",
                &format!("tcp://0.0.0.0:{port}"),
                "--tls",
                "--tlscacert",
                &pki.ca(),
                "--tlscert",
                &pki.server_cert(),
                "--tlskey",
                &pki.server_key(),
            ]),
        ),
        REFUSE_TIMEOUT,
    );
    assert!(
        out.stderr.contains(&format!(
            "refusing to listen on tcp://0.0.0.0:{port} without TLS client verification"
        )),
        "stderr does not say why: {out}"
    );
    assert_refused(&out);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on {port}"
    );
}

// ---------------------------------------------------------------------------------------------
// Mutual TLS

#[test]
fn mutual_tls_serves_a_client_certificate_signed_by_the_ca() {
    if skip_on_reference("starts wharf up with TLS") {
        return;
    }
    let pki = pki();
    let (_stack, port) = mtls_stack(&pki);
    let out = docker_version(port, &client_tls(&pki));
    assert!(
        out.success(),
        "docker version over mutual TLS failed: {out}"
    );
    assert_eq!(
        server_api_version(&out).as_deref(),
        Some("1.50"),
        "Server API version: {out}"
    );
}

#[test]
fn mutual_tls_refuses_a_client_without_certificate() {
    if skip_on_reference("starts wharf up with TLS") {
        return;
    }
    let pki = pki();
    let (_stack, port) = mtls_stack(&pki);
    // The listener works for a good client...
    docker_version(port, &client_tls(&pki)).ok();
    // ...but not for one that verifies the server and shows no certificate.
    let out = docker_version(port, &strings(&["--tls", "--tlscacert", &pki.ca()]));
    assert_tls_failure(&out);
    let out = docker_version(port, &strings(&["--tlsverify", "--tlscacert", &pki.ca()]));
    assert_tls_failure(&out);
}

#[test]
fn mutual_tls_refuses_a_client_certificate_from_another_ca() {
    if skip_on_reference("starts wharf up with TLS") {
        return;
    }
    let pki = pki();
    let (_stack, port) = mtls_stack(&pki);
    docker_version(port, &client_tls(&pki)).ok();
    let out = docker_version(
        port,
        &strings(&[
            "--tlsverify",
            "--tlscacert",
            &pki.ca(),
            "--tlscert",
            &pki.rogue_cert(),
            "--tlskey",
            &pki.rogue_key(),
        ]),
    );
    assert_tls_failure(&out);
}

#[test]
fn mutual_tls_refuses_plain_http() {
    if skip_on_reference("starts wharf up with TLS") {
        return;
    }
    let pki = pki();
    let (_stack, port) = mtls_stack(&pki);
    let out = docker_version(port, &[]);
    assert!(!out.success(), "plain HTTP was served: {out}");
    assert_eq!(server_api_version(&out), None, "the server answered: {out}");
}

#[test]
fn tls_without_verification_is_allowed_on_loopback() {
    if skip_on_reference("starts wharf up with TLS") {
        return;
    }
    let pki = pki();
    let port = free_port();
    let _stack = Stack::start_with(StackOptions {
        extra_args: strings(&[
            "-H",
            &format!("tcp://127.0.0.1:{port}"),
            "--tls",
            "--tlscert",
            &pki.server_cert(),
            "--tlskey",
            &pki.server_key(),
        ]),
        ..Default::default()
    });
    assert!(wait_for_tcp(
        &format!("127.0.0.1:{port}"),
        Duration::from_secs(30)
    ));
    // The client verifies the server and needs no certificate of its own.
    let out = docker_version(port, &strings(&["--tlsverify", "--tlscacert", &pki.ca()]));
    assert!(out.success(), "docker version over TLS failed: {out}");
    assert_eq!(server_api_version(&out).as_deref(), Some("1.50"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Plain TCP on loopback

#[test]
fn plain_tcp_on_loopback_is_served_without_tls() {
    if skip_on_reference("starts wharf up with -H tcp://") {
        return;
    }
    let port = free_port();
    let _stack = Stack::start_with(StackOptions {
        extra_args: strings(&["-H", &format!("tcp://127.0.0.1:{port}")]),
        ..Default::default()
    });
    assert!(wait_for_tcp(
        &format!("127.0.0.1:{port}"),
        Duration::from_secs(30)
    ));
    let out = docker_version(port, &[]);
    assert!(out.success(), "docker version over plain TCP failed: {out}");
    assert_eq!(server_api_version(&out).as_deref(), Some("1.50"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// The config file

#[test]
fn config_file_hosts_are_listened_on() {
    if skip_on_reference("starts wharf up with a config file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("from-file.sock");
    let config = dir.path().join("daemon.json");
    std::fs::write(
        &config,
        serde_json::json!({ "hosts": [format!("unix://{}", socket.display())] }).to_string(),
    )
    .unwrap();
    let net = StackNet::claim();
    let _up = start_up(
        wharf_up(&net, dir.path(), &config, &[]),
        dir.path(),
        &socket,
    );
    let docker = DockerCli::new(&format!("unix://{}", socket.display()));
    let out = docker.ok(&["version"]);
    assert_eq!(server_api_version(&out).as_deref(), Some("1.50"), "{out}");
}

#[test]
fn host_flag_wins_over_config_file_hosts() {
    if skip_on_reference("starts wharf up with a config file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file_socket = dir.path().join("from-file.sock");
    let flag_socket = dir.path().join("from-flag.sock");
    let config = dir.path().join("daemon.json");
    std::fs::write(
        &config,
        serde_json::json!({ "hosts": [format!("unix://{}", file_socket.display())] }).to_string(),
    )
    .unwrap();
    let net = StackNet::claim();
    let up = start_up(
        wharf_up(
            &net,
            dir.path(),
            &config,
            &strings(&["-H", &format!("unix://{}", flag_socket.display())]),
        ),
        dir.path(),
        &flag_socket,
    );
    DockerCli::new(&format!("unix://{}", flag_socket.display())).ok(&["version"]);
    // Listeners are bound one after the other: give a wrongly merged second one time to appear.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !file_socket.exists(),
        "the config file's host is listened on too:\n{}",
        up.log_tail(40)
    );
}

#[test]
fn tls_settings_from_config_file_enable_mutual_tls() {
    if skip_on_reference("starts wharf up with a config file") {
        return;
    }
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let port = free_port();
    let config = dir.path().join("daemon.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "hosts": [format!("unix://{}", socket.display()), format!("tcp://0.0.0.0:{port}")],
            "tlsverify": true,
            "tlscacert": pki.ca(),
            "tlscert": pki.server_cert(),
            "tlskey": pki.server_key(),
        })
        .to_string(),
    )
    .unwrap();
    let net = StackNet::claim();
    let _up = start_up(
        wharf_up(&net, dir.path(), &config, &[]),
        dir.path(),
        &socket,
    );
    assert!(wait_for_tcp(
        &format!("127.0.0.1:{port}"),
        Duration::from_secs(30)
    ));
    let out = docker_version(port, &client_tls(&pki));
    assert!(
        out.success(),
        "docker version over mutual TLS failed: {out}"
    );
    assert_eq!(server_api_version(&out).as_deref(), Some("1.50"), "{out}");
    assert_tls_failure(&docker_version(
        port,
        &strings(&["--tlsverify", "--tlscacert", &pki.ca()]),
    ));
}

#[test]
fn malformed_config_file_stops_wharf_up_naming_the_file() {
    if skip_on_reference("starts wharf up with a config file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let config = dir.path().join("broken-daemon.json");
    std::fs::write(&config, "{\"hosts\": [\"unix:///tmp/x.sock\",").unwrap();
    let net = StackNet::claim();
    let out = run_group(
        wharf_up(
            &net,
            dir.path(),
            &config,
            &strings(&["-H", &format!("unix://{}", socket.display())]),
        ),
        REFUSE_TIMEOUT,
    );
    assert_refused(&out);
    assert!(
        out.stderr.contains(&config.display().to_string()),
        "stderr does not name {}: {out}",
        config.display()
    );
    assert!(!socket.exists(), "the API was started anyway");
}

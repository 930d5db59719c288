//! Containers as a security boundary, attacked through the real docker CLI against `wharf up`:
//! each test tries an escape that reads a marker file of the host and checks that the marker
//! never comes out.

mod support;

use std::path::{Path, PathBuf};

use support::fixtures::{self, Entry, ImageSpec, Layer, PushFormat};
use support::{DockerCli, Output, Registry, Stack, StackOptions};

/// Applets the attacks use, as symlinks to busybox in the test image.
const APPLETS: &[&str] = &[
    "ln", "mkdir", "grep", "head", "id", "unshare", "mount", "mknod", "touch", "stat", "dd",
    "wget", "httpd", "ip", "sysctl", "timeout",
];

/// A file on the host that no container may read: a fresh directory under /tmp holding `secret`.
struct Marker {
    dir: tempfile::TempDir,
    text: String,
}

impl Marker {
    fn new() -> Marker {
        let dir = tempfile::Builder::new()
            .prefix("wharf-marker-")
            .tempdir_in("/tmp")
            .unwrap();
        let text = format!(
            "host-secret-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        );
        std::fs::write(dir.path().join("secret"), format!("{text}\n")).unwrap();
        Marker { dir, text }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The marker's path climbing from any directory to `/` first, as an attacker writes it.
    fn climbing(&self) -> String {
        format!("{}{}/secret", "../".repeat(12), self.dir().display())
    }

    #[track_caller]
    fn assert_not_in(&self, out: &Output) {
        assert!(
            !out.stdout.contains(&self.text) && !out.stderr.contains(&self.text),
            "the host's marker file was read from a container: {out}"
        );
    }
}

struct World {
    stack: Stack,
    docker: DockerCli,
    _registry: Registry,
    image: String,
}

fn world(name: &str, extra: Vec<Entry>, config: serde_json::Value) -> World {
    world_with(name, extra, config, StackOptions::default())
}

fn world_with(
    name: &str,
    extra: Vec<Entry>,
    config: serde_json::Value,
    options: StackOptions,
) -> World {
    let stack = Stack::start_with(options);
    let docker = stack.docker();
    let registry = Registry::start();
    let mut entries = vec![Entry::Dir("bin", 0o755)];
    for applet in APPLETS {
        entries.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
    }
    entries.extend(extra);
    let mut spec = ImageSpec::busybox_like(
        name,
        fixtures::host_arch(),
        vec![(
            Layer::new(&entries),
            "/bin/sh -c #(nop) COPY dir:tools in / ",
        )],
    );
    if let serde_json::Value::Object(map) = config {
        spec.extra_config = map;
    }
    let pushed = fixtures::push_image(&registry, &spec, "contain", name, PushFormat::DockerV2S2);
    let image = pushed.reference();
    docker.ok(&["pull", &image]);
    World {
        stack,
        docker,
        _registry: registry,
        image,
    }
}

/// The descriptor numbers an attacker tries for the launcher's leaked directory.
fn fd_paths() -> impl Iterator<Item = String> {
    (3..=10).map(|n| format!("/proc/self/fd/{n}"))
}

#[test]
fn a_working_directory_through_proc_self_fd_never_reaches_the_host() {
    let marker = Marker::new();
    let w = world("workdir", vec![], serde_json::json!({}));
    let d = &w.docker;

    // `docker run -w` (runc CVE-2024-21626): the init must not start in a host directory.
    for cwd in fd_paths() {
        let out = d.run(&[
            "run",
            "--rm",
            "-w",
            &cwd,
            &w.image,
            "cat",
            &marker.climbing(),
        ]);
        marker.assert_not_in(&out);
        assert!(!out.success(), "run -w {cwd} started: {out}");
        assert!(out.stderr.contains("chdir to cwd"), "run -w {cwd}: {out}");
    }

    // The image's WorkingDir goes the same way.
    let name = format!("contain-wd-{}", std::process::id());
    d.ok(&["run", "-d", "--name", &name, &w.image, "sleep", "300"]);
    for cwd in fd_paths() {
        // `docker exec -w`.
        let out = d.run(&["exec", "-w", &cwd, &name, "cat", &marker.climbing()]);
        marker.assert_not_in(&out);
        assert!(!out.success(), "exec -w {cwd} ran: {out}");
    }
    // Neither an exec nor an init has a descriptor of the runtime: 0-2, and the one `ls`
    // opened to read the directory.
    let exec = ["exec", name.as_str(), "ls", "/proc/self/fd"];
    let init = ["run", "--rm", w.image.as_str(), "ls", "/proc/self/fd"];
    for args in [&exec[..], &init[..]] {
        let fds = d.ok(args).stdout;
        let mut open: Vec<&str> = fds.split_whitespace().collect();
        open.sort_unstable();
        assert_eq!(
            open,
            ["0", "1", "2", "3"],
            "descriptors open in {args:?}: {fds}"
        );
    }
    d.ok(&["rm", "-f", &name]);
}

#[test]
fn a_dockerfile_workdir_through_proc_self_fd_never_reaches_the_host() {
    let marker = Marker::new();
    let w = world("buildwd", vec![], serde_json::json!({}));
    for cwd in fd_paths() {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!(
                "FROM {}\nWORKDIR {cwd}\nRUN cat {}\n",
                w.image,
                marker.climbing()
            ),
        )
        .unwrap();
        let mut cmd = w
            .docker
            .command(&["build", "--no-cache", "-t", "contain-build", "."]);
        cmd.current_dir(ctx.path()).env("DOCKER_BUILDKIT", "0");
        let out = support::run(cmd, None, support::DOCKER_TIMEOUT);
        marker.assert_not_in(&out);
        assert!(!out.success(), "the build with WORKDIR {cwd} passed: {out}");
    }
}

#[test]
fn a_volume_under_a_symlink_to_root_is_filled_from_the_image_not_the_host() {
    let marker = Marker::new();
    // An image made as `RUN ln -s / /a` + `VOLUME /a/<the marker's directory>` makes it.
    let volume = format!("/a{}", marker.dir().display());
    let w = world(
        "volume",
        vec![Entry::Symlink("a".into(), "/".into())],
        serde_json::json!({ "Volumes": { volume.clone(): {} } }),
    );
    let d = &w.docker;
    let inside = PathBuf::from(&volume).join("secret");
    let out = d.run(&[
        "run",
        "--rm",
        &w.image,
        "sh",
        "-c",
        &format!("ls -A {volume}; cat {}", inside.display()),
    ]);
    marker.assert_not_in(&out);
    // The volume exists and is empty: it was mounted over the image's own (missing) directory.
    assert!(!out.stdout.contains("secret"), "{out}");
    let _ = &w.stack;
}

fn seccomp_mode(out: &Output) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

#[test]
fn containers_run_under_the_default_seccomp_profile_unless_told_otherwise() {
    let w = world("seccomp", vec![], serde_json::json!({}));
    let d = &w.docker;
    let status = ["grep", "Seccomp", "/proc/self/status"];
    let run = |opts: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.push(&w.image);
        args.extend_from_slice(cmd);
        d.run(&args)
    };
    // A filter is in place (mode 2), in the init and in an exec.
    assert_eq!(seccomp_mode(&run(&[], &status).ok()), "2");
    let name = format!("contain-sc-{}", std::process::id());
    d.ok(&["run", "-d", "--name", &name, &w.image, "sleep", "300"]);
    assert_eq!(
        seccomp_mode(&d.ok(&["exec", &name, "grep", "Seccomp", "/proc/self/status"])),
        "2"
    );
    d.ok(&["rm", "-f", &name]);

    // What moby's profile refuses without CAP_SYS_ADMIN, as under dockerd.
    let out = run(&[], &["unshare", "-U", "true"]);
    assert!(!out.success(), "unshare -U ran: {out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    let out = run(&[], &["mount", "-t", "tmpfs", "none", "/mnt"]);
    assert!(!out.success(), "mount ran: {out}");

    // Unconfined and privileged containers have no filter; the same container runs there.
    assert_eq!(
        seccomp_mode(&run(&["--security-opt", "seccomp=unconfined"], &status).ok()),
        "0"
    );
    assert_eq!(seccomp_mode(&run(&["--privileged"], &status).ok()), "0");

    // A profile of one's own, sent inline by the CLI: everything but mkdir.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = run(&["--security-opt", &opt], &["mkdir", "/made"]);
    assert!(
        !out.success(),
        "mkdir ran under a profile refusing it: {out}"
    );
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    run(&["--security-opt", &opt], &["touch", "/made"]).ok();
    assert_eq!(
        seccomp_mode(&run(&["--security-opt", &opt], &status).ok()),
        "2"
    );

    // A profile that is no JSON profile is refused at start, in dockerd's words.
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, r#"{"defaultAction":7}"#).unwrap();
    let opt = format!("seccomp={}", wrong.display());
    let out = run(&["--security-opt", &opt], &["true"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("Decoding seccomp profile failed"),
        "{out}"
    );
}

#[test]
fn apparmor_and_selinux_options_are_refused_on_a_host_without_them() {
    let w = world("lsm", vec![], serde_json::json!({}));
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    for (opt, module, text) in [
        (
            "apparmor=docker-default",
            "apparmor",
            "AppArmor is not enabled on this host",
        ),
        (
            "label=type:svirt_apache_t",
            "selinux",
            "SELinux is not enabled on this host",
        ),
    ] {
        if lsm.split(',').any(|m| m.trim() == module) {
            continue;
        }
        let out = w
            .docker
            .run(&["create", "--security-opt", opt, &w.image, "true"]);
        assert!(!out.success(), "{opt} was taken: {out}");
        assert!(out.stderr.contains(text), "{opt}: {out}");
    }
    // Options that ask for nothing are taken.
    w.docker.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "label=disable",
        "--security-opt",
        "apparmor=unconfined",
        &w.image,
        "true",
    ]);
}

/// A loop device of the host backed by a file holding the marker: a host disk a container
/// must not read. Detached on drop.
struct LoopDisk {
    device: String,
    major: u32,
    minor: u32,
    _file: tempfile::NamedTempFile,
}

impl LoopDisk {
    fn new(marker: &Marker) -> LoopDisk {
        use std::io::Write;
        use std::os::unix::fs::MetadataExt;
        let mut file = tempfile::NamedTempFile::new_in("/tmp").unwrap();
        let mut image = marker.text.clone().into_bytes();
        image.resize(64 * 1024, 0);
        file.write_all(&image).unwrap();
        file.flush().unwrap();
        let mut cmd = std::process::Command::new("losetup");
        cmd.args(["-f", "--show"]).arg(file.path());
        let out = support::run(cmd, None, std::time::Duration::from_secs(30)).ok();
        let device = out.stdout.trim().to_string();
        let rdev = std::fs::metadata(&device).unwrap().rdev();
        LoopDisk {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
            device,
            _file: file,
        }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.device])
            .status();
    }
}

#[test]
fn a_host_disk_node_made_with_mknod_cannot_be_opened_unless_allowed() {
    let marker = Marker::new();
    let disk = LoopDisk::new(&marker);
    let w = world("devices", vec![], serde_json::json!({}));
    let d = &w.docker;
    let numbers = format!("{}:{}", disk.major, disk.minor);
    let read = format!(
        "mknod /tmp/disk b {} {} && head -c 64 /tmp/disk",
        disk.major, disk.minor
    );
    // runc's default rules: mknod is allowed, opening the node is not.
    let out = d.run(&["run", "--rm", &w.image, "sh", "-c", &read]);
    marker.assert_not_in(&out);
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    // The rules a default container has are runc's (and dockerd's).
    let list = d
        .ok(&[
            "run",
            "--rm",
            &w.image,
            "cat",
            "/sys/fs/cgroup/devices/devices.list",
        ])
        .stdout;
    if !list.is_empty() {
        let mut rules: Vec<&str> = list.lines().collect();
        rules.sort_unstable();
        assert_eq!(
            rules,
            [
                "b *:* m",
                "c *:* m",
                "c 136:* rwm",
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:1 rwm",
                "c 5:2 rwm",
            ]
        );
    }

    // What the client allows is allowed, and only that.
    let rule = format!("b {numbers} r");
    let out = d.run(&[
        "run",
        "--rm",
        "--device-cgroup-rule",
        &rule,
        &w.image,
        "sh",
        "-c",
        &read,
    ]);
    assert!(out.stdout.contains(&marker.text), "{out}");
    let device = format!("{}:/dev/xdisk:r", disk.device);
    let out = d.run(&[
        "run",
        "--rm",
        "--device",
        &device,
        &w.image,
        "head",
        "-c",
        "64",
        "/dev/xdisk",
    ]);
    assert!(out.stdout.contains(&marker.text), "{out}");
    let out = d.run(&[
        "run",
        "--rm",
        "--device",
        &device,
        &w.image,
        "sh",
        "-c",
        "echo x > /dev/xdisk",
    ]);
    assert!(
        !out.success(),
        "--device ...:r let the container write: {out}"
    );
    let out = d.run(&[
        "run",
        "--rm",
        "--privileged",
        &w.image,
        "head",
        "-c",
        "64",
        &disk.device,
    ]);
    assert!(out.stdout.contains(&marker.text), "{out}");
    let out = d.run(&[
        "run",
        "--rm",
        "--device-cgroup-rule",
        "x 1:2 rwm",
        &w.image,
        "true",
    ]);
    assert!(out.stderr.contains("invalid"), "{out}");
}

/// Runs `args` on the host as `nobody` (uid and gid 65534, no supplementary groups).
fn as_nobody(args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args);
    support::run(cmd, None, std::time::Duration::from_secs(30))
}

#[test]
fn other_users_of_the_host_cannot_enter_a_containers_files() {
    // An image with a setuid-root program (moby CVE-2021-41091).
    let w = world(
        "hostfiles",
        vec![Entry::File(
            "bin/suid-tool".into(),
            0o4755,
            fixtures::busybox(),
        )],
        serde_json::json!({}),
    );
    let d = &w.docker;
    let name = format!("contain-files-{}", std::process::id());
    let secret = format!("container-secret-{}", rand::random::<u64>());
    d.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        &w.image,
        "sh",
        "-c",
        &format!("echo {secret} > /secret && chmod 644 /secret && sleep 300"),
    ]);
    let merged = d
        .ok(&["inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", &name])
        .stdout
        .trim()
        .to_string();
    assert!(
        Path::new(&merged).join("bin/suid-tool").exists(),
        "{merged}"
    );
    for _ in 0..50 {
        if Path::new(&merged).join("secret").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Root sees it; nobody can neither read the container's files nor run its setuid program.
    let file = format!("{merged}/secret");
    assert!(std::fs::read_to_string(&file).unwrap().contains(&secret));
    let out = as_nobody(&["/bin/busybox", "cat", &file]);
    assert!(
        !out.stdout.contains(&secret),
        "nobody read a container's file: {out}"
    );
    assert!(out.stderr.contains("Permission denied"), "{out}");
    let out = as_nobody(&[&format!("{merged}/bin/suid-tool"), "id", "-u"]);
    assert!(
        !out.success(),
        "nobody ran a container's setuid program: {out}"
    );
    // Nor list what the node keeps, or reach the image store's layers.
    let runtime = Path::new(&merged).ancestors().nth(3).unwrap().to_path_buf();
    assert!(runtime.ends_with("runtime"), "{}", runtime.display());
    let out = as_nobody(&["/bin/busybox", "ls", &runtime.display().to_string()]);
    assert!(!out.success(), "{out}");
    let store = runtime.parent().unwrap().join("image-store");
    let out = as_nobody(&["/bin/busybox", "ls", &store.display().to_string()]);
    assert!(!out.success(), "{out}");
    d.ok(&["rm", "-f", &name]);
}

/// What a dockerd does to a host's firewall when it starts: iptables' FORWARD policy DROP,
/// bridged frames through iptables (br_netfilter). Undone on drop.
struct DockerdFirewall {
    policy: String,
    bridge_nf: Option<String>,
}

const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

fn iptables(args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new("iptables");
    cmd.arg("-w").args(args);
    support::run(cmd, None, std::time::Duration::from_secs(30))
}

impl DockerdFirewall {
    fn start() -> DockerdFirewall {
        let rules = iptables(&["-S", "FORWARD"]).ok().stdout;
        let policy = rules
            .lines()
            .find_map(|l| l.strip_prefix("-P FORWARD "))
            .unwrap_or("ACCEPT")
            .trim()
            .to_string();
        let bridge_nf = std::fs::read_to_string(BRIDGE_NF).ok();
        if bridge_nf.is_some() {
            std::fs::write(BRIDGE_NF, "1").unwrap();
        }
        iptables(&["-P", "FORWARD", "DROP"]).ok();
        DockerdFirewall { policy, bridge_nf }
    }
}

impl Drop for DockerdFirewall {
    fn drop(&mut self) {
        let _ = iptables(&["-P", "FORWARD", &self.policy]);
        if let Some(v) = &self.bridge_nf {
            let _ = std::fs::write(BRIDGE_NF, v.trim());
        }
    }
}

/// Removes the test's containers and networks, whatever happened.
struct Networks<'a> {
    docker: &'a DockerCli,
    names: Vec<String>,
    containers: Vec<String>,
}

impl Drop for Networks<'_> {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.docker.run(&["rm", "-f", c]);
        }
        for n in &self.names {
            let _ = self.docker.run(&["network", "rm", n]);
        }
    }
}

/// A TCP service of the host on 127.0.0.1 answering every connection with an HTTP response
/// holding the marker.
fn localhost_service(marker: &Marker) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = marker.text.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn inspect_net(d: &DockerCli, name: &str, field: &str) -> String {
    d.ok(&[
        "inspect",
        "-f",
        &format!("{{{{range .NetworkSettings.Networks}}}}{{{{.{field}}}}} {{{{end}}}}"),
        name,
    ])
    .stdout
    .split_whitespace()
    .next()
    .unwrap_or("")
    .to_string()
}

#[test]
fn networks_work_beside_a_dockerds_firewall_and_stay_apart() {
    let marker = Marker::new();
    let _firewall = DockerdFirewall::start();
    let w = world("networks", vec![], serde_json::json!({}));
    let d = &w.docker;
    let pid = std::process::id();
    let n = |s: &str| format!("contain-{s}-{pid}");
    let serve = |name: &str, net: &str, publish: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--network", net];
        args.extend_from_slice(publish);
        args.extend_from_slice(&[
            &w.image, "sh", "-c",
            "mkdir -p /www && echo served-by-$(hostname) > /www/index.html && httpd -f -p 8080 -h /www",
        ]);
        d.ok(&args);
    };
    // busybox 1.35's wget -T crashes when it times out: timeout(1) bounds it instead, under a
    // shell (timeout execs its program, which as PID 1 would ignore timeout's SIGTERM).
    let fetch = |net: &str, url: &str| {
        let script = format!("timeout 3 wget -qO- {url}; true");
        d.run(&[
            "run",
            "--rm",
            "--network",
            net,
            &w.image,
            "sh",
            "-c",
            &script,
        ])
    };
    // What must answer is asked again while the server may still be starting.
    let fetch_ok = |net: &str, url: &str| {
        let mut out = fetch(net, url);
        for _ in 0..10 {
            if out.stdout.contains("served-by") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
            out = fetch(net, url);
        }
        out
    };
    let (net1, net2, inner) = (n("net1"), n("net2"), n("inner"));
    let _networks = Networks {
        docker: d,
        names: vec![net1.clone(), net2.clone(), inner.clone()],
        containers: vec![n("srv0"), n("srv1"), n("srv3")],
    };
    d.ok(&["network", "create", &net1]);
    d.ok(&["network", "create", &net2]);
    d.ok(&["network", "create", "--internal", &inner]);
    let (srv0, srv1, srv3) = (n("srv0"), n("srv1"), n("srv3"));
    let published = support::free_port();
    let mapping = format!("{published}:8080");
    serve(&srv0, "bridge", &["-p", &mapping]);
    serve(&srv1, &net1, &[]);
    serve(&srv3, &inner, &[]);
    let ip0 = inspect_net(d, &srv0, "IPAddress");
    let ip1 = inspect_net(d, &srv1, "IPAddress");
    std::thread::sleep(std::time::Duration::from_millis(300));

    // Containers of one network talk: on the default bridge, and by name on a user network.
    let out = fetch_ok("bridge", &format!("http://{ip0}:8080/"));
    assert!(out.stdout.contains("served-by"), "default bridge: {out}");
    let out = fetch_ok(&net1, &format!("http://{srv1}:8080/"));
    assert!(out.stdout.contains("served-by"), "user network: {out}");
    let out = fetch_ok(&inner, &format!("http://{srv3}:8080/"));
    assert!(out.stdout.contains("served-by"), "internal network: {out}");

    // Different networks are isolated, as under dockerd; an internal one has no way out.
    let out = fetch(&net2, &format!("http://{ip1}:8080/"));
    assert!(
        !out.stdout.contains("served-by"),
        "net2 reached net1: {out}"
    );
    let out = fetch(&net1, &format!("http://{ip0}:8080/"));
    assert!(
        !out.stdout.contains("served-by"),
        "net1 reached the default bridge: {out}"
    );
    let out = fetch(&inner, &format!("http://{ip0}:8080/"));
    assert!(
        !out.stdout.contains("served-by"),
        "the internal network got out: {out}"
    );

    // A published port answers, from the host and from another network (through the host).
    let host_ip = inspect_net(d, &srv1, "Gateway");
    let url = format!("http://127.0.0.1:{published}/");
    let answer = support::http_get(&format!("127.0.0.1:{published}"), "/", &[]).unwrap();
    assert!(
        String::from_utf8_lossy(&answer.2).contains("served-by"),
        "{url}"
    );
    let out = fetch_ok(&net1, &format!("http://{host_ip}:{published}/"));
    assert!(
        out.stdout.contains("served-by"),
        "published port from net1: {out}"
    );

    // A host service bound to 127.0.0.1 is out of reach, even for a container that routes
    // 127.0.0.0/8 to its gateway (CVE-2020-8558: the bridge has route_localnet for published
    // ports). --privileged only gives it its own network namespace's settings.
    let port = localhost_service(&marker);
    let gateway = inspect_net(d, &srv0, "Gateway");
    let attack = format!(
        "ip route del local 127.0.0.0/8 dev lo table local; \
         ip route del local 127.0.0.1 dev lo table local; \
         ip addr del 127.0.0.1/8 dev lo; \
         sysctl -w net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1 >/dev/null; \
         ip route add 127.0.0.1/32 via {gateway} dev eth0; \
         timeout 3 wget -qO- http://127.0.0.1:{port}/; true"
    );
    let out = d.run(&["run", "--rm", "--privileged", &w.image, "sh", "-c", &attack]);
    marker.assert_not_in(&out);

    let chains: Vec<String> = [&net1, &net2, &inner]
        .iter()
        .map(|net| {
            let id = d.ok(&["network", "inspect", "-f", "{{.Id}}", net]).stdout;
            format!("WHARF-wh-{}", &id.trim()[..12])
        })
        .collect();
    let rules = iptables(&["-S", "FORWARD"]).ok().stdout;
    for chain in &chains {
        assert!(rules.contains(chain.as_str()), "{chain} missing: {rules}");
    }
    drop(_networks);
    // The networks' accept chains went with them.
    let rules = iptables(&["-S", "FORWARD"]).ok().stdout;
    for chain in &chains {
        assert!(
            !rules.contains(chain.as_str()),
            "{chain} left behind: {rules}"
        );
    }
}

/// The first subordinate ID of `user` in `file` (/etc/subuid or /etc/subgid).
fn subordinate_start(file: &str, user: &str) -> u32 {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut p = l.split(':');
            (p.next()? == user).then(|| p.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no range of {user} in {file}"))
}

#[test]
fn with_userns_remap_container_root_is_not_host_root() {
    let marker = Marker::new();
    std::fs::set_permissions(
        marker.dir().join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let w = world_with(
        "userns",
        vec![],
        serde_json::json!({}),
        StackOptions {
            extra_args: vec!["--userns-remap=default".into()],
            ..Default::default()
        },
    );
    let d = &w.docker;
    let base = subordinate_start("/etc/subuid", "dockremap");
    let info = d
        .ok(&["info", "--format", "{{json .SecurityOptions}}"])
        .stdout;
    assert!(info.contains("name=userns"), "{info}");

    // Container root is the range's first ID on the host, and root inside: it owns the image.
    let name = format!("contain-userns-{}", std::process::id());
    d.ok(&[
        "run", "-d", "--name", &name, "-v", "/vol", "--tmpfs", "/scratch", &w.image, "sleep", "300",
    ]);
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", &name]).stdout;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().nth(1),
        Some(base.to_string().as_str()),
        "{uid}"
    );
    let out = d.ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "id -u; touch /etc/made && echo made",
    ]);
    assert_eq!(out.stdout, "0\nmade\n");
    // docker cp and export show the owners the container sees, not the host's range.
    let owners = |args: &[&str]| -> Vec<(String, u64, u64)> {
        let out = d.command(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {out:?}");
        let mut archive = tar::Archive::new(&out.stdout[..]);
        let mut owners = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            owners.push((path, h.uid().unwrap(), h.gid().unwrap()));
        }
        owners
    };
    let made = owners(&["cp", &format!("{name}:/etc/made"), "-"]);
    assert_eq!(made, vec![("made".to_string(), 0, 0)]);
    let bin = owners(&["cp", &format!("{name}:/bin/busybox"), "-"]);
    assert_eq!(bin, vec![("busybox".to_string(), 0, 0)]);
    let exported = owners(&["export", &name]);
    for wanted in ["etc/made", "bin/busybox"] {
        let found = exported.iter().find(|(p, _, _)| p == wanted);
        assert_eq!(found, Some(&(wanted.to_string(), 0, 0)), "{exported:?}");
    }
    // What docker cp puts in is owned by the archive's IDs as the container sees them; an ID
    // the range cannot hold is refused in dockerd's words.
    let upload = |uid: u64| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_cksum();
        b.append_data(&mut h, "in", &b"in\n"[..]).unwrap();
        b.into_inner().unwrap()
    };
    d.run_stdin(&["cp", "-", &format!("{name}:/tmp")], upload(1000))
        .ok();
    let out = d.ok(&["exec", &name, "stat", "-c", "%u:%g", "/tmp/in"]);
    assert_eq!(out.stdout, "1000:1000\n");
    let out = d.run_stdin(&["cp", "-", &format!("{name}:/tmp")], upload(70_000));
    assert!(
        out.stderr
            .contains("Container ID 70000 cannot be mapped to a host ID"),
        "{out}"
    );
    // The same in a volume and in a tmpfs, both ways.
    for dir in ["/vol", "/scratch"] {
        d.run_stdin(&["cp", "-", &format!("{name}:{dir}")], upload(1000))
            .ok();
        let out = d.ok(&["exec", &name, "stat", "-c", "%u:%g", &format!("{dir}/in")]);
        assert_eq!(out.stdout, "1000:1000\n", "{dir}");
        d.ok(&["exec", &name, "touch", &format!("{dir}/made")]);
        let made = owners(&["cp", &format!("{name}:{dir}/made"), "-"]);
        assert_eq!(made, vec![("made".to_string(), 0, 0)], "{dir}");
    }
    d.ok(&["rm", "-f", &name]);
    // A working directory the node makes is the container root's too.
    let out = d.ok(&[
        "run",
        "--rm",
        "-w",
        "/made/here",
        &w.image,
        "sh",
        "-c",
        "touch x && stat -c %u x",
    ]);
    assert_eq!(out.stdout, "0\n");

    // A root-only host file bound into it stays out of reach.
    let bind = format!("{}:/host", marker.dir().display());
    let out = d.run(&["run", "--rm", "-v", &bind, &w.image, "cat", "/host/secret"]);
    marker.assert_not_in(&out);
    assert!(out.stderr.contains("Permission denied"), "{out}");
    // A world-readable bind mount is read.
    let out = d.ok(&[
        "run",
        "--rm",
        "-v",
        "/etc:/hostetc:ro",
        &w.image,
        "cat",
        "/hostetc/hostname",
    ]);
    assert!(!out.stdout.is_empty());
    // A named volume is the container root's.
    let out = d.ok(&[
        "run",
        "--rm",
        "-v",
        "contain-userns-vol:/data",
        &w.image,
        "sh",
        "-c",
        "echo kept > /data/f && cat /data/f",
    ]);
    assert_eq!(out.stdout, "kept\n");
    d.ok(&["volume", "rm", "contain-userns-vol"]);
    // --privileged needs --userns=host, as under dockerd.
    let out = d.run(&["run", "--rm", "--privileged", &w.image, "true"]);
    assert!(
        out.stderr
            .contains("privileged mode is incompatible with user namespaces"),
        "{out}"
    );
    let out = d.ok(&["run", "--rm", "--userns=host", &w.image, "id", "-u"]);
    assert_eq!(out.stdout, "0\n");

    // A build's RUN step writes as container root; the layer records root, not the host ID.
    let ctx = tempfile::tempdir().unwrap();
    // What COPY writes is the container root's too: a later step may change it.
    std::fs::write(ctx.path().join("copied"), "c\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN touch /built\nCOPY copied /copied/\n\
             RUN chmod 600 /copied/copied && chown -R 5:5 /copied\n",
            w.image
        ),
    )
    .unwrap();
    let mut cmd = d.command(&["build", "-q", "-t", "contain-userns-built", "."]);
    cmd.current_dir(ctx.path()).env("DOCKER_BUILDKIT", "0");
    support::run(cmd, None, support::DOCKER_TIMEOUT).ok();
    let out = d.ok(&[
        "run",
        "--rm",
        "contain-userns-built",
        "stat",
        "-c",
        "%u:%g",
        "/built",
    ]);
    assert_eq!(out.stdout, "0:0\n");
    let out = d.ok(&[
        "run",
        "--rm",
        "contain-userns-built",
        "stat",
        "-c",
        "%u:%g %a",
        "/copied/copied",
    ]);
    assert_eq!(out.stdout, "5:5 600\n");

    // No layer was copied or changed: the unpacked layers are still host root's.
    let snapshots = w.stack.data_root.join("runtime/snapshots");
    let mut busyboxes = 0;
    for entry in std::fs::read_dir(&snapshots).unwrap().flatten() {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::symlink_metadata(entry.path().join("fs/bin/busybox")) {
            busyboxes += 1;
            assert_eq!((m.uid(), m.gid()), (0, 0), "{}", entry.path().display());
        }
    }
    assert_eq!(busyboxes, 1, "the base layer is unpacked once");
}

//! Containers as a security boundary, attacked through the real docker CLI against `wharf up`:
//! each test tries an escape that reads a marker file of the host and checks that the marker
//! never comes out.

mod support;

use std::path::{Path, PathBuf};

use support::fixtures::{self, Entry, ImageSpec, Layer, PushFormat};
use support::{DockerCli, Output, Registry, Stack};

/// Applets the attacks use, as symlinks to busybox in the test image.
const APPLETS: &[&str] = &[
    "ln", "mkdir", "grep", "head", "id", "unshare", "mount", "mknod", "touch", "stat", "dd",
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
    let stack = Stack::start();
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
    // An exec cannot use descriptors of the runtime either: only stdio is open in it.
    let fds = d.ok(&["exec", &name, "ls", "/proc/self/fd"]).stdout;
    let mut open: Vec<&str> = fds.split_whitespace().collect();
    open.sort_unstable();
    // 0-2, and the descriptor `ls` opened to read the directory.
    assert_eq!(
        open,
        ["0", "1", "2", "3"],
        "descriptors open in an exec: {fds}"
    );
    let fds = d
        .ok(&["run", "--rm", &w.image, "ls", "/proc/self/fd"])
        .stdout;
    let mut open: Vec<&str> = fds.split_whitespace().collect();
    open.sort_unstable();
    assert_eq!(
        open,
        ["0", "1", "2", "3"],
        "descriptors open in an init: {fds}"
    );
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

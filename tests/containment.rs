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

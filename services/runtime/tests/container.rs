//! The container launcher against the real kernel (we run as root): each test builds a rootfs
//! from the static busybox, launches a container from Docker's default spec, and checks what
//! the process inside sees. A guard kills and reaps the init by PID even when a test fails;
//! mounts and namespaces belong to the container and go with it, the rootfs is a temp dir.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, Pid};
use oci_spec::runtime::{Capability, PosixRlimitBuilder, PosixRlimitType, Spec, UserBuilder};
use wharf_runtime::container::{self, default_spec, LaunchError, Stdio};

const APPLETS: [&str; 18] = [
    "sh", "id", "hostname", "cat", "ls", "mount", "echo", "ps", "ip", "grep", "sleep", "ulimit",
    "wc", "true", "test", "readlink", "stat", "mkdir",
];

/// Copying busybox while another test forks would leave a writable descriptor of it in that
/// child until its exec (ETXTBSY here): copies and launches take turns.
static FORK_OR_COPY: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn rootfs() -> tempfile::TempDir {
    let _copying = FORK_OR_COPY.write().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/marker"), "container\n").unwrap();
    dir
}

fn spec(script: &str) -> Spec {
    default_spec("wharf-test", vec!["sh".into(), "-c".into(), script.into()])
}

/// A launched container; dropping it kills (by PID) and reaps it if a test did not.
struct Running {
    pid: Pid,
    output: OwnedFd,
    reaped: bool,
    _rootfs: tempfile::TempDir,
}

impl Running {
    fn start(spec: &Spec) -> Result<Running, LaunchError> {
        let rootfs = rootfs();
        Self::start_in(spec, rootfs)
    }

    fn start_in(spec: &Spec, rootfs: tempfile::TempDir) -> Result<Running, LaunchError> {
        let _forking = FORK_OR_COPY.read().unwrap_or_else(|e| e.into_inner());
        let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let err = w.try_clone().unwrap();
        let pid = container::launch(
            spec,
            rootfs.path(),
            Stdio {
                stdin: None,
                stdout: Some(w),
                stderr: Some(err),
            },
        )?;
        Ok(Running {
            pid,
            output: r,
            reaped: false,
            _rootfs: rootfs,
        })
    }

    /// Output until the container exits, and its exit code.
    fn finish(mut self) -> (String, i32) {
        let mut out = String::new();
        std::fs::File::from(self.output.try_clone().unwrap())
            .read_to_string(&mut out)
            .unwrap();
        let status = waitpid(self.pid, None).unwrap();
        self.reaped = true;
        match status {
            WaitStatus::Exited(_, code) => (out, code),
            other => panic!("container ended with {other:?}; output {out}"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

fn run(spec: &Spec) -> (String, i32) {
    Running::start(spec).expect("launch").finish()
}

#[test]
fn echo_prints_on_captured_stdout_and_exits_zero() {
    assert_eq!(run(&spec("echo hello")), ("hello\n".into(), 0));
}

#[test]
fn exit_code_is_the_processes() {
    assert_eq!(run(&spec("exit 7")).1, 7);
}

#[test]
fn hostname_is_the_specs() {
    assert_eq!(run(&spec("hostname")), ("wharf-test\n".into(), 0));
}

#[test]
fn the_process_is_pid_1() {
    assert_eq!(run(&spec("echo $$")), ("1\n".into(), 0));
}

#[test]
fn proc_shows_only_the_containers_processes() {
    let (out, code) = run(&spec("ls -d /proc/[0-9]*"));
    assert_eq!(code, 0, "{out}");
    // sh itself (1) and ls, nothing of the host.
    let pids: Vec<&str> = out.lines().collect();
    assert!(pids.len() <= 2 && pids.contains(&"/proc/1"), "{out}");
}

#[test]
fn the_rootfs_is_the_root() {
    let (out, code) = run(&spec("cat /etc/marker; cat /etc/passwd"));
    assert_eq!(out.lines().next(), Some("container"));
    assert!(!out.contains("root:"), "host /etc/passwd visible: {out}");
    assert_ne!(code, 0);
}

#[test]
fn masked_proc_kcore_is_empty_or_unreadable() {
    // This kernel may lack /proc/kcore; then there is nothing to read either way.
    let (out, code) = run(&spec("wc -c < /proc/kcore"));
    assert!(out.trim() == "0" || code != 0, "{out}");
}

#[test]
fn masked_files_read_empty_and_masked_dirs_are_empty() {
    let host_has_timer_list = Path::new("/proc/timer_list").exists();
    let host_has_acpi = Path::new("/proc/acpi").exists();
    let (out, code) = run(&spec(
        "wc -c < /proc/timer_list; wc -c < /proc/keys; ls -A /proc/acpi /sys/firmware | wc -l",
    ));
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    if host_has_timer_list {
        assert_eq!(lines[0], "0", "{out}");
    }
    assert_eq!(lines[1], "0", "{out}");
    if host_has_acpi {
        // Only the two "dir:" headers and the blank line between them.
        assert_eq!(lines[2], "3", "{out}");
    }
}

#[test]
fn proc_sys_is_read_only() {
    let (out, code) = run(&spec(
        "echo wharf > /proc/sys/kernel/hostname && echo written",
    ));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
}

fn cap_eff(spec: &Spec) -> u64 {
    let (out, code) = run(spec);
    assert_eq!(code, 0, "{out}");
    let line = out.lines().find(|l| l.starts_with("CapEff:")).expect(&out);
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn effective_capabilities_are_dockers_default_set() {
    assert_eq!(cap_eff(&spec("cat /proc/self/status")), 0xa80425fb);
}

#[test]
fn a_dropped_capability_is_gone() {
    let mut s = spec("cat /proc/self/status");
    let process = s.process_mut().as_mut().unwrap();
    let mut caps = process.capabilities().clone().unwrap();
    for set in [
        caps.bounding().clone(),
        caps.effective().clone(),
        caps.permitted().clone(),
    ] {
        let _ = set;
    }
    let without = |c: &Option<oci_spec::runtime::Capabilities>| {
        let mut c = c.clone().unwrap();
        c.remove(&Capability::NetRaw);
        Some(c)
    };
    caps.set_bounding(without(caps.bounding()));
    caps.set_effective(without(caps.effective()));
    caps.set_permitted(without(caps.permitted()));
    process.set_capabilities(Some(caps));
    assert_eq!(cap_eff(&s), 0xa80425fb & !(1 << 13));
}

#[test]
fn user_1000_runs_as_uid_1000() {
    let mut s = spec("id -u; id -g");
    s.process_mut().as_mut().unwrap().set_user(
        UserBuilder::default()
            .uid(1000u32)
            .gid(1000u32)
            .build()
            .unwrap(),
    );
    assert_eq!(run(&s), ("1000\n1000\n".into(), 0));
}

#[test]
fn unknown_executable_fails_with_dockers_message() {
    let s = default_spec("wharf-test", vec!["nosuch".into()]);
    match Running::start(&s) {
        Err(e) => assert_eq!(
            e.to_string(),
            "exec: \"nosuch\": executable file not found in $PATH"
        ),
        Ok(_) => panic!("nosuch started"),
    }
}

#[test]
fn network_namespace_has_only_lo() {
    let (out, code) = run(&spec("ls /sys/class/net"));
    assert_eq!((out.as_str(), code), ("lo\n", 0));
}

#[test]
fn nofile_above_host_hard_limit_is_clamped() {
    let host = container::host_hard_limit(PosixRlimitType::RlimitNofile).unwrap();
    let mut s = spec("ulimit -n; ulimit -Hn");
    s.process_mut()
        .as_mut()
        .unwrap()
        .set_rlimits(Some(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(host + 1_000_000)
            .hard(host + 1_000_000)
            .build()
            .unwrap()]));
    assert_eq!(run(&s), (format!("{host}\n{host}\n"), 0));
}

#[test]
fn two_containers_at_once_have_separate_pid_namespaces() {
    let a = Running::start(&spec("echo $$; ls -d /proc/[0-9]*; sleep 1")).expect("launch a");
    let b = Running::start(&spec("echo $$; ls -d /proc/[0-9]*; sleep 1")).expect("launch b");
    assert_ne!(a.pid, b.pid);
    for (out, code) in [a.finish(), b.finish()] {
        assert_eq!(code, 0, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "1");
        // Each sees itself (1) and its ls, not the other container's sh.
        assert!(lines.len() <= 3, "{out}");
    }
}

#[test]
fn default_spec_carries_dockers_defaults() {
    let s = spec("true");
    let linux = s.linux().as_ref().unwrap();
    assert!(linux
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".to_string()));
    assert!(linux
        .readonly_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/sys".to_string()));
    assert_eq!(linux.devices().as_ref().unwrap().len(), 6);
    let dests: Vec<_> = s
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ] {
        assert!(dests.contains(&Path::new(d).to_path_buf()), "{d}");
    }
    let nofile = s.process().as_ref().unwrap().rlimits().as_ref().unwrap()[0];
    assert!(nofile.hard() <= container::host_hard_limit(PosixRlimitType::RlimitNofile).unwrap());
}

#[test]
fn devices_and_dev_symlinks_exist() {
    let (out, code) = run(&spec(
        "stat -c '%t:%T %a' /dev/null /dev/urandom /dev/tty; readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stdout; \
         test -d /dev/pts && test -d /dev/shm && test -d /dev/mqueue && echo dirs",
    ));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "1:3 666\n1:9 666\n5:0 666\npts/ptmx\n/proc/self/fd\n/proc/self/fd/1\ndirs\n"
    );
}

#[test]
fn cgroup_and_sys_are_read_only() {
    let (out, code) = run(&spec(
        "ls /sys/fs/cgroup | grep -q . && echo listed; mkdir /sys/fs/cgroup/x || echo refused; \
         mkdir /sys/x || echo sys-refused",
    ));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("listed") && out.contains("refused") && out.contains("sys-refused"),
        "{out}"
    );
}

#[test]
fn no_new_privileges_is_set_when_asked() {
    let mut s = spec("grep NoNewPrivs /proc/self/status");
    s.process_mut()
        .as_mut()
        .unwrap()
        .set_no_new_privileges(Some(true));
    let (out, code) = run(&s);
    assert_eq!(
        (out.split_whitespace().nth(1), code),
        (Some("1"), 0),
        "{out}"
    );
}

#[test]
fn mount_destination_through_a_symlink_stays_inside_the_rootfs() {
    // rootfs/escape -> <host dir> (absolute): the mount must land in rootfs/<host dir>/x, and
    // nothing may appear in the host directory.
    let host = tempfile::tempdir().unwrap();
    let root = rootfs();
    std::os::unix::fs::symlink(host.path(), root.path().join("escape")).unwrap();
    let mut s = spec("test -d /escape/x && echo inside");
    let mut mounts = s.mounts().clone().unwrap();
    mounts.push(
        oci_spec::runtime::MountBuilder::default()
            .destination("/escape/x")
            .typ("tmpfs")
            .source("tmpfs")
            .build()
            .unwrap(),
    );
    s.set_mounts(Some(mounts));
    let (out, code) = Running::start_in(&s, root).expect("launch").finish();
    assert_eq!((out.as_str(), code), ("inside\n", 0));
    assert!(!host.path().join("x").exists(), "created on the host");
}

#[test]
fn a_spec_without_a_mount_namespace_is_refused() {
    let mut s = spec("true");
    let linux = s.linux_mut().as_mut().unwrap();
    let namespaces = linux
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .filter(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Mount)
        .collect::<Vec<_>>();
    linux.set_namespaces(Some(namespaces));
    assert!(matches!(
        Running::start(&s),
        Err(LaunchError::InvalidSpec(_))
    ));
}

/// Changes the owner of everything under `root` (symlinks themselves) to `id`.
fn chown_tree(root: &Path, id: u32) {
    let owner = Some(nix::unistd::Uid::from_raw(id));
    let group = Some(nix::unistd::Gid::from_raw(id));
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &path,
            owner,
            group,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        if path.is_dir() && !path.is_symlink() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
}

#[test]
fn in_a_user_namespace_container_root_is_an_unprivileged_host_id() {
    const BASE: u32 = 231_072;
    // A host file only host root may read, bind-mounted into the container.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "host secret\n").unwrap();
    std::fs::set_permissions(
        secret.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut s = spec(
        "id -u; cat /proc/self/uid_map; touch /out/made && echo made; \
         cat /secret || echo refused; ls /sys/kernel >/dev/null && echo sys",
    );
    let mut linux = s.linux().clone().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    namespaces.push(
        oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(oci_spec::runtime::LinuxNamespaceType::User)
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(namespaces));
    let map = oci_spec::runtime::LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(BASE)
        .size(65_536u32)
        .build()
        .unwrap();
    linux.set_uid_mappings(Some(vec![map]));
    linux.set_gid_mappings(Some(vec![map]));
    s.set_linux(Some(linux));
    // And a host directory given to the container's root, where it writes.
    let out_dir = tempfile::tempdir().unwrap();
    chown_tree(out_dir.path(), BASE);
    let mut mounts = s.mounts().clone().unwrap();
    for (dest, source, mode) in [
        ("/secret", secret.path(), "ro"),
        ("/out", out_dir.path(), "rw"),
    ] {
        mounts.push(
            oci_spec::runtime::MountBuilder::default()
                .destination(dest)
                .typ("bind")
                .source(source)
                .options(vec!["rbind".to_string(), mode.to_string()])
                .build()
                .unwrap(),
        );
    }
    s.set_mounts(Some(mounts));

    let rootfs = rootfs();
    chown_tree(rootfs.path(), BASE);
    let (out, code) = Running::start_in(&s, rootfs).expect("launch").finish();
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "0", "{out}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "231072", "65536"], "{out}");
    assert!(out.contains("made"), "{out}");
    assert!(
        out.contains("refused") && !out.contains("host secret"),
        "{out}"
    );
    assert!(out.contains("sys"), "{out}");
    assert_eq!(code, 0, "{out}");
    // What container root made belongs to the unprivileged host ID.
    use std::os::unix::fs::MetadataExt;
    let made = std::fs::metadata(out_dir.path().join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (BASE, BASE));
}

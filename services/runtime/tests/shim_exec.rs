//! `docker exec` through `wharf-shim` against the real kernel (we run as root): each test starts
//! a container shim (busybox rootfs with a marker file, Docker's default namespaces and a
//! hostname) running `sleep 300`, then an exec shim with its own bundle under the container's
//! directory (`exec/<id>/`) whose process joins that container. Guards kill what a test leaves
//! running, by the PIDs in the state files; the shims then exit on their own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use wharf_runtime::container::default_spec;
use wharf_runtime::logs::{LogReader, ReadOptions};
use wharf_runtime::shim::{ExecInto, ShimClient, ShimError, ShimLaunch, ShimState, Status};

const SHIM: &str = env!("CARGO_BIN_EXE_wharf-shim");
const APPLETS: [&str; 10] = [
    "sh", "echo", "sleep", "cat", "tty", "hostname", "ls", "id", "readlink", "pwd",
];
const HOSTNAME: &str = "wharf-exec-test";
const MARKER: &str = "container-rootfs-marker";
const DEADLINE: Duration = Duration::from_secs(20);

/// Copying busybox while another test forks would leave a writable descriptor of it in that
/// child until its exec (ETXTBSY there): copies and spawns take turns.
static FORK_OR_COPY: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A running container (`sleep 300`) and its shim; dropping it kills the init, which takes
/// every exec's processes with it (they are in its PID namespace).
struct Container {
    dir: tempfile::TempDir,
    shim: ShimClient,
    pid: i32,
}

impl Container {
    async fn start() -> Container {
        Container::start_with(&["sleep", "300"]).await
    }

    async fn start_with(args: &[&str]) -> Container {
        Container::start_in(args, Vec::new()).await
    }

    async fn start_in(args: &[&str], cgroup_dirs: Vec<PathBuf>) -> Container {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let _copying = FORK_OR_COPY.write().unwrap_or_else(|e| e.into_inner());
            let root = dir.path().join("rootfs");
            for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "home/user"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            std::fs::write(root.join(MARKER), b"").unwrap();
            std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
            for applet in APPLETS {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
            }
        }
        let launch = ShimLaunch {
            id: "shim-exec-container".into(),
            spec: default_spec(HOSTNAME, args.iter().map(|a| a.to_string()).collect()),
            rootfs: dir.path().join("rootfs"),
            log_path: dir.path().join("container-json.log"),
            no_log: false,
            log_max_size: None,
            log_max_files: 1,
            tty: false,
            open_stdin: false,
            stdin_once: false,
            console_size: None,
            cgroup_dirs,
            exec: None,
            seccomp: None,
        };
        let shim = spawn(dir.path(), &launch).await;
        let state = shim.start().await.expect("start the container");
        assert_eq!(state.status, Status::Running);
        Container {
            dir,
            shim,
            pid: state.pid,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The launch settings of an exec of `args` into this container, as root in `/`.
    fn exec(&self, args: &[&str]) -> ShimLaunch {
        ShimLaunch {
            id: "shim-exec-test".into(),
            // Only the process section counts; the rest is the container's, and ignored.
            spec: default_spec(HOSTNAME, args.iter().map(|a| a.to_string()).collect()),
            rootfs: self.path().join("rootfs"),
            log_path: self.path().join("container-json.log"),
            no_log: false,
            log_max_size: None,
            log_max_files: 1,
            tty: false,
            open_stdin: false,
            stdin_once: false,
            console_size: None,
            cgroup_dirs: Vec::new(),
            exec: Some(ExecInto { pid: self.pid }),
            seccomp: None,
        }
    }

    /// A new exec bundle directory, `<container>/exec/<name>`.
    fn exec_dir(&self, name: &str) -> ExecDir {
        let path = self.path().join("exec").join(name);
        std::fs::create_dir_all(&path).unwrap();
        ExecDir { path }
    }

    /// Starts an exec of `launch`, attached to its stdout and stderr, and returns what it
    /// wrote (demultiplexed) and its final state.
    async fn run(&self, name: &str, launch: &ShimLaunch) -> (String, String, ShimState) {
        let dir = self.exec_dir(name);
        let shim = spawn(&dir.path, launch).await;
        let mut stream = shim.attach(false, true, true).await.expect("attach");
        shim.start().await.expect("start the exec");
        let frames = frames(&read_to_end(&mut stream).await);
        let state = exited(&shim).await;
        (joined(&frames, 1), joined(&frames, 2), state)
    }

    fn log(&self) -> String {
        LogReader::new(self.path().join("container-json.log"))
            .read(&ReadOptions {
                stdout: true,
                stderr: true,
                ..ReadOptions::default()
            })
            .expect("read log")
            .iter()
            .map(|e| String::from_utf8_lossy(&e.log).into_owned())
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SAFETY: integer-only kill of the test's own container init.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

/// An exec's bundle; dropping it kills an exec process left running.
struct ExecDir {
    path: PathBuf,
}

impl Drop for ExecDir {
    fn drop(&mut self) {
        if let Ok(state) = ShimState::read(&self.path.join("state.json")) {
            if state.status == Status::Running && state.pid > 0 {
                // SAFETY: integer-only kill of the test's own exec process.
                unsafe { libc::kill(state.pid, libc::SIGKILL) };
            }
        }
    }
}

// Held across the spawn's fork on purpose; each test has its own runtime thread.
#[allow(clippy::await_holding_lock)]
async fn spawn(bundle: &Path, launch: &ShimLaunch) -> ShimClient {
    let _forking = FORK_OR_COPY.read().unwrap_or_else(|e| e.into_inner());
    ShimClient::spawn(Path::new(SHIM), bundle, launch)
        .await
        .expect("spawn shim")
}

/// The final state: from `wait`, or from the state file once the shim is gone.
async fn exited(shim: &ShimClient) -> ShimState {
    let state = match tokio::time::timeout(DEADLINE, shim.wait()).await {
        Err(_) => panic!("no exit within {DEADLINE:?}"),
        Ok(Ok(state)) => state,
        Ok(Err(ShimError::Gone { .. })) => shim.read_state_file().expect("state file"),
        Ok(Err(e)) => panic!("wait: {e}"),
    };
    assert_eq!(state.status, Status::Exited);
    state
}

async fn read_to_end(stream: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("the shim closes the attach stream")
        .expect("read attach stream");
    out
}

/// Reads until the bytes so far contain `needle`.
async fn read_until(stream: &mut UnixStream, got: &mut Vec<u8>, needle: &[u8]) {
    let deadline = Instant::now() + DEADLINE;
    while !got.windows(needle.len()).any(|w| w == needle) {
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(got)))
            .expect("read");
        assert!(n > 0, "ended before {needle:?}: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Splits a multiplexed stream into (stream byte, payload) frames.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 8, "truncated header {bytes:?}");
        let (header, rest) = bytes.split_at(8);
        assert!(matches!(header[0], 1 | 2), "stream byte {header:?}");
        let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        assert!(rest.len() >= len, "truncated frame");
        out.push((header[0], rest[..len].to_vec()));
        bytes = &rest[len..];
    }
    out
}

fn joined(frames: &[(u8, Vec<u8>)], stream: u8) -> String {
    let bytes: Vec<u8> = frames
        .iter()
        .filter(|(s, _)| *s == stream)
        .flat_map(|(_, p)| p.clone())
        .collect();
    String::from_utf8(bytes).expect("utf-8 output")
}

fn with_user(mut spec: Spec, uid: u32, gid: u32) -> Spec {
    let mut process = spec.process().clone().unwrap();
    let mut user = process.user().clone();
    user.set_uid(uid);
    user.set_gid(gid);
    process.set_user(user);
    spec.set_process(Some(process));
    spec
}

fn with_cwd(mut spec: Spec, cwd: &str) -> Spec {
    let mut process = spec.process().clone().unwrap();
    process.set_cwd(cwd.into());
    spec.set_process(Some(process));
    spec
}

fn namespace(pid: i32, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .unwrap_or_else(|e| panic!("ns/{name} of {pid}: {e}"))
        .display()
        .to_string()
}

#[tokio::test]
async fn an_exec_prints_the_containers_hostname() {
    let container = Container::start().await;
    let (out, err, state) = container
        .run("hostname", &container.exec(&["hostname"]))
        .await;
    assert_eq!(
        (out.as_str(), err.as_str()),
        (format!("{HOSTNAME}\n").as_str(), "")
    );
    assert_eq!(state.exit_code, Some(0));
}

#[tokio::test]
async fn an_exec_has_a_pid_of_the_containers_namespace() {
    let container = Container::start().await;
    let dir = container.exec_dir("pid");
    let shim = spawn(&dir.path, &container.exec(&["sh", "-c", "echo $$"])).await;
    let mut stream = shim.attach(false, true, true).await.expect("attach");
    let host_pid = shim.start().await.expect("start").pid;
    let out = joined(&frames(&read_to_end(&mut stream).await), 1);
    let inside: i32 = out.trim().parse().unwrap_or_else(|_| panic!("{out:?}"));
    // The container's init is 1 there; the exec comes soon after.
    assert!((2..10).contains(&inside), "pid {inside} in the container");
    assert_ne!(inside, host_pid);
    assert_eq!(exited(&shim).await.exit_code, Some(0));
}

#[tokio::test]
async fn an_exec_joins_every_namespace_of_the_container() {
    let container = Container::start().await;
    let dir = container.exec_dir("namespaces");
    let shim = spawn(&dir.path, &container.exec(&["sleep", "300"])).await;
    let exec_pid = shim.start().await.expect("start").pid;
    for name in ["mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        assert_eq!(
            namespace(exec_pid, name),
            namespace(container.pid, name),
            "{name} namespace"
        );
    }
    // And they are not ours: the container has its own.
    for name in ["mnt", "pid", "net", "uts", "ipc"] {
        assert_ne!(
            namespace(exec_pid, name),
            namespace(std::process::id() as i32, name)
        );
    }
    shim.kill(libc::SIGKILL).await.expect("kill");
    assert_eq!(exited(&shim).await.exit_code, Some(137));
}

#[tokio::test]
async fn an_exec_sees_the_containers_root_and_not_the_hosts() {
    let container = Container::start().await;
    let (out, _, state) = container.run("ls", &container.exec(&["ls", "/"])).await;
    let entries: Vec<&str> = out.split_whitespace().collect();
    assert!(entries.contains(&MARKER), "{entries:?}");
    // The host has /usr; this rootfs does not.
    assert!(!entries.contains(&"usr"), "{entries:?}");
    assert_eq!(state.exit_code, Some(0));
}

#[tokio::test]
async fn an_execs_exit_code_is_recorded() {
    let container = Container::start().await;
    let dir = container.exec_dir("exit");
    let shim = spawn(&dir.path, &container.exec(&["sh", "-c", "exit 3"])).await;
    shim.start().await.expect("start");
    let state = exited(&shim).await;
    assert_eq!(state.exit_code, Some(3));
    assert_eq!(
        ShimState::read(&dir.path.join("state.json")).unwrap(),
        state
    );
    assert!(!dir.path.join("shim.sock").exists());
    // The container runs on.
    assert_eq!(
        container.shim.state().await.expect("state").status,
        Status::Running
    );
}

#[tokio::test]
async fn attached_stdin_reaches_an_execs_cat() {
    let container = Container::start().await;
    let mut launch = container.exec(&["cat"]);
    launch.open_stdin = true;
    launch.stdin_once = true;
    let dir = container.exec_dir("cat");
    let shim = spawn(&dir.path, &launch).await;
    let mut stream = shim.attach(true, true, true).await.expect("attach");
    shim.start().await.expect("start");
    stream.write_all(b"hello exec\n").await.unwrap();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, b"hello exec\n").await;
    stream.shutdown().await.unwrap();
    got.extend(read_to_end(&mut stream).await);
    assert_eq!(joined(&frames(&got), 1), "hello exec\n");
    assert_eq!(exited(&shim).await.exit_code, Some(0));
}

#[tokio::test]
async fn a_tty_exec_gets_a_terminal_of_the_containers_devpts() {
    use std::os::unix::fs::MetadataExt;
    let container = Container::start().await;
    let mut launch = container.exec(&["sh", "-c", "tty; read line; echo got $line"]);
    launch.tty = true;
    launch.open_stdin = true;
    let dir = container.exec_dir("tty");
    let shim = spawn(&dir.path, &launch).await;
    let mut stream = shim.attach(true, true, true).await.expect("attach");
    let pid = shim.start().await.expect("start").pid;
    // Raw bytes, no multiplex header; the terminal turns \n into \r\n.
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, b"\r\n").await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let n = text
        .strip_prefix("/dev/pts/")
        .and_then(|rest| rest.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("{text:?}"));
    n.parse::<u32>().unwrap_or_else(|_| panic!("{text:?}"));
    // The terminal is of the container's devpts instance, not the host's.
    let terminal = std::fs::metadata(format!("/proc/{pid}/fd/0")).expect("exec stdin");
    let theirs = std::fs::metadata(format!("/proc/{}/root/dev/pts", container.pid)).unwrap();
    let ours = std::fs::metadata("/dev/pts").unwrap();
    assert_eq!(terminal.dev(), theirs.dev());
    assert_ne!(terminal.dev(), ours.dev());
    stream.write_all(b"go\n").await.unwrap();
    got.extend(read_to_end(&mut stream).await);
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.ends_with("got go\r\n"), "{text:?}");
    assert_eq!(exited(&shim).await.exit_code, Some(0));
}

#[tokio::test]
async fn a_missing_command_fails_start_in_dockers_words() {
    let container = Container::start().await;
    let dir = container.exec_dir("missing");
    let shim = spawn(&dir.path, &container.exec(&["nope"])).await;
    match shim.start().await {
        Err(ShimError::Refused(message)) => assert_eq!(
            message,
            "exec: \"nope\": executable file not found in $PATH"
        ),
        other => panic!("{other:?}"),
    }
    let state = ShimState::read(&dir.path.join("state.json")).unwrap();
    assert_eq!((state.status, state.exit_code), (Status::Exited, Some(127)));
}

#[tokio::test]
async fn a_missing_working_directory_fails_start_in_dockers_words() {
    let container = Container::start().await;
    let mut launch = container.exec(&["pwd"]);
    launch.spec = with_cwd(launch.spec, "/nope");
    let dir = container.exec_dir("cwd");
    let shim = spawn(&dir.path, &launch).await;
    match shim.start().await {
        Err(ShimError::Refused(message)) => assert_eq!(
            message,
            "chdir to cwd (\"/nope\") set in config.json failed: no such file or directory"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_exec_runs_as_the_given_user_in_the_given_directory() {
    let container = Container::start().await;
    let mut launch = container.exec(&["sh", "-c", "id -u; id -g; pwd"]);
    launch.spec = with_cwd(with_user(launch.spec, 1000, 1000), "/home/user");
    let (out, err, state) = container.run("user", &launch).await;
    assert_eq!(out, "1000\n1000\n/home/user\n", "stderr {err:?}");
    assert_eq!(state.exit_code, Some(0));
}

#[tokio::test]
async fn exec_output_stays_out_of_the_containers_log() {
    let container = Container::start_with(&["sh", "-c", "echo from-init; exec sleep 300"]).await;
    let (out, _, _) = container
        .run("echo", &container.exec(&["echo", "from-exec"]))
        .await;
    assert_eq!(out, "from-exec\n");
    let deadline = Instant::now() + DEADLINE;
    while !container.log().contains("from-init") {
        assert!(Instant::now() < deadline, "{:?}", container.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !container.log().contains("from-exec"),
        "{:?}",
        container.log()
    );
    // The exec's bundle has no log of its own either.
    let files: Vec<_> = std::fs::read_dir(container.path().join("exec/echo"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(files.iter().all(|f| !f.ends_with(".log")), "{files:?}");
}

#[tokio::test]
async fn an_exec_ends_when_the_container_does() {
    let container = Container::start().await;
    let dir = container.exec_dir("orphan");
    let shim = spawn(&dir.path, &container.exec(&["sleep", "300"])).await;
    let mut stream = shim.attach(false, true, true).await.expect("attach");
    shim.start().await.expect("start");
    let started = Instant::now();
    container
        .shim
        .kill(libc::SIGKILL)
        .await
        .expect("kill the init");
    // The kernel kills everything in the PID namespace; the exec shim records it and leaves.
    let state = exited(&shim).await;
    assert_eq!(state.exit_code, Some(137));
    assert!(started.elapsed() < Duration::from_secs(5));
    read_to_end(&mut stream).await;
    assert_eq!(exited(&container.shim).await.exit_code, Some(137));
    let deadline = Instant::now() + DEADLINE;
    while dir.path.join("shim.sock").exists() {
        assert!(Instant::now() < deadline, "the exec shim is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_exec_into_a_container_that_is_gone_fails_start() {
    let container = Container::start().await;
    container.shim.kill(libc::SIGKILL).await.expect("kill");
    exited(&container.shim).await;
    let dir = container.exec_dir("late");
    let shim = spawn(&dir.path, &container.exec(&["true"])).await;
    match shim.start().await {
        Err(ShimError::Refused(message)) => assert!(message.contains("not running"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// A test cgroup; dropping it kills what is left in it and removes it.
struct Group(Box<dyn wharf_runtime::cgroups::Cgroup>);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.0.kill_all(nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + DEADLINE;
        while let Err(e) = self.0.destroy() {
            if Instant::now() > deadline {
                eprintln!("cleanup of {} failed: {e}", self.0.path());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[tokio::test]
async fn an_exec_joins_the_containers_cgroups() {
    use wharf_runtime::cgroups::{self, Layout};
    let layout = Layout::detect().expect("detect cgroup layout");
    let path = format!("wharf/wharf-test-{}-exec", std::process::id());
    let group = Group(cgroups::create(&layout, &path).expect("create test cgroup"));
    let dirs = group.0.dirs();
    let container = Container::start_in(&["sleep", "300"], dirs.clone()).await;
    let mut launch = container.exec(&["sleep", "300"]);
    launch.cgroup_dirs = dirs;
    let dir = container.exec_dir("cgroup");
    let shim = spawn(&dir.path, &launch).await;
    let exec_pid = shim.start().await.expect("start").pid;
    let membership = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(membership(exec_pid), membership(container.pid));
    assert!(
        membership(exec_pid).contains(&path),
        "{}",
        membership(exec_pid)
    );
    let mut pids: Vec<i32> = group.0.pids().unwrap().iter().map(|p| p.as_raw()).collect();
    pids.sort();
    let mut expected = vec![container.pid, exec_pid];
    expected.sort();
    assert_eq!(pids, expected);
    shim.kill(libc::SIGKILL).await.expect("kill");
    assert_eq!(exited(&shim).await.exit_code, Some(137));
}

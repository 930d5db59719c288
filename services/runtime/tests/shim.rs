//! The shim against the real kernel (we run as root): each test starts a busybox container
//! through `Shim::start` and checks its json-file log and state file. A guard kills and reaps
//! the init by PID if a test did not wait for it; the rootfs and state directory are temp dirs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use wharf_runtime::container::default_spec;
use wharf_runtime::logs::{LogEntry, LogReader, ReadOptions, Stream};
use wharf_runtime::shim::{Shim, ShimConfig, ShimState, Status};

const APPLETS: [&str; 5] = ["sh", "echo", "sleep", "head", "tr"];

/// Copying busybox while another test forks would leave a writable descriptor of it in that
/// child until its exec (ETXTBSY here): copies and launches take turns.
static FORK_OR_COPY: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn rootfs(dir: &Path) -> PathBuf {
    let _copying = FORK_OR_COPY.write().unwrap_or_else(|e| e.into_inner());
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    root
}

fn spec(script: &str) -> Spec {
    default_spec("wharf-test", vec!["sh".into(), "-c".into(), script.into()])
}

/// A started shim with its files; dropping it kills (by PID) and reaps the init if the test
/// did not wait for it.
struct Started {
    shim: Shim,
    waited: bool,
    dir: tempfile::TempDir,
}

impl Started {
    fn new(script: &str) -> Started {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = rootfs(dir.path());
        let config = ShimConfig {
            id: "shim-test".into(),
            bundle_dir: dir.path().to_path_buf(),
            spec: spec(script),
            rootfs,
            log_path: dir.path().join("container-json.log"),
            log_max_size: None,
            log_max_files: 1,
            state_path: dir.path().join("state.json"),
            cgroup: None,
        };
        let _forking = FORK_OR_COPY.read().unwrap_or_else(|e| e.into_inner());
        let shim = Shim::start(config).expect("start");
        Started {
            shim,
            waited: false,
            dir,
        }
    }

    fn wait(&mut self) -> ShimState {
        self.waited = true;
        self.shim.wait().expect("wait")
    }

    fn state(&self) -> ShimState {
        ShimState::read(&self.dir.path().join("state.json")).expect("state file")
    }

    fn log(&self) -> Vec<LogEntry> {
        LogReader::new(self.dir.path().join("container-json.log"))
            .read(&ReadOptions {
                stdout: true,
                stderr: true,
                ..ReadOptions::default()
            })
            .expect("read log")
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.waited {
            let pid: Pid = self.shim.pid();
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

fn lines(entries: &[LogEntry], stream: Stream) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| String::from_utf8_lossy(&e.log).into_owned())
        .collect()
}

#[test]
fn stdout_and_stderr_are_logged_apart_and_in_order() {
    let mut c = Started::new("echo out1; echo err1 >&2; sleep 0.1; echo out2; echo err2 >&2");
    let state = c.wait();
    assert_eq!(state.exit_code, Some(0));
    let log = c.log();
    assert_eq!(lines(&log, Stream::Stdout), ["out1\n", "out2\n"]);
    assert_eq!(lines(&log, Stream::Stderr), ["err1\n", "err2\n"]);
    // The sleep separates the first pair from the second in the file too.
    let first_two: Vec<&[u8]> = log[..2].iter().map(|e| e.log.as_slice()).collect();
    assert!(first_two.contains(&&b"out1\n"[..]) && first_two.contains(&&b"err1\n"[..]));
}

#[test]
fn exit_7_is_recorded_as_exited_with_code_7() {
    let mut c = Started::new("exit 7");
    let state = c.wait();
    assert_eq!((state.status, state.exit_code), (Status::Exited, Some(7)));
    let read = c.state();
    assert_eq!(read, state);
    assert_eq!(read.oom_killed, None, "no cgroup, no OOM verdict");
    assert!(read.finished_at.is_some());
}

#[test]
fn sigkill_through_kill_records_137() {
    let mut c = Started::new("sleep 30");
    c.shim.kill(Signal::SIGKILL).expect("kill");
    let state = c.wait();
    assert_eq!((state.status, state.exit_code), (Status::Exited, Some(137)));
    assert_eq!(c.state().exit_code, Some(137));
    // The PID is reaped: the shim refuses to signal it again.
    assert!(c.shim.kill(Signal::SIGTERM).is_err());
}

#[test]
fn state_reads_running_while_the_container_sleeps_then_exited() {
    let mut c = Started::new("sleep 0.5");
    let running = c.state();
    assert_eq!(running.status, Status::Running);
    assert_eq!(running.pid, c.shim.pid().as_raw());
    assert!(running.exit_code.is_none() && running.finished_at.is_none());
    // The start time is RFC 3339 with nanoseconds, in UTC.
    chrono::DateTime::parse_from_rfc3339(&running.started_at).expect("started_at");
    let started = Instant::now();
    c.wait();
    assert!(started.elapsed() > Duration::from_millis(200));
    let exited = c.state();
    assert_eq!((exited.status, exited.exit_code), (Status::Exited, Some(0)));
    assert_eq!(
        (exited.pid, &exited.started_at),
        (running.pid, &running.started_at)
    );
    chrono::DateTime::parse_from_rfc3339(exited.finished_at.as_deref().unwrap()).unwrap();
}

#[test]
fn output_without_newline_is_logged_whole_in_partial_entries() {
    // 100 KB of 'x' and no newline: 16 KiB partial entries, then the rest when the pipe ends.
    let mut c = Started::new("head -c 102400 /dev/zero | tr '\\0' x");
    let state = c.wait();
    assert_eq!(state.exit_code, Some(0));
    let log = c.log();
    let out: Vec<u8> = log.iter().flat_map(|e| e.log.clone()).collect();
    // As dockerd, the last piece ends the line: it gets the `\n` every whole entry has.
    assert_eq!(out.len(), 102400 + 1, "{} entries", log.len());
    assert!(out[..102400].iter().all(|&b| b == b'x') && out[102400] == b'\n');
    assert!(log.len() > 1 && log.iter().all(|e| e.stream == Stream::Stdout));
    let (last, pieces) = log.split_last().unwrap();
    assert!(pieces.iter().all(LogEntry::is_partial) && !last.is_partial());
}

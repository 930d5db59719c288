//! The `wharf-shim` process against the real kernel (we run as root): each test writes a
//! bundle with a busybox rootfs, starts the shim through `ShimClient::spawn` and talks to it
//! over its socket as the runtime does. A guard kills the container's init (by the PID in the
//! state file) if a test ends with it still running; its shim then exits on its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use wharf_runtime::container::default_spec;
use wharf_runtime::logs::{LogEntry, LogReader, ReadOptions, Stream};
use wharf_runtime::shim::{ShimClient, ShimError, ShimLaunch, ShimState, Status};

const SHIM: &str = env!("CARGO_BIN_EXE_wharf-shim");
const APPLETS: [&str; 8] = ["sh", "echo", "sleep", "cat", "tty", "stty", "head", "tr"];
const DEADLINE: Duration = Duration::from_secs(20);

/// Copying busybox while another test forks would leave a writable descriptor of it in that
/// child until its exec (ETXTBSY here): copies and spawns take turns.
static FORK_OR_COPY: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A bundle directory with a rootfs; dropping it kills a container left running.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::tempdir().expect("tempdir");
        let _copying = FORK_OR_COPY.write().unwrap_or_else(|e| e.into_inner());
        let root = dir.path().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        Bundle { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.path().join("container-json.log")
    }

    fn launch(&self, args: &[&str]) -> ShimLaunch {
        ShimLaunch {
            id: "shim-process-test".into(),
            spec: default_spec("wharf-test", args.iter().map(|a| a.to_string()).collect()),
            rootfs: self.path().join("rootfs"),
            log_path: self.log_path(),
            log_max_size: None,
            log_max_files: 1,
            tty: false,
            open_stdin: false,
            stdin_once: false,
            console_size: None,
            cgroup_dirs: Vec::new(),
            no_log: false,
            exec: None,
            seccomp: None,
        }
    }

    fn script(&self, script: &str) -> ShimLaunch {
        self.launch(&["sh", "-c", script])
    }

    // Held across the spawn's fork on purpose; each test has its own runtime thread.
    #[allow(clippy::await_holding_lock)]
    async fn spawn(&self, launch: &ShimLaunch) -> ShimClient {
        let _forking = FORK_OR_COPY.read().unwrap_or_else(|e| e.into_inner());
        ShimClient::spawn(Path::new(SHIM), self.path(), launch)
            .await
            .expect("spawn shim")
    }

    fn state_file(&self) -> ShimState {
        ShimState::read(&self.path().join("state.json")).expect("state file")
    }

    fn socket_exists(&self) -> bool {
        self.path().join("shim.sock").exists()
    }

    fn log(&self) -> Vec<LogEntry> {
        LogReader::new(self.log_path())
            .read(&ReadOptions {
                stdout: true,
                stderr: true,
                ..ReadOptions::default()
            })
            .expect("read log")
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Ok(state) = ShimState::read(&self.path().join("state.json")) {
            if state.status == Status::Running && state.pid > 0 {
                // SAFETY: integer-only kill of the test's own container init.
                unsafe { libc::kill(state.pid, libc::SIGKILL) };
            }
        }
    }
}

/// The final state: from `wait`, or from the state file once the shim is gone (an attach that
/// read to the end may outlast the shim).
async fn exited(shim: &ShimClient) -> ShimState {
    match shim.wait().await {
        Ok(state) => state,
        Err(ShimError::Gone { .. }) => shim.read_state_file().expect("state file"),
        Err(e) => panic!("wait: {e}"),
    }
}

fn lines(entries: &[LogEntry], stream: Stream) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| String::from_utf8_lossy(&e.log).into_owned())
        .collect()
}

/// Everything the shim sends until it closes the attach connection.
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
            .unwrap_or_else(|_| {
                panic!(
                    "no {:?} in {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(got)
                )
            })
            .expect("read");
        assert!(
            n > 0,
            "stream ended before {:?}: {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// Splits a multiplexed stream into (stream byte, payload) frames, checking each header.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 8, "truncated header {bytes:?}");
        let (header, rest) = bytes.split_at(8);
        assert!(matches!(header[0], 1 | 2), "stream byte {header:?}");
        assert_eq!(&header[1..4], [0, 0, 0], "header {header:?}");
        let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        assert!(rest.len() >= len, "truncated frame");
        out.push((header[0], rest[..len].to_vec()));
        bytes = &rest[len..];
    }
    out
}

fn joined(frames: &[(u8, Vec<u8>)], stream: u8) -> Vec<u8> {
    frames
        .iter()
        .filter(|(s, _)| *s == stream)
        .flat_map(|(_, p)| p.clone())
        .collect()
}

/// The shim's PID: the parent of the container's init.
fn shim_pid(init: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).expect("init status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("PPid")
}

fn proc_field_kib(file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {file}"))
}

#[tokio::test]
async fn exit_7_is_the_recorded_exit_code_and_the_shim_goes_away() {
    let bundle = Bundle::new();
    let shim = bundle.spawn(&bundle.script("exit 7")).await;
    let created = bundle.state_file();
    assert_eq!((created.status, created.pid), (Status::Created, 0));
    assert!(bundle.socket_exists());

    let running = shim.start().await.expect("start");
    assert_eq!(running.status, Status::Running);
    assert!(running.pid > 0);
    chrono::DateTime::parse_from_rfc3339(&running.started_at).expect("started_at");

    // The shim may be gone already (the script exits at once): then its state file answers.
    let exited = exited(&shim).await;
    assert_eq!((exited.status, exited.exit_code), (Status::Exited, Some(7)));
    assert_eq!(
        (exited.pid, &exited.started_at),
        (running.pid, &running.started_at)
    );
    chrono::DateTime::parse_from_rfc3339(exited.finished_at.as_deref().unwrap()).unwrap();
    assert_eq!(bundle.state_file(), exited);
    // The socket goes before the answer to wait: a later client learns the shim is gone.
    assert!(!bundle.socket_exists());
    assert!(matches!(shim.state().await, Err(ShimError::Gone { .. })));
    assert_eq!(shim.read_state_file().unwrap(), exited);
}

#[tokio::test]
async fn stdout_and_stderr_stay_apart_in_the_log_and_an_early_attach() {
    let bundle = Bundle::new();
    let shim = bundle
        .spawn(&bundle.script(
            "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.2; echo err2 >&2",
        ))
        .await;
    let mut both = shim.attach(false, true, true).await.expect("attach");
    let mut only_err = shim.attach(false, false, true).await.expect("attach");
    let waiting = {
        let shim = shim.clone();
        tokio::spawn(async move { shim.wait().await })
    };
    shim.start().await.expect("start");

    let bytes = read_to_end(&mut both).await;
    let mut expected = Vec::new();
    for (stream, text) in [(1u8, "out1\n"), (2, "err1\n"), (1, "out2\n"), (2, "err2\n")] {
        expected.extend_from_slice(&[stream, 0, 0, 0, 0, 0, 0, text.len() as u8]);
        expected.extend_from_slice(text.as_bytes());
    }
    assert_eq!(bytes, expected, "{:?}", String::from_utf8_lossy(&bytes));
    let err = frames(&read_to_end(&mut only_err).await);
    assert!(err.iter().all(|(s, _)| *s == 2));
    assert_eq!(joined(&err, 2), b"err1\nerr2\n");

    // The wait asked before start is answered (with the state the file has).
    let state = waiting.await.unwrap().expect("wait");
    assert_eq!((state.status, state.exit_code), (Status::Exited, Some(0)));
    assert_eq!(bundle.state_file(), state);
    let log = bundle.log();
    assert_eq!(lines(&log, Stream::Stdout), ["out1\n", "out2\n"]);
    assert_eq!(lines(&log, Stream::Stderr), ["err1\n", "err2\n"]);
}

#[tokio::test]
async fn attached_stdin_reaches_cat_and_stdin_once_ends_it() {
    let bundle = Bundle::new();
    let mut launch = bundle.launch(&["cat"]);
    launch.open_stdin = true;
    launch.stdin_once = true;
    let shim = bundle.spawn(&launch).await;
    let mut stream = shim.attach(true, true, true).await.expect("attach");
    // Written before start: kept for the container.
    stream.write_all(b"before start\n").await.unwrap();
    shim.start().await.expect("start");

    let mut got = Vec::new();
    read_until(&mut stream, &mut got, b"before start\n").await;
    stream.write_all(b"hello\n").await.unwrap();
    read_until(&mut stream, &mut got, b"hello\n").await;
    // Ending our stdin ends the container's: cat exits 0.
    stream.shutdown().await.unwrap();
    got.extend(read_to_end(&mut stream).await);
    let frames = frames(&got);
    assert_eq!(joined(&frames, 1), b"before start\nhello\n");
    assert_eq!(joined(&frames, 2), b"");

    let state = exited(&shim).await;
    assert_eq!((state.status, state.exit_code), (Status::Exited, Some(0)));
    assert_eq!(
        lines(&bundle.log(), Stream::Stdout),
        ["before start\n", "hello\n"]
    );
}

#[tokio::test]
async fn a_tty_container_gets_a_terminal_raw_output_and_resizes() {
    let bundle = Bundle::new();
    let mut launch = bundle.script("tty; stty size; read line; echo got $line; stty size");
    launch.tty = true;
    launch.open_stdin = true;
    launch.console_size = Some((24, 80));
    let shim = bundle.spawn(&launch).await;
    let mut stream = shim.attach(true, true, true).await.expect("attach");
    shim.start().await.expect("start");

    let mut got = Vec::new();
    read_until(&mut stream, &mut got, b"24 80\r\n").await;
    // Raw bytes, no multiplex header; the terminal turns \n into \r\n.
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    assert!(text.contains("\r\n24 80\r\n"), "{text:?}");

    shim.resize(40, 100).await.expect("resize");
    stream.write_all(b"go\n").await.unwrap();
    got.extend(read_to_end(&mut stream).await);
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.ends_with("got go\r\n40 100\r\n"), "{text:?}");

    assert_eq!(exited(&shim).await.exit_code, Some(0));
    // TTY output is logged as stdout.
    let log = bundle.log();
    assert!(log.iter().all(|e| e.stream == Stream::Stdout));
    let logged: Vec<u8> = log.iter().flat_map(|e| e.log.clone()).collect();
    assert!(String::from_utf8_lossy(&logged).contains("40 100\r\n"));
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_and_never_blocks_the_container() {
    const TOTAL: usize = 6_000_000;
    let bundle = Bundle::new();
    let shim = bundle
        .spawn(&bundle.script(&format!("head -c {TOTAL} /dev/zero | tr '\\0' x")))
        .await;
    let mut idle = shim.attach(false, true, true).await.expect("attach");
    let waiting = {
        let shim = shim.clone();
        tokio::spawn(async move { shim.wait().await })
    };
    shim.start().await.expect("start");
    let state = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the container is not held up by the idle client")
        .unwrap()
        .expect("wait");
    assert_eq!(state.exit_code, Some(0));
    // The log has it all; the idle client got at most its buffer's worth, then was dropped.
    let logged: usize = bundle.log().iter().map(|e| e.log.len()).sum();
    assert_eq!(logged, TOTAL + 1);
    let got = read_to_end(&mut idle).await;
    assert!(got.len() < TOTAL, "{} bytes", got.len());
}

#[tokio::test]
async fn sigkill_gives_137_and_no_signal_after_the_reap() {
    let bundle = Bundle::new();
    let shim = bundle.spawn(&bundle.launch(&["sleep", "30"])).await;
    // Not started: nothing to signal.
    assert!(matches!(
        shim.kill(libc::SIGKILL).await,
        Err(ShimError::Refused(_))
    ));
    shim.start().await.expect("start");
    let started = Instant::now();
    shim.kill(libc::SIGKILL).await.expect("kill");
    let state = exited(&shim).await;
    assert_eq!((state.status, state.exit_code), (Status::Exited, Some(137)));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        shim.kill(libc::SIGKILL).await,
        Err(ShimError::Gone { .. })
    ));
}

#[tokio::test]
async fn the_shim_outlives_its_starter_and_is_found_again() {
    let bundle = Bundle::new();
    let launch = bundle.launch(&["sleep", "300"]);
    // Started from a runtime that then goes away entirely, as a restarted service would.
    let running = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let shim = bundle.spawn(&launch).await;
                shim.start().await.expect("start")
            })
        })
        .join()
        .unwrap()
    });
    let shim_pid = shim_pid(running.pid);
    // SAFETY: integer-only getsid.
    assert_eq!(unsafe { libc::getsid(shim_pid) }, shim_pid, "own session");

    let shim = ShimClient::open(bundle.path());
    assert_eq!(shim.state().await.expect("state"), running);
    let waiting = {
        let shim = shim.clone();
        tokio::spawn(async move { shim.wait().await })
    };
    shim.kill(libc::SIGKILL).await.expect("kill");
    let state = waiting.await.unwrap().expect("wait");
    assert_eq!((state.status, state.exit_code), (Status::Exited, Some(137)));
    assert_eq!(bundle.state_file(), state);
    assert!(!bundle.socket_exists());
    // The shim itself exits.
    let deadline = Instant::now() + DEADLINE;
    while Path::new(&format!("/proc/{shim_pid}/exe")).exists()
        && std::fs::read_to_string(format!("/proc/{shim_pid}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "shim {shim_pid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_missing_executable_fails_start_in_dockers_words() {
    let bundle = Bundle::new();
    let shim = bundle.spawn(&bundle.launch(&["nosuch"])).await;
    let waiting = {
        let shim = shim.clone();
        tokio::spawn(async move { shim.wait().await })
    };
    // Let the wait arrive first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    match shim.start().await {
        Err(ShimError::Refused(message)) => assert_eq!(
            message,
            "exec: \"nosuch\": executable file not found in $PATH"
        ),
        other => panic!("{other:?}"),
    }
    let state = bundle.state_file();
    assert_eq!((state.status, state.exit_code), (Status::Exited, Some(127)));
    assert_eq!(waiting.await.unwrap().expect("wait"), state);
    assert!(!bundle.socket_exists());
}

#[tokio::test]
#[allow(clippy::await_holding_lock)]
async fn a_shim_that_cannot_open_its_log_says_why() {
    let bundle = Bundle::new();
    let mut launch = bundle.script("true");
    launch.log_path = bundle.path().join("no/such/dir/log.json");
    let _forking = FORK_OR_COPY.read().unwrap_or_else(|e| e.into_inner());
    match ShimClient::spawn(Path::new(SHIM), bundle.path(), &launch).await {
        Err(ShimError::Refused(message)) => assert!(message.contains("no/such/dir"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// Not a timed assertion: prints the memory an idle shim takes (see the test output with
/// `--nocapture`), and checks only that it is far below what a threaded shim would take.
#[tokio::test]
async fn an_idle_shim_stays_small() {
    let bundle = Bundle::new();
    let shim = bundle.spawn(&bundle.launch(&["sleep", "300"])).await;
    let running = shim.start().await.expect("start");
    // An attach and a few requests first, so their buffers have come and gone.
    let _attached = shim.attach(false, true, true).await.expect("attach");
    for _ in 0..10 {
        shim.state().await.expect("state");
    }
    let pid = shim_pid(running.pid);
    let rss = proc_field_kib(&format!("/proc/{pid}/status"), "VmRSS:");
    let private_dirty = proc_field_kib(&format!("/proc/{pid}/smaps_rollup"), "Private_Dirty:");
    let private_clean = proc_field_kib(&format!("/proc/{pid}/smaps_rollup"), "Private_Clean:");
    println!(
        "idle wharf-shim {pid}: VmRSS {rss} KiB, Private_Dirty {private_dirty} KiB, \
         Private_Clean {private_clean} KiB"
    );
    assert!(
        private_dirty < 8 * 1024,
        "{private_dirty} KiB private dirty"
    );
    shim.kill(libc::SIGKILL).await.expect("kill");
    assert_eq!(exited(&shim).await.exit_code, Some(137));
}

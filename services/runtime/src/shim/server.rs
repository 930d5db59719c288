//! The shim process (`wharf-shim <bundle>`): one per container, detached from whoever started
//! it. One thread and one `poll` loop over the socket, its clients, the container's output and
//! the init's pidfd, so a shim costs little memory however long its container runs.
//!
//! The init is the shim's child and only this loop reaps it: a signal sent by its PID before
//! the reap cannot reach another process, and none is sent after.
//!
//! An exec shim ([`ShimLaunch::exec`]) is this same loop around a process that joined a
//! running container; it keeps no log. Its process is its child too, in the container's PID
//! namespace: when the container's init dies the kernel kills it, and it is reaped as usual.

use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{self, Pid};

use crate::container::{self, LaunchOptions, Stdio};
use crate::logs::{format_go_rfc3339_nano, multiplex_header, LogWriter, Stream};

use super::conn::{Conn, Incoming, Role};
use super::exit::exit_code;
use super::protocol::{ShimLaunch, ShimReply, ShimRequest, SOCKET_FILE, STATE_FILE};
use super::state::{ShimState, Status};

/// Stdin the clients may get ahead of the container by; their reading pauses beyond it.
const MAX_PENDING_STDIN: usize = 1024 * 1024;
/// How long clients get for the last of the output once the container has exited.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Docker's zero time, the start time of a container not started yet.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Runs the shim of the bundle at `bundle` and returns the process's exit code: 0 once the
/// container has exited and everyone was told, 1 if the shim could not be set up (then its
/// stdout said `error <message>`).
pub fn serve(bundle: &Path) -> i32 {
    // Descriptors the starter let us inherit are not ours to keep open.
    // SAFETY: closes descriptors above stdio; nothing of ours is open yet.
    unsafe { libc::close_range(3, u32::MAX, 0) };
    for signal in [
        Signal::SIGPIPE,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        // SAFETY: ignoring installs no handler. The shim outlives whoever started it.
        let _ = unsafe { signal::signal(signal, SigHandler::SigIgn) };
    }
    // Already a session leader when started by ShimClient; an error then is expected.
    let _ = unistd::setsid();
    // The launch arrives on stdin; an empty stdin means the start was called off.
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes) {
        announce(&format!("error read the launch from stdin: {e}\n"));
        return 1;
    }
    if bytes.is_empty() {
        return 0;
    }
    let mut server = match Server::prepare(bundle, bytes) {
        Ok(server) => server,
        Err(message) => {
            announce(&format!("error {}\n", message.replace('\n', " ")));
            detach_stdio();
            return 1;
        }
    };
    announce("ready\n");
    detach_stdio();
    // Setup's allocations (the spec, above all) are done with.
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    server.run();
    0
}

fn announce(line: &str) {
    let mut bytes = line.as_bytes();
    while !bytes.is_empty() {
        match unistd::write(std::io::stdout(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null: the starter sees EOF after our line and
/// nothing of it stays open here.
fn detach_stdio() {
    if let Ok(null) = fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
        for target in 0..3 {
            // SAFETY: dup2 onto a standard descriptor number.
            unsafe { libc::dup2(null.as_raw_fd(), target) };
        }
    }
}

/// The container once started: its PID and our ends of its stdio.
#[derive(Debug)]
struct Container {
    pid: Pid,
    /// Readable once the init has exited; `None` without pidfds (then we poll) or once reaped.
    pidfd: Option<OwnedFd>,
    reaped: bool,
    /// stdout's read end, or the TTY's master.
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// stdin's write end, or a second descriptor of the TTY's master.
    stdin: Option<OwnedFd>,
}

#[derive(Debug)]
struct Server {
    launch: ShimLaunch,
    state_path: PathBuf,
    /// The bundle directory, open: the socket is reached through it.
    dir: OwnedFd,
    listener: Option<UnixListener>,
    log: Option<LogWriter>,
    state: ShimState,
    container: Option<Container>,
    conns: Vec<Conn>,
    /// Input for the container's stdin (also gathered before start).
    stdin: Vec<u8>,
    /// Close stdin once `stdin` is written.
    close_stdin: bool,
    /// Terminal size to apply at start.
    winsize: Option<(u16, u16)>,
    /// The exit is recorded; from now on only the clients are served their last bytes.
    drain_until: Option<Instant>,
}

/// Which descriptor a `pollfd` entry is.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Listener,
    Pidfd,
    Output(Stream),
    Stdin,
    Conn(usize),
}

impl Server {
    fn prepare(bundle: &Path, bytes: Vec<u8>) -> Result<Server, String> {
        let launch: ShimLaunch =
            serde_json::from_slice(&bytes).map_err(|e| format!("parse the launch: {e}"))?;
        drop(bytes);
        let dir = fcntl::open(
            bundle,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("open {}: {e}", bundle.display()))?;
        // Docker logs no exec output.
        let log = match launch.no_log || launch.exec.is_some() {
            true => None,
            false => Some(
                LogWriter::create(&launch.log_path, launch.log_max_size, launch.log_max_files)
                    .map_err(|e| e.to_string())?,
            ),
        };
        let state = ShimState {
            pid: 0,
            status: Status::Created,
            started_at: ZERO_TIME.to_string(),
            exit_code: None,
            finished_at: None,
            oom_killed: None,
        };
        let state_path = bundle.join(STATE_FILE);
        state.write(&state_path).map_err(|e| e.to_string())?;
        // A socket left by an earlier shim of this bundle would make bind fail.
        match unistd::unlinkat(&dir, SOCKET_FILE, unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(format!("remove stale {SOCKET_FILE}: {e}")),
        }
        let socket = format!("/proc/self/fd/{}/{SOCKET_FILE}", dir.as_raw_fd());
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("bind {}/{SOCKET_FILE}: {e}", bundle.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("socket: {e}"))?;
        let winsize = launch.console_size;
        Ok(Server {
            launch,
            state_path,
            dir,
            listener: Some(listener),
            log,
            state,
            container: None,
            conns: Vec::new(),
            stdin: Vec::new(),
            close_stdin: false,
            winsize,
            drain_until: None,
        })
    }

    fn run(&mut self) {
        let mut buf = vec![0u8; 32 * 1024];
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        loop {
            if let Some(until) = self.drain_until {
                if self.conns.is_empty() || Instant::now() >= until {
                    break;
                }
            }
            self.poll_set(&mut fds, &mut slots);
            let timeout = self.timeout();
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd entries.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if rc < 0 {
                if Errno::last() == Errno::EINTR {
                    continue;
                }
                // Nothing sensible left to do; the state file says what we know.
                break;
            }
            for (pollfd, slot) in fds.iter().zip(&slots) {
                if pollfd.revents == 0 {
                    continue;
                }
                self.ready(*slot, pollfd.revents, &mut buf);
            }
            if self.container.as_ref().is_some_and(|c| c.pidfd.is_none()) {
                self.reap();
            }
            self.write_stdin();
            // Before the flush: a client that finish() turns to closing and that has nothing
            // left to get is let go now, not once poll next wakes up (the drain's end).
            self.finish_if_done();
            for conn in &mut self.conns {
                if !conn.dead {
                    conn.flush();
                }
            }
            self.conns.retain(|c| !c.dead);
        }
        self.conns.clear();
        self.close_listener();
    }

    fn timeout(&self) -> libc::c_int {
        if let Some(until) = self.drain_until {
            let left = until.saturating_duration_since(Instant::now());
            return left.as_millis().min(i32::MAX as u128) as libc::c_int + 1;
        }
        match &self.container {
            // No pidfd: look for the init's exit now and then.
            Some(c) if c.pidfd.is_none() && !c.reaped => 100,
            _ => -1,
        }
    }

    fn poll_set(&self, fds: &mut Vec<libc::pollfd>, slots: &mut Vec<Slot>) {
        fds.clear();
        slots.clear();
        let mut add = |fd: RawFd, events: libc::c_short, slot: Slot| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            slots.push(slot);
        };
        if let Some(listener) = &self.listener {
            add(listener.as_raw_fd(), libc::POLLIN, Slot::Listener);
        }
        if let Some(c) = &self.container {
            if let Some(pidfd) = &c.pidfd {
                add(pidfd.as_raw_fd(), libc::POLLIN, Slot::Pidfd);
            }
            if let Some(fd) = &c.stdout {
                add(fd.as_raw_fd(), libc::POLLIN, Slot::Output(Stream::Stdout));
            }
            if let Some(fd) = &c.stderr {
                add(fd.as_raw_fd(), libc::POLLIN, Slot::Output(Stream::Stderr));
            }
            if let Some(fd) = &c.stdin {
                if !self.stdin.is_empty() {
                    add(fd.as_raw_fd(), libc::POLLOUT, Slot::Stdin);
                }
            }
        }
        let stdin_room = self.stdin.len() < MAX_PENDING_STDIN;
        for (i, conn) in self.conns.iter().enumerate() {
            let mut events = 0;
            let reading = match conn.role {
                Role::Attached { stdin: true, .. } => stdin_room,
                _ => true,
            };
            if reading && !conn.read_closed {
                events |= libc::POLLIN;
            }
            if conn.has_output() {
                events |= libc::POLLOUT;
            }
            // POLLHUP and POLLERR are reported even with no events asked for.
            add(conn.stream.as_raw_fd(), events, Slot::Conn(i));
        }
    }

    fn ready(&mut self, slot: Slot, revents: libc::c_short, buf: &mut [u8]) {
        match slot {
            Slot::Listener => self.accept(),
            Slot::Pidfd => self.reap(),
            Slot::Output(stream) => self.read_output(stream, buf),
            Slot::Stdin => {}
            Slot::Conn(i) => {
                if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                    && !self.conns[i].read_closed
                {
                    self.read_conn(i, buf);
                }
                let conn = &mut self.conns[i];
                if revents & libc::POLLERR != 0
                    || (revents & libc::POLLHUP != 0 && conn.read_closed)
                {
                    conn.dead = true;
                }
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.conns.push(Conn::new(stream));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn read_conn(&mut self, i: usize, buf: &mut [u8]) {
        match self.conns[i].read(buf) {
            Incoming::Nothing => {}
            Incoming::Request(Ok(request), rest) => {
                self.handle(i, request);
                if !rest.is_empty() {
                    self.input(i, &rest);
                }
            }
            Incoming::Request(Err(message), _) => {
                let conn = &mut self.conns[i];
                conn.role = Role::Closing;
                conn.reply(&ShimReply::error(message));
            }
            Incoming::Data(n) => self.input(i, &buf[..n]),
            Incoming::End => {
                if let Role::Attached { stdin: true, .. } = self.conns[i].role {
                    if self.launch.stdin_once {
                        self.close_stdin = true;
                    }
                }
            }
        }
    }

    /// Bytes from client `i` after its request: stdin if it attached with stdin.
    fn input(&mut self, i: usize, bytes: &[u8]) {
        if let Role::Attached { stdin: true, .. } = self.conns[i].role {
            if self.launch.open_stdin && !self.close_stdin && self.drain_until.is_none() {
                self.stdin.extend_from_slice(bytes);
            }
        }
    }

    fn handle(&mut self, i: usize, request: ShimRequest) {
        let reply = match request {
            ShimRequest::Start => self.start(),
            ShimRequest::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                let conn = &mut self.conns[i];
                conn.reply(&ShimReply::ok());
                conn.role = if self.drain_until.is_some() {
                    Role::Closing
                } else {
                    Role::Attached {
                        stdin,
                        stdout,
                        stderr,
                    }
                };
                return;
            }
            ShimRequest::Kill { signal } => self.kill(signal),
            ShimRequest::Resize { height, width } => self.resize(height, width),
            ShimRequest::CloseStdin => {
                self.close_stdin = true;
                ShimReply::ok()
            }
            ShimRequest::Wait => {
                if self.drain_until.is_none() {
                    self.conns[i].role = Role::Waiting;
                    return;
                }
                ShimReply::with_state(self.state.clone())
            }
            ShimRequest::State => ShimReply::with_state(self.state.clone()),
        };
        let conn = &mut self.conns[i];
        conn.reply(&reply);
        conn.role = Role::Closing;
    }

    fn start(&mut self) -> ShimReply {
        if self.state.status != Status::Created {
            return ShimReply::error(format!("container {} was started already", self.launch.id));
        }
        match self.launch_container() {
            Ok(()) => ShimReply::with_state(self.state.clone()),
            Err(message) => {
                // As dockerd: the exit code says why the command could not be run.
                let code = if message.contains("executable file not found")
                    || message.contains("no such file or directory")
                {
                    127
                } else if message.contains("permission denied") {
                    126
                } else {
                    128
                };
                self.state.exit_code = Some(code);
                self.state.status = Status::Exited;
                self.finish();
                ShimReply::error(message)
            }
        }
    }

    fn launch_container(&mut self) -> Result<(), String> {
        let os = |what: &'static str| move |e: Errno| format!("{what}: {e}");
        let options = LaunchOptions {
            cgroup_dirs: self.launch.cgroup_dirs.clone(),
            // The init opens its terminal in its own devpts and sends us the master.
            terminal: self.launch.tty,
            console_size: self.winsize,
            seccomp: self.launch.seccomp.clone(),
        };
        let (stdio, pipes) = if self.launch.tty {
            (Stdio::default(), None)
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let (stdin, child_stdin) = if self.launch.open_stdin {
                let (r, w) = unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("stdin pipe"))?;
                set_flags(w.as_fd(), libc::O_NONBLOCK, true).map_err(os("stdin pipe"))?;
                (Some(w), r)
            } else {
                let null = fcntl::open(
                    "/dev/null",
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(os("open /dev/null"))?;
                (None, null)
            };
            let stdio = Stdio {
                stdin: Some(child_stdin),
                stdout: Some(out_w),
                stderr: Some(err_w),
            };
            (stdio, Some((out_r, err_r, stdin)))
        };
        // launch drops its copies of the child's ends: the output ends when the container's does.
        let launched = match self.launch.exec {
            Some(into) => container::exec_with(&self.launch.spec, into.pid, stdio, &options),
            None => container::launch_with(&self.launch.spec, &self.launch.rootfs, stdio, &options),
        }
        .map_err(|e| e.to_string())?;
        let pid = launched.pid;
        let (stdout, stderr, stdin) = match (pipes, launched.terminal) {
            (Some((out, err, stdin)), _) => (out, Some(err), stdin),
            (None, Some(master)) => {
                let _ = set_flags(master.as_fd(), libc::O_NONBLOCK, true);
                let input = match self.launch.open_stdin {
                    true => master.try_clone().ok(),
                    false => None,
                };
                (master, None, input)
            }
            (None, None) => unreachable!("a terminal launch returns the terminal"),
        };
        self.container = Some(Container {
            pid,
            pidfd: pidfd_open(pid),
            reaped: false,
            stdout: Some(stdout),
            stderr,
            stdin,
        });
        self.state.pid = pid.as_raw();
        self.state.status = Status::Running;
        self.state.started_at = format_go_rfc3339_nano(Utc::now());
        if let Err(e) = self.state.write(&self.state_path) {
            // Nobody could learn of this container: do not leave it running.
            let _ = signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            if let Some(c) = &mut self.container {
                c.reaped = true;
                c.pidfd = None;
            }
            return Err(e.to_string());
        }
        Ok(())
    }

    fn kill(&mut self, signal: i32) -> ShimReply {
        match &self.container {
            Some(c) if !c.reaped => {
                // SAFETY: kill takes integers; the PID is our unreaped child's.
                let rc = unsafe { libc::kill(c.pid.as_raw(), signal) };
                match Errno::result(rc) {
                    Ok(_) => ShimReply::ok(),
                    Err(e) => ShimReply::error(format!("kill {}: {e}", c.pid)),
                }
            }
            _ => ShimReply::error(format!("container {} is not running", self.launch.id)),
        }
    }

    fn resize(&mut self, height: u16, width: u16) -> ShimReply {
        if !self.launch.tty {
            return ShimReply::error(format!("container {} has no TTY", self.launch.id));
        }
        let Some(master) = self.container.as_ref().and_then(|c| c.stdout.as_ref()) else {
            // Not started (or the terminal is gone): applied at start.
            self.winsize = Some((height, width));
            return ShimReply::ok();
        };
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize we own.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        match Errno::result(rc) {
            Ok(_) => ShimReply::ok(),
            Err(e) => ShimReply::error(format!("resize: {e}")),
        }
    }

    /// Reaps the init if it has exited; its exit code becomes the state's.
    fn reap(&mut self) {
        let Some(c) = &mut self.container else {
            return;
        };
        if c.reaped {
            return;
        }
        match waitpid(c.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    c.reaped = true;
                    c.pidfd = None;
                    self.state.exit_code = Some(code);
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => {
                // Not our child any more (cannot happen): do not signal that PID again.
                c.reaped = true;
                c.pidfd = None;
                self.state.exit_code.get_or_insert(128);
            }
        }
    }

    fn read_output(&mut self, stream: Stream, buf: &mut [u8]) {
        let Some(c) = &mut self.container else {
            return;
        };
        let slot = match stream {
            Stream::Stdout => &mut c.stdout,
            Stream::Stderr => &mut c.stderr,
        };
        let Some(fd) = slot else {
            return;
        };
        let n = match unistd::read(fd.as_fd(), buf) {
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => return,
            // EIO: the terminal's last slave descriptor closed.
            Err(_) => 0,
        };
        if n == 0 {
            *slot = None;
            if self.launch.tty {
                // The terminal is gone: so is its input side.
                c.stdin = None;
            }
            return;
        }
        self.output(stream, &buf[..n]);
    }

    /// The container wrote `bytes`: into the log and to every client attached to `stream`.
    fn output(&mut self, stream: Stream, bytes: &[u8]) {
        if let Some(log) = &mut self.log {
            // A log that cannot be written must not stop the container; attach still works.
            let _ = log.write(stream, bytes);
        }
        let header = multiplex_header(stream, bytes.len() as u32);
        for conn in &mut self.conns {
            let Role::Attached { stdout, stderr, .. } = conn.role else {
                continue;
            };
            let wanted = match stream {
                Stream::Stdout => stdout,
                Stream::Stderr => stderr,
            };
            if !wanted || conn.dead {
                continue;
            }
            if !self.launch.tty {
                conn.queue(&header);
            }
            conn.queue(bytes);
        }
    }

    fn write_stdin(&mut self) {
        let Some(c) = &mut self.container else {
            return;
        };
        let Some(fd) = &c.stdin else {
            self.stdin.clear();
            return;
        };
        let mut written = 0;
        while written < self.stdin.len() {
            match unistd::write(fd, &self.stdin[written..]) {
                Ok(n) => written += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    // Nobody reads the container's stdin any more.
                    c.stdin = None;
                    self.stdin.clear();
                    return;
                }
            }
        }
        self.stdin.drain(..written);
        if self.stdin.is_empty() {
            if self.stdin.capacity() > 64 * 1024 {
                self.stdin = Vec::new();
            }
            if self.close_stdin {
                c.stdin = None;
            }
        }
    }

    fn finish_if_done(&mut self) {
        if self.drain_until.is_some() {
            return;
        }
        let Some(c) = &self.container else {
            return;
        };
        if c.reaped && c.stdout.is_none() && c.stderr.is_none() {
            self.state.status = Status::Exited;
            self.finish();
        }
    }

    /// The container has exited and its output ended: log and state file first, then the
    /// clients, which get what is left of their output before the shim exits.
    fn finish(&mut self) {
        if let Some(log) = self.log.take() {
            let _ = log.close();
        }
        if let Some(c) = &mut self.container {
            c.stdin = None;
        }
        self.stdin = Vec::new();
        self.state.finished_at = Some(format_go_rfc3339_nano(Utc::now()));
        // The shim's stderr is /dev/null by now; a state file without the exit is what the
        // runtime logs ("lost the shim") before it ends the container's processes itself.
        let _ = self.state.write(&self.state_path);
        // Whoever connected before now is answered; later clients find no socket and read
        // the state file, which is final.
        self.accept();
        self.close_listener();
        for conn in &mut self.conns {
            match conn.role {
                Role::Waiting => {
                    conn.reply(&ShimReply::with_state(self.state.clone()));
                    conn.role = Role::Closing;
                }
                Role::Attached { .. } => conn.role = Role::Closing,
                Role::Request | Role::Closing => {}
            }
        }
        self.drain_until = Some(Instant::now() + DRAIN_GRACE);
    }

    fn close_listener(&mut self) {
        if self.listener.take().is_some() {
            let _ = unistd::unlinkat(&self.dir, SOCKET_FILE, unistd::UnlinkatFlags::NoRemoveDir);
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let (r, w) = unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    set_flags(r.as_fd(), libc::O_NONBLOCK, true).map_err(|e| format!("pipe: {e}"))?;
    Ok((r, w))
}

/// Sets (or clears) `flag`: a descriptor flag (FD_CLOEXEC) or a file status flag.
fn set_flags(fd: std::os::fd::BorrowedFd<'_>, flag: libc::c_int, on: bool) -> nix::Result<()> {
    let (get, set) = if flag == libc::FD_CLOEXEC {
        (libc::F_GETFD, libc::F_SETFD)
    } else {
        (libc::F_GETFL, libc::F_SETFL)
    };
    let fd = fd.as_raw_fd();
    // SAFETY: integer-only fcntl calls on a descriptor we hold.
    let flags = Errno::result(unsafe { libc::fcntl(fd, get) })?;
    let flags = if on { flags | flag } else { flags & !flag };
    // SAFETY: as above.
    Errno::result(unsafe { libc::fcntl(fd, set, flags) }).map(drop)
}

/// A pidfd of our child `pid` (Linux 5.3), or `None` where the kernel has none.
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: integer-only system call.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    // SAFETY: a new descriptor that only we own (pidfds are close-on-exec).
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

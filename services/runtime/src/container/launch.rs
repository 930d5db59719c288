//! Starting a container's init: fork into the spec's namespaces, set the container up in the
//! child, exec. The child reports a failure before exec on a close-on-exec pipe; a successful
//! exec closes the pipe, so the parent reads either a message or EOF.
//!
//! An exec ([`exec_with`]) forks the same way but joins a running container instead of setting
//! one up: its cgroups, its init's namespaces (and so its root), then the process's own setup.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::waitpid;
use nix::unistd::{self, ForkResult, Pid};
use oci_spec::runtime::Spec;

use super::capabilities::{self, CapSets};
use super::error::{LaunchError, Result, StepError, StepResult};
use super::namespaces::{Namespaces, PidForChildren, ProcessNamespaces};
use super::{devices, mounts, process, rootfs, terminal};
use crate::seccomp::{self, Program};
use nix::sched::CloneFlags;

/// The descriptors that become the container's stdin, stdout and stderr; `None` inherits ours.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// What the init does before it enters its namespaces, beyond the spec.
#[derive(Debug, Default, Clone)]
pub struct LaunchOptions {
    /// Cgroup directories the init joins (writing its PID to each `cgroup.procs`) before it
    /// enters its namespaces, so nothing it does escapes the limits.
    pub cgroup_dirs: Vec<std::path::PathBuf>,
    /// Give the init a new terminal of its own devpts as stdin, stdout, stderr and
    /// controlling terminal (its `stdio` is then replaced); its master side is returned.
    pub terminal: bool,
    /// The terminal's initial size (rows, columns).
    pub console_size: Option<(u16, u16)>,
    /// The spec's `linux.seccomp` already compiled (the runtime keeps the programs it made);
    /// without it the filter is compiled here.
    pub seccomp: Option<Program>,
}

/// A launched init: its PID and, with [`LaunchOptions::terminal`], its terminal's master.
#[derive(Debug)]
pub struct Launched {
    pub pid: Pid,
    pub terminal: Option<OwnedFd>,
}

/// Starts the init process of a container described by `spec`, with `rootfs` (a prepared
/// directory) as its root, and returns its PID (in our PID namespace). It is our child: wait
/// for it with `waitpid`. Fails with the container's own message when setup or exec fails.
pub fn launch(spec: &Spec, rootfs: &Path, stdio: Stdio) -> Result<Pid> {
    launch_with(spec, rootfs, stdio, &LaunchOptions::default()).map(|l| l.pid)
}

/// [`launch`] with [`LaunchOptions`].
pub fn launch_with(
    spec: &Spec,
    rootfs: &Path,
    stdio: Stdio,
    options: &LaunchOptions,
) -> Result<Launched> {
    process_args(spec)?;
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| LaunchError::InvalidSpec(format!("rootfs {}: {e}", rootfs.display())))?;
    let namespaces = Namespaces::from_spec(spec)?;
    let seccomp = compile_seccomp(spec, options)?;
    let maps = match namespaces.user {
        true => Some(IdMaps::from_spec(spec)?),
        false => None,
    };
    // In a user namespace of its own the child makes the PID namespace, after the user one
    // (which must own it); otherwise we enter it around the fork.
    let pid_ns = match namespaces.user {
        true => None,
        false => PidForChildren::enter(&namespaces.pid)?,
    };
    let forked = Fork {
        pid_ns,
        seccomp: seccomp.as_ref(),
        maps: maps.as_ref(),
    };
    fork_child(stdio, options, forked, |stdio, fds| {
        child(spec, &rootfs, &namespaces, stdio, options, fds)
    })
}

/// Runs `spec.process` inside the running container whose init is `pid` (in our PID
/// namespace), as `docker exec` does: in the cgroups of `options.cgroup_dirs` and in the
/// init's namespaces, with the container's root. The spec's root, mounts and namespaces are
/// not used (the container has them all). Like [`launch_with`], the process is our child and
/// failures are the process's own, in Docker's words.
pub fn exec_with(spec: &Spec, pid: i32, stdio: Stdio, options: &LaunchOptions) -> Result<Launched> {
    process_args(spec)?;
    let namespaces = ProcessNamespaces::open(pid)?;
    let pid_ns = namespaces
        .pid
        .as_ref()
        .map(PidForChildren::join)
        .transpose()?;
    let seccomp = compile_seccomp(spec, options)?;
    let forked = Fork {
        pid_ns,
        seccomp: seccomp.as_ref(),
        maps: None,
    };
    fork_child(stdio, options, forked, |stdio, fds| {
        exec_child(spec, &namespaces, stdio, options, fds)
    })
}

/// The spec's seccomp filter, compiled (none without `linux.seccomp`: unconfined).
fn compile_seccomp(spec: &Spec, options: &LaunchOptions) -> Result<Option<Program>> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    if let Some(program) = &options.seccomp {
        return Ok(Some(program.clone()));
    }
    seccomp::compile(seccomp)
        .map(Some)
        .map_err(LaunchError::InvalidSpec)
}

fn process_args(spec: &Spec) -> Result<()> {
    let args = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    if args.is_empty() {
        return Err(LaunchError::InvalidSpec("process.args is empty".into()));
    }
    Ok(())
}

/// How a child is forked: in the PID namespace `pid_ns` switched to (if any), with its seccomp
/// filter, and for a user namespace of its own, the ID maps we write for it.
struct Fork<'a> {
    pid_ns: Option<PidForChildren>,
    seccomp: Option<&'a Program>,
    maps: Option<&'a IdMaps>,
}

/// A user namespace's ID maps, as `/proc/<pid>/uid_map` and `gid_map` take them.
#[derive(Debug)]
struct IdMaps {
    uid: String,
    gid: String,
}

impl IdMaps {
    fn from_spec(spec: &Spec) -> Result<IdMaps> {
        let linux = spec.linux().clone().unwrap_or_default();
        let lines = |maps: Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            maps.unwrap_or_default()
                .iter()
                .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
                .collect::<String>()
        };
        let maps = IdMaps {
            uid: lines(linux.uid_mappings().clone()),
            gid: lines(linux.gid_mappings().clone()),
        };
        if maps.uid.is_empty() || maps.gid.is_empty() {
            return Err(LaunchError::InvalidSpec(
                "a user namespace needs uid and gid mappings".into(),
            ));
        }
        Ok(maps)
    }

    /// Writes the maps of `child`'s user namespace (as its parent, privileged).
    fn write(&self, child: Pid) -> StepResult<()> {
        for (file, map) in [("gid_map", &self.gid), ("uid_map", &self.uid)] {
            let path = format!("/proc/{child}/{file}");
            std::fs::write(&path, map).map_err(|e| StepError(format!("write {path}: {e}")))?;
        }
        Ok(())
    }
}

/// The two pipes of a child making its own user namespace: it asks for its ID maps and later
/// sends its own child's PID on `ask`; we answer on `mapped` once the maps are written.
struct UsernsSync {
    ask: (OwnedFd, OwnedFd),
    mapped: (OwnedFd, OwnedFd),
}

/// The parent's side of [`enter_user_namespace`]: writes the maps when asked, and returns the
/// PID of the init (the child's child). `Ok(None)`: the child gave up (its report says why).
fn userns_handshake(
    child: Pid,
    maps: &IdMaps,
    ask: &OwnedFd,
    mapped: &OwnedFd,
) -> StepResult<Option<Pid>> {
    let mut byte = [0u8; 1];
    if read_full(ask, &mut byte) != Some(()) {
        return Ok(None);
    }
    maps.write(child)?;
    unistd::write(mapped, b"m").map_err(|e| StepError::os("answer the child", e))?;
    let mut pid = [0u8; 4];
    Ok(read_full(ask, &mut pid).map(|()| Pid::from_raw(i32::from_ne_bytes(pid))))
}

/// Reads exactly `buf.len()` bytes; `None` on EOF or an error.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> Option<()> {
    let mut got = 0;
    while got < buf.len() {
        match unistd::read(fd, &mut buf[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
    Some(())
}

/// Forks a child that runs `in_child`, which execs or returns why it could not; waits for that
/// outcome and, with a terminal, its master. With a user namespace the init is the child's
/// child (see [`enter_user_namespace`]): we are made a subreaper so that it becomes ours.
fn fork_child(
    stdio: Stdio,
    options: &LaunchOptions,
    forked: Fork,
    in_child: impl FnOnce(Stdio, ChildSetup) -> StepError,
) -> Result<Launched> {
    let Fork {
        pid_ns,
        seccomp,
        maps,
    } = forked;
    let sync = match maps {
        Some(_) => {
            // SAFETY: integer-only prctl; the init, orphaned by its parent, becomes our child.
            let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            nix::errno::Errno::result(rc).map_err(|e| LaunchError::os("subreaper", e))?;
            let pipe = || unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| LaunchError::os("pipe", e));
            Some(UsernsSync {
                ask: pipe()?,
                mapped: pipe()?,
            })
        }
        None => None,
    };
    let (report_r, report_w) =
        unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| LaunchError::os("pipe", e))?;
    // We put the child in its cgroups while it sets itself up (the first `cgroup.procs` write
    // on cgroup v1 waits for an RCU grace period, ~10 ms); it waits for this pipe before exec.
    let joined = match options.cgroup_dirs.is_empty() {
        true => None,
        false => Some(unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| LaunchError::os("pipe", e))?),
    };
    let terminal = match options.terminal {
        true => Some(terminal::socket_pair()?),
        false => None,
    };

    // SAFETY: the child only makes system calls and allocates (glibc's fork keeps malloc
    // usable in the child), and never returns: it execs or exits.
    let forked = unsafe { unistd::fork() };
    match forked {
        Ok(ForkResult::Child) => {
            std::mem::forget(pid_ns);
            drop(report_r);
            let joined = joined.map(|(r, w)| {
                drop(w);
                r
            });
            let keep: Vec<RawFd> = std::iter::once(report_w.as_raw_fd())
                .chain(joined.as_ref().map(AsRawFd::as_raw_fd))
                .collect();
            let sync = sync.map(|s| {
                drop(s.ask.0);
                drop(s.mapped.1);
                (s.ask.1, s.mapped.0)
            });
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let fds = ChildSetup {
                    terminal: terminal.as_ref().map(|(child_end, _)| child_end),
                    joined: joined.as_ref(),
                    keep: &keep,
                    seccomp,
                    userns: sync.as_ref().map(|(ask, mapped)| (ask, mapped)),
                };
                in_child(stdio, fds)
            }));
            let message = match outcome {
                Ok(e) => e.0,
                Err(_) => "container setup panicked".to_string(),
            };
            let _ = unistd::write(&report_w, message.as_bytes());
            // SAFETY: leave without running the parent's exit handlers or destructors.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(pid_ns);
            drop(report_w);
            drop(stdio);
            let sync = sync.map(|s| {
                drop(s.ask.1);
                drop(s.mapped.0);
                (s.ask.0, s.mapped.1)
            });
            let give_up = |e: StepError| {
                let _ = signal::kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                Err(LaunchError::Setup(e.0))
            };
            if let Some((joined_r, joined_w)) = joined {
                drop(joined_r);
                if let Err(e) = join_cgroups(child, &options.cgroup_dirs) {
                    // The child sees the pipe close without a byte and gives up.
                    drop(joined_w);
                    return give_up(e);
                }
                let _ = unistd::write(&joined_w, b"j");
            }
            let mut init = child;
            if let (Some(maps), Some((ask, mapped))) = (maps, &sync) {
                match userns_handshake(child, maps, ask, mapped) {
                    Ok(Some(pid)) => init = pid,
                    Ok(None) => {}
                    Err(e) => return give_up(e),
                }
                // The child leaves once its child, the init, is forked (and so ours).
                let _ = waitpid(child, None);
            }
            let mut message = String::new();
            let _ = std::fs::File::from(report_r).read_to_string(&mut message);
            if message.is_empty() && init == child && maps.is_some() {
                message = "container setup failed in its user namespace".into();
            }
            if message.is_empty() {
                let terminal = match &terminal {
                    Some((_, ours)) => match terminal::receive(ours) {
                        Ok(master) => Some(master),
                        Err(e) => {
                            let _ = signal::kill(init, Signal::SIGKILL);
                            let _ = waitpid(init, None);
                            return Err(e);
                        }
                    },
                    None => None,
                };
                Ok(Launched {
                    pid: init,
                    terminal,
                })
            } else {
                if init != child || maps.is_none() {
                    let _ = waitpid(init, None);
                }
                Err(LaunchError::Setup(message))
            }
        }
        Err(e) => Err(LaunchError::os("fork", e)),
    }
}

/// What the launcher hands a child: the socket its terminal's master goes back on, the pipe
/// that says its cgroups are joined, the descriptors it keeps open until exec (its report and
/// cgroup pipes: every other one is closed before the working directory is entered), and its
/// seccomp filter, compiled before the fork.
struct ChildSetup<'a> {
    terminal: Option<&'a OwnedFd>,
    joined: Option<&'a OwnedFd>,
    keep: &'a [RawFd],
    seccomp: Option<&'a Program>,
    /// With a user namespace of its own: the pipes to ask for its ID maps (and send the init's
    /// PID) and to hear they are written.
    userns: Option<(&'a OwnedFd, &'a OwnedFd)>,
}

/// The child's setup, in order; returns only on failure.
fn child(
    spec: &Spec,
    rootfs: &Path,
    namespaces: &Namespaces,
    stdio: Stdio,
    options: &LaunchOptions,
    fds: ChildSetup,
) -> StepError {
    match setup(spec, rootfs, namespaces, stdio, options, &fds) {
        Err(e) => e,
        // In a user namespace the cgroups were waited for before the init was forked.
        Ok(()) if fds.userns.is_some() => run(spec, None),
        Ok(()) => run(spec, fds.joined),
    }
}

/// The exec's child: into the container, then the same process setup as an init's.
fn exec_child(
    spec: &Spec,
    namespaces: &ProcessNamespaces,
    stdio: Stdio,
    options: &LaunchOptions,
    fds: ChildSetup,
) -> StepError {
    let setup = || -> StepResult<()> {
        detach(stdio)?;
        namespaces.enter()?;
        // The container's /dev/ptmx now: the terminal is of its devpts.
        if let Some(socket) = fds.terminal {
            terminal::open_and_send(socket, options.console_size)?;
        }
        become_process(spec, &fds)
    };
    match setup() {
        Err(e) => e,
        Ok(()) => run(spec, fds.joined),
    }
}

/// Finds the program (on the process's PATH, in the root we are in now), waits until the
/// parent has put us in our cgroups (`joined`), and execs it.
fn run(spec: &Spec, joined: Option<&OwnedFd>) -> StepError {
    let process = spec.process().as_ref().expect("checked");
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let program = match process::find_executable(&args[0], &env) {
        Ok(program) => program,
        Err(e) => return e,
    };
    if let Some(joined) = joined {
        if let Err(e) = wait_joined(joined) {
            return e;
        }
    }
    process::exec(&program, &args, &env)
}

/// Waits until the parent has put us in our cgroups.
fn wait_joined(joined: &OwnedFd) -> StepResult<()> {
    let mut byte = [0u8; 1];
    match read_full(joined, &mut byte) {
        Some(()) => Ok(()),
        // The parent could not place us (it says why) or is gone.
        None => Err(StepError("cgroups not joined".into())),
    }
}

/// In the child, for a container with a user namespace of its own (as runc's nsexec): joins
/// the namespaces given by path (the host's user namespace owns them, so it must be now),
/// creates the user namespace and has the parent write its ID maps, becomes its root, waits
/// for its cgroups, creates the other namespaces (the PID one too, now owned by the new user
/// namespace), and forks the init, which returns from here; this process sends the init's PID
/// and leaves.
fn enter_user_namespace(
    namespaces: &Namespaces,
    ask: &OwnedFd,
    mapped: &OwnedFd,
    joined: Option<&OwnedFd>,
) -> StepResult<()> {
    namespaces.join()?;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| StepError::os("unshare user namespace", e))?;
    unistd::write(ask, b"m").map_err(|e| StepError::os("ask for ID maps", e))?;
    let mut byte = [0u8; 1];
    read_full(mapped, &mut byte).ok_or_else(|| StepError("no ID maps written".into()))?;
    let root = (unistd::Gid::from_raw(0), unistd::Uid::from_raw(0));
    unistd::setresgid(root.0, root.0, root.0).map_err(|e| StepError::os("setresgid", e))?;
    unistd::setresuid(root.1, root.1, root.1).map_err(|e| StepError::os("setresuid", e))?;

    if let Some(joined) = joined {
        wait_joined(joined)?;
    }
    let pid = match namespaces.pid {
        Some(_) => CloneFlags::CLONE_NEWPID,
        None => CloneFlags::empty(),
    };
    nix::sched::unshare(namespaces.new | pid)
        .map_err(|e| StepError::os("unshare namespaces", e))?;
    // SAFETY: single-threaded; the child goes on with the setup and execs or reports.
    match unsafe { unistd::fork() } {
        Ok(ForkResult::Child) => Ok(()),
        Ok(ForkResult::Parent { child }) => {
            let _ = unistd::write(ask, &child.as_raw().to_ne_bytes());
            // SAFETY: leave without running destructors: the init owns the setup now.
            unsafe { libc::_exit(0) }
        }
        Err(e) => Err(StepError::os("fork the init", e)),
    }
}

/// Puts `child` in each of `dirs` (its PID into `cgroup.procs`), as the parent.
fn join_cgroups(child: Pid, dirs: &[std::path::PathBuf]) -> StepResult<()> {
    let pid = child.as_raw().to_string();
    for dir in dirs {
        std::fs::write(dir.join("cgroup.procs"), pid.as_bytes())
            .map_err(|e| StepError(format!("join cgroup {}: {e}", dir.display())))?;
    }
    Ok(())
}

fn setup(
    spec: &Spec,
    rootfs: &Path,
    namespaces: &Namespaces,
    stdio: Stdio,
    options: &LaunchOptions,
    fds: &ChildSetup,
) -> StepResult<()> {
    let linux = spec.linux().clone().unwrap_or_default();
    detach(stdio)?;
    umask(Mode::empty());
    // The rootfs is reached from here on through the working directory (see bind_cwd).
    unistd::chdir(rootfs).map_err(|e| StepError::os(format!("chdir {}", rootfs.display()), e))?;

    match fds.userns {
        Some((ask, mapped)) => enter_user_namespace(namespaces, ask, mapped, fds.joined)?,
        None => namespaces.enter()?,
    }
    rootfs::make_private()?;
    let root = rootfs::bind_cwd()?;
    mounts::mount_all(
        &root,
        spec.mounts().as_deref().unwrap_or_default(),
        &options.cgroup_dirs,
    )?;
    devices::create_all(&root, linux.devices().as_deref().unwrap_or_default())?;
    rootfs::pivot(&root)?;
    drop(root);
    if let Some(socket) = fds.terminal {
        terminal::open_and_send(socket, options.console_size)?;
    }
    // In the container's own /proc, before /proc/sys is made read-only.
    for (key, value) in linux.sysctl().iter().flatten() {
        write_sysctl(key, value)?;
    }
    rootfs::mask(linux.masked_paths().as_deref().unwrap_or_default())?;
    rootfs::read_only(linux.readonly_paths().as_deref().unwrap_or_default())?;
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        rootfs::read_only_root()?;
    }
    if let Some(hostname) = spec.hostname() {
        if !namespaces.has(CloneFlags::CLONE_NEWUTS) {
            return Err(StepError("a hostname needs its own uts namespace".into()));
        }
        unistd::sethostname(hostname).map_err(|e| StepError::os("sethostname", e))?;
    }
    become_process(spec, fds)
}

/// Writes `value` to the sysctl `key` (`net.ipv4.ip_forward` is /proc/sys/net/ipv4/ip_forward)
/// of the namespaces this process is in. The key is checked again here: only dotted words,
/// so the path stays under /proc/sys.
fn write_sysctl(key: &str, value: &str) -> StepResult<()> {
    let plain = key.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if !plain {
        return Err(StepError(format!(
            "sysctl {key:?} is not a valid sysctl name"
        )));
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
        .map_err(|e| StepError(format!("write sysctl key {key}: open {path}: {e}")))
}

/// The child's first steps, in the launcher's namespaces still: a clean signal state, a
/// session of its own, its stdio, and no other descriptor of ours past exec. (Its cgroups are
/// joined by the parent meanwhile: see [`fork_child`].)
fn detach(stdio: Stdio) -> StepResult<()> {
    // A clean signal state: Rust ignores SIGPIPE, and exec keeps ignored signals ignored.
    signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| StepError::os("sigprocmask", e))?;
    // Likewise every signal the launcher ignores (a shim ignores SIGTERM, SIGINT, SIGHUP).
    for signal in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: restoring the default disposition installs no handler.
        unsafe { signal::signal(signal, SigHandler::SigDfl) }
            .map_err(|e| StepError::os(format!("reset {signal}"), e))?;
    }
    unistd::setsid().map_err(|e| StepError::os("setsid", e))?;
    for (fd, target) in [(stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)] {
        if let Some(fd) = fd {
            if fd.as_raw_fd() == target {
                // Already in place (dup2 onto itself would leave it close-on-exec).
                // SAFETY: integer-only fcntl on a standard descriptor.
                let rc = unsafe { libc::fcntl(target, libc::F_SETFD, 0) };
                nix::errno::Errno::result(rc).map_err(|e| StepError::os("fcntl stdio", e))?;
                std::mem::forget(fd);
                continue;
            }
            // SAFETY: dup2 onto a standard descriptor number.
            let rc = unsafe { libc::dup2(fd.as_raw_fd(), target) };
            nix::errno::Errno::result(rc).map_err(|e| StepError::os("dup2 stdio", e))?;
        }
    }
    // Nothing of ours but stdio may reach the container (the report pipe closes at exec).
    // SAFETY: marks descriptors close-on-exec; closes none.
    unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    Ok(())
}

/// Inside the container's root: the process's rlimits, privileges, user, umask and working
/// directory, the last steps before exec. Every descriptor but stdio and `keep` is closed
/// first, so none of the launcher's (a bundle directory, a socket) can be reached through
/// `/proc/self/fd` by the working directory or by the container's code.
fn become_process(spec: &Spec, fds: &ChildSetup) -> StepResult<()> {
    let process = spec.process().as_ref().expect("checked");
    process::apply_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    let no_new_privs = process.no_new_privileges() == Some(true);
    if no_new_privs {
        process::set_no_new_privs()?;
    } else if let Some(program) = fds.seccomp {
        // Without no_new_privs, loading a filter takes CAP_SYS_ADMIN: now, before the
        // capabilities go (as runc does); what follows must be allowed by the filter.
        load_seccomp(program)?;
    }
    let caps = CapSets::from_spec(process.capabilities().as_ref());
    capabilities::drop_bounding(caps.bounding)?;
    capabilities::keep_caps(true)?;
    process::set_user(process.user())?;
    capabilities::keep_caps(false)?;
    capabilities::apply(&caps)?;
    umask(Mode::from_bits_truncate(
        process.user().umask().unwrap_or(0o022) as libc::mode_t,
    ));
    process::close_all_but(fds.keep)?;
    process::enter_cwd(process.cwd())?;
    match fds.seccomp {
        Some(program) if no_new_privs => load_seccomp(program),
        _ => Ok(()),
    }
}

fn load_seccomp(program: &Program) -> StepResult<()> {
    seccomp::load(program).map_err(|e| StepError::os("load the seccomp filter", e))
}

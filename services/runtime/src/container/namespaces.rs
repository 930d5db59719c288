//! Which namespaces a container gets, and entering them. A namespace without a path is new; one
//! with a path (say a network namespace prepared by the network code) is joined with setns.
//!
//! The PID namespace is special: unshare(CLONE_NEWPID) only affects children, so the launching
//! thread enters it for its children just around the fork ([`PidForChildren`]), which makes
//! the forked child PID 1 of the new namespace and still the launcher's own child to wait for.
//!
//! An exec joins the namespaces of a running container's init instead ([`ProcessNamespaces`]),
//! its PID namespace the same way, around the fork.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{self, OFlag};
use nix::sched::{self, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::error::{LaunchError, Result, StepError, StepResult};

/// The spec's namespaces, checked.
#[derive(Debug, Clone)]
pub(crate) struct Namespaces {
    /// Namespaces (other than PID) to create in the child.
    pub new: CloneFlags,
    /// Namespaces (other than PID) to join in the child.
    pub join: Vec<(PathBuf, CloneFlags)>,
    /// The PID namespace: absent (host's), new (`Some(None)`) or joined by path.
    pub pid: Option<Option<PathBuf>>,
    /// A new user namespace: the child creates it after joining the namespaces given by path
    /// (which belong to the host's), and every new namespace, the PID one too, after it.
    pub user: bool,
}

impl Namespaces {
    pub(crate) fn from_spec(spec: &Spec) -> Result<Namespaces> {
        let mut out = Namespaces {
            new: CloneFlags::empty(),
            join: Vec::new(),
            pid: None,
            user: false,
        };
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in list {
            let flag = match ns.typ() {
                LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
                LinuxNamespaceType::Pid => {
                    out.pid = Some(ns.path().clone());
                    continue;
                }
                LinuxNamespaceType::User if ns.path().is_none() => {
                    out.user = true;
                    continue;
                }
                other => {
                    return Err(LaunchError::InvalidSpec(format!(
                        "namespace {other} is not supported"
                    )))
                }
            };
            match ns.path() {
                Some(path) => out.join.push((path.clone(), flag)),
                None => out.new |= flag,
            }
        }
        if out.user && matches!(out.pid, Some(Some(_))) {
            return Err(LaunchError::InvalidSpec(
                "a new user namespace cannot join a pid namespace".into(),
            ));
        }
        if !out.has(CloneFlags::CLONE_NEWNS) {
            // Everything below mounts and pivots: doing that in the host's namespace would
            // rearrange the host.
            return Err(LaunchError::InvalidSpec(
                "a new mount namespace is required".into(),
            ));
        }
        Ok(out)
    }

    /// Whether the container has its own namespace of this kind (new or joined).
    pub(crate) fn has(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag) || self.join.iter().any(|(_, f)| f.contains(flag))
    }

    /// In the child: joins the namespaces given by path, then creates the new ones.
    pub(crate) fn enter(&self) -> StepResult<()> {
        self.join()?;
        sched::unshare(self.new).map_err(|e| StepError::os("unshare namespaces", e))
    }

    /// In the child: joins the namespaces given by path.
    pub(crate) fn join(&self) -> StepResult<()> {
        // Open every path first: joining a mount namespace would change what they name.
        let mut fds = Vec::with_capacity(self.join.len());
        for (path, flag) in &self.join {
            let fd = open_ns(path)
                .map_err(|e| StepError::os(format!("open namespace {}", path.display()), e))?;
            fds.push((fd, *flag, path));
        }
        for (fd, flag, path) in fds {
            sched::setns(fd, flag)
                .map_err(|e| StepError::os(format!("join namespace {}", path.display()), e))?;
        }
        Ok(())
    }
}

fn open_ns(path: &std::path::Path) -> nix::Result<OwnedFd> {
    fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
}

/// The launching thread's PID namespace for children, switched to the container's until
/// dropped (which switches back, so later forks of this thread are unaffected).
pub(crate) struct PidForChildren {
    original: OwnedFd,
}

impl PidForChildren {
    pub(crate) fn enter(pid: &Option<Option<PathBuf>>) -> Result<Option<PidForChildren>> {
        let Some(pid) = pid else { return Ok(None) };
        let original = open_ns("/proc/thread-self/ns/pid_for_children".as_ref())
            .map_err(|e| LaunchError::os("open our pid namespace", e))?;
        match pid {
            None => sched::unshare(CloneFlags::CLONE_NEWPID)
                .map_err(|e| LaunchError::os("unshare pid namespace", e))?,
            Some(path) => {
                let fd = open_ns(path).map_err(|e| {
                    LaunchError::os(format!("open namespace {}", path.display()), e)
                })?;
                sched::setns(fd, CloneFlags::CLONE_NEWPID).map_err(|e| {
                    LaunchError::os(format!("join namespace {}", path.display()), e)
                })?;
            }
        }
        Ok(Some(PidForChildren { original }))
    }

    /// Switches to the PID namespace open at `ns` for children.
    pub(crate) fn join(ns: &OwnedFd) -> Result<PidForChildren> {
        let original = open_ns("/proc/thread-self/ns/pid_for_children".as_ref())
            .map_err(|e| LaunchError::os("open our pid namespace", e))?;
        sched::setns(ns, CloneFlags::CLONE_NEWPID)
            .map_err(|e| LaunchError::os("join the container's pid namespace", e))?;
        Ok(PidForChildren { original })
    }
}

impl Drop for PidForChildren {
    fn drop(&mut self) {
        if let Err(e) = sched::setns(&self.original, CloneFlags::CLONE_NEWPID) {
            tracing::error!("cannot return to our pid namespace for children: {e}");
        }
    }
}

/// The namespaces of a running process (a container's init) that differ from ours, each open,
/// so that an exec joins exactly that process's namespaces even if it exits meanwhile.
#[derive(Debug)]
pub(crate) struct ProcessNamespaces {
    /// In joining order: network, user, then the ones the user namespace owns, the mount
    /// namespace last, as it changes what paths name.
    others: Vec<(OwnedFd, CloneFlags, &'static str)>,
    /// Its PID namespace, for [`PidForChildren::join`].
    pub pid: Option<OwnedFd>,
}

impl ProcessNamespaces {
    /// Opens the namespaces of process `pid` (in our PID namespace) that are not ours.
    pub(crate) fn open(pid: i32) -> Result<ProcessNamespaces> {
        let gone = |e: nix::errno::Errno| match e {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ESRCH => {
                LaunchError::Setup(format!("container process {pid} is not running"))
            }
            e => LaunchError::os(format!("open the namespaces of process {pid}"), e),
        };
        // Every namespace through one open directory of the process: should it exit and its
        // PID be reused meanwhile, the opens fail rather than find the new process.
        let dir = fcntl::open(
            format!("/proc/{pid}").as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(gone)?;
        let mut out = ProcessNamespaces {
            others: Vec::new(),
            pid: None,
        };
        // The network namespace belongs to the host's user namespace: joined before the
        // container's user namespace, which owns the others.
        for (name, flag) in [
            ("net", CloneFlags::CLONE_NEWNET),
            ("user", CloneFlags::CLONE_NEWUSER),
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("uts", CloneFlags::CLONE_NEWUTS),
            ("cgroup", CloneFlags::CLONE_NEWCGROUP),
            ("pid", CloneFlags::CLONE_NEWPID),
            ("mnt", CloneFlags::CLONE_NEWNS),
        ] {
            let theirs = fcntl::openat(
                dir.as_fd(),
                format!("ns/{name}").as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(gone)?;
            let ours = nix::sys::stat::stat(format!("/proc/self/ns/{name}").as_str())
                .map_err(|e| LaunchError::os(format!("stat our {name} namespace"), e))?;
            let same = nix::sys::stat::fstat(theirs.as_fd())
                .map(|st| (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino))
                .map_err(|e| LaunchError::os(format!("stat the {name} namespace"), e))?;
            if same {
                continue;
            }
            match flag {
                CloneFlags::CLONE_NEWPID => out.pid = Some(theirs),
                _ => out.others.push((theirs, flag, name)),
            }
        }
        Ok(out)
    }

    /// In the child: joins them (the PID namespace aside), the mount namespace last.
    pub(crate) fn enter(&self) -> StepResult<()> {
        for (fd, flag, name) in &self.others {
            sched::setns(fd, *flag)
                .map_err(|e| StepError::os(format!("join the container's {name} namespace"), e))?;
        }
        Ok(())
    }
}

//! Signalling the processes of a group.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cgroup::Cgroup;
use super::error::{CgroupError, Result};

/// Sends `signal` to each pid; a process that exited meanwhile (ESRCH) is not an error.
pub(crate) fn signal_each(pids: &[Pid], signal: Signal) -> Result<()> {
    for &pid in pids {
        match kill(pid, signal) {
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(source) => {
                return Err(CgroupError::Signal {
                    pid: pid.as_raw(),
                    signal,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Sends `signal` to every task of `group` while it is frozen: frozen tasks cannot fork, so the
/// list is complete, and the signal lands on thaw. Without a freezer it signals the tasks as listed.
pub(crate) fn signal_frozen<G: Cgroup + ?Sized>(group: &G, signal: Signal) -> Result<()> {
    let frozen = group.freeze().is_ok();
    let sent = signal_each(&group.pids()?, signal);
    if frozen {
        group.thaw()?;
    }
    sent
}

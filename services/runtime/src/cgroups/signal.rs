//! Signalling the processes of a group.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

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

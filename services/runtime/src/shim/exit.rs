//! Docker's exit-code convention.

use nix::sys::wait::WaitStatus;

/// The exit code Docker reports for a reaped process: its exit status, or 128 + the signal
/// that killed it. `None` for a status that is not an end (stopped, continued).
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

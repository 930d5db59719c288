//! Running the iproute2 and nftables programs, optionally inside a network namespace.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::{NetworkError, Result};

/// Runs `program args…` and returns its stdout; a non-zero exit is an error carrying stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    output(Command::new(program).args(args), program, args, None)
}

/// Runs `program args…` with `input` on its stdin (for `nft -f -`).
pub(crate) fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<String> {
    output(Command::new(program).args(args), program, args, Some(input))
}

/// Runs `program args…` inside the network namespace at `netns` (e.g. `/proc/<pid>/ns/net`).
pub(crate) fn run_in_netns(netns: &Path, program: &str, args: &[&str]) -> Result<String> {
    let namespace =
        File::open(netns).map_err(|e| NetworkError::io("opening network namespace", netns, e))?;
    let fd = namespace.as_raw_fd();
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: setns is a single system call, safe between fork and exec; `namespace` outlives
    // the spawn because `output` returns only after the child has exited.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let result = output(&mut command, program, args, None);
    drop(namespace);
    result
}

fn output(
    command: &mut Command,
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String> {
    let display = || format!("{program} {}", args.join(" "));
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| NetworkError::Command {
        command: display(),
        stderr: e.to_string(),
    })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A failed write shows up as the program's own error below.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetworkError::Command {
            command: display(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            command: display(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

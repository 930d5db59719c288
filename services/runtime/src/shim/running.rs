//! A running container as its shim holds it: started with its stdio piped into the log,
//! signalled by PID, and reaped with its exit recorded in the state file.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::Utc;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag};
use nix::unistd::{pipe2, Pid};

use crate::cgroups::Cgroup;
use crate::container::{self, Stdio};
use crate::logs::{format_go_rfc3339_nano, LogWriter};

use super::config::ShimConfig;
use super::error::{Result, ShimError};
use super::exit::exit_code;
use super::pump::Pump;
use super::state::{ShimState, Status};

/// One container's shim. The init is our child: only [`Shim::wait`] reaps it, so its PID
/// cannot name another process before then, and [`Shim::kill`] refuses afterwards.
#[derive(Debug)]
pub struct Shim {
    id: String,
    pid: Pid,
    state_path: PathBuf,
    started_at: String,
    cgroup: Option<Box<dyn Cgroup>>,
    pump: Mutex<Option<Pump>>,
    /// Held while signalling or reaping, so a signal never races the reap.
    reaped: Mutex<bool>,
}

impl Shim {
    /// Launches the container with stdin on /dev/null and stdout and stderr piped into its
    /// json-file log, and records it as running.
    pub fn start(config: ShimConfig) -> Result<Shim> {
        let writer =
            LogWriter::create(&config.log_path, config.log_max_size, config.log_max_files)?;
        let (stdout_r, stdout_w) = pipe("stdout")?;
        let (stderr_r, stderr_w) = pipe("stderr")?;
        let stdin = std::fs::File::open("/dev/null").map_err(|source| ShimError::State {
            path: "/dev/null".into(),
            source,
        })?;
        // launch drops our copies of the write ends, so the pipes end when the container's do.
        let pid = container::launch(
            &config.spec,
            &config.rootfs,
            Stdio {
                stdin: Some(OwnedFd::from(stdin)),
                stdout: Some(stdout_w),
                stderr: Some(stderr_w),
            },
        )?;
        let shim = Shim {
            id: config.id,
            pid,
            state_path: config.state_path,
            started_at: format_go_rfc3339_nano(Utc::now()),
            cgroup: config.cgroup,
            pump: Mutex::new(Some(Pump::start(writer, stdout_r, stderr_r))),
            reaped: Mutex::new(false),
        };
        if let Err(e) = shim.running_state().write(&shim.state_path) {
            // Nobody could learn of this container: do not leave it running.
            let _ = shim.kill(Signal::SIGKILL);
            let _ = shim.reap();
            return Err(e);
        }
        Ok(shim)
    }

    /// The container's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The init's PID (in our PID namespace).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits for the init to exit, reaps it, logs the rest of its output (to EOF, including
    /// incomplete last lines), and records the exit in the state file, which it returns.
    /// Output the container's processes still hold open past the init's exit (only possible
    /// without a PID namespace) delays the return until they close it.
    pub fn wait(&self) -> Result<ShimState> {
        let pump = self
            .pump
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| ShimError::Exited(self.id.clone()))?;
        let code = self.reap()?;
        let logged = pump.finish();
        let finished_at = format_go_rfc3339_nano(Utc::now());
        let oom_killed = self.cgroup.as_ref().map(|cgroup| {
            cgroup.oom_killed().unwrap_or_else(|e| {
                tracing::warn!(container = %self.id, "reading OOM events: {e}");
                false
            })
        });
        let state = ShimState {
            status: Status::Exited,
            exit_code: Some(code),
            finished_at: Some(finished_at),
            oom_killed,
            ..self.running_state()
        };
        state.write(&self.state_path)?;
        logged?;
        Ok(state)
    }

    /// Delivers `signal` to the init, by PID.
    pub fn kill(&self, signal: Signal) -> Result<()> {
        let reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if *reaped {
            return Err(ShimError::Exited(self.id.clone()));
        }
        signal::kill(self.pid, signal).map_err(|e| ShimError::os(format!("kill {}", self.pid), e))
    }

    fn running_state(&self) -> ShimState {
        ShimState {
            pid: self.pid.as_raw(),
            status: Status::Running,
            started_at: self.started_at.clone(),
            exit_code: None,
            finished_at: None,
            oom_killed: None,
        }
    }

    /// Blocks until the init has exited without reaping it (so `kill` may still use the PID
    /// meanwhile), then reaps it under the lock `kill` takes. Returns Docker's exit code.
    fn reap(&self) -> Result<i32> {
        loop {
            match waitid(
                Id::Pid(self.pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(ShimError::os(format!("waitid {}", self.pid), e)),
            }
        }
        let mut reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        let status = loop {
            match waitpid(self.pid, None) {
                Ok(status) => break status,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(ShimError::os(format!("waitpid {}", self.pid), e)),
            }
        };
        *reaped = true;
        exit_code(status).ok_or_else(|| {
            ShimError::os(format!("waitpid {}: {status:?}", self.pid), Errno::ECHILD)
        })
    }
}

fn pipe(name: &str) -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::os(format!("{name} pipe"), e))
}

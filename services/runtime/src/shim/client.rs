//! The runtime's side of the shim protocol: starting a `wharf-shim` process for a bundle and
//! asking it things, one connection per request. A shim that is gone (the container exited
//! and its shim with it, or the shim died) is [`ShimError::Gone`]: the state file then has
//! the container's last state ([`ShimClient::read_state_file`]).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Command;

use super::error::{Result, ShimError};
use super::protocol::{ShimLaunch, ShimReply, ShimRequest, SOCKET_FILE, STATE_FILE};
use super::state::ShimState;

/// How long a new shim may take to say `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest answer line accepted.
const MAX_REPLY: usize = 1024 * 1024;

/// The shim of one bundle directory.
#[derive(Debug, Clone)]
pub struct ShimClient {
    bundle: PathBuf,
}

/// The shim's program name. Shims are started under it whatever their binary, so that
/// `wharf` itself can serve as the shim (its `main` looks at the name).
pub const SHIM_NAME: &str = "wharf-shim";

/// `wharf-shim` next to the running executable if it is there, else the first on `PATH`, else
/// the running executable itself: `wharf` serves as the shim when started under its name, so
/// an install of `wharf` alone (`cargo install`) runs containers. The small `wharf-shim` is
/// preferred where installed: a container's shim then maps less.
pub fn default_shim_binary() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let sibling = exe
        .as_ref()
        .and_then(|exe| exe.parent().map(|dir| dir.join(SHIM_NAME)))
        .filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(SHIM_NAME))
                .find(|candidate| candidate.is_file())
        })
    };
    sibling
        .or_else(on_path)
        .or(exe)
        .unwrap_or_else(|| PathBuf::from(SHIM_NAME))
}

/// A shim process started but not launched yet: it waits for its [`ShimLaunch`] on stdin, so
/// the process starts while the runtime still prepares the container. Dropped without
/// [`StartingShim::launch`], its stdin closes empty and it exits without a word.
#[derive(Debug)]
pub struct StartingShim {
    binary: PathBuf,
    bundle: PathBuf,
    /// Taken by `launch`.
    child: Option<tokio::process::Child>,
}

impl StartingShim {
    /// Starts `shim_binary` for `bundle` in a session of its own.
    pub fn start(shim_binary: &Path, bundle: &Path) -> Result<StartingShim> {
        let mut command = Command::new(shim_binary);
        command
            .arg0(SHIM_NAME)
            .arg(bundle)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Only a crash before `ready` writes here; then the shim points stderr elsewhere.
            .stderr(Stdio::inherit())
            .kill_on_drop(false);
        // SAFETY: setsid is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| ShimError::io(format!("start {}", shim_binary.display()), e))?;
        Ok(StartingShim {
            binary: shim_binary.to_path_buf(),
            bundle: bundle.to_path_buf(),
            child: Some(child),
        })
    }

    /// Hands the shim its `launch` and returns once it listens (the container is not started
    /// yet: see [`ShimClient::start`]); the shim's own error otherwise.
    pub async fn launch(mut self, launch: &ShimLaunch) -> Result<ShimClient> {
        let json = serde_json::to_vec(launch).map_err(|e| ShimError::Protocol(e.to_string()))?;
        let mut child = self.child.take().expect("launched once");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let binary = &self.binary;
        let handshake = async {
            // A shim that died early closes the pipe: its first line (or none) says why.
            let _ = stdin.write_all(&json).await;
            drop(stdin);
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .await
                .map(|_| line)
        };
        let read = tokio::time::timeout(READY_TIMEOUT, handshake).await;
        if read.is_err() {
            let _ = child.start_kill();
        }
        // The shim outlives us or exits on its own; either way no zombie stays behind.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        match read {
            Err(_) => Err(ShimError::Protocol(format!(
                "{} was not ready after {READY_TIMEOUT:?}",
                binary.display()
            ))),
            Ok(Err(e)) => Err(ShimError::io("read the shim's first line", e)),
            Ok(Ok(line)) => match line.trim_end_matches('\n') {
                "ready" => Ok(ShimClient::open(&self.bundle)),
                other => match other.strip_prefix("error ") {
                    Some(message) => Err(ShimError::Refused(message.to_string())),
                    None if other.is_empty() => Err(ShimError::Protocol(
                        "the shim exited before it was ready".into(),
                    )),
                    None => Err(ShimError::Protocol(format!(
                        "unexpected first line {other:?}"
                    ))),
                },
            },
        }
    }
}

impl Drop for StartingShim {
    fn drop(&mut self) {
        // Not launched: its stdin closes empty, it exits at once; reap it.
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
}

impl ShimClient {
    /// Starts `shim_binary` for `bundle` and hands it `launch`: [`StartingShim::start`] then
    /// [`StartingShim::launch`].
    pub async fn spawn(
        shim_binary: &Path,
        bundle: &Path,
        launch: &ShimLaunch,
    ) -> Result<ShimClient> {
        StartingShim::start(shim_binary, bundle)?
            .launch(launch)
            .await
    }

    /// The shim of `bundle`, started earlier (possibly by an earlier runtime process).
    pub fn open(bundle: &Path) -> ShimClient {
        ShimClient {
            bundle: bundle.to_path_buf(),
        }
    }

    pub fn bundle(&self) -> &Path {
        &self.bundle
    }

    /// The state file as the shim last wrote it: what to use once the shim is gone.
    pub fn read_state_file(&self) -> Result<ShimState> {
        ShimState::read(&self.bundle.join(STATE_FILE))
    }

    /// Launches the container; its state (running, with its PID), or the launch error in
    /// Docker's words ([`ShimError::Refused`]).
    pub async fn start(&self) -> Result<ShimState> {
        let reply = self.ask(&ShimRequest::Start).await?.1;
        state_of(reply)
    }

    /// Attaches to the container's output (and stdin with `stdin`). The stream then carries
    /// the output (multiplexed without a TTY) until the container's output ends; writes to it
    /// go to the container's stdin, and shutting down its writing half ends that stdin.
    pub async fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Result<UnixStream> {
        let request = ShimRequest::Attach {
            stdin,
            stdout,
            stderr,
        };
        let (stream, reply) = self.ask(&request).await?;
        refused(reply)?;
        Ok(stream)
    }

    /// Sends `signal` to the container's init.
    pub async fn kill(&self, signal: i32) -> Result<()> {
        refused(self.ask(&ShimRequest::Kill { signal }).await?.1)
    }

    /// Sets the container's terminal size.
    pub async fn resize(&self, height: u16, width: u16) -> Result<()> {
        refused(self.ask(&ShimRequest::Resize { height, width }).await?.1)
    }

    /// Closes the container's stdin (after what attached clients already sent).
    pub async fn close_stdin(&self) -> Result<()> {
        refused(self.ask(&ShimRequest::CloseStdin).await?.1)
    }

    /// Waits for the container to exit; its final state.
    pub async fn wait(&self) -> Result<ShimState> {
        state_of(self.ask(&ShimRequest::Wait).await?.1)
    }

    /// The container's current state.
    pub async fn state(&self) -> Result<ShimState> {
        state_of(self.ask(&ShimRequest::State).await?.1)
    }

    fn gone(&self) -> ShimError {
        ShimError::Gone {
            bundle: self.bundle.clone(),
        }
    }

    /// Connects through the open bundle directory (the socket's path may be too long for
    /// `sun_path`).
    async fn connect(&self) -> Result<UnixStream> {
        // Opening a directory does not block for long; no need for a blocking thread.
        let dir = match std::fs::File::open(&self.bundle) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(self.gone()),
            Err(e) => return Err(ShimError::io(format!("open {}", self.bundle.display()), e)),
        };
        let path = format!("/proc/self/fd/{}/{SOCKET_FILE}", dir.as_raw_fd());
        let connected = UnixStream::connect(&path).await;
        drop(dir);
        connected.map_err(|e| self.lost(e, "connect to"))
    }

    fn lost(&self, e: std::io::Error, doing: &str) -> ShimError {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound | ConnectionRefused | ConnectionReset | BrokenPipe | UnexpectedEof => {
                self.gone()
            }
            _ => ShimError::io(format!("{doing} the shim of {}", self.bundle.display()), e),
        }
    }

    /// Sends `request` and reads the answer line, leaving anything after it in the stream.
    async fn ask(&self, request: &ShimRequest) -> Result<(UnixStream, ShimReply)> {
        let mut stream = self.connect().await?;
        let mut line = serde_json::to_vec(request).expect("a request serializes");
        line.push(b'\n');
        stream
            .write_all(&line)
            .await
            .map_err(|e| self.lost(e, "write to"))?;
        // Byte by byte: an attach's output follows the answer at once and must stay unread.
        let mut answer = Vec::new();
        loop {
            let byte = stream
                .read_u8()
                .await
                .map_err(|e| self.lost(e, "read from"))?;
            if byte == b'\n' {
                break;
            }
            if answer.len() >= MAX_REPLY {
                return Err(ShimError::Protocol("answer line too long".into()));
            }
            answer.push(byte);
        }
        let reply = serde_json::from_slice(&answer)
            .map_err(|e| ShimError::Protocol(format!("bad answer: {e}")))?;
        Ok((stream, reply))
    }
}

fn refused(reply: ShimReply) -> Result<()> {
    if reply.ok {
        Ok(())
    } else {
        Err(ShimError::Refused(reply.error.unwrap_or_default()))
    }
}

fn state_of(reply: ShimReply) -> Result<ShimState> {
    let state = reply.state.clone();
    refused(reply)?;
    state.ok_or_else(|| ShimError::Protocol("answer without a state".into()))
}

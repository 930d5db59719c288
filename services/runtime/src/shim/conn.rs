//! One client connection of the shim process: its request line coming in, its answer and
//! (when attached) the container's output going out, both through bounded buffers so a slow
//! or silent client never blocks the shim.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;

use super::protocol::{ShimReply, ShimRequest};

/// The longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;
/// Output a client may fall behind by before it is dropped.
pub(crate) const MAX_PENDING_OUTPUT: usize = 4 * 1024 * 1024;

/// Where a connection is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Waiting for the request line.
    Request,
    /// A `wait`: answered when the container has exited.
    Waiting,
    /// Attached: gets output, and gives stdin if `stdin`.
    Attached {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Answered (or ended): closed once its output is written.
    Closing,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: UnixStream,
    pub(crate) role: Role,
    /// Bytes of the request line so far.
    line: Vec<u8>,
    /// Bytes for the client, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    /// The client ended its side (shut down its writing half).
    pub(crate) read_closed: bool,
    /// To be closed and forgotten at the end of this round.
    pub(crate) dead: bool,
}

/// What a read from a connection brought.
pub(crate) enum Incoming {
    Nothing,
    /// The request line (and any bytes after it: the start of an attach's stdin).
    Request(Result<ShimRequest, String>, Vec<u8>),
    /// Bytes after the request line.
    Data(usize),
    /// The client ended its writing side.
    End,
}

impl Conn {
    pub(crate) fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            role: Role::Request,
            line: Vec::new(),
            out: Vec::new(),
            sent: 0,
            read_closed: false,
            dead: false,
        }
    }

    pub(crate) fn has_output(&self) -> bool {
        self.sent < self.out.len()
    }

    /// Queues `bytes` for the client; drops a client that fell too far behind.
    pub(crate) fn queue(&mut self, bytes: &[u8]) {
        if self.out.len() - self.sent + bytes.len() > MAX_PENDING_OUTPUT {
            self.dead = true;
            return;
        }
        self.out.extend_from_slice(bytes);
    }

    pub(crate) fn reply(&mut self, reply: &ShimReply) {
        let mut line = serde_json::to_vec(reply).expect("a reply serializes");
        line.push(b'\n');
        self.queue(&line);
    }

    /// Writes what the socket takes now.
    pub(crate) fn flush(&mut self) {
        while self.has_output() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        if !self.has_output() {
            // Give big buffers back: an idle shim stays small.
            if self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
            self.sent = 0;
            if self.role == Role::Closing {
                self.dead = true;
            }
        } else if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Reads once into `buf`. Bytes after the request line are left in `buf[..n]` (`Data(n)`).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Incoming {
        let n = match self.stream.read(buf) {
            Ok(0) => {
                self.read_closed = true;
                if self.role == Role::Request {
                    self.dead = true;
                }
                return Incoming::End;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {
                return Incoming::Nothing
            }
            Err(_) => {
                self.dead = true;
                return Incoming::Nothing;
            }
        };
        if self.role != Role::Request {
            return Incoming::Data(n);
        }
        self.line.extend_from_slice(&buf[..n]);
        let Some(end) = self.line.iter().position(|&b| b == b'\n') else {
            if self.line.len() > MAX_REQUEST {
                self.role = Role::Closing;
                self.reply(&ShimReply::error("request line too long"));
            }
            return Incoming::Nothing;
        };
        let rest = self.line.split_off(end + 1);
        let line = std::mem::take(&mut self.line);
        let request = serde_json::from_slice::<ShimRequest>(&line[..end])
            .map_err(|e| format!("bad request: {e}"));
        Incoming::Request(request, rest)
    }
}

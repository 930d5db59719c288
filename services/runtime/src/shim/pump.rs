//! Copying the container's stdout and stderr into its json-file log: one thread per stream
//! (as dockerd's copier has one goroutine per stream), so a full pipe on one never stalls
//! the other. Each stream keeps its order; the log writer keeps the streams' lines apart.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::logs::{LogWriter, Stream};

use super::error::Result;

/// The threads copying both streams; [`Pump::finish`] waits for both to reach EOF.
#[derive(Debug)]
pub(crate) struct Pump {
    writer: Arc<Mutex<LogWriter>>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Pump {
    /// Starts copying `stdout` and `stderr` (read ends of the container's pipes) into `writer`.
    pub(crate) fn start(writer: LogWriter, stdout: OwnedFd, stderr: OwnedFd) -> Pump {
        let writer = Arc::new(Mutex::new(writer));
        let threads = [(Stream::Stdout, stdout), (Stream::Stderr, stderr)]
            .into_iter()
            .map(|(stream, fd)| {
                let writer = Arc::clone(&writer);
                std::thread::spawn(move || copy(stream, fd, &writer))
            })
            .collect();
        Pump { writer, threads }
    }

    /// Waits for both streams to end, then writes their incomplete last lines and makes the
    /// log durable.
    pub(crate) fn finish(self) -> Result<()> {
        let mut first_error = None;
        for thread in self.threads {
            let outcome = thread.join().expect("log pump thread panicked");
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        let writer = Arc::try_unwrap(self.writer)
            .expect("pump threads are done")
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        writer.close()?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn copy(stream: Stream, fd: OwnedFd, writer: &Mutex<LogWriter>) -> Result<()> {
    let mut pipe = std::fs::File::from(fd);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A broken pipe read is EOF for the log's purposes; keep what was logged.
            Err(_) => return Ok(()),
        };
        let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writer.write(stream, &buf[..n]) {
            // Keep draining so the container never blocks on a full pipe; report at the end.
            drop(writer);
            drain(&mut pipe, &mut buf);
            return Err(e.into());
        }
    }
}

fn drain(pipe: &mut std::fs::File, buf: &mut [u8]) {
    while matches!(pipe.read(buf), Ok(n) if n > 0) {}
}

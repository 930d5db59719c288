//! Appending a container's output to its json-file log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::logs::encode::encode_line;
use crate::logs::rotation;
use crate::logs::split::{LineSplitter, Piece};
use crate::logs::{LogError, Result, Stream};

/// dockerd's log file mode.
const LOG_FILE_MODE: u32 = 0o640;

/// Writes one container's log; the shim owns one per container.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
    stdout: LineSplitter,
    stderr: LineSplitter,
}

impl LogWriter {
    /// Opens `path` for appending (a restarted container continues its log). `max_size` is
    /// `max-size` in bytes (`None`: never rotate); `max_files` is `max-file`, at least 1.
    pub fn create(path: impl Into<PathBuf>, max_size: Option<u64>, max_files: u32) -> Result<Self> {
        let path = path.into();
        if max_files == 0 {
            return Err(LogError::InvalidOption(
                "max-file cannot be less than 1".to_string(),
            ));
        }
        if max_size == Some(0) {
            return Err(LogError::InvalidOption(
                "max-size must be a positive number".to_string(),
            ));
        }
        let file = open_append(&path, false)?;
        let size = file
            .metadata()
            .map_err(|e| LogError::io(format!("stat {}", path.display()), e))?
            .len();
        Ok(LogWriter {
            path,
            file,
            size,
            max_size,
            max_files,
            stdout: LineSplitter::default(),
            stderr: LineSplitter::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs output of `stream`; an incomplete last line waits for the rest (or
    /// [`LogWriter::flush_partial`]).
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<()> {
        self.write_at(stream, bytes, Utc::now())
    }

    /// [`LogWriter::write`] with the time the output was read.
    pub fn write_at(&mut self, stream: Stream, bytes: &[u8], now: DateTime<Utc>) -> Result<()> {
        let pieces = self.splitter(stream).push(bytes, now);
        self.append(stream, pieces)
    }

    /// The streams ended: writes each stream's incomplete line.
    pub fn flush_partial(&mut self) -> Result<()> {
        self.flush_partial_at(Utc::now())
    }

    /// [`LogWriter::flush_partial`] with the time the streams ended.
    pub fn flush_partial_at(&mut self, now: DateTime<Utc>) -> Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pieces: Vec<Piece> = self.splitter(stream).finish(now).into_iter().collect();
            self.append(stream, pieces)?;
        }
        Ok(())
    }

    /// Flushes the incomplete lines. Not synced (dockerd's json-file log is not either): a
    /// container's exit must not wait behind whatever else the file system is writing.
    pub fn close(mut self) -> Result<()> {
        self.flush_partial()
    }

    fn splitter(&mut self, stream: Stream) -> &mut LineSplitter {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn append(&mut self, stream: Stream, pieces: Vec<Piece>) -> Result<()> {
        let mut line = Vec::new();
        for piece in pieces {
            line.clear();
            encode_line(&mut line, stream, &piece.log, piece.time);
            // As dockerd: rotate before the entry once the file has reached max-size, so a
            // file may exceed it by one entry and an entry is never split across files.
            if self.max_size.is_some_and(|max| self.size >= max) {
                self.rotate()?;
            }
            // One write per entry on an O_APPEND file: a reader or a crash sees whole lines
            // (write_all only loops on a short write, i.e. a full disk).
            self.file
                .write_all(&line)
                .map_err(|e| LogError::io(format!("write {}", self.path.display()), e))?;
            self.size += line.len() as u64;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        rotation::shift(&self.path, self.max_files)?;
        // With max-file 1 the only file starts over.
        self.file = open_append(&self.path, self.max_files < 2)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path, truncate: bool) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
        .map_err(|e| LogError::io(format!("open {}", path.display()), e))?;
    // O_TRUNC cannot be combined with append in std; truncating after open is equivalent.
    if truncate {
        file.set_len(0)
            .map_err(|e| LogError::io(format!("truncate {}", path.display()), e))?;
    }
    Ok(file)
}

//! Reading a container's json-file log set, as `docker logs` without `--follow` does.

use std::path::{Path, PathBuf};

use crate::logs::encode::decode_line;
use crate::logs::entry::LogEntry;
use crate::logs::follow::Follow;
use crate::logs::rotation;
use crate::logs::{LogError, Result, Stream};

/// The `docker logs` options that select entries.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Entries at or after this time (Unix nanoseconds).
    pub since: Option<i64>,
    /// Entries at or before this time (Unix nanoseconds); reading stops at the first later one.
    pub until: Option<i64>,
    /// The last N entries on disk, across files and both streams (as dockerd, before the
    /// stream selection and time filters apply; a partial piece counts as one).
    pub tail: Option<usize>,
    pub stdout: bool,
    pub stderr: bool,
    /// Prefix each payload with the time (`docker logs -t`); see [`crate::logs::payload`].
    pub timestamps: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            since: None,
            until: None,
            tail: None,
            stdout: true,
            stderr: true,
            timestamps: false,
        }
    }
}

/// What to do with one entry after the tail is taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    Skip,
    /// Past `until`: nothing later is wanted.
    Stop,
}

impl ReadOptions {
    pub(crate) fn judge(&self, entry: &LogEntry) -> Verdict {
        let nanos = entry.unix_nanos();
        if self.until.is_some_and(|until| nanos > until) {
            return Verdict::Stop;
        }
        if self.since.is_some_and(|since| nanos < since) {
            return Verdict::Skip;
        }
        let wanted = match entry.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        if wanted {
            Verdict::Keep
        } else {
            Verdict::Skip
        }
    }

    /// Applies tail, then the filters, to entries in order; returns the kept ones and whether
    /// `until` was passed.
    pub(crate) fn select(&self, mut entries: Vec<LogEntry>) -> (Vec<LogEntry>, bool) {
        if let Some(tail) = self.tail {
            let skip = entries.len().saturating_sub(tail);
            entries.drain(..skip);
        }
        let mut kept = Vec::new();
        for entry in entries {
            match self.judge(&entry) {
                Verdict::Keep => kept.push(entry),
                Verdict::Skip => {}
                Verdict::Stop => return (kept, true),
            }
        }
        (kept, false)
    }
}

/// Reads the log written at `path` (and its rotated files).
#[derive(Debug, Clone)]
pub struct LogReader {
    path: PathBuf,
}

impl LogReader {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LogReader { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The selected entries on disk now, oldest first.
    pub fn read(&self, options: &ReadOptions) -> Result<Vec<LogEntry>> {
        let mut entries = self.read_rotated()?;
        read_file(&self.path, &mut entries)?;
        Ok(options.select(entries).0)
    }

    /// Every entry of the rotated files, oldest first.
    pub(crate) fn read_rotated(&self) -> Result<Vec<LogEntry>> {
        let mut entries = Vec::new();
        for file in rotation::rotated_oldest_first(&self.path) {
            read_file(&file, &mut entries)?;
        }
        Ok(entries)
    }

    /// The selected entries on disk now, then those written later, across rotations
    /// (`docker logs --follow`).
    pub fn follow(&self, options: &ReadOptions) -> Result<Follow> {
        Follow::start(self.path.clone(), options.clone())
    }
}

/// Appends the entries of one whole file; a missing file has none (rotated away meanwhile).
fn read_file(path: &Path, entries: &mut Vec<LogEntry>) -> Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LogError::io(format!("read {}", path.display()), e)),
    };
    decode_lines(path, &bytes, 0, entries)?;
    Ok(())
}

/// Decodes the complete lines of `bytes` (an unfinished last line is left, as not yet written)
/// and returns how many bytes were consumed. `first_line` numbers lines in errors.
pub(crate) fn decode_lines(
    path: &Path,
    bytes: &[u8],
    first_line: usize,
    entries: &mut Vec<LogEntry>,
) -> Result<usize> {
    let mut consumed = 0;
    let mut line_number = first_line;
    while let Some(end) = bytes[consumed..].iter().position(|&b| b == b'\n') {
        let line = &bytes[consumed..consumed + end];
        line_number += 1;
        consumed += end + 1;
        if line.is_empty() {
            continue;
        }
        let entry = decode_line(line).map_err(|reason| LogError::Corrupt {
            path: path.to_path_buf(),
            line: line_number,
            reason,
        })?;
        entries.push(entry);
    }
    Ok(consumed)
}

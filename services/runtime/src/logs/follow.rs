//! `docker logs --follow`: the entries on disk, then those appended later, across rotations.
//!
//! Polls rather than using inotify: no extra dependency or watch to re-arm when the file is
//! renamed, it works where inotify does not (overlay upper dirs, network file systems), and
//! dockerd itself falls back to polling; a 100 ms poll costs one `read` and one `stat`.
//!
//! The follower keeps the file it reads open. When `<path>` turns out to be another file (the
//! writer rotated), it reads the old file to its end first (the writer finished it before
//! renaming), then continues at the start of the new one. A rotation of more than one file
//! between two polls loses the files in between (dockerd's follower has the same limit).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::logs::entry::LogEntry;
use crate::logs::reader::{decode_lines, LogReader, ReadOptions, Verdict};
use crate::logs::{LogError, Result};

pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Ends a [`Follow`] from elsewhere (the container exited): it yields what is on disk, then ends.
#[derive(Debug, Clone)]
pub struct FollowStop(Arc<AtomicBool>);

impl FollowStop {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The open file being followed.
#[derive(Debug)]
struct Current {
    file: File,
    /// (device, inode): tells a rotated-in file from the one we hold.
    identity: (u64, u64),
    position: u64,
}

/// Entries as they are written; an [`Iterator`] that blocks between polls.
#[derive(Debug)]
pub struct Follow {
    path: PathBuf,
    options: ReadOptions,
    current: Option<Current>,
    /// Bytes of a line not completely written yet.
    pending: Vec<u8>,
    queue: VecDeque<LogEntry>,
    /// `until` was passed, or the follow was stopped and drained.
    finished: bool,
    stop: Arc<AtomicBool>,
    poll_interval: Duration,
}

impl Follow {
    pub(crate) fn start(path: PathBuf, options: ReadOptions) -> Result<Follow> {
        // Open <path> before reading the rotated files, so nothing written meanwhile is missed.
        let mut follow = Follow {
            current: open_current(&path)?,
            path,
            options,
            pending: Vec::new(),
            queue: VecDeque::new(),
            finished: false,
            stop: Arc::new(AtomicBool::new(false)),
            poll_interval: DEFAULT_POLL_INTERVAL,
        };
        // The rotated files, then the held file from its start: the same view as `read`.
        let rotated = LogReader::new(follow.path.clone()).read_rotated()?;
        let mut entries = rotated;
        follow.read_current(&mut entries)?;
        let (kept, passed_until) = follow.options.select(entries);
        follow.queue.extend(kept);
        follow.finished = passed_until;
        Ok(follow)
    }

    pub fn with_poll_interval(mut self, interval: Duration) -> Follow {
        self.poll_interval = interval;
        self
    }

    pub fn stopper(&self) -> FollowStop {
        FollowStop(self.stop.clone())
    }

    /// The next entry if one is on disk now, without waiting.
    pub fn try_next(&mut self) -> Result<Option<LogEntry>> {
        if self.queue.is_empty() && !self.finished {
            self.poll()?;
        }
        Ok(self.queue.pop_front())
    }

    /// The next entry, waiting at most `timeout`; `None` on timeout or at the end.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<LogEntry>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.step()? {
                Step::Entry(entry) => return Ok(Some(entry)),
                Step::End => return Ok(None),
                Step::Wait => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(self.poll_interval.min(deadline - now));
        }
    }

    /// The next entry for async callers; sleeps on the tokio timer between polls (each poll
    /// is one short read and one stat of a local file).
    pub async fn next_async(&mut self) -> Option<Result<LogEntry>> {
        loop {
            match self.step() {
                Ok(Step::Entry(entry)) => return Some(Ok(entry)),
                Ok(Step::End) => return None,
                Ok(Step::Wait) => tokio::time::sleep(self.poll_interval).await,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Whether no entry will come any more.
    pub fn is_finished(&self) -> bool {
        self.finished && self.queue.is_empty()
    }

    fn step(&mut self) -> Result<Step> {
        if let Some(entry) = self.queue.pop_front() {
            return Ok(Step::Entry(entry));
        }
        if self.finished {
            return Ok(Step::End);
        }
        // Read the stop flag before polling, so the last poll sees everything written before it.
        let stopped = self.stop.load(Ordering::SeqCst);
        self.poll()?;
        if let Some(entry) = self.queue.pop_front() {
            return Ok(Step::Entry(entry));
        }
        if stopped {
            self.finished = true;
            return Ok(Step::End);
        }
        Ok(Step::Wait)
    }

    /// Queues what was written since the last poll.
    fn poll(&mut self) -> Result<()> {
        let mut entries = Vec::new();
        self.read_current(&mut entries)?;
        if entries.is_empty() && self.rotated()? {
            // The writer finished the old file before renaming it; take its end, then switch.
            self.read_current(&mut entries)?;
            self.current = open_current(&self.path)?;
            // A line left unfinished in the old file was cut by a crash; it never completes.
            self.pending.clear();
            self.read_current(&mut entries)?;
        }
        for entry in entries {
            match self.options.judge(&entry) {
                Verdict::Keep => self.queue.push_back(entry),
                Verdict::Skip => {}
                Verdict::Stop => {
                    self.finished = true;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Whether `<path>` now names another file than the one held.
    fn rotated(&self) -> Result<bool> {
        match std::fs::metadata(&self.path) {
            Ok(meta) => Ok(self
                .current
                .as_ref()
                .is_none_or(|current| current.identity != (meta.dev(), meta.ino()))),
            // Between the writer's rename and create: wait for the new file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(LogError::io(format!("stat {}", self.path.display()), e)),
        }
    }

    /// Decodes the complete lines appended to the held file.
    fn read_current(&mut self, entries: &mut Vec<LogEntry>) -> Result<()> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let context = || format!("read {}", self.path.display());
        let length = current
            .file
            .metadata()
            .map_err(|e| LogError::io(context(), e))?
            .len();
        if length < current.position {
            // Truncated in place (max-file 1 rotates that way): start over.
            current
                .file
                .seek(SeekFrom::Start(0))
                .map_err(|e| LogError::io(context(), e))?;
            current.position = 0;
            self.pending.clear();
        }
        let before = self.pending.len();
        let read = current
            .file
            .read_to_end(&mut self.pending)
            .map_err(|e| LogError::io(context(), e))?;
        current.position += read as u64;
        if self.pending.len() == before {
            return Ok(());
        }
        let consumed = decode_lines(&self.path, &self.pending, 0, entries)?;
        self.pending.drain(..consumed);
        Ok(())
    }
}

enum Step {
    Entry(LogEntry),
    End,
    Wait,
}

impl Iterator for Follow {
    type Item = Result<LogEntry>;

    /// Blocks until an entry is written, the follow is stopped, or `until` is passed.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.step() {
                Ok(Step::Entry(entry)) => return Some(Ok(entry)),
                Ok(Step::End) => return None,
                Ok(Step::Wait) => std::thread::sleep(self.poll_interval),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

fn open_current(path: &std::path::Path) -> Result<Option<Current>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(format!("open {}", path.display()), e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| LogError::io(format!("stat {}", path.display()), e))?;
    Ok(Some(Current {
        file,
        identity: (meta.dev(), meta.ino()),
        position: 0,
    }))
}

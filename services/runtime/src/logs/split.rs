//! Cutting one output stream into entries the way dockerd's log copier does: a line per `\n`,
//! and a line that does not fit its 16 KiB buffer written as partial entries of exactly that
//! size (no `\n`), all stamped with the time of the first piece.

use chrono::{DateTime, Utc};

/// dockerd's copier buffer: the longest entry the json-file driver writes.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// One entry's `"log"` bytes and time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub log: Vec<u8>,
    pub time: DateTime<Utc>,
}

/// The incomplete line of one stream.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    /// Set while a long line is being written in pieces.
    partial_time: Option<DateTime<Utc>>,
}

impl LineSplitter {
    /// Adds output and returns the entries it completes.
    pub fn push(&mut self, bytes: &[u8], now: DateTime<Utc>) -> Vec<Piece> {
        self.pending.extend_from_slice(bytes);
        let mut pieces = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            // Only a newline inside the first buffer-full counts: dockerd never sees further.
            let window = &rest[..rest.len().min(MAX_ENTRY_BYTES)];
            if let Some(newline) = window.iter().position(|&b| b == b'\n') {
                pieces.push(Piece {
                    log: rest[..=newline].to_vec(),
                    time: self.partial_time.take().unwrap_or(now),
                });
                start += newline + 1;
            } else if rest.len() >= MAX_ENTRY_BYTES {
                pieces.push(Piece {
                    log: rest[..MAX_ENTRY_BYTES].to_vec(),
                    time: *self.partial_time.get_or_insert(now),
                });
                start += MAX_ENTRY_BYTES;
            } else {
                break;
            }
        }
        self.pending.drain(..start);
        pieces
    }

    /// The stream ended: the incomplete line, if any, as a whole line. dockerd's json-file
    /// driver appends the `\n` to every non-partial entry, this one included.
    pub fn finish(&mut self, now: DateTime<Utc>) -> Option<Piece> {
        let time = self.partial_time.take().unwrap_or(now);
        if self.pending.is_empty() {
            return None;
        }
        let mut log = std::mem::take(&mut self.pending);
        log.push(b'\n');
        Some(Piece { log, time })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn line_split_over_writes_is_one_entry() {
        let now = Utc.timestamp_nanos(1);
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(b"hel", now).is_empty());
        let pieces = splitter.push(b"lo\nwor", now);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].log, b"hello\n");
        assert_eq!(splitter.finish(now).unwrap().log, b"wor\n");
        assert!(splitter.finish(now).is_none());
    }

    #[test]
    fn line_of_exactly_the_buffer_size_leaves_an_empty_last_piece() {
        // dockerd's buffer fills before the newline arrives.
        let now = Utc.timestamp_nanos(1);
        let mut line = vec![b'x'; MAX_ENTRY_BYTES];
        line.push(b'\n');
        let pieces = LineSplitter::default().push(&line, now);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].log.len(), MAX_ENTRY_BYTES);
        assert_eq!(pieces[1].log, b"\n");
    }

    #[test]
    fn pieces_of_a_long_line_share_the_first_pieces_time() {
        let mut splitter = LineSplitter::default();
        let first = splitter.push(&[b'a'; MAX_ENTRY_BYTES], Utc.timestamp_nanos(5));
        let last = splitter.push(b"b\n", Utc.timestamp_nanos(9));
        assert_eq!(first[0].time, Utc.timestamp_nanos(5));
        assert_eq!(last[0].time, Utc.timestamp_nanos(5));
        assert_eq!(
            splitter.push(b"c\n", Utc.timestamp_nanos(9))[0].time,
            Utc.timestamp_nanos(9)
        );
    }
}

//! One log entry as the json-file driver stores it, and dockerd's two timestamp spellings.

use chrono::{DateTime, Utc};

/// The container stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The `"stream"` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn parse(name: &str) -> Option<Stream> {
        match name {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One entry: a whole line (ending in `\n`) or one partial piece of a long line (no `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    /// The `"log"` field: the container's bytes, with the line's `\n` unless partial.
    pub log: Vec<u8>,
    pub time: DateTime<Utc>,
}

impl LogEntry {
    /// Whether this is a piece of a line longer than [`crate::logs::MAX_ENTRY_BYTES`] that the
    /// following entries of the same stream complete.
    pub fn is_partial(&self) -> bool {
        self.log.last() != Some(&b'\n')
    }

    /// Nanoseconds since the Unix epoch (what `since`/`until` compare against).
    pub fn unix_nanos(&self) -> i64 {
        unix_nanos(self.time)
    }
}

pub(crate) fn unix_nanos(time: DateTime<Utc>) -> i64 {
    // Saturates outside 1677..2262, where i64 nanoseconds end.
    time.timestamp_nanos_opt()
        .unwrap_or(if time.timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        })
}

/// Go's `time.RFC3339Nano` in UTC, as dockerd writes `"time"`: trailing zeros of the fraction
/// dropped, and no fraction at all on a whole second.
pub fn format_go_rfc3339_nano(time: DateTime<Utc>) -> String {
    let mut text = time.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = time.timestamp_subsec_nanos();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// dockerd's `RFC3339NanoFixed` in UTC, as `docker logs -t` prints: always nine digits.
pub fn format_fixed_nanos(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

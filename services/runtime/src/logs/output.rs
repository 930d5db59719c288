//! What `docker logs` sends for each entry: the payload (optionally time-prefixed) and, for a
//! container without a TTY, dockerd's stream multiplexing frame around it.

use chrono::{DateTime, Utc};

use crate::logs::entry::{format_fixed_nanos, LogEntry, Stream};

/// `2024-01-01T00:00:00.123456789Z ` as `docker logs -t` prefixes each entry.
pub fn timestamp_prefix(time: DateTime<Utc>) -> String {
    let mut prefix = format_fixed_nanos(time);
    prefix.push(' ');
    prefix
}

/// The entry's bytes as `docker logs` writes them, time-prefixed with `timestamps`.
pub fn payload(entry: &LogEntry, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if timestamps {
        out.extend_from_slice(timestamp_prefix(entry.time).as_bytes());
    }
    out.extend_from_slice(&entry.log);
    out
}

/// `[stream, 0, 0, 0, size as big-endian u32]`: stdout is 1, stderr 2 (0 is stdin).
pub fn multiplex_header(stream: Stream, size: u32) -> [u8; 8] {
    let kind = match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    };
    let size = size.to_be_bytes();
    [kind, 0, 0, 0, size[0], size[1], size[2], size[3]]
}

/// One frame: the header and `payload`. dockerd frames each write as one frame; an entry is at
/// most 16 KiB plus a timestamp, far below the u32 limit.
pub fn multiplex_frame(stream: Stream, payload: &[u8]) -> Vec<u8> {
    let size = u32::try_from(payload.len()).expect("log entry larger than 4 GiB");
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&multiplex_header(stream, size));
    frame.extend_from_slice(payload);
    frame
}

//! Docker's `json-file` log driver as a library: the shim writes a container's output with
//! [`LogWriter`], `docker logs` reads it back with [`LogReader`], byte for byte as dockerd does.
//!
//! - `entry`: one log entry, its stream and dockerd's two timestamp spellings.
//! - `encode`: one entry as one JSON line, escaped exactly as dockerd's marshaller escapes.
//! - `split`: cutting a stream into lines and 16 KiB partial entries, as dockerd's copier cuts.
//! - `rotation`: the `<path>`, `<path>.1`, ... file set of `max-size`/`max-file`.
//! - [`LogWriter`] (in `writer`): appending entries, one `write` per entry, rotating.
//! - [`LogReader`] (in `reader`): tail, since, until and stream selection over the file set.
//! - [`Follow`] (in `follow`): entries appended later, across rotations.
//! - `output`: the stream multiplexing header and `docker logs -t` prefix.

mod encode;
mod entry;
mod error;
mod follow;
mod output;
mod reader;
mod rotation;
mod split;
mod writer;

pub use entry::{format_fixed_nanos, format_go_rfc3339_nano, LogEntry, Stream};
pub use error::{LogError, Result};
pub use follow::{Follow, FollowStop, DEFAULT_POLL_INTERVAL};
pub use output::{multiplex_frame, multiplex_header, payload, timestamp_prefix};
pub use reader::{LogReader, ReadOptions};
pub use rotation::rotated_path;
pub use split::MAX_ENTRY_BYTES;
pub use writer::LogWriter;

//! What can go wrong with container logs.

use std::path::PathBuf;

/// Errors of the log writer and reader.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A bad `max-size`/`max-file` or read option.
    #[error("{0}")]
    InvalidOption(String),
    /// A line of a log file that is not a json-file entry.
    #[error("{}:{line}: not a json-file log entry: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A local file system failure.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        LogError::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}

//! What can go wrong with volumes, in kinds a caller can map to Docker's status codes.

/// Errors of the volume store.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A bad name, option or filter (Docker answers 400).
    #[error("{0}")]
    InvalidParameter(String),
    /// No volume has that name (404).
    #[error("get {0}: no such volume")]
    NotFound(String),
    /// The volume is mounted by containers (409); the text is dockerd's.
    #[error("remove {name}: volume is in use - [{}]", containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    /// The name exists with other options (409).
    #[error("{0}")]
    Conflict(String),
    /// The image content cannot be copied into the volume safely.
    #[error("copy into volume {name}: {reason}")]
    CopyUp { name: String, reason: String },
    /// A local file system failure.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

impl VolumeError {
    pub(crate) fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        VolumeError::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}

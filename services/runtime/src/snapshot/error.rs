//! What can go wrong while preparing snapshots, in kinds a caller can act on.

use wharf_bus::BusError;

/// Errors of the snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The image record itself is unusable (a malformed digest, diff IDs that disagree).
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// A layer entry that would write outside the layer or through a link: the layer is refused.
    #[error("unsafe layer entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    /// The layer is not a readable (compressed) tar.
    #[error("malformed layer: {0}")]
    Malformed(String),
    /// The uncompressed layer does not hash to its diff ID.
    #[error("layer content does not match its diff ID: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: String, actual: String },
    /// The blob as downloaded does not hash to its digest.
    #[error("layer blob does not match its digest: expected {expected}, got {actual}")]
    BlobDigestMismatch { expected: String, actual: String },
    /// The blob could not be fetched (image-store said no, or the bus failed).
    #[error("cannot fetch layer blob: {0}")]
    Fetch(#[source] BusError),
    /// A local file system failure.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A failure while handling one layer (its blob digest names it).
    #[error("layer {digest}: {source}")]
    Layer {
        digest: String,
        #[source]
        source: Box<SnapshotError>,
    },
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

impl SnapshotError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SnapshotError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn unsafe_entry(entry: &[u8], reason: impl Into<String>) -> Self {
        SnapshotError::UnsafeEntry {
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    /// A failure while reading the layer stream: a bus error that travelled inside the reader
    /// comes back as [`SnapshotError::Fetch`], bad data as [`SnapshotError::Malformed`].
    pub(crate) fn reading(context: &str, err: std::io::Error) -> Self {
        if err.get_ref().map(|e| e.is::<BusError>()).unwrap_or(false) {
            return SnapshotError::Fetch(wharf_bus::error::from_io(err));
        }
        match err.kind() {
            std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::Other => SnapshotError::Malformed(format!("{context}: {err}")),
            _ => SnapshotError::io(context, err),
        }
    }

    pub(crate) fn in_layer(self, digest: &str) -> Self {
        match self {
            SnapshotError::Layer { .. } => self,
            other => SnapshotError::Layer {
                digest: digest.to_string(),
                source: Box::new(other),
            },
        }
    }

    /// The underlying error, without the layer it happened in.
    pub fn cause(&self) -> &SnapshotError {
        match self {
            SnapshotError::Layer { source, .. } => source.cause(),
            other => other,
        }
    }
}

impl From<SnapshotError> for BusError {
    fn from(err: SnapshotError) -> Self {
        let message = err.to_string();
        match err.cause() {
            SnapshotError::Fetch(bus) => BusError::new(bus.kind, message),
            SnapshotError::Io { .. } => BusError::internal(message),
            _ => BusError::invalid(message),
        }
    }
}

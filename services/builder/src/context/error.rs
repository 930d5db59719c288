//! Why a build context could not be received, with dockerd's texts where it has them.

use std::io;
use std::path::PathBuf;

/// Why a build context could not be received.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context directory {}: {reason}", path.display())]
    BadDestination { path: PathBuf, reason: String },
    /// The body is not a readable (possibly compressed) tar archive.
    #[error("Error processing tar file: {0}")]
    Malformed(String),
    /// dockerd's text for a type `createTarFile` does not handle (e.g. `'7'`, GNU sparse `'S'`).
    #[error("Error processing tar file: unhandled tar header type {typeflag}")]
    UnhandledType { name: String, typeflag: u8 },
    /// An entry would be written through a symlink already extracted.
    #[error("Error processing tar file: {name}: refusing to extract through symlink {link}")]
    ThroughSymlink { name: String, link: String },
    #[error("Error processing tar file: invalid hardlink {name} -> {target}: {reason}")]
    BadHardlink {
        name: String,
        target: String,
        reason: String,
    },
    #[error("build context exceeds the maximum size of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A local I/O failure (disk full, permissions, ...), not the client's fault.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// dockerd's "backwards compatible error", naming the Dockerfile as requested.
    #[error("Cannot locate specified Dockerfile: {0}")]
    DockerfileNotFound(String),
    /// dockerd's `FullPath` error; the parenthesised full path is empty there too.
    #[error("forbidden path outside the build context: {0} ()")]
    OutsideContext(String),
    #[error("the Dockerfile ({0}) cannot be empty")]
    EmptyDockerfile(String),
    /// Go reads any bytes; we need text, so this is ours.
    #[error("the Dockerfile ({0}) is not valid UTF-8")]
    DockerfileNotUtf8(String),
    #[error("unexpected error reading Dockerfile: {0}")]
    DockerfileRead(io::Error),
}

pub(super) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContextError {
    let what = what.into();
    move |source| ContextError::Io { what, source }
}

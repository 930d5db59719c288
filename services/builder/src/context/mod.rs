//! The build context: receiving the `POST /build` body, finding the Dockerfile, and the content
//! hashes the classic builder uses as cache keys for `COPY`/`ADD` sources.
//!
//! Modelled on Docker 20.10 (moby `builder/remotecontext`, `pkg/archive`, `pkg/chrootarchive`,
//! `pkg/tarsum`, and the docker CLI's `cli/command/image/build`):
//!
//! - **Compression** is detected by magic bytes as in `archive.DetectCompression`: gzip, bzip2
//!   and xz as 20.10 does, plus zstd (including skippable frames), which moby only learned in
//!   23.0. Concatenated streams are read to the end, as Go's gzip reader and `xz -d` do.
//! - **Archive or Dockerfile**: dockerd itself always untars the body; it is the CLI that turns
//!   `docker build - < Dockerfile` into a one-file tar (`GetContextFromReader`). We accept both,
//!   with the CLI's test on the first 1024 bytes: a compression magic, or a valid tar header,
//!   makes an archive; anything else is the Dockerfile itself, stored as `Dockerfile`.
//! - **Extraction** follows `archive.Unpack` run chrooted in the context directory: names are
//!   cleaned as rooted paths, so `../x` and `/x` both land at `x`; an existing path is replaced
//!   unless both are directories; modes (`& 07777`, setuid included) and mtimes are applied;
//!   directory times (and, here, modes) last; PAX global headers are skipped; other unknown
//!   types fail with dockerd's `unhandled tar header type N`. Where dockerd relies on the
//!   chroot we refuse instead: an entry whose parent path holds a symlink is an error (dockerd
//!   would follow it inside the chroot), and a hard link must name an entry already extracted,
//!   reached without symlinks. Symlinks themselves are created verbatim, whatever they point to.
//!   Character and block devices are skipped (listed in [`Context::skipped`]); fifos are
//!   created, as dockerd does. Ownership is not applied on disk: the classic builder's `COPY`
//!   and `ADD` give context files 0:0 (or `--chown`) whatever the archive said, so dockerd's
//!   `Lchown` here has no visible effect; the tar's uid/gid are kept in [`Context::entries`]
//!   because they are part of the cache-key hashes. Extended attributes are not written.
//! - **Dockerfile**: `detect.go`'s `withDockerfileFromContext`: the name defaults to
//!   `Dockerfile`, is resolved inside the context (symlinks followed in scope), a missing
//!   `Dockerfile` falls back to `dockerfile`, and the errors keep dockerd's texts. The text is
//!   returned as read; the parser drops a UTF-8 BOM itself.
//! - **`.dockerignore`** (`removeDockerfile`): once the Dockerfile is read, `.dockerignore` and
//!   the Dockerfile are deleted from the context when the ignore file excludes them.
//! - **Hashes**: per-entry `tarsum.v1` sums taken from the stream, as `FromArchive` does, and
//!   `copier.calcCopyInfo`'s `file:<sum>` / `dir:<sha256 of the sorted sums>` on top; see
//!   [`Context::checksum`]. [`checksum`] is the same over a plain directory, hashing from disk
//!   like `lazySource` (used for `COPY --from`).
//!
//! One concern per file:
//!
//! - `receive.rs`: the body as it arrives: its size bound, compression and archive detection,
//!   and the body that is a bare Dockerfile.
//! - `header.rs`: one tar header as Go's `archive/tar` reader presents it (numeric fields, PAX
//!   records).
//! - `extract.rs`: the tar extraction, by the confined tar core (`wharf_untar`) with the
//!   builder's hooks: headers read as Go does, sums, devices skipped, dockerd's error texts.
//! - `paths.rs`: archive names cleaned into context keys, and paths resolved in scope.
//! - `build_files.rs`: reading the Dockerfile, then dropping the build files `.dockerignore`
//!   excludes.
//! - `tarsum.rs`: the `tarsum.v1` sum of one entry.
//! - `cache_key.rs`: the `COPY`/`ADD` source hashes built on those sums, from the archive or
//!   from disk.
//! - `error.rs`: why a build context could not be received.

mod build_files;
mod cache_key;
mod error;
mod extract;
mod header;
mod paths;
mod receive;
mod tarsum;
#[cfg(test)]
mod testutil;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use cache_key::{checksum, hash_string_slice};
pub use error::ContextError;
pub use paths::resolve_in_scope;
pub use receive::{receive, receive_with_limit};
pub use wharf_bus::layer::Compression;

/// `builder.DefaultDockerfileName`.
pub const DEFAULT_DOCKERFILE_NAME: &str = "Dockerfile";

/// Default bound on the decompressed body (tar stream or bare Dockerfile): 20 GiB.
pub const DEFAULT_MAX_CONTEXT_SIZE: u64 = 20 << 30;

/// What the archive said about one path (the first entry of that name, as dockerd's
/// `FileInfoSums.GetFile` finds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Owner from the tar header (PAX `uid`/`gid` applied). Not applied on disk.
    pub uid: u64,
    pub gid: u64,
    /// The header's mode field as sent (the docker CLI includes the `S_IF*` type bits).
    pub mode: u32,
    /// Tar type flag (`'0'`, `'5'`, `'2'`, ...), a legacy `'\0'` promoted as Go's reader does.
    pub typeflag: u8,
    /// Hex `tarsum.v1` sum of the entry: selected header fields, then the file content.
    pub sum: String,
}

/// A received build context.
#[derive(Debug, Clone)]
pub struct Context {
    /// The directory the context was extracted into (`dest`).
    pub root: PathBuf,
    /// The Dockerfile's path relative to `root`: the requested name, `Dockerfile` when none was
    /// given or the body was a bare Dockerfile, or `dockerfile` after the lowercase fallback.
    pub dockerfile_name: String,
    /// The Dockerfile as read (before `.dockerignore` may have removed it from `root`).
    pub dockerfile_text: String,
    /// Compression the body came with.
    pub compression: Compression,
    /// False when the body was a bare Dockerfile rather than a tar archive.
    pub from_archive: bool,
    /// Per-path header data and sums, keyed by the cleaned `/`-separated relative path
    /// (`tarsum`'s naming: `dir/` is `dir`, `../x` and `/x` are `x`, the root is `.`).
    pub entries: BTreeMap<String, EntryMeta>,
    /// Entries not created on disk (character and block devices), in archive order.
    pub skipped: Vec<String>,
    /// Build files deleted because `.dockerignore` excludes them, in the order removed.
    pub removed: Vec<String>,
}

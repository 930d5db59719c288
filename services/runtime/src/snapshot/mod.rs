//! Layer snapshots of this node: every image layer unpacked once per chain ID into a directory
//! that overlayfs can use as a lower layer.
//!
//! - [`Snapshotter`] (in `snapshotter`): layout, once-only preparation, atomic publication;
//!   removal of unused snapshots in `gc`.
//! - [`BlobSource`]: where blobs come from ([`BusBlobSource`] over image-store,
//!   [`DirBlobSource`] over files).
//! - `layer_unpack`, `extract`, `whiteout`: turning a hostile layer blob into a directory,
//!   never writing outside it (the extraction itself is the confined tar core, `wharf_untar`;
//!   `extract` says how a layer reads, and `whiteout` makes overlayfs' whiteouts).

mod blob_source;
mod chain_id;
mod channel_reader;
mod error;
mod extract;
mod gc;
mod layer_unpack;
mod snapshotter;
mod whiteout;

pub use blob_source::{BlobSource, BlobStream, BusBlobSource, DirBlobSource};
pub use chain_id::chain_ids;
pub use error::{Result, SnapshotError};
pub use snapshotter::{SnapshotInfo, Snapshotter};

/// The xattr that marks a directory opaque for overlayfs.
pub const OPAQUE_XATTR: &str = whiteout::OPAQUE_XATTR;

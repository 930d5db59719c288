//! One pass over a layer blob: decompress, hash, unpack. The blob digest and the diff ID are
//! both checked on the bytes actually unpacked; a mismatch fails the layer.

use std::io::Read;
use std::path::Path;

use wharf_bus::layer::{self, Compression, HashingReader};

use super::error::{Result, SnapshotError};
use super::extract;

/// The digests a layer must have.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    /// Digest of the uncompressed tar.
    pub(crate) diff_id: String,
    /// Digest of the blob as stored, when it is a sha256 digest we can check.
    pub(crate) blob_digest: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Unpacked {
    pub(crate) compression: Compression,
    pub(crate) blob_size: u64,
}

/// Unpacks the blob read from `raw` into the empty directory `dest` and checks its digests.
/// On error `dest` holds a partial tree: the caller discards it.
pub(crate) fn unpack_verified(
    raw: impl Read + Send,
    dest: &Path,
    expected: &Expected,
) -> Result<Unpacked> {
    let mut blob = HashingReader::new(raw);
    let (compression, decoded) =
        layer::decompress(std::io::BufReader::with_capacity(256 << 10, &mut blob))
            .map_err(|e| SnapshotError::reading("reading the layer blob", e))?;
    let mut tar_stream = HashingReader::new(decoded);
    extract::extract(&mut tar_stream, dest)?;
    // The diff ID covers everything after the end-of-archive marker too.
    tar_stream
        .drain()
        .map_err(|e| SnapshotError::reading("reading the end of the layer", e))?;
    let diff_id = tar_stream.digest();
    drop(tar_stream);
    blob.drain()
        .map_err(|e| SnapshotError::reading("reading the end of the layer blob", e))?;
    if diff_id != expected.diff_id {
        return Err(SnapshotError::DiffIdMismatch {
            expected: expected.diff_id.clone(),
            actual: diff_id,
        });
    }
    if let Some(want) = &expected.blob_digest {
        let got = blob.digest();
        if &got != want {
            return Err(SnapshotError::BlobDigestMismatch {
                expected: want.clone(),
                actual: got,
            });
        }
    }
    Ok(Unpacked {
        compression,
        blob_size: blob.count(),
    })
}

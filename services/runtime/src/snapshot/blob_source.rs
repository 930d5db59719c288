//! Where layer blobs come from: image-store over the bus, or a directory of blobs (tests, local
//! OCI layouts). Both hand out the blob as a stream of chunks, never as one buffer.

use std::future::Future;
use std::path::PathBuf;

use wharf_bus::blob::file_stream;
pub use wharf_bus::blob::BlobStream;
use wharf_bus::BusError;

/// Reads blobs by digest.
pub trait BlobSource: Send + Sync {
    /// Opens the blob `digest` (`sha256:<hex>`) for reading from its start.
    fn open(&self, digest: &str) -> impl Future<Output = Result<BlobStream, BusError>> + Send;
}

/// Blobs from image-store ([`wharf_bus::blob::open`]): `blob.read` over the bus, or on
/// image-store's host the store's file (`blob.locate`).
#[derive(Clone)]
pub struct BusBlobSource {
    client: async_nats::Client,
    shortcut: bool,
}

impl BusBlobSource {
    pub fn new(client: async_nats::Client) -> Self {
        BusBlobSource {
            client,
            shortcut: true,
        }
    }

    /// Always over the bus, even on image-store's host (as from another host).
    pub fn bus_only(client: async_nats::Client) -> Self {
        BusBlobSource {
            client,
            shortcut: false,
        }
    }
}

impl BlobSource for BusBlobSource {
    fn open(&self, digest: &str) -> impl Future<Output = Result<BlobStream, BusError>> + Send {
        let client = self.client.clone();
        let shortcut = self.shortcut;
        let digest = digest.to_string();
        // The bytes are checked as they are unpacked, whichever way they come.
        async move { wharf_bus::blob::open(&client, &digest, shortcut).await }
    }
}

/// Blobs as files named `<dir>/<algorithm>/<hex>` (the `blobs` directory of an OCI layout).
#[derive(Debug, Clone)]
pub struct DirBlobSource {
    dir: PathBuf,
}

impl DirBlobSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirBlobSource { dir: dir.into() }
    }

    /// Where the blob `digest` lives (or would live).
    pub fn path_of(&self, digest: &str) -> Result<PathBuf, BusError> {
        let hex = wharf_bus::digest::sha256_hex(digest)?;
        Ok(self.dir.join("sha256").join(hex))
    }
}

impl BlobSource for DirBlobSource {
    fn open(&self, digest: &str) -> impl Future<Output = Result<BlobStream, BusError>> + Send {
        let path = self.path_of(digest);
        let digest = digest.to_string();
        async move {
            let path = path?;
            let file = tokio::fs::File::open(&path).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    BusError::not_found(format!("blob {digest} not found"))
                } else {
                    BusError::internal(format!("cannot open {}: {e}", path.display()))
                }
            })?;
            Ok(file_stream(file))
        }
    }
}

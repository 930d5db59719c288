//! Where layer blobs come from: image-store over the bus, or a directory of blobs (tests, local
//! OCI layouts). Both hand out the blob as a stream of chunks, never as one buffer.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use wharf_bus::image::BlobRead;
use wharf_bus::stream::Receiver;
use wharf_bus::subjects::{self, group, image_store};
use wharf_bus::BusError;

/// A blob's bytes in order; an `Err` item ends the stream.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, BusError>> + Send>>;

/// Reads blobs by digest.
pub trait BlobSource: Send + Sync {
    /// Opens the blob `digest` (`sha256:<hex>`) for reading from its start.
    fn open(&self, digest: &str) -> impl Future<Output = Result<BlobStream, BusError>> + Send;
}

/// Blobs from image-store: `wharf.v1.image-store.blob.read`, a download stream.
#[derive(Clone)]
pub struct BusBlobSource {
    client: async_nats::Client,
}

impl BusBlobSource {
    pub fn new(client: async_nats::Client) -> Self {
        BusBlobSource { client }
    }
}

impl BlobSource for BusBlobSource {
    fn open(&self, digest: &str) -> impl Future<Output = Result<BlobStream, BusError>> + Send {
        let client = self.client.clone();
        let request = BlobRead {
            digest: digest.to_string(),
            offset: 0,
        };
        async move {
            let subject = subjects::subject(group::IMAGE_STORE, image_store::BLOB_READ);
            let (receiver, _info) = Receiver::open_json(&client, &subject, &request).await?;
            Ok(Box::pin(receiver.into_stream()) as BlobStream)
        }
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
            let chunks = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
                .map(|r| r.map_err(|e| BusError::internal(format!("reading blob: {e}"))));
            Ok(Box::pin(chunks) as BlobStream)
        }
    }
}

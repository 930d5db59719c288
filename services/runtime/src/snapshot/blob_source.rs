//! Where layer blobs come from: image-store over the bus, or a directory of blobs (tests, local
//! OCI layouts). Both hand out the blob as a stream of chunks, never as one buffer.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use wharf_bus::image::{BlobLocation, BlobRead, BlobRef};
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
/// On image-store's host it reads the store's file instead (`blob.locate`).
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
        let request = BlobRead {
            digest: digest.to_string(),
            offset: 0,
        };
        async move {
            // On image-store's host, its file (the bytes are checked as they are unpacked
            // either way); over the bus otherwise.
            if shortcut {
                if let Some(file) = open_local(&client, &request.digest).await {
                    return Ok(file_stream(file));
                }
            }
            let subject = subjects::subject(group::IMAGE_STORE, image_store::BLOB_READ);
            let (receiver, _info) = Receiver::open_json(&client, &subject, &request).await?;
            Ok(Box::pin(receiver.into_stream()) as BlobStream)
        }
    }
}

/// The blob's file in image-store, when the store runs on this host (`blob.locate`), and the
/// file opened is the one it located.
async fn open_local(client: &async_nats::Client, digest: &str) -> Option<tokio::fs::File> {
    let subject = subjects::subject(group::IMAGE_STORE, image_store::BLOB_LOCATE);
    let request = BlobRef {
        digest: digest.to_string(),
    };
    let at: BlobLocation = wharf_bus::rpc::call(client, &subject, &request)
        .await
        .ok()?;
    if wharf_bus::image::host_id().as_deref() != Some(at.host.as_str()) {
        return None;
    }
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&at.path)
        .await
        .ok()?;
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().await.ok()?;
    (meta.dev() == at.dev && meta.ino() == at.ino && meta.len() == at.size).then_some(file)
}

/// A file's bytes as a blob stream.
fn file_stream(file: tokio::fs::File) -> BlobStream {
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
        .map(|r| r.map_err(|e| BusError::internal(format!("reading blob: {e}"))));
    Box::pin(chunks)
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

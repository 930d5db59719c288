//! Reading a blob of image-store, for any service: on image-store's host straight from the
//! store's file (`blob.locate`, then a device, inode and size check on the opened file), from
//! anywhere else as a `blob.read` download stream. Either way the caller gets the bytes as a
//! stream of chunks, never as one buffer. The runtime reads layers so, the builder build
//! contexts.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncReadExt;

use crate::api::{BlobLocate, BlobReadStream};
use crate::endpoint;
use crate::error::BusError;
use crate::image::{host_id, BlobRead, BlobRef};

/// A blob's bytes in order; an `Err` item ends the stream.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, BusError>> + Send>>;

/// How much of a local blob file one chunk holds.
const FILE_CHUNK: usize = 1 << 20;

/// Opens the blob `digest` (`sha256:<hex>`) of image-store from its start. With `shortcut`,
/// a reader on image-store's host reads the store's file instead of the bus stream (the bytes
/// are the same; callers that check digests check them either way).
pub async fn open(
    client: &async_nats::Client,
    digest: &str,
    shortcut: bool,
) -> Result<BlobStream, BusError> {
    open_at(client, digest, 0, shortcut).await
}

/// [`open`] from byte `offset` on (an upload resuming after a failure).
pub async fn open_at(
    client: &async_nats::Client,
    digest: &str,
    offset: u64,
    shortcut: bool,
) -> Result<BlobStream, BusError> {
    if shortcut {
        if let Some(mut file) = open_local(client, digest).await {
            use tokio::io::AsyncSeekExt;
            if offset == 0 || file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                return Ok(file_stream(file));
            }
        }
    }
    let request = BlobRead {
        digest: digest.to_string(),
        offset,
    };
    // The accept tells the blob's size; the stream ends where the blob does anyway.
    let (receiver, _info) = endpoint::download::<BlobReadStream>(client, &request).await?;
    Ok(Box::pin(receiver.into_stream()))
}

/// The blob's file in image-store, when the store runs on this host and the file opened is
/// the one it located.
async fn open_local(client: &async_nats::Client, digest: &str) -> Option<tokio::fs::File> {
    let request = BlobRef {
        digest: digest.to_string(),
    };
    let at = endpoint::call::<BlobLocate>(client, &request).await.ok()?;
    if host_id().as_deref() != Some(at.host.as_str()) {
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
pub fn file_stream(file: tokio::fs::File) -> BlobStream {
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = Vec::with_capacity(FILE_CHUNK);
        match (&mut file)
            .take(FILE_CHUNK as u64)
            .read_to_end(&mut buf)
            .await
        {
            Ok(0) => None,
            Ok(_) => Some((Ok(Bytes::from(buf)), Some(file))),
            Err(e) => Some((Err(BusError::internal(format!("reading blob: {e}"))), None)),
        }
    });
    Box::pin(chunks)
}

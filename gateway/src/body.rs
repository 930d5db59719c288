//! Request bodies onto the bus: an HTTP body streamed into an upload stream in full frames
//! (the CLI writes 8-32 KiB at a time; frames are 512 KiB).

use axum::body::Body;
use futures::StreamExt;
use wharf_bus::stream::{Sender, CHUNK_SIZE};
use wharf_bus::BusError;

/// Sends all of `body` on `tx` and hands `tx` back with the number of bytes sent, for the
/// caller to finish. A body that cannot be read (the client went away) fails the stream with
/// that error, which is returned.
pub async fn send(mut tx: Sender, body: Body) -> Result<(Sender, u64), BusError> {
    let mut data = body.into_data_stream();
    let mut frame = bytes::BytesMut::with_capacity(CHUNK_SIZE);
    let mut size = 0u64;
    while let Some(chunk) = data.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let err = BusError::invalid(format!("error reading request body: {e}"));
                tx.fail(&err).await;
                return Err(err);
            }
        };
        size += chunk.len() as u64;
        frame.extend_from_slice(&chunk);
        if frame.len() >= CHUNK_SIZE {
            tx.send(frame.split().freeze()).await?;
        }
    }
    if !frame.is_empty() {
        tx.send(frame.freeze()).await?;
    }
    Ok((tx, size))
}

//! The bridge from the async download to the blocking unpacker: a bounded channel of chunks read
//! as a `std::io::Read`, so a slow disk slows the download instead of buffering the blob.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;
use wharf_bus::BusError;

/// What the download side sends.
pub(crate) enum Piece {
    Data(Bytes),
    /// The blob ended normally. A channel that closes without it was cut off.
    End,
    Failed(BusError),
}

/// Chunks in flight between the download and the unpacker (each up to a stream frame, 512 KiB).
pub(crate) const DEPTH: usize = 4;

pub(crate) fn channel() -> (mpsc::Sender<Piece>, ChannelReader) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (
        tx,
        ChannelReader {
            rx,
            current: Bytes::new(),
            ended: false,
        },
    )
}

/// Reads the chunks of a channel in order; only for blocking threads (`spawn_blocking`).
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Piece>,
    current: Bytes,
    ended: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Data(chunk)) => self.current = chunk,
                Some(Piece::End) => self.ended = true,
                Some(Piece::Failed(err)) => return Err(err.into()),
                None => {
                    return Err(BusError::cancelled("the layer download was cut off").into());
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_read_in_order_and_a_cut_off_stream_fails() {
        let (tx, mut reader) = channel();
        let feeder = std::thread::spawn(move || {
            tx.blocking_send(Piece::Data(Bytes::from_static(b"hello ")))
                .unwrap();
            tx.blocking_send(Piece::Data(Bytes::from_static(b"world")))
                .unwrap();
            tx.blocking_send(Piece::End).unwrap();
        });
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        feeder.join().unwrap();
        assert_eq!(out, "hello world");

        let (tx, mut reader) = channel();
        tx.blocking_send(Piece::Data(Bytes::from_static(b"half")))
            .unwrap();
        drop(tx);
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).is_err());
    }
}

//! Diff ID and unpacked size of a layer, computed from its (possibly compressed) tar stream.
//!
//! The unpacked size is what dockerd's overlay2 driver reports (`directory.Size` over the
//! layer's diff directory): every non-directory entry counts its size (a regular file its
//! length, a symlink the length of its target), a hard link shares its target's inode and so
//! counts once, whiteouts and device nodes count nothing. A path written twice counts as its
//! last version.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::sync::mpsc;
use std::thread;

use bytes::{Bytes, BytesMut};

use wharf_bus::layer::{self as compression, Compression, HashingReader};

/// What a layer's tar stream says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigest {
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    pub unpacked_size: u64,
    /// Length of the uncompressed tar.
    pub tar_size: u64,
    pub compression: Compression,
}

/// Reads a whole layer stream, compressed or not. Malformed compression or tar is an
/// `InvalidData` error. A compressed stream is inflated on this thread while another hashes
/// and parses the tar, so inflating (the costly part) never waits for the rest.
pub fn scan<R: Read + Send>(input: R) -> io::Result<LayerDigest> {
    let (compression, mut plain) =
        compression::decompress(BufReader::with_capacity(256 << 10, input))?;
    if compression == Compression::None {
        return scan_tar(plain, compression);
    }
    let (tx, rx) = mpsc::sync_channel::<Bytes>(PIPELINE_DEPTH);
    let tar_thread = thread::Builder::new()
        .name("layer-tar".into())
        .spawn(move || scan_tar(ChannelReader::new(rx), compression))?;
    let inflated: io::Result<()> = (|| {
        let mut buf = BytesMut::new();
        while let Some(chunk) = crate::chunks::read_chunk(&mut plain, &mut buf, 1 << 20)? {
            if tx.send(chunk).is_err() {
                // The tar parser gave up; its error says why.
                break;
            }
        }
        Ok(())
    })();
    drop(tx);
    let parsed = tar_thread
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("layer parser panicked")));
    inflated.map_err(invalid)?;
    parsed
}

fn scan_tar<R: Read>(plain: R, compression: Compression) -> io::Result<LayerDigest> {
    let hashing = HashingReader::new(plain);
    // Large buffered reads keep the hasher on big chunks while the tar parser reads headers
    // 512 bytes at a time.
    let mut buffered = BufReader::with_capacity(1 << 20, hashing);
    let unpacked_size = tar_unpacked_size(&mut buffered).map_err(invalid)?;
    // Whatever follows the end-of-archive marker is still part of the diff ID.
    io::copy(&mut buffered, &mut io::sink()).map_err(invalid)?;
    let hashing = buffered.into_inner();
    Ok(LayerDigest {
        diff_id: hashing.digest(),
        unpacked_size,
        tar_size: hashing.count(),
        compression,
    })
}

fn invalid(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::InvalidData {
        err
    } else {
        io::Error::new(io::ErrorKind::InvalidData, err.to_string())
    }
}

fn tar_unpacked_size<R: Read>(input: R) -> io::Result<u64> {
    let mut archive = tar::Archive::new(input);
    // Sizes by normalized path, so a path written twice counts once.
    let mut sizes: HashMap<Vec<u8>, u64> = HashMap::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let path = normalize(&entry.path_bytes());
        let name = path.rsplit(|&c| c == b'/').next().unwrap_or(&path);
        if name.starts_with(b".wh.") {
            continue;
        }
        let size = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                entry.size()
            }
            tar::EntryType::Symlink => entry.link_name_bytes().map(|l| l.len() as u64).unwrap_or(0),
            // Hard links share their target's inode: counted once, with the target.
            tar::EntryType::Link => continue,
            tar::EntryType::Directory => {
                sizes.remove(&path);
                continue;
            }
            _ => 0,
        };
        sizes.insert(path, size);
    }
    Ok(sizes.values().sum())
}

fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<&[u8]> = Vec::new();
    for part in path.split(|&c| c == b'/') {
        match part {
            b"" | b"." => {}
            p => out.push(p),
        }
    }
    out.join(&b'/')
}

/// A `Read` over chunks sent through a channel; the end of the channel is the end of input.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(chunk) => self.current = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// A scan running while the bytes are still arriving, so ingesting a layer reads it once: the
/// writer hashes and stores; the scan's thread decompresses, and for a compressed layer hands
/// the tar to a second thread that hashes and parses it (see [`scan`]). Measured on two cores,
/// the second thread beats inflating, hashing and parsing on one (about 127 vs 110 MB/s).
pub struct PipelinedScan {
    tx: Option<mpsc::SyncSender<Bytes>>,
    handle: Option<thread::JoinHandle<io::Result<LayerDigest>>>,
}

/// Chunks in flight between the writer and the scanner.
const PIPELINE_DEPTH: usize = 64;

impl PipelinedScan {
    pub fn start() -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(PIPELINE_DEPTH);
        let handle = thread::Builder::new()
            .name("layer-scan".into())
            .spawn(move || scan(ChannelReader::new(rx)))?;
        Ok(PipelinedScan {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Feeds the next chunk. A scanner that already failed drops the rest; its error comes
    /// out of [`PipelinedScan::finish`].
    pub fn feed(&mut self, chunk: Bytes) {
        if let Some(tx) = &self.tx {
            if tx.send(chunk).is_err() {
                self.tx = None;
            }
        }
    }

    /// Ends the input and waits for the scanner's verdict.
    pub fn finish(mut self) -> io::Result<LayerDigest> {
        self.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("layer scanner panicked")),
        }
    }
}

impl Drop for PipelinedScan {
    fn drop(&mut self) {
        // Closing the channel ends the scanner; it is not waited for.
        self.tx = None;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A layer tar: (path, kind) with kinds built by the closure helpers below.
    pub(crate) enum Item<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Fifo(&'a str),
    }

    pub(crate) fn build_tar(items: &[Item]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for item in items {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o755);
            h.set_mtime(0);
            match item {
                Item::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                Item::File(p, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, *data).unwrap();
                }
                Item::Symlink(p, t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, p, t).unwrap();
                }
                Item::Hardlink(p, t) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, p, t).unwrap();
                }
                Item::Fifo(p) => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sample_layer() -> Vec<u8> {
        build_tar(&[
            Item::Dir("bin/"),
            Item::File("bin/busybox", &[7u8; 1000]),
            Item::Hardlink("bin/ls", "bin/busybox"),
            Item::Symlink("bin/sh", "busybox"),
            Item::File("etc/hello", b"hi\n"),
            Item::File("etc/.wh.gone", b""),
            Item::File("etc/.wh..wh..opq", b""),
            Item::Fifo("run/fifo"),
        ])
    }

    #[test]
    fn unpacked_size_counts_files_and_symlink_targets_once_like_overlay2() {
        let tar = sample_layer();
        let d = scan(&tar[..]).unwrap();
        // 1000 (busybox, ls is the same inode) + 7 ("busybox") + 3 ("hi\n")
        assert_eq!(d.unpacked_size, 1010);
        assert_eq!(d.diff_id, wharf_bus::digest::sha256_of(&tar));
        assert_eq!(d.tar_size, tar.len() as u64);
        assert_eq!(d.compression, Compression::None);
    }

    #[test]
    fn a_path_written_twice_counts_its_last_version() {
        let tar = build_tar(&[Item::File("a", &[1u8; 100]), Item::File("./a", &[1u8; 10])]);
        assert_eq!(scan(&tar[..]).unwrap().unpacked_size, 10);
    }

    #[test]
    fn gzip_and_zstd_layers_have_the_diff_id_of_their_tar() {
        let tar = sample_layer();
        let gz = gzip(&tar);
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for (blob, c) in [(gz, Compression::Gzip), (zst, Compression::Zstd)] {
            let d = scan(&blob[..]).unwrap();
            assert_eq!(d.compression, c);
            assert_eq!(d.diff_id, wharf_bus::digest::sha256_of(&tar));
            assert_eq!(d.unpacked_size, 1010);
        }
    }

    #[test]
    fn truncated_gzip_and_garbage_tars_are_invalid_data() {
        let gz = gzip(&sample_layer());
        let err = scan(&gz[..gz.len() / 2]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut garbage = vec![0x55u8; 4096];
        garbage[0] = b'x';
        assert_eq!(
            scan(&garbage[..]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn pipelined_scan_matches_a_direct_scan() {
        let gz = gzip(&sample_layer());
        let mut p = PipelinedScan::start().unwrap();
        for chunk in gz.chunks(7) {
            p.feed(Bytes::copy_from_slice(chunk));
        }
        assert_eq!(p.finish().unwrap(), scan(&gz[..]).unwrap());
    }
}

//! Reading layer and archive streams, for every service that does: compression detected by magic
//! bytes (never trusted from a media type alone) and a reader that hashes what passes through it,
//! so digests are checked in the same pass that uses the bytes.

use std::io::{self, BufRead, Read};

use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

/// The longest magic number looked at (a zstd skippable frame needs 8 bytes).
pub const MAGIC_LEN: usize = 8;

impl Compression {
    /// Recognizes a stream from its first bytes, as moby's `DetectCompression` does (gzip's
    /// magic includes the deflate method byte; zstd also starts with a skippable frame
    /// `0x184D2A5?`).
    pub fn detect(head: &[u8]) -> Compression {
        let skippable = head.len() >= 8
            && u32::from_le_bytes([head[0], head[1], head[2], head[3]]) & 0xffff_fff0
                == 0x184d_2a50;
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || skippable {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for a layer stored with this compression.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// Wraps `input` in the decompressor its first bytes call for: gzip (any number of members, as
/// Go reads them), zstd (any number of frames), xz and bzip2 (any number of streams) or none.
/// `input` is buffered by the caller (a large `BufReader` keeps the inflater on big reads,
/// which is where layer ingest spends its time).
pub fn decompress<'a, R: BufRead + Send + 'a>(
    mut input: R,
) -> io::Result<(Compression, Box<dyn Read + Send + 'a>)> {
    // Peek without losing bytes: a stream's first read may be shorter than the magic.
    let mut head = Vec::with_capacity(MAGIC_LEN);
    let mut byte = [0u8; MAGIC_LEN];
    while head.len() < MAGIC_LEN {
        let n = input.read(&mut byte[..MAGIC_LEN - head.len()])?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&byte[..n]);
    }
    let compression = Compression::detect(&head);
    let whole = io::Cursor::new(head).chain(input);
    let reader = decoder(compression, whole)?;
    Ok((compression, reader))
}

/// The reader that undoes `compression` on `input` (which starts at the stream's first byte).
pub fn decoder<'a, R: BufRead + Send + 'a>(
    compression: Compression,
    input: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
    })
}

/// True for the media types of image layers (Docker and OCI, compressed or not,
/// nondistributable or not).
pub fn is_layer_media_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.docker.image.rootfs.")
        || media_type.starts_with("application/vnd.oci.image.layer.")
}

/// A reader that hashes (sha256) and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads what is left, so the digest covers the whole stream.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// `sha256:<hex>` of everything read so far.
    pub fn digest(&self) -> String {
        crate::digest::finish(self.hasher.clone())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn layer_media_types_include_every_docker_and_oci_variant() {
        for mt in [
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        ] {
            assert!(is_layer_media_type(mt), "{mt}");
        }
        assert!(!is_layer_media_type(
            "application/vnd.oci.image.config.v1+json"
        ));
    }

    #[test]
    fn compression_is_detected_from_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"hello"), Compression::None);
        // A zstd stream may open with a skippable frame.
        assert_eq!(
            Compression::detect(&[0x5e, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]),
            Compression::Zstd
        );
    }

    /// Hands out its bytes one at a time, as a stream cut into tiny frames would.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 >= self.0.len() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }

    #[test]
    fn streams_decompress_whatever_their_first_reads_hold() {
        let data = b"layer bytes ".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        for (raw, expected) in [
            (gz, Compression::Gzip),
            (zst, Compression::Zstd),
            (data.clone(), Compression::None),
        ] {
            let (found, mut reader) =
                decompress(io::BufReader::with_capacity(1, Trickle(raw, 0))).unwrap();
            assert_eq!(found, expected);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
        let (found, _) = decompress(&b""[..]).unwrap();
        assert_eq!(found, Compression::None);
    }

    #[test]
    fn hashing_reader_digests_and_counts_what_it_reads() {
        let mut r = HashingReader::new(&b"abc"[..]);
        assert_eq!(r.drain().unwrap(), 3);
        assert_eq!(r.count(), 3);
        assert_eq!(r.digest(), crate::digest::sha256_of(b"abc"));
    }

    #[test]
    fn xz_and_bzip2_streams_are_decoded() {
        use std::io::Write;
        let data = b"layer bytes, twice: layer bytes".repeat(100);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&data).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&data).unwrap();
        for (blob, expected) in [
            (bz.finish().unwrap(), Compression::Bzip2),
            (xz.finish().unwrap(), Compression::Xz),
        ] {
            let (found, mut reader) = decompress(io::BufReader::new(&blob[..])).unwrap();
            assert_eq!(found, expected);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }
}

//! Layer compression, detected by magic bytes rather than trusted from the media type:
//! gzip (any number of members, as Go's reader), zstd (any number of frames), or a plain tar.

use std::io::{self, Read};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    fn detect(prefix: &[u8]) -> Compression {
        if prefix.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if prefix.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The uncompressed content of `raw`, and the compression that was found.
pub(crate) fn decompressed<'a, R: Read + 'a>(
    mut raw: R,
) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
    // Peek at the first bytes without losing them (chunks may be smaller than the magic).
    let mut prefix = Vec::with_capacity(ZSTD_MAGIC.len());
    while prefix.len() < ZSTD_MAGIC.len() {
        let mut byte = [0u8; 4];
        let want = ZSTD_MAGIC.len() - prefix.len();
        let n = raw.read(&mut byte[..want])?;
        if n == 0 {
            break;
        }
        prefix.extend_from_slice(&byte[..n]);
    }
    let compression = Compression::detect(&prefix);
    let whole = io::Cursor::new(prefix).chain(raw);
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        Compression::None => Box::new(whole),
    };
    Ok((reader, compression))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn roundtrip(data: &[u8]) -> (Vec<u8>, Compression) {
        let (mut r, c) = decompressed(data).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        (out, c)
    }

    #[test]
    fn gzip_zstd_and_plain_are_told_apart_by_magic() {
        let plain = b"plain tar bytes".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        assert_eq!(roundtrip(&plain), (plain.clone(), Compression::None));
        assert_eq!(roundtrip(&gz), (plain.clone(), Compression::Gzip));
        assert_eq!(roundtrip(&zst), (plain.clone(), Compression::Zstd));
        assert_eq!(roundtrip(b"ab"), (b"ab".to_vec(), Compression::None));
        // Two gzip members read as one stream.
        let twice = [gz.clone(), gz].concat();
        assert_eq!(roundtrip(&twice).0, [plain.clone(), plain].concat());
    }
}

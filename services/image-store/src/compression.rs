//! Compression of layer and archive streams, detected by magic bytes (never trusted from a
//! media type alone).

use std::io::{self, BufRead, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

impl Compression {
    /// Recognizes the stream from its first bytes.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
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

/// Wraps `input` in the decompressor its first bytes call for. xz and bzip2 are recognized but
/// not decoded: they fail with a clear message.
pub fn decompress<'a, R: BufRead + Send + 'a>(
    mut input: R,
) -> io::Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let head = input.fill_buf()?;
    let compression = Compression::detect(head);
    let reader: Box<dyn Read + Send + 'a> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::Xz | Compression::Bzip2 => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unsupported compression format {compression:?}"),
            ))
        }
    };
    Ok((compression, reader))
}

/// True for the media types of image layers (Docker and OCI, compressed or not,
/// nondistributable or not).
pub fn is_layer_media_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.docker.image.rootfs.")
        || media_type.starts_with("application/vnd.oci.image.layer.")
}

#[cfg(test)]
mod tests {
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
    }
}

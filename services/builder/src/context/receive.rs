//! Receiving the `POST /build` body: bounded in size, sniffed for a compression magic or a tar
//! header, then extracted as an archive or stored as the bare Dockerfile it is, before the
//! Dockerfile is read and `.dockerignore` applied.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::build_files::{drop_ignored_build_files, read_dockerfile};
use super::error::io_error;
use super::extract::extract;
use super::header::BLOCK;
use super::tarsum::{write_v1_header, HashWriter, V1Fields};
use super::{
    Compression, Context, ContextError, EntryMeta, DEFAULT_DOCKERFILE_NAME,
    DEFAULT_MAX_CONTEXT_SIZE,
};

/// How much of the body is sniffed: the CLI's `DetectArchiveReader` peeks two tar blocks.
const SNIFF_LEN: usize = 1024;

/// [`receive_with_limit`] with [`DEFAULT_MAX_CONTEXT_SIZE`].
pub fn receive(
    body: impl Read + Send,
    dest: &Path,
    dockerfile: &str,
) -> Result<Context, ContextError> {
    receive_with_limit(body, dest, dockerfile, DEFAULT_MAX_CONTEXT_SIZE)
}

/// Receives a build-context body into `dest` (an existing, empty, private directory), locates
/// and reads the Dockerfile named `dockerfile` (empty means `Dockerfile`), and applies the
/// context's `.dockerignore` to the build files. `limit` bounds the body both as received and
/// once decompressed.
///
/// Blocking file I/O throughout: call it from `spawn_blocking`. On error `dest` may hold a
/// partial extraction; the caller removes it. `dest` should be private to the daemon (0700,
/// like dockerd's `docker-builder*` directories): setuid bits from the archive are kept.
pub fn receive_with_limit(
    body: impl Read + Send,
    dest: &Path,
    dockerfile: &str,
    limit: u64,
) -> Result<Context, ContextError> {
    check_destination(dest)?;
    let exceeded = Arc::new(AtomicBool::new(false));
    // The raw body is bounded too, so that compressed input producing nothing cannot run on.
    let raw = Limited {
        inner: body,
        remaining: limit,
        exceeded: exceeded.clone(),
    };
    let mut body = BufReader::with_capacity(64 * 1024, raw);
    let head = read_head(&mut body, SNIFF_LEN).map_err(|e| {
        if exceeded.load(Ordering::Relaxed) {
            ContextError::TooLarge { limit }
        } else {
            ContextError::Malformed(format!("failed to read the build context header: {e}"))
        }
    })?;
    let compression = Compression::detect(&head);
    let from_archive = compression != Compression::None || looks_like_tar(&head);
    let stream = io::Cursor::new(head).chain(body);

    let stream_error = {
        let exceeded = exceeded.clone();
        move |e: io::Error| {
            if exceeded.load(Ordering::Relaxed) {
                ContextError::TooLarge { limit }
            } else {
                ContextError::Malformed(e.to_string())
            }
        }
    };

    let mut ctx = Context {
        root: dest.to_path_buf(),
        dockerfile_name: String::new(),
        dockerfile_text: String::new(),
        compression,
        from_archive,
        entries: BTreeMap::new(),
        skipped: Vec::new(),
        removed: Vec::new(),
    };

    let requested = if !from_archive || dockerfile.is_empty() {
        // The CLI names a Dockerfile sent as the whole body `Dockerfile`, whatever `-f` said.
        DEFAULT_DOCKERFILE_NAME
    } else {
        dockerfile
    };

    if from_archive {
        let decompressed = wharf_bus::layer::decoder(compression, stream).map_err(&stream_error)?;
        let limited = Limited {
            inner: decompressed,
            remaining: limit,
            exceeded,
        };
        extract(limited, dest, &mut ctx, &stream_error)?;
    } else {
        let limited = Limited {
            inner: stream,
            remaining: limit,
            exceeded,
        };
        write_bare_dockerfile(limited, dest, &mut ctx, &stream_error)?;
    }

    let (name, text) = read_dockerfile(dest, requested)?;
    ctx.dockerfile_name = name;
    ctx.dockerfile_text = text;
    ctx.removed = drop_ignored_build_files(dest, &ctx.dockerfile_name)?;
    Ok(ctx)
}

fn check_destination(dest: &Path) -> Result<(), ContextError> {
    let bad = |reason: String| ContextError::BadDestination {
        path: dest.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(dest).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let mut listing = fs::read_dir(dest).map_err(|e| bad(e.to_string()))?;
    if listing.next().is_some() {
        return Err(bad("not empty".into()));
    }
    Ok(())
}

/// Reads up to `n` bytes (fewer only at end of stream).
fn read_head(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Whether the first block is a tar header (Go's checksum rule: the unsigned or the signed
/// byte sum, with the checksum field counted as spaces), or all zeros. The CLI asks Go's tar
/// reader for a first entry; an all-zero block (an empty archive) is the one place we differ:
/// Go reports end-of-archive and the CLI would send it as a Dockerfile of NULs.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < BLOCK {
        return false;
    }
    let block = &head[..BLOCK];
    if block.iter().all(|&b| b == 0) {
        return true;
    }
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != b' ' && b != 0)
        .collect();
    if digits.is_empty() || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return false;
    }
    let Some(stored) = std::str::from_utf8(&digits)
        .ok()
        .and_then(|s| i64::from_str_radix(s, 8).ok())
    else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || stored == signed
}

/// Fails reads once more than `remaining` bytes came through, flagging why.
struct Limited<R> {
    inner: R,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.remaining.checked_sub(n as u64) {
            Some(rest) => {
                self.remaining = rest;
                Ok(n)
            }
            None => {
                self.exceeded.store(true, Ordering::Relaxed);
                Err(io::Error::other("build context too large"))
            }
        }
    }
}

/// `docker build - < Dockerfile`: the body is the Dockerfile. The CLI tars it as `Dockerfile`
/// from a file it creates (mode 0644); we store it the same way and hash it as such an entry
/// owned by 0:0.
fn write_bare_dockerfile(
    mut stream: impl Read,
    dest: &Path,
    ctx: &mut Context,
    stream_error: &dyn Fn(io::Error) -> ContextError,
) -> Result<(), ContextError> {
    let path = dest.join(DEFAULT_DOCKERFILE_NAME);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io_error("creating Dockerfile"))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream_error(e)),
        };
        file.write_all(&buf[..n])
            .map_err(io_error("writing Dockerfile"))?;
        size += n as u64;
    }
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_error("setting the mode of Dockerfile"))?;
    drop(file);

    let mode = 0o100644;
    let mut hasher = Sha256::new();
    write_v1_header(
        &mut hasher,
        &V1Fields {
            name: DEFAULT_DOCKERFILE_NAME.as_bytes(),
            mode,
            uid: 0,
            gid: 0,
            size,
            typeflag: b'0',
            linkname: b"",
            uname: b"",
            gname: b"",
            devmajor: 0,
            devminor: 0,
            xattrs: &BTreeMap::new(),
        },
    );
    // The header (with the size) comes first in the hash, so hash the content from disk.
    let mut f = fs::File::open(&path).map_err(io_error("reading Dockerfile"))?;
    io::copy(&mut f, &mut HashWriter(&mut hasher)).map_err(io_error("reading Dockerfile"))?;
    ctx.entries.insert(
        DEFAULT_DOCKERFILE_NAME.to_string(),
        EntryMeta {
            uid: 0,
            gid: 0,
            mode: mode as u32,
            typeflag: b'0',
            sum: hex::encode(hasher.finalize()),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testutil::{bzip2, gzip, mode_of, xz, zstd, Scratch, Tar};

    #[test]
    fn plain_tar_context_is_extracted_and_the_dockerfile_read() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .dir("src/", 0o755)
            .file("src/main.rs", 0o644, b"fn main() {}\n")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.root, s.ctx);
        assert_eq!(ctx.dockerfile_name, "Dockerfile");
        assert_eq!(ctx.dockerfile_text, "FROM scratch\n");
        assert_eq!(ctx.compression, Compression::None);
        assert!(ctx.from_archive);
        assert_eq!(
            fs::read_to_string(s.ctx.join("src/main.rs")).unwrap(),
            "fn main() {}\n"
        );
        assert_eq!(
            ctx.entries.keys().collect::<Vec<_>>(),
            ["Dockerfile", "src", "src/main.rs"]
        );
        assert!(ctx.skipped.is_empty() && ctx.removed.is_empty());
    }

    #[test]
    fn gzip_bzip2_xz_and_zstd_contexts_are_decompressed() {
        let tar = Tar::default()
            .dockerfile()
            .file("app.sh", 0o755, b"echo hi\n")
            .finish();
        type Compressor = fn(&[u8]) -> Vec<u8>;
        let cases: [(Compression, Compressor); 4] = [
            (Compression::Gzip, gzip),
            (Compression::Bzip2, bzip2),
            (Compression::Xz, xz),
            (Compression::Zstd, zstd),
        ];
        for (compression, compress) in cases {
            let s = Scratch::new();
            let ctx = s.receive(&compress(&tar), "").unwrap();
            assert_eq!(ctx.compression, compression);
            assert!(ctx.from_archive);
            assert_eq!(ctx.dockerfile_text, "FROM scratch\n");
            assert_eq!(
                fs::read_to_string(s.ctx.join("app.sh")).unwrap(),
                "echo hi\n",
                "{compression:?}"
            );
        }
    }

    #[test]
    fn compression_is_detected_by_magic_bytes() {
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 0x08, 0]),
            Compression::Gzip
        );
        // gzip's magic includes the deflate method byte.
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 0x09]), Compression::None);
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        // A zstd skippable frame (0x184D2A50..=0x184D2A5F little-endian) needs 8 bytes.
        let skippable = [0x5a, 0x2a, 0x4d, 0x18, 4, 0, 0, 0];
        assert_eq!(Compression::detect(&skippable), Compression::Zstd);
        assert_eq!(Compression::detect(&skippable[..7]), Compression::None);
        assert_eq!(Compression::detect(b"FROM alpine\n"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn zstd_with_a_leading_skippable_frame_is_a_zstd_context() {
        let s = Scratch::new();
        let mut body = vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, b'x', b'y', b'z'];
        body.extend(zstd(&Tar::default().dockerfile().finish()));
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.compression, Compression::Zstd);
        assert_eq!(ctx.dockerfile_text, "FROM scratch\n");
    }

    #[test]
    fn concatenated_gzip_members_are_read_to_the_end() {
        let s = Scratch::new();
        let tar = Tar::default()
            .dockerfile()
            .file("second-half", 0o644, b"data")
            .finish();
        let mut body = gzip(&tar[..BLOCK * 2]);
        body.extend(gzip(&tar[BLOCK * 2..]));
        s.receive(&body, "").unwrap();
        assert_eq!(
            fs::read_to_string(s.ctx.join("second-half")).unwrap(),
            "data"
        );
    }

    #[test]
    fn a_body_that_is_not_a_tar_is_the_dockerfile_itself() {
        let s = Scratch::new();
        // `docker build -f Other.dockerfile - < Dockerfile`: the name is always Dockerfile.
        let text = "FROM alpine\nRUN echo hi\n";
        let ctx = s.receive(text.as_bytes(), "Other.dockerfile").unwrap();
        assert!(!ctx.from_archive);
        assert_eq!(ctx.dockerfile_name, "Dockerfile");
        assert_eq!(ctx.dockerfile_text, text);
        assert_eq!(fs::read_to_string(s.ctx.join("Dockerfile")).unwrap(), text);
        assert_eq!(mode_of(&s.ctx.join("Dockerfile")), 0o644);
        assert_eq!(ctx.entries.keys().collect::<Vec<_>>(), ["Dockerfile"]);
        assert!(ctx.checksum("Dockerfile").unwrap().starts_with("file:"));
    }

    #[test]
    fn a_long_text_body_is_not_mistaken_for_a_tar() {
        let s = Scratch::new();
        let text = format!("FROM alpine\n{}", "RUN true\n".repeat(200));
        assert!(text.len() > SNIFF_LEN);
        let ctx = s.receive(text.as_bytes(), "").unwrap();
        assert!(!ctx.from_archive);
        assert_eq!(ctx.dockerfile_text, text);
    }

    #[test]
    fn tar_sniffing_checks_the_header_checksum() {
        let tar = Tar::default().dockerfile().finish();
        assert!(looks_like_tar(&tar));
        assert!(looks_like_tar(&[0u8; BLOCK]), "an empty archive");
        assert!(!looks_like_tar(&tar[..BLOCK - 1]), "a short body");
        let mut broken = tar.clone();
        broken[0] ^= 1;
        assert!(!looks_like_tar(&broken));
        assert!(!looks_like_tar(&[b'#'; BLOCK]));
    }

    #[test]
    fn an_empty_body_is_an_empty_dockerfile() {
        let s = Scratch::new();
        let err = s.receive(b"", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Dockerfile (Dockerfile) cannot be empty"
        );
    }

    #[test]
    fn an_empty_archive_has_no_dockerfile() {
        let s = Scratch::new();
        let err = s.receive(&Tar::default().finish(), "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot locate specified Dockerfile: Dockerfile"
        );
    }

    #[test]
    fn corrupt_compressed_stream_is_malformed() {
        let tar = Tar::default()
            .dockerfile()
            .file("x", 0o644, &[1u8; 5000])
            .finish();
        for mut body in [gzip(&tar), bzip2(&tar), xz(&tar), zstd(&tar)] {
            let s = Scratch::new();
            let n = body.len();
            for b in &mut body[n / 2..n - 4] {
                *b ^= 0xa5;
            }
            let err = s.receive(&body, "").unwrap_err();
            assert!(matches!(err, ContextError::Malformed(_)), "{err}");
        }
        // A compressed body must hold a tar: gzip of a Dockerfile is not a Dockerfile.
        let s = Scratch::new();
        let err = s.receive(&gzip(b"FROM alpine\n"), "").unwrap_err();
        assert!(matches!(err, ContextError::Malformed(_)), "{err}");
    }

    #[test]
    fn size_limit_bounds_the_decompressed_body() {
        let tar = Tar::default()
            .dockerfile()
            .file("big", 0o644, &vec![0u8; 256 * 1024])
            .finish();
        let s = Scratch::new();
        let err = receive_with_limit(&tar[..], &s.ctx, "", 64 * 1024).unwrap_err();
        assert!(
            matches!(err, ContextError::TooLarge { limit: 65536 }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "build context exceeds the maximum size of 65536 bytes"
        );
        // Zeros compress ~1000:1, so the compressed body is far below the limit.
        let compressed = gzip(&tar);
        assert!(compressed.len() < 4096);
        let s = Scratch::new();
        let err = receive_with_limit(&compressed[..], &s.ctx, "", 64 * 1024).unwrap_err();
        assert!(matches!(err, ContextError::TooLarge { .. }), "{err}");
        // A bare Dockerfile counts too, and a body within the limit passes.
        let s = Scratch::new();
        let err = receive_with_limit(&[b'#'; 5000][..], &s.ctx, "", 4096).unwrap_err();
        assert!(matches!(err, ContextError::TooLarge { .. }), "{err}");
        let s = Scratch::new();
        receive_with_limit(&tar[..], &s.ctx, "", tar.len() as u64).unwrap();
    }

    #[test]
    fn destination_must_be_an_existing_empty_directory() {
        let s = Scratch::new();
        fs::write(s.ctx.join("leftover"), "x").unwrap();
        let body = Tar::default().dockerfile().finish();
        let err = s.receive(&body, "").unwrap_err();
        assert!(matches!(err, ContextError::BadDestination { .. }), "{err}");
        let err = receive(&body[..], &s.ctx.join("missing"), "").unwrap_err();
        assert!(matches!(err, ContextError::BadDestination { .. }), "{err}");
    }
}

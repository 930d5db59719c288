//! The build context: receiving the `POST /build` body, finding the Dockerfile, and the content
//! hashes the classic builder uses as cache keys for `COPY`/`ADD` sources.
//!
//! Modelled on Docker 20.10 (moby `builder/remotecontext`, `pkg/archive`, `pkg/chrootarchive`,
//! `pkg/tarsum`, and the docker CLI's `cli/command/image/build`):
//!
//! - **Compression** is detected by magic bytes as in `archive.DetectCompression`: gzip, bzip2
//!   and xz as 20.10 does, plus zstd (including skippable frames), which moby only learned in
//!   23.0. Concatenated streams are read to the end, as Go's gzip reader and `xz -d` do.
//! - **Archive or Dockerfile**: dockerd itself always untars the body; it is the CLI that turns
//!   `docker build - < Dockerfile` into a one-file tar (`GetContextFromReader`). We accept both,
//!   with the CLI's test on the first 1024 bytes: a compression magic, or a valid tar header,
//!   makes an archive; anything else is the Dockerfile itself, stored as `Dockerfile`.
//! - **Extraction** follows `archive.Unpack` run chrooted in the context directory: names are
//!   cleaned as rooted paths, so `../x` and `/x` both land at `x`; an existing path is replaced
//!   unless both are directories; modes (`& 07777`, setuid included) and mtimes are applied;
//!   directory times (and, here, modes) last; PAX global headers are skipped; other unknown
//!   types fail with dockerd's `unhandled tar header type N`. Where dockerd relies on the
//!   chroot we refuse instead: an entry whose parent path holds a symlink is an error (dockerd
//!   would follow it inside the chroot), and a hard link must name an entry already extracted,
//!   reached without symlinks. Symlinks themselves are created verbatim, whatever they point to.
//!   Character and block devices are skipped (listed in [`Context::skipped`]); fifos are
//!   created, as dockerd does. Ownership is not applied on disk: the classic builder's `COPY`
//!   and `ADD` give context files 0:0 (or `--chown`) whatever the archive said, so dockerd's
//!   `Lchown` here has no visible effect; the tar's uid/gid are kept in [`Context::entries`]
//!   because they are part of the cache-key hashes. Extended attributes are not written.
//! - **Dockerfile**: `detect.go`'s `withDockerfileFromContext`: the name defaults to
//!   `Dockerfile`, is resolved inside the context (symlinks followed in scope), a missing
//!   `Dockerfile` falls back to `dockerfile`, and the errors keep dockerd's texts. The text is
//!   returned as read; the parser drops a UTF-8 BOM itself.
//! - **`.dockerignore`** (`removeDockerfile`): once the Dockerfile is read, `.dockerignore` and
//!   the Dockerfile are deleted from the context when the ignore file excludes them.
//! - **Hashes**: per-entry `tarsum.v1` sums taken from the stream, as `FromArchive` does, and
//!   `copier.calcCopyInfo`'s `file:<sum>` / `dir:<sha256 of the sorted sums>` on top; see
//!   [`Context::checksum`]. [`checksum`] is the same over a plain directory, hashing from disk
//!   like `lazySource` (used for `COPY --from`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::ignore::Matcher;

/// `builder.DefaultDockerfileName`.
pub const DEFAULT_DOCKERFILE_NAME: &str = "Dockerfile";

/// Default bound on the decompressed body (tar stream or bare Dockerfile): 20 GiB.
pub const DEFAULT_MAX_CONTEXT_SIZE: u64 = 20 << 30;

/// How much of the body is sniffed: the CLI's `DetectArchiveReader` peeks two tar blocks.
const SNIFF_LEN: usize = 1024;

const BLOCK: usize = 512;

/// `evalSymlinksInScope`'s bound on path components walked (symlink targets included).
const MAX_SCOPE_STEPS: usize = 255;

pub use wharf_bus::layer::Compression;

/// What the archive said about one path (the first entry of that name, as dockerd's
/// `FileInfoSums.GetFile` finds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Owner from the tar header (PAX `uid`/`gid` applied). Not applied on disk.
    pub uid: u64,
    pub gid: u64,
    /// The header's mode field as sent (the docker CLI includes the `S_IF*` type bits).
    pub mode: u32,
    /// Tar type flag (`'0'`, `'5'`, `'2'`, ...), a legacy `'\0'` promoted as Go's reader does.
    pub typeflag: u8,
    /// Hex `tarsum.v1` sum of the entry: selected header fields, then the file content.
    pub sum: String,
}

/// A received build context.
#[derive(Debug, Clone)]
pub struct Context {
    /// The directory the context was extracted into (`dest`).
    pub root: PathBuf,
    /// The Dockerfile's path relative to `root`: the requested name, `Dockerfile` when none was
    /// given or the body was a bare Dockerfile, or `dockerfile` after the lowercase fallback.
    pub dockerfile_name: String,
    /// The Dockerfile as read (before `.dockerignore` may have removed it from `root`).
    pub dockerfile_text: String,
    /// Compression the body came with.
    pub compression: Compression,
    /// False when the body was a bare Dockerfile rather than a tar archive.
    pub from_archive: bool,
    /// Per-path header data and sums, keyed by the cleaned `/`-separated relative path
    /// (`tarsum`'s naming: `dir/` is `dir`, `../x` and `/x` are `x`, the root is `.`).
    pub entries: BTreeMap<String, EntryMeta>,
    /// Entries not created on disk (character and block devices), in archive order.
    pub skipped: Vec<String>,
    /// Build files deleted because `.dockerignore` excludes them, in the order removed.
    pub removed: Vec<String>,
}

/// Why a build context could not be received.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context directory {}: {reason}", path.display())]
    BadDestination { path: PathBuf, reason: String },
    /// The body is not a readable (possibly compressed) tar archive.
    #[error("Error processing tar file: {0}")]
    Malformed(String),
    /// dockerd's text for a type `createTarFile` does not handle (e.g. `'7'`, GNU sparse `'S'`).
    #[error("Error processing tar file: unhandled tar header type {typeflag}")]
    UnhandledType { name: String, typeflag: u8 },
    /// An entry would be written through a symlink already extracted.
    #[error("Error processing tar file: {name}: refusing to extract through symlink {link}")]
    ThroughSymlink { name: String, link: String },
    #[error("Error processing tar file: invalid hardlink {name} -> {target}: {reason}")]
    BadHardlink {
        name: String,
        target: String,
        reason: String,
    },
    #[error("build context exceeds the maximum size of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A local I/O failure (disk full, permissions, ...), not the client's fault.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// dockerd's "backwards compatible error", naming the Dockerfile as requested.
    #[error("Cannot locate specified Dockerfile: {0}")]
    DockerfileNotFound(String),
    /// dockerd's `FullPath` error; the parenthesised full path is empty there too.
    #[error("forbidden path outside the build context: {0} ()")]
    OutsideContext(String),
    #[error("the Dockerfile ({0}) cannot be empty")]
    EmptyDockerfile(String),
    /// Go reads any bytes; we need text, so this is ours.
    #[error("the Dockerfile ({0}) is not valid UTF-8")]
    DockerfileNotUtf8(String),
    #[error("unexpected error reading Dockerfile: {0}")]
    DockerfileRead(io::Error),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContextError {
    let what = what.into();
    move |source| ContextError::Io { what, source }
}

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

/// One header as Go's `archive/tar` reader presents it, which is what `tarsum` hashes.
struct HeaderInfo {
    name: Vec<u8>,
    linkname: Vec<u8>,
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: (i64, u32),
    devmajor: u64,
    devminor: u64,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl HeaderInfo {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<HeaderInfo> {
        let name = entry.path_bytes().into_owned();
        let linkname = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let header = entry.header();
        let raw = header.as_bytes();
        let raw_type = raw[156];
        // Go's reader: "Legacy archives use trailing slash for directories".
        let typeflag = match raw_type {
            0 if name.ends_with(b"/") => b'5',
            0 => b'0',
            t => t,
        };
        let global = typeflag == b'g';
        // Numbers are parsed as Go's `parseNumeric` does (the tar crate rejects the empty
        // fields some writers leave); the tar crate has already written PAX uid/gid back.
        let number = |range: std::ops::Range<usize>, what: &str| {
            go_numeric(&raw[range]).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("invalid tar header: bad {what} field"),
                )
            })
        };
        let unsigned = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("invalid tar header: negative {what}"),
                )
            })
        };
        // Device numbers exist from the USTAR format on; V7 headers have none.
        let has_devices = header.as_ustar().is_some() || header.as_gnu().is_some();
        let mut info = if global {
            // Go returns only name, type and PAX data for a global header.
            HeaderInfo {
                name,
                linkname: Vec::new(),
                typeflag,
                mode: 0,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: (0, 0),
                devmajor: 0,
                devminor: 0,
                xattrs: BTreeMap::new(),
            }
        } else {
            HeaderInfo {
                name,
                linkname,
                typeflag,
                mode: u32::try_from(number(100..108, "mode")?).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "invalid tar header: bad mode")
                })?,
                uid: unsigned(number(108..116, "uid")?, "uid")?,
                gid: unsigned(number(116..124, "gid")?, "gid")?,
                size: entry.size(),
                mtime: (number(136..148, "mtime")?, 0),
                devmajor: if has_devices {
                    unsigned(number(329..337, "devmajor")?, "devmajor")?
                } else {
                    0
                },
                devminor: if has_devices {
                    unsigned(number(337..345, "devminor")?, "devminor")?
                } else {
                    0
                },
                xattrs: BTreeMap::new(),
            }
        };
        if let Some(extensions) = entry.pax_extensions()? {
            for ext in extensions {
                let ext = ext?;
                let key = ext.key_bytes();
                if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.".as_slice()) {
                    info.xattrs
                        .insert(attr.to_vec(), ext.value_bytes().to_vec());
                } else if key == b"mtime" && !global {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        info.mtime = t;
                    }
                }
            }
        }
        Ok(info)
    }

    /// The `tarsum.v1` header fields (`v1TarHeaderSelect`), as the stream `tarSum` encodes
    /// them: `uname`/`gname` blanked (kept "compatible with versions before go 1.10"), no
    /// mtime, then each xattr `key` + `value` sorted by key.
    fn write_tarsum_header(&self, h: &mut Sha256) {
        write_v1_header(
            h,
            &V1Fields {
                name: &self.name,
                mode: i64::from(self.mode),
                uid: self.uid,
                gid: self.gid,
                size: self.size,
                typeflag: self.typeflag,
                linkname: &self.linkname,
                uname: b"",
                gname: b"",
                devmajor: self.devmajor,
                devminor: self.devminor,
                xattrs: &self.xattrs,
            },
        );
    }
}

/// The fields `tarsum` version 1 hashes, in order.
struct V1Fields<'a> {
    name: &'a [u8],
    mode: i64,
    uid: u64,
    gid: u64,
    size: u64,
    typeflag: u8,
    linkname: &'a [u8],
    uname: &'a [u8],
    gname: &'a [u8],
    devmajor: u64,
    devminor: u64,
    xattrs: &'a BTreeMap<Vec<u8>, Vec<u8>>,
}

fn write_v1_header(h: &mut Sha256, f: &V1Fields<'_>) {
    let mut field = |key: &[u8], value: &[u8]| {
        h.update(key);
        h.update(value);
    };
    field(b"name", f.name);
    field(b"mode", f.mode.to_string().as_bytes());
    field(b"uid", f.uid.to_string().as_bytes());
    field(b"gid", f.gid.to_string().as_bytes());
    field(b"size", f.size.to_string().as_bytes());
    field(b"typeflag", &[f.typeflag]);
    field(b"linkname", f.linkname);
    field(b"uname", f.uname);
    field(b"gname", f.gname);
    field(b"devmajor", f.devmajor.to_string().as_bytes());
    field(b"devminor", f.devminor.to_string().as_bytes());
    for (k, v) in f.xattrs {
        field(k, v);
    }
}

/// Go's `parseNumeric`: base-256 when the top bit is set, else octal with NULs and spaces
/// trimmed (an empty field is 0). `None` where Go reports `ErrHeader`.
fn go_numeric(field: &[u8]) -> Option<i64> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            // Two's complement, big-endian; bit 0x40 of the first byte is the sign.
            let invert = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &byte) in field.iter().enumerate() {
                let mut byte = byte ^ invert;
                if i == 0 {
                    byte &= 0x7f;
                }
                if x >> 56 != 0 {
                    return None;
                }
                x = (x << 8) | u64::from(byte);
            }
            if x >> 63 != 0 {
                return None;
            }
            let x = x as i64;
            return Some(if invert == 0xff { !x } else { x });
        }
    }
    let start = field.iter().position(|&b| b != b' ' && b != 0);
    let Some(start) = start else {
        return Some(0);
    };
    let end = field.iter().rposition(|&b| b != b' ' && b != 0)? + 1;
    let digits = std::str::from_utf8(&field[start..end]).ok()?;
    u64::from_str_radix(digits, 8)
        .ok()
        .and_then(|v| i64::try_from(v).ok())
}

/// PAX time: decimal seconds, optionally negative, optionally with a fraction.
fn parse_pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(value).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().ok()?;
    if s.starts_with('-') && nanos > 0 {
        Some((secs - 1, 1_000_000_000 - nanos))
    } else {
        Some((secs, nanos))
    }
}

/// Splits a name into the components of `path.Clean("/" + name)`: `.` and empty parts drop,
/// `..` removes the previous component and cannot climb above the root.
fn clean_components(name: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            other => out.push(other.to_vec()),
        }
    }
    out
}

fn join_key(components: &[Vec<u8>]) -> String {
    if components.is_empty() {
        ".".to_string()
    } else {
        String::from_utf8_lossy(&components.join(&b'/')).into_owned()
    }
}

fn under(root: &Path, components: &[Vec<u8>]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in components {
        p.push(OsStr::from_bytes(c));
    }
    p
}

fn is_header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

/// A directory's metadata, applied after everything else is extracted.
struct DirMeta {
    mode: u32,
    mtime: Option<(i64, u32)>,
}

fn extract<R: Read>(
    stream: R,
    dest: &Path,
    ctx: &mut Context,
    stream_error: &dyn Fn(io::Error) -> ContextError,
) -> Result<(), ContextError> {
    let data_end = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut archive = tar::Archive::new(EndPadded {
        inner: stream,
        consumed: 0,
        data_end: data_end.clone(),
        zeros: None,
    });
    let mut dirs: HashMap<Vec<Vec<u8>>, DirMeta> = HashMap::new();
    {
        let entries = archive.entries().map_err(stream_error)?;
        for entry in entries {
            let mut entry = entry.map_err(stream_error)?;
            let size = entry.header().entry_size().unwrap_or(0);
            data_end.store(
                entry.raw_file_position() + size,
                std::sync::atomic::Ordering::Relaxed,
            );
            let info = HeaderInfo::read(&mut entry).map_err(stream_error)?;
            let mut hasher = Sha256::new();
            info.write_tarsum_header(&mut hasher);
            let components = clean_components(&info.name);
            let key = join_key(&components);

            // The root itself is never replaced (Unpack skips "." when it is a directory, and
            // it always is); global headers carry no file.
            if components.is_empty() || info.typeflag == b'g' {
                if !is_header_only(info.typeflag) && info.typeflag != b'g' {
                    copy_hashing(&mut entry, None, &mut hasher, info.size, stream_error)?;
                }
                record(ctx, key, &info, hasher);
                continue;
            }
            match info.typeflag {
                b'0' | b'1' | b'2' | b'5' | b'6' => {}
                b'3' | b'4' => {
                    // A build never needs the context's device nodes; dockerd would mknod them.
                    ctx.skipped.push(key.clone());
                    record(ctx, key, &info, hasher);
                    continue;
                }
                other => {
                    return Err(ContextError::UnhandledType {
                        name: key,
                        typeflag: other,
                    })
                }
            }

            let parent = prepare_parents(dest, &components, &key, &mut dirs)?;
            let path = parent.join(OsStr::from_bytes(components.last().expect("non-empty")));
            clear_existing(&path, info.typeflag == b'5', &key)?;
            let mode = info.mode & 0o7777;
            match info.typeflag {
                b'0' => {
                    let mut file = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)
                        .map_err(io_error(format!("creating {key}")))?;
                    copy_hashing(
                        &mut entry,
                        Some(&mut file),
                        &mut hasher,
                        info.size,
                        stream_error,
                    )?;
                    file.set_permissions(fs::Permissions::from_mode(mode))
                        .map_err(io_error(format!("setting the mode of {key}")))?;
                    let t = system_time(info.mtime);
                    file.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                        .map_err(io_error(format!("setting the times of {key}")))?;
                }
                b'1' => {
                    let target = clean_components(&info.linkname);
                    let target_key = join_key(&target);
                    let bad = |reason: &str| ContextError::BadHardlink {
                        name: key.clone(),
                        target: target_key.clone(),
                        reason: reason.to_string(),
                    };
                    if target.is_empty() {
                        return Err(bad("target is the context root"));
                    }
                    let target_path =
                        existing_without_symlinks(dest, &target).map_err(|reason| bad(&reason))?;
                    let target_meta = fs::symlink_metadata(&target_path)
                        .map_err(io_error(format!("inspecting {target_key}")))?;
                    if target_meta.is_dir() {
                        return Err(bad("target is a directory"));
                    }
                    fs::hard_link(&target_path, &path)
                        .map_err(io_error(format!("linking {key} to {target_key}")))?;
                    // Like createTarFile, the link's header mode and time go to the shared
                    // inode unless that is a symlink.
                    if !target_meta.file_type().is_symlink() {
                        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                            .map_err(io_error(format!("setting the mode of {key}")))?;
                        set_times_nofollow(&path, info.mtime)
                            .map_err(io_error(format!("setting the times of {key}")))?;
                    }
                }
                b'2' => {
                    std::os::unix::fs::symlink(OsStr::from_bytes(&info.linkname), &path)
                        .map_err(io_error(format!("creating symlink {key}")))?;
                    set_times_nofollow(&path, info.mtime)
                        .map_err(io_error(format!("setting the times of {key}")))?;
                }
                b'5' => {
                    if !path.is_dir() {
                        fs::DirBuilder::new()
                            .mode(0o700)
                            .create(&path)
                            .map_err(io_error(format!("creating directory {key}")))?;
                    }
                    dirs.insert(
                        components.clone(),
                        DirMeta {
                            mode,
                            mtime: Some(info.mtime),
                        },
                    );
                }
                b'6' => {
                    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .map_err(|e| io_error(format!("creating fifo {key}"))(e.into()))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                        .map_err(io_error(format!("setting the mode of {key}")))?;
                    set_times_nofollow(&path, info.mtime)
                        .map_err(io_error(format!("setting the times of {key}")))?;
                }
                _ => unreachable!("filtered above"),
            }
            record(ctx, key, &info, hasher);
        }
    }
    // Read to the end, as docker-untar flushes its input: a corrupt compressed tail fails.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(stream_error)?;
    finish_directories(dest, dirs)
}

fn record(ctx: &mut Context, key: String, info: &HeaderInfo, hasher: Sha256) {
    ctx.entries.entry(key).or_insert_with(|| EntryMeta {
        uid: info.uid,
        gid: info.gid,
        mode: info.mode,
        typeflag: info.typeflag,
        sum: hex::encode(hasher.finalize()),
    });
}

/// Copies an entry's data into `out` (if any) and the hasher, checking the length.
/// The archive stream, ended cleanly when the sender left out what follows the last entry's
/// data: the docker CLI appends a Dockerfile from outside the context (and a `.dockerignore`)
/// to its tar without the last entry's padding and the end-of-archive blocks, and Go's reader
/// accepts that. Zeros are supplied only when the stream stops at or after the end of the last
/// entry's data; a stream cut inside an entry still fails.
struct EndPadded<R> {
    inner: R,
    consumed: u64,
    /// Where the data of the entry being read ends.
    data_end: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Zeros still to supply once the stream ended.
    zeros: Option<u64>,
}

impl<R: Read> Read for EndPadded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(left) = self.zeros.as_mut() {
            let n = (*left).min(buf.len() as u64) as usize;
            buf[..n].fill(0);
            *left -= n as u64;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        if n == 0 && !buf.is_empty() && self.consumed > 0 {
            let end = self.data_end.load(std::sync::atomic::Ordering::Relaxed);
            let block = BLOCK as u64;
            if self.consumed >= end {
                let pad = (block - self.consumed % block) % block;
                self.zeros = Some(pad + 2 * block);
                return self.read(buf);
            }
        }
        Ok(n)
    }
}

fn copy_hashing(
    entry: &mut impl Read,
    mut out: Option<&mut fs::File>,
    hasher: &mut Sha256,
    size: u64,
    stream_error: &dyn Fn(io::Error) -> ContextError,
) -> Result<(), ContextError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream_error(e)),
        };
        hasher.update(&buf[..n]);
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&buf[..n])
                .map_err(io_error("writing the build context"))?;
        }
        total += n as u64;
    }
    if total != size {
        // The tar crate ends a truncated entry quietly; Go reports io.ErrUnexpectedEOF.
        return Err(ContextError::Malformed("unexpected EOF".into()));
    }
    Ok(())
}

/// Ensures each parent of `components` is a real directory under `dest` (creating missing
/// ones, mode 0755 at the end as `MkdirAllAndChownNew` gives them), and returns the parent.
fn prepare_parents(
    dest: &Path,
    components: &[Vec<u8>],
    key: &str,
    dirs: &mut HashMap<Vec<Vec<u8>>, DirMeta>,
) -> Result<PathBuf, ContextError> {
    let mut current = dest.to_path_buf();
    for (i, c) in components[..components.len() - 1].iter().enumerate() {
        current.push(OsStr::from_bytes(c));
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ContextError::ThroughSymlink {
                    name: key.to_string(),
                    link: join_key(&components[..=i]),
                })
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ContextError::Malformed(format!(
                    "cannot extract {key}: {} is not a directory",
                    join_key(&components[..=i])
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&current)
                    .map_err(io_error(format!("creating the parents of {key}")))?;
                dirs.insert(
                    components[..=i].to_vec(),
                    DirMeta {
                        mode: 0o755,
                        mtime: None,
                    },
                );
            }
            Err(e) => return Err(io_error(format!("inspecting the parents of {key}"))(e)),
        }
    }
    Ok(current)
}

/// Removes whatever is at `path` unless it and the new entry are both directories (which
/// merge). Never follows a symlink: the link itself goes.
fn clear_existing(path: &Path, new_is_dir: bool, key: &str) -> Result<(), ContextError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && new_is_dir => Ok(()),
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).map_err(io_error(format!("replacing {key}")))
        }
        Ok(_) => fs::remove_file(path).map_err(io_error(format!("replacing {key}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(format!("inspecting {key}"))(e)),
    }
}

/// The path of an existing entry, reached through real directories only (the entry itself may
/// be anything, a symlink included).
fn existing_without_symlinks(dest: &Path, components: &[Vec<u8>]) -> Result<PathBuf, String> {
    let mut current = dest.to_path_buf();
    for (i, c) in components.iter().enumerate() {
        current.push(OsStr::from_bytes(c));
        let meta =
            fs::symlink_metadata(&current).map_err(|_| "target not extracted yet".to_string())?;
        if i + 1 == components.len() {
            break;
        }
        if meta.file_type().is_symlink() {
            return Err(format!(
                "path goes through symlink {}",
                join_key(&components[..=i])
            ));
        }
        if !meta.is_dir() {
            return Err(format!(
                "{} is not a directory",
                join_key(&components[..=i])
            ));
        }
    }
    Ok(current)
}

/// Applies directory modes and times, deepest first so that a read-only or non-searchable
/// directory never blocks the work below it. Each path is re-checked: a directory replaced by
/// a later entry (say, by a symlink) is left alone.
fn finish_directories(
    dest: &Path,
    dirs: HashMap<Vec<Vec<u8>>, DirMeta>,
) -> Result<(), ContextError> {
    let mut dirs: Vec<(Vec<Vec<u8>>, DirMeta)> = dirs.into_iter().collect();
    dirs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    for (components, meta) in dirs {
        let Ok(path) = existing_without_symlinks(dest, &components) else {
            continue;
        };
        let dir = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(dir) => dir,
            // Replaced by a non-directory after it was made.
            Err(_) => continue,
        };
        let key = join_key(&components);
        dir.set_permissions(fs::Permissions::from_mode(meta.mode))
            .map_err(io_error(format!("setting the mode of {key}")))?;
        if let Some(mtime) = meta.mtime {
            let t = system_time(mtime);
            dir.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                .map_err(io_error(format!("setting the times of {key}")))?;
        }
    }
    Ok(())
}

fn system_time((secs, nanos): (i64, u32)) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

/// Sets atime and mtime (both to the header's mtime) without following a symlink.
fn set_times_nofollow(path: &Path, (secs, nanos): (i64, u32)) -> io::Result<()> {
    let t = nix::sys::time::TimeSpec::new(secs, i64::from(nanos));
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
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

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `withDockerfileFromContext`: open the Dockerfile inside the context, falling back from
/// `Dockerfile` to `dockerfile`; returns the name actually used and the text.
fn read_dockerfile(root: &Path, name: &str) -> Result<(String, String), ContextError> {
    let path =
        resolve_in_scope(root, name).map_err(|_| ContextError::OutsideContext(name.to_string()))?;
    let meta = match fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if name == DEFAULT_DOCKERFILE_NAME {
                let lowercase = name.to_lowercase();
                let found = resolve_in_scope(root, &lowercase)
                    .map(|p| p.exists())
                    .unwrap_or(false);
                if found {
                    return read_dockerfile(root, &lowercase);
                }
            }
            return Err(ContextError::DockerfileNotFound(name.to_string()));
        }
        Err(e) => return Err(ContextError::DockerfileRead(e)),
    };
    if meta.is_dir() {
        return Err(ContextError::DockerfileRead(io::Error::from_raw_os_error(
            libc::EISDIR,
        )));
    }
    if !meta.is_file() {
        // A fifo would block the read forever.
        return Err(ContextError::DockerfileRead(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is not a regular file"),
        )));
    }
    let bytes = fs::read(&path).map_err(ContextError::DockerfileRead)?;
    if bytes.is_empty() {
        return Err(ContextError::EmptyDockerfile(name.to_string()));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| ContextError::DockerfileNotUtf8(name.to_string()))?;
    Ok((name.to_string(), text))
}

/// `removeDockerfile`: delete `.dockerignore` and the Dockerfile when the context's own
/// `.dockerignore` excludes them. As in dockerd, a missing ignore file is fine, an unusable
/// pattern just removes nothing, and a failed removal is only logged; paths are resolved in
/// scope, so a symlinked Dockerfile loses its target.
fn drop_ignored_build_files(root: &Path, dockerfile: &str) -> Result<Vec<String>, ContextError> {
    let path =
        resolve_in_scope(root, ".dockerignore").map_err(io_error("opening .dockerignore"))?;
    let meta = match fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("opening .dockerignore")(e)),
    };
    if !meta.is_file() {
        return Err(io_error("reading .dockerignore")(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let bytes = fs::read(&path).map_err(io_error("reading .dockerignore"))?;
    let matcher = match Matcher::parse(&String::from_utf8_lossy(&bytes)) {
        Ok(matcher) => matcher,
        Err(err) => {
            tracing::warn!(%err, "ignoring unusable .dockerignore in the build context");
            return Ok(Vec::new());
        }
    };
    let mut removed = Vec::new();
    for name in matcher.build_files_to_drop(dockerfile) {
        let result = resolve_in_scope(root, &name).and_then(|p| remove_all(&p));
        match result {
            Ok(()) => removed.push(name),
            Err(err) => tracing::error!(%err, file = %name, "failed to remove"),
        }
    }
    Ok(removed)
}

/// Go's `os.RemoveAll` on a path whose symlinks were already resolved.
fn remove_all(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// moby's `FollowSymlinkInScope(filepath.Join(root, path), root)`: `path` (absolute or not) is
/// joined to `root` and must not climb out of it lexically (an error otherwise); then each
/// symlink on the way is expanded as if `root` were `/`, so the result is always inside
/// `root`. Missing components are accepted as they are. More than 255 steps is an error.
pub fn resolve_in_scope(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    for part in path.as_bytes().split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if pending.pop_back().is_none() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{path} is not in {}", root.display()),
                    ));
                }
            }
            other => pending.push_back(other.to_vec()),
        }
    }
    let mut resolved: Vec<Vec<u8>> = Vec::new();
    let mut steps = 0;
    while let Some(part) = pending.pop_front() {
        steps += 1;
        if steps > MAX_SCOPE_STEPS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("too many links in {path}"),
            ));
        }
        match part.as_slice() {
            b"" | b"." => continue,
            b".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        resolved.push(part);
        let full = under(root, &resolved);
        match fs::symlink_metadata(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
            Ok(m) if !m.file_type().is_symlink() => {}
            Ok(_) => {
                resolved.pop();
                let target = fs::read_link(&full)?.into_os_string().into_vec();
                if target.starts_with(b"/") {
                    resolved.clear();
                }
                for piece in target.split(|&b| b == b'/').rev() {
                    pending.push_front(piece.to_vec());
                }
            }
        }
    }
    Ok(under(root, &resolved))
}

/// `/`-separated path of `full` relative to `root`, `.` for the root itself.
fn relative_key(root: &Path, full: &Path) -> String {
    let rel = full.strip_prefix(root).unwrap_or(full);
    let parts: Vec<Vec<u8>> = rel
        .components()
        .map(|c| c.as_os_str().as_bytes().to_vec())
        .collect();
    join_key(&parts)
}

/// `hashStringSlice`: `prefix:` + hex sha256 of the items joined with `,`. The classic builder
/// uses it for `dir:` (a directory's sorted entry sums) and `multi:` (several sources).
pub fn hash_string_slice(prefix: &str, items: &[String]) -> String {
    format!(
        "{prefix}:{}",
        hex::encode(Sha256::digest(items.join(",").as_bytes()))
    )
}

/// `calcCopyInfo` for one source path without wildcards: `file:<hash>` for a file (symlinks
/// followed in scope) or `dir:<hash_string_slice of the sorted hashes of the directory and
/// everything under it>`, where `hash` is the source's per-path `Hash`.
fn source_checksum(
    root: &Path,
    src: &str,
    hash: &mut dyn FnMut(&str) -> io::Result<String>,
) -> io::Result<String> {
    let path = src.strip_prefix('/').unwrap_or(src);
    let path = path.strip_prefix("./").unwrap_or(path);
    let full = resolve_in_scope(root, path).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("forbidden path outside the build context: {path} ()"),
        )
    })?;
    let meta = fs::metadata(&full).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "file not found in build context or excluded by .dockerignore: \
                     stat {path}: file does not exist"
                ),
            )
        } else {
            e
        }
    })?;
    if !meta.is_dir() {
        return Ok(format!("file:{}", hash(path)?));
    }
    let mut sums = Vec::new();
    walk(&full, &mut |p| {
        let rel = relative_key(root, p);
        if rel != "." {
            // walkSource drops paths that fail to hash.
            if let Ok(sum) = hash(&rel) {
                sums.push(sum);
            }
        }
    })?;
    sums.sort();
    Ok(hash_string_slice("dir", &sums))
}

/// Go's `filepath.Walk` order (a directory, then its entries by name), never following
/// symlinks.
fn walk(path: &Path, visit: &mut dyn FnMut(&Path)) -> io::Result<()> {
    visit(path);
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mut names: Vec<OsString> = fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        walk(&path.join(name), visit)?;
    }
    Ok(())
}

impl Context {
    /// `archiveContext.Hash`: the tarsum of `path` after following symlinks in scope ("the file
    /// that is actually copied"); a path the archive did not list (a parent it never named, a
    /// dangling link) hashes to `path` itself, as in dockerd.
    pub fn hash(&self, path: &str) -> io::Result<String> {
        let full = resolve_in_scope(&self.root, path).map_err(|e| {
            let clean = join_key(&clean_components(path.as_bytes()));
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("forbidden path outside the build context: {path} ({clean}): {e}"),
            )
        })?;
        let rel = relative_key(&self.root, &full);
        Ok(self
            .entries
            .get(&rel)
            .map_or_else(|| path.to_string(), |e| e.sum.clone()))
    }

    /// The cache-key source hash for `COPY <src>` from this context, exactly as dockerd 20.10
    /// puts it into `COPY file:<...> in /dest` / `COPY dir:<...> in /dest`: `file:` + the
    /// entry's tarsum, or `dir:` + sha256 over the comma-joined, sorted tarsums of the
    /// directory and all it contains (on disk now, so files `.dockerignore` removed do not
    /// count). Several sources combine with `hash_string_slice("multi", ..)`.
    pub fn checksum(&self, src: &str) -> io::Result<String> {
        source_checksum(&self.root, src, &mut |p| self.hash(p))
    }
}

/// The same cache key as [`Context::checksum`] for a tree that did not come from a tar (e.g. a
/// previous stage for `COPY --from`), hashing from disk like dockerd's `lazySource`:
/// `archive.FileInfoHeader` of each path (name with `/` after directories, `st_mode` with its
/// type bits, uid, gid, size of regular files, type flag, symlink target, owner and group
/// names looked up on this host, device numbers, the `security.capability` xattr) in tarsum.v1
/// order, then a regular file's content.
pub fn checksum(root: &Path, src: &str) -> io::Result<String> {
    source_checksum(root, src, &mut |p| lazy_hash(root, p))
}

/// `lazySource.Hash` for one path.
fn lazy_hash(root: &Path, path: &str) -> io::Result<String> {
    let full = resolve_in_scope(root, path)?;
    let rel = relative_key(root, &full);
    let meta = match fs::symlink_metadata(&full) {
        Ok(meta) => meta,
        // "a missing file returns a path as hash", e.g. a broken symlink.
        Err(_) => return Ok(rel),
    };
    let ft = meta.file_type();
    let (typeflag, linkname) = if ft.is_file() {
        (b'0', Vec::new())
    } else if ft.is_dir() {
        (b'5', Vec::new())
    } else if ft.is_symlink() {
        (b'2', fs::read_link(&full)?.into_os_string().into_vec())
    } else if ft.is_char_device() {
        (b'3', Vec::new())
    } else if ft.is_block_device() {
        (b'4', Vec::new())
    } else if ft.is_fifo() {
        (b'6', Vec::new())
    } else {
        // Go's FileInfoHeader: "archive/tar: sockets not supported".
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{rel}: sockets not supported"),
        ));
    };
    let mut name = rel.clone().into_bytes();
    if ft.is_dir() && !name.ends_with(b"/") {
        name.push(b'/');
    }
    let (devmajor, devminor) = if ft.is_char_device() || ft.is_block_device() {
        let rdev = meta.rdev();
        (u64::from(libc::major(rdev)), u64::from(libc::minor(rdev)))
    } else {
        (0, 0)
    };
    let uname = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let gname = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_default();
    let mut xattrs = BTreeMap::new();
    if let Some(cap) = security_capability(&full) {
        xattrs.insert(b"security.capability".to_vec(), cap);
    }
    let mut hasher = Sha256::new();
    write_v1_header(
        &mut hasher,
        &V1Fields {
            name: &name,
            mode: i64::from(meta.mode()),
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            size: if ft.is_file() { meta.len() } else { 0 },
            typeflag,
            linkname: &linkname,
            uname: uname.as_bytes(),
            gname: gname.as_bytes(),
            devmajor,
            devminor,
            xattrs: &xattrs,
        },
    );
    if ft.is_file() && meta.len() > 0 {
        let mut f = fs::File::open(&full)?;
        io::copy(&mut f, &mut HashWriter(&mut hasher))?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `ReadSecurityXattrToTarHeader`: the file capability, revision 3 rewritten as revision 2.
fn security_capability(path: &Path) -> Option<Vec<u8>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = c"security.capability";
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    const XATTR_CAPS_SZ_2: usize = 20;
    if buf.len() > 3 && buf[3] == 3 {
        buf[3] = 2;
        buf.truncate(XATTR_CAPS_SZ_2);
    }
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const MTIME: u64 = 1_600_000_000;

    /// A tar archive written header by header, so a test says exactly what a client (hostile or
    /// not) sends: raw names, any type flag, any link target, any owner.
    #[derive(Default)]
    struct Tar(Vec<u8>);

    impl Tar {
        fn raw(
            mut self,
            kind: u8,
            name: &str,
            mode: u32,
            link: &str,
            data: &[u8],
            tweak: impl FnOnce(&mut tar::Header),
        ) -> Tar {
            let mut h = tar::Header::new_ustar();
            let field = &mut h.as_old_mut().name;
            assert!(name.len() <= field.len(), "name too long for a raw header");
            field[..name.len()].copy_from_slice(name.as_bytes());
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(data.len() as u64);
            h.set_mtime(MTIME);
            h.set_entry_type(tar::EntryType::new(kind));
            if !link.is_empty() {
                h.set_link_name_literal(link).unwrap();
            }
            tweak(&mut h);
            h.set_cksum();
            self.0.extend_from_slice(h.as_bytes());
            self.0.extend_from_slice(data);
            let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
            self.0.extend(std::iter::repeat_n(0u8, pad));
            self
        }

        fn file(self, name: &str, mode: u32, data: &[u8]) -> Tar {
            self.raw(b'0', name, mode, "", data, |_| {})
        }

        fn dir(self, name: &str, mode: u32) -> Tar {
            self.raw(b'5', name, mode, "", b"", |_| {})
        }

        fn symlink(self, name: &str, target: &str) -> Tar {
            self.raw(b'2', name, 0o777, target, b"", |_| {})
        }

        fn hardlink(self, name: &str, target: &str) -> Tar {
            self.raw(b'1', name, 0o644, target, b"", |_| {})
        }

        /// A PAX extended header (`x`) for the next entry.
        fn pax(self, records: &[(&str, &[u8])]) -> Tar {
            let mut data = Vec::new();
            for (key, value) in records {
                let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
                let mut len = body_len + 1;
                while len != body_len + len.to_string().len() {
                    len = body_len + len.to_string().len();
                }
                data.extend(format!("{len} {key}=").as_bytes());
                data.extend(*value);
                data.push(b'\n');
            }
            self.raw(b'x', "PaxHeaders/next", 0o644, "", &data, |_| {})
        }

        fn dockerfile(self) -> Tar {
            self.file("Dockerfile", 0o644, b"FROM scratch\n")
        }

        fn finish(mut self) -> Vec<u8> {
            self.0.extend([0u8; 2 * BLOCK]);
            self.0
        }
    }

    /// A scratch area: `ctx` is the (empty) destination, `outside` a sibling holding `secret`,
    /// standing in for host files that no archive may touch.
    struct Scratch {
        _tmp: tempfile::TempDir,
        ctx: PathBuf,
        outside: PathBuf,
    }

    impl Scratch {
        fn new() -> Scratch {
            let tmp = tempfile::tempdir().unwrap();
            let ctx = tmp.path().join("ctx");
            let outside = tmp.path().join("outside");
            fs::create_dir(&ctx).unwrap();
            fs::create_dir(&outside).unwrap();
            fs::write(outside.join("secret"), "host secret").unwrap();
            Scratch {
                _tmp: tmp,
                ctx,
                outside,
            }
        }

        fn receive(&self, body: &[u8], dockerfile: &str) -> Result<Context, ContextError> {
            receive(body, &self.ctx, dockerfile)
        }

        fn outside_abs(&self) -> String {
            self.outside.to_str().unwrap().to_string()
        }

        /// The outside directory holds exactly what it started with.
        fn assert_outside_untouched(&self) {
            let names: Vec<_> = fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                names,
                ["secret"],
                "something was written outside the context"
            );
            let secret = self.outside.join("secret");
            assert_eq!(fs::read_to_string(&secret).unwrap(), "host secret");
            assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
            let parent_names: Vec<_> = fs::read_dir(self.ctx.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(parent_names, ["ctx", "outside"]);
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn bzip2(data: &[u8]) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn mtime_of(p: &Path) -> i64 {
        fs::symlink_metadata(p).unwrap().mtime()
    }

    // ---- compression and body detection ----

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

    // ---- locating the Dockerfile ----

    #[test]
    fn custom_dockerfile_name_in_a_subdirectory() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("build/Dockerfile.dev", 0o644, b"FROM dev\n")
            .finish();
        let ctx = s.receive(&body, "build/Dockerfile.dev").unwrap();
        assert_eq!(ctx.dockerfile_name, "build/Dockerfile.dev");
        assert_eq!(ctx.dockerfile_text, "FROM dev\n");
        // An absolute name is taken inside the context, as filepath.Join(root, name) does.
        let s = Scratch::new();
        let ctx = s.receive(&body, "/build/Dockerfile.dev").unwrap();
        assert_eq!(ctx.dockerfile_text, "FROM dev\n");
    }

    #[test]
    fn dockerfile_added_by_the_cli_under_a_random_name_is_read_then_hidden() {
        // `docker build -f ../Dockerfile .` / `-f - .`: the CLI adds the Dockerfile as
        // `.dockerfile.<20 hex>` and appends that name to `.dockerignore`.
        let s = Scratch::new();
        let name = ".dockerfile.0123456789abcdef0123";
        let body = Tar::default()
            .file("app.py", 0o644, b"print(1)\n")
            .file(
                ".dockerignore",
                0o644,
                format!(".dockerignore\n{name}\n").as_bytes(),
            )
            .file(name, 0o600, b"FROM python\n")
            .finish();
        let ctx = s.receive(&body, name).unwrap();
        assert_eq!(ctx.dockerfile_name, name);
        assert_eq!(ctx.dockerfile_text, "FROM python\n");
        assert_eq!(ctx.removed, [".dockerignore", name]);
        assert!(!s.ctx.join(name).exists());
        assert!(!s.ctx.join(".dockerignore").exists());
        assert!(s.ctx.join("app.py").exists());
    }

    #[test]
    fn lowercase_dockerfile_is_the_fallback_for_the_default_name_only() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("dockerfile", 0o644, b"FROM lower\n")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.dockerfile_name, "dockerfile");
        assert_eq!(ctx.dockerfile_text, "FROM lower\n");

        let s = Scratch::new();
        let ctx = s.receive(&body, "Dockerfile").unwrap();
        assert_eq!(ctx.dockerfile_name, "dockerfile");

        // Only the exact default name falls back.
        let s = Scratch::new();
        let body = Tar::default()
            .file("dockerfile.dev", 0o644, b"FROM lower\n")
            .finish();
        let err = s.receive(&body, "Dockerfile.dev").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot locate specified Dockerfile: Dockerfile.dev"
        );
    }

    #[test]
    fn missing_dockerfile_reports_the_requested_name() {
        let s = Scratch::new();
        let body = Tar::default().file("README", 0o644, b"hi").finish();
        let err = s.receive(&body, "").unwrap_err();
        assert!(matches!(err, ContextError::DockerfileNotFound(ref n) if n == "Dockerfile"));
        assert_eq!(
            err.to_string(),
            "Cannot locate specified Dockerfile: Dockerfile"
        );
        let s = Scratch::new();
        let err = s.receive(&body, "build/Dockerfile").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot locate specified Dockerfile: build/Dockerfile"
        );
    }

    #[test]
    fn dockerfile_outside_the_context_is_forbidden() {
        let s = Scratch::new();
        fs::write(s.ctx.parent().unwrap().join("Dockerfile"), "FROM host\n").unwrap();
        let body = Tar::default().dockerfile().finish();
        let err = s.receive(&body, "../Dockerfile").unwrap_err();
        assert_eq!(
            err.to_string(),
            "forbidden path outside the build context: ../Dockerfile ()"
        );
    }

    #[test]
    fn dockerfile_symlinks_are_followed_inside_the_context_only() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("real/Dockerfile", 0o644, b"FROM real\n")
            .symlink("Dockerfile", "/real/Dockerfile")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.dockerfile_text, "FROM real\n");

        // A link climbing out is resolved as if the context were `/`: it never reads the host.
        let s = Scratch::new();
        fs::write(s.outside.join("Dockerfile"), "FROM host\n").unwrap();
        let body = Tar::default()
            .symlink("Dockerfile", "../outside/Dockerfile")
            .finish();
        let err = s.receive(&body, "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot locate specified Dockerfile: Dockerfile"
        );
        let abs = format!("{}/Dockerfile", s.outside_abs());
        let s = Scratch::new();
        fs::write(s.outside.join("Dockerfile"), "FROM host\n").unwrap();
        let body = Tar::default().symlink("Dockerfile", &abs).finish();
        assert!(matches!(
            s.receive(&body, "").unwrap_err(),
            ContextError::DockerfileNotFound(_)
        ));
    }

    #[test]
    fn non_utf8_dockerfile_is_rejected() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("Dockerfile", 0o644, b"FROM a\nLABEL x=\xff\xfe\n")
            .finish();
        let err = s.receive(&body, "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Dockerfile (Dockerfile) is not valid UTF-8"
        );
    }

    #[test]
    fn byte_order_mark_is_left_for_the_parser() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("Dockerfile", 0o644, "\u{feff}FROM a\n".as_bytes())
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.dockerfile_text, "\u{feff}FROM a\n");
    }

    #[test]
    fn a_directory_named_dockerfile_is_a_read_error() {
        let s = Scratch::new();
        let body = Tar::default().dir("Dockerfile/", 0o755).finish();
        let err = s.receive(&body, "").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unexpected error reading Dockerfile:"),
            "{err}"
        );
    }

    // ---- hostile archives ----

    #[test]
    fn dot_dot_names_stay_inside_the_context() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file("../outside/pwned", 0o644, b"x")
            .file("a/../../../outside/pwned2", 0o644, b"y")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        s.assert_outside_untouched();
        // As in dockerd's chrooted untar, `..` stops at the context root.
        assert_eq!(
            fs::read_to_string(s.ctx.join("outside/pwned")).unwrap(),
            "x"
        );
        assert_eq!(
            fs::read_to_string(s.ctx.join("outside/pwned2")).unwrap(),
            "y"
        );
        assert!(ctx.entries.contains_key("outside/pwned"));
    }

    #[test]
    fn absolute_names_are_made_relative() {
        let s = Scratch::new();
        let name = format!("{}/pwned", s.outside_abs());
        let body = Tar::default()
            .dockerfile()
            .file(&name, 0o644, b"x")
            .finish();
        s.receive(&body, "").unwrap();
        s.assert_outside_untouched();
        let inside = s.ctx.join(name.trim_start_matches('/'));
        assert_eq!(fs::read_to_string(inside).unwrap(), "x");
    }

    #[test]
    fn symlink_to_the_host_root_is_kept_but_never_written_through() {
        let s = Scratch::new();
        // link -> /, then link/<host path>/pwned: the classic etc/passwd attack.
        let through = format!("link{}/pwned", s.outside_abs());
        let body = Tar::default()
            .dockerfile()
            .symlink("link", "/")
            .file(&through, 0o644, b"x")
            .finish();
        let err = s.receive(&body, "").unwrap_err();
        assert!(
            matches!(err, ContextError::ThroughSymlink { ref link, .. } if link == "link"),
            "{err}"
        );
        s.assert_outside_untouched();
        assert_eq!(fs::read_link(s.ctx.join("link")).unwrap(), Path::new("/"));
    }

    #[test]
    fn symlink_to_an_outside_directory_is_never_written_through() {
        let s = Scratch::new();
        let body = Tar::default()
            .symlink("out", &s.outside_abs())
            .file("out/pwned", 0o644, b"x")
            .finish();
        let err = s.receive(&body, "").unwrap_err();
        assert!(matches!(err, ContextError::ThroughSymlink { .. }), "{err}");
        s.assert_outside_untouched();
    }

    #[test]
    fn symlink_to_a_parent_cannot_be_used_to_climb_out() {
        let s = Scratch::new();
        let body = Tar::default()
            .dir("a/", 0o755)
            .symlink("a/up", "../..")
            .file("a/up/outside/pwned", 0o644, b"x")
            .finish();
        let err = s.receive(&body, "").unwrap_err();
        assert!(
            matches!(err, ContextError::ThroughSymlink { ref link, .. } if link == "a/up"),
            "{err}"
        );
        s.assert_outside_untouched();
    }

    #[test]
    fn an_existing_symlink_is_replaced_not_followed() {
        let s = Scratch::new();
        let target = format!("{}/secret", s.outside_abs());
        let body = Tar::default()
            .dockerfile()
            .symlink("x", &target)
            .file("x", 0o644, b"replacement")
            .finish();
        s.receive(&body, "").unwrap();
        s.assert_outside_untouched();
        let meta = fs::symlink_metadata(s.ctx.join("x")).unwrap();
        assert!(meta.is_file());
        assert_eq!(fs::read_to_string(s.ctx.join("x")).unwrap(), "replacement");
    }

    #[test]
    fn hardlink_to_a_host_file_is_refused() {
        for absolute in [false, true] {
            let s = Scratch::new();
            let target = if absolute {
                format!("{}/secret", s.outside_abs())
            } else {
                "../outside/secret".to_string()
            };
            let body = Tar::default()
                .dockerfile()
                .hardlink("stolen", &target)
                .finish();
            let err = s.receive(&body, "").unwrap_err();
            // Both names are taken inside the context, where nothing of that name exists.
            assert!(
                matches!(err, ContextError::BadHardlink { ref reason, .. }
                    if reason == "target not extracted yet"),
                "{target}: {err}"
            );
            s.assert_outside_untouched();
            assert!(!s.ctx.join("stolen").exists());
        }
    }

    #[test]
    fn hardlink_through_a_symlinked_directory_is_refused() {
        let s = Scratch::new();
        let body = Tar::default()
            .symlink("out", &s.outside_abs())
            .hardlink("stolen", "out/secret")
            .finish();
        let err = s.receive(&body, "").unwrap_err();
        assert!(matches!(err, ContextError::BadHardlink { .. }), "{err}");
        s.assert_outside_untouched();
    }

    #[test]
    fn hardlink_inside_the_context_shares_the_inode() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file("bin/tool", 0o755, b"#!/bin/sh\n")
            .hardlink("bin/tool-alias", "bin/tool")
            .finish();
        s.receive(&body, "").unwrap();
        let a = fs::metadata(s.ctx.join("bin/tool")).unwrap();
        let b = fs::metadata(s.ctx.join("bin/tool-alias")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.nlink(), 2);
    }

    #[test]
    fn directory_metadata_is_never_applied_through_a_later_symlink() {
        let s = Scratch::new();
        let before = fs::metadata(&s.outside).unwrap();
        let body = Tar::default()
            .dockerfile()
            .raw(b'5', "d/", 0o777, "", b"", |h| h.set_mtime(1000))
            .symlink("d", &s.outside_abs())
            .finish();
        s.receive(&body, "").unwrap();
        let after = fs::metadata(&s.outside).unwrap();
        assert_eq!(after.permissions().mode(), before.permissions().mode());
        assert_eq!(after.mtime(), before.mtime());
        assert!(fs::symlink_metadata(s.ctx.join("d")).unwrap().is_symlink());
        s.assert_outside_untouched();
    }

    #[test]
    fn pax_global_headers_are_skipped() {
        let s = Scratch::new();
        let body = Tar::default()
            .raw(
                b'g',
                "pax_global_header",
                0o666,
                "",
                b"17 comment=hello\n",
                |_| {},
            )
            .dockerfile()
            .finish();
        s.receive(&body, "").unwrap();
        assert!(!s.ctx.join("pax_global_header").exists());
        assert!(s.ctx.join("Dockerfile").exists());
    }

    #[test]
    fn devices_are_skipped_and_fifos_created() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .raw(b'3', "dev/null", 0o666, "", b"", |h| {
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
            })
            .raw(b'4', "dev/sda", 0o660, "", b"", |h| {
                h.set_device_major(8).unwrap();
                h.set_device_minor(0).unwrap();
            })
            .raw(b'6', "pipe", 0o640, "", b"", |_| {})
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.skipped, ["dev/null", "dev/sda"]);
        assert!(!s.ctx.join("dev/null").exists());
        assert!(!s.ctx.join("dev/sda").exists());
        let pipe = fs::symlink_metadata(s.ctx.join("pipe")).unwrap();
        assert!(pipe.file_type().is_fifo());
        assert_eq!(pipe.permissions().mode() & 0o7777, 0o640);
        // Skipped entries still have their (dockerd) sums.
        assert!(ctx.entries.contains_key("dev/null"));
    }

    #[test]
    fn unknown_entry_types_are_rejected_like_dockerd() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .raw(b'7', "contiguous", 0o644, "", b"data", |_| {})
            .finish();
        let err = s.receive(&body, "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error processing tar file: unhandled tar header type 55"
        );
    }

    #[test]
    fn legacy_nul_type_is_a_file_or_with_a_slash_a_directory() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .raw(b'0', "olddir/", 0o755, "", b"", |h| {
                h.as_mut_bytes()[156] = 0
            })
            .raw(b'0', "olddir/oldfile", 0o644, "", b"v7", |h| {
                h.as_mut_bytes()[156] = 0
            })
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert!(s.ctx.join("olddir").is_dir());
        assert_eq!(
            fs::read_to_string(s.ctx.join("olddir/oldfile")).unwrap(),
            "v7"
        );
        assert_eq!(ctx.entries["olddir"].typeflag, b'5');
        assert_eq!(ctx.entries["olddir/oldfile"].typeflag, b'0');
    }

    #[test]
    fn numeric_fields_are_read_like_go() {
        assert_eq!(go_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(go_numeric(b"  644 \0"), Some(0o644));
        assert_eq!(go_numeric(b"\0\0\0\0\0\0\0\0"), Some(0), "empty is zero");
        assert_eq!(go_numeric(b"0000008\0"), None, "not octal");
        // Base-256: positive and negative.
        assert_eq!(go_numeric(&[0x80, 0, 0, 0, 0, 0, 0x01, 0x00]), Some(256));
        assert_eq!(go_numeric(&[0xff; 8]), Some(-1));
    }

    // ---- metadata ----

    #[test]
    fn modes_including_the_executable_and_setuid_bits_are_kept() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file("run.sh", 0o100755, b"#!/bin/sh\n")
            .file("private", 0o640, b"p")
            .file("suid", 0o4755, b"s")
            .dir("shared/", 0o2775)
            .file("readonly", 0o444, b"r")
            .finish();
        s.receive(&body, "").unwrap();
        assert_eq!(mode_of(&s.ctx.join("run.sh")), 0o755);
        assert_eq!(mode_of(&s.ctx.join("private")), 0o640);
        assert_eq!(mode_of(&s.ctx.join("suid")), 0o4755);
        assert_eq!(mode_of(&s.ctx.join("shared")), 0o2775);
        assert_eq!(mode_of(&s.ctx.join("readonly")), 0o444);
    }

    #[test]
    fn mtimes_are_kept_for_files_directories_and_symlinks() {
        let s = Scratch::new();
        let old = MTIME - 86_400;
        let body = Tar::default()
            .dockerfile()
            .raw(b'5', "d/", 0o755, "", b"", |h| h.set_mtime(old))
            // Added after the directory entry: its mtime must still be the archive's.
            .file("d/f", 0o644, b"f")
            .raw(b'2', "d/l", 0o777, "f", b"", |h| h.set_mtime(old - 1))
            .finish();
        s.receive(&body, "").unwrap();
        assert_eq!(mtime_of(&s.ctx.join("d")), old as i64);
        assert_eq!(mtime_of(&s.ctx.join("d/f")), MTIME as i64);
        assert_eq!(mtime_of(&s.ctx.join("d/l")), old as i64 - 1);
    }

    #[test]
    fn pax_mtime_overrides_the_header_with_sub_second_precision() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .pax(&[("mtime", b"1234567890.5")])
            .file("precise", 0o644, b"x")
            .finish();
        s.receive(&body, "").unwrap();
        let meta = fs::metadata(s.ctx.join("precise")).unwrap();
        assert_eq!(meta.mtime(), 1_234_567_890);
        assert_eq!(meta.mtime_nsec(), 500_000_000);
        assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn read_only_directories_still_receive_their_contents() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .dir("ro/", 0o555)
            .dir("ro/sub/", 0o500)
            .file("ro/sub/file", 0o444, b"inside")
            .finish();
        s.receive(&body, "").unwrap();
        assert_eq!(
            fs::read_to_string(s.ctx.join("ro/sub/file")).unwrap(),
            "inside"
        );
        assert_eq!(mode_of(&s.ctx.join("ro")), 0o555);
        assert_eq!(mode_of(&s.ctx.join("ro/sub")), 0o500);
        // Let the temp dir go away.
        fs::set_permissions(s.ctx.join("ro/sub"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(s.ctx.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn implicit_parent_directories_are_created_0755() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file("deep/er/file", 0o644, b"x")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(mode_of(&s.ctx.join("deep")), 0o755);
        assert_eq!(mode_of(&s.ctx.join("deep/er")), 0o755);
        // Not in the archive, so dockerd's Hash falls back to the path itself.
        assert!(!ctx.entries.contains_key("deep"));
        assert_eq!(ctx.hash("deep").unwrap(), "deep");
    }

    #[test]
    fn ownership_is_recorded_not_applied() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .raw(b'0', "owned", 0o644, "", b"x", |h| {
                h.set_uid(4242);
                h.set_gid(4343);
            })
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(
            (ctx.entries["owned"].uid, ctx.entries["owned"].gid),
            (4242, 4343)
        );
        let meta = fs::metadata(s.ctx.join("owned")).unwrap();
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    }

    #[test]
    fn pax_owner_overrides_the_header() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .pax(&[("uid", b"3000000"), ("gid", b"3000001")])
            .file("big-ids", 0o644, b"x")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.entries["big-ids"].uid, 3_000_000);
        assert_eq!(ctx.entries["big-ids"].gid, 3_000_001);
    }

    #[test]
    fn long_names_from_gnu_and_pax_headers() {
        let s = Scratch::new();
        let long = format!("{}/file.txt", "d".repeat(150));
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(3);
        builder.append_data(&mut h, &long, &b"gnu"[..]).unwrap();
        let mut body = builder.into_inner().unwrap();
        body.truncate(body.len() - 2 * BLOCK); // drop the end-of-archive blocks
        let pax_name = format!("{}/pax.txt", "p".repeat(150));
        let rest = Tar::default()
            .pax(&[("path", pax_name.as_bytes())])
            .file("short", 0o644, b"pax")
            .dockerfile()
            .finish();
        body.extend(rest);
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(fs::read_to_string(s.ctx.join(&long)).unwrap(), "gnu");
        assert_eq!(fs::read_to_string(s.ctx.join(&pax_name)).unwrap(), "pax");
        assert!(!s.ctx.join("short").exists());
        assert!(ctx.entries.contains_key(&pax_name));
    }

    // ---- malformed and oversized bodies ----

    #[test]
    fn corrupt_header_is_malformed() {
        let s = Scratch::new();
        let mut body = Tar::default()
            .dockerfile()
            .file("second", 0o644, b"x")
            .finish();
        body[2 * BLOCK + 10] ^= 0x55; // inside the second header's name
        let err = s.receive(&body, "").unwrap_err();
        assert!(matches!(err, ContextError::Malformed(_)), "{err}");
        assert!(err.to_string().starts_with("Error processing tar file: "));
    }

    #[test]
    fn an_archive_without_its_last_padding_and_end_blocks_is_complete() {
        let body = Tar::default()
            .dockerfile()
            .file("tail", 0o644, b"seventeen bytes!!")
            .finish();
        // Header + data of `tail`, nothing after (what the docker CLI sends with `-f` outside
        // the context).
        let end = 2 * BLOCK + BLOCK + 17;
        let s = Scratch::new();
        let ctx = s.receive(&body[..end], "").unwrap();
        assert!(ctx.entries.contains_key("tail"));
        // Cut at a block boundary inside the data: still an error.
        let body = Tar::default()
            .dockerfile()
            .file("big", 0o644, &[7u8; 1000])
            .finish();
        let s = Scratch::new();
        let err = s.receive(&body[..2 * BLOCK + 2 * BLOCK], "").unwrap_err();
        assert!(matches!(err, ContextError::Malformed(_)), "{err}");
    }

    #[test]
    fn truncated_archive_is_malformed() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file("big", 0o644, &[7u8; 3000])
            .finish();
        let cut = 2 * BLOCK + BLOCK + 1000; // mid-way through big's data
        let err = s.receive(&body[..cut], "").unwrap_err();
        assert!(matches!(err, ContextError::Malformed(_)), "{err}");
        let s = Scratch::new();
        let err = s.receive(&gzip(&body[..cut]), "").unwrap_err();
        assert!(matches!(err, ContextError::Malformed(_)), "{err}");
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

    // ---- .dockerignore ----

    #[test]
    fn dockerignore_removes_the_dockerfile_and_itself_after_reading() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("Dockerfile", 0o644, b"FROM a\nCOPY . /app\n")
            .file(".dockerignore", 0o644, b"Dockerfile\n.dockerignore\n*.md\n")
            .file("main.go", 0o644, b"package main\n")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.dockerfile_text, "FROM a\nCOPY . /app\n");
        assert_eq!(ctx.removed, [".dockerignore", "Dockerfile"]);
        assert!(!s.ctx.join("Dockerfile").exists());
        assert!(!s.ctx.join(".dockerignore").exists());
        assert!(s.ctx.join("main.go").exists());
    }

    #[test]
    fn dockerignore_keeps_build_files_it_does_not_exclude() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file(".dockerignore", 0o644, b"*.md\n!Dockerfile\n")
            .file("README.md", 0o644, b"# hi\n")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert!(ctx.removed.is_empty());
        assert!(s.ctx.join("Dockerfile").exists());
        assert!(s.ctx.join(".dockerignore").exists());
        // The daemon only hides build files; the CLI already left other ignored files out.
        assert!(s.ctx.join("README.md").exists());
    }

    #[test]
    fn dockerignore_with_a_bad_pattern_removes_nothing() {
        // dockerd ignores the matcher's error here (`rm, _ := fileutils.Matches(...)`).
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file(".dockerignore", 0o644, b"Dockerfile\n[\n")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert!(ctx.removed.is_empty());
        assert!(s.ctx.join("Dockerfile").exists());
    }

    #[test]
    fn dockerignore_applies_to_a_custom_dockerfile_path() {
        let s = Scratch::new();
        let body = Tar::default()
            .file("build/prod.Dockerfile", 0o644, b"FROM prod\n")
            .file(".dockerignore", 0o644, b"build\n")
            .file("build/other", 0o644, b"kept\n")
            .finish();
        let ctx = s.receive(&body, "build/prod.Dockerfile").unwrap();
        assert_eq!(ctx.removed, ["build/prod.Dockerfile"]);
        assert!(!s.ctx.join("build/prod.Dockerfile").exists());
        assert!(s.ctx.join("build/other").exists());
        assert!(s.ctx.join(".dockerignore").exists());
    }

    // ---- cache-key hashes ----

    /// The tarsum.v1 header string, in dockerd's order, for a plain entry.
    fn v1_header(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in fields {
            out.extend(k.as_bytes());
            out.extend(v.as_bytes());
        }
        out
    }

    #[test]
    fn file_checksum_is_the_tarsum_v1_of_its_entry() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .raw(b'0', "hello.txt", 0o100644, "", b"hello", |h| {
                h.set_uid(1000);
                h.set_gid(1001);
                h.set_username("alice").unwrap();
                h.set_groupname("staff").unwrap();
                h.set_mtime(12345);
            })
            .pax(&[("SCHILY.xattr.user.b", b"2"), ("SCHILY.xattr.user.a", b"1")])
            .file("attrs", 0o644, b"")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        // uname and gname are blanked, mtime is not hashed, the content follows the header.
        let mut expected = v1_header(&[
            ("name", "hello.txt"),
            ("mode", "33188"),
            ("uid", "1000"),
            ("gid", "1001"),
            ("size", "5"),
            ("typeflag", "0"),
            ("linkname", ""),
            ("uname", ""),
            ("gname", ""),
            ("devmajor", "0"),
            ("devminor", "0"),
        ]);
        expected.extend(b"hello");
        assert_eq!(
            ctx.checksum("hello.txt").unwrap(),
            format!("file:{}", sha(&expected))
        );
        // Leading `/` and `./` are trimmed from the source, as calcCopyInfo does.
        assert_eq!(
            ctx.checksum("/hello.txt").unwrap(),
            ctx.checksum("./hello.txt").unwrap()
        );
        // xattrs follow, sorted by key.
        let mut expected = v1_header(&[
            ("name", "attrs"),
            ("mode", "420"),
            ("uid", "0"),
            ("gid", "0"),
            ("size", "0"),
            ("typeflag", "0"),
            ("linkname", ""),
            ("uname", ""),
            ("gname", ""),
            ("devmajor", "0"),
            ("devminor", "0"),
            ("user.a", "1"),
            ("user.b", "2"),
        ]);
        expected.extend(b"");
        assert_eq!(
            ctx.checksum("attrs").unwrap(),
            format!("file:{}", sha(&expected))
        );
    }

    #[test]
    fn dir_checksum_hashes_the_sorted_sums_of_the_directory_and_everything_in_it() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .dir("src/", 0o755)
            .file("src/b.rs", 0o644, b"b")
            .file("src/a.rs", 0o644, b"a")
            .file("other", 0o644, b"o")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        let mut sums = vec![
            ctx.entries["src"].sum.clone(),
            ctx.entries["src/a.rs"].sum.clone(),
            ctx.entries["src/b.rs"].sum.clone(),
        ];
        sums.sort();
        let expected = format!("dir:{}", sha(sums.join(",").as_bytes()));
        assert_eq!(ctx.checksum("src").unwrap(), expected);
        assert_eq!(ctx.checksum("src/").unwrap(), expected);
        assert_eq!(hash_string_slice("dir", &sums), expected);
        // The whole context: every entry but the root.
        let mut all: Vec<String> = ctx.entries.values().map(|e| e.sum.clone()).collect();
        all.sort();
        assert_eq!(ctx.checksum(".").unwrap(), hash_string_slice("dir", &all));
    }

    #[test]
    fn context_checksum_leaves_out_build_files_removed_by_dockerignore() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file(".dockerignore", 0o644, b"Dockerfile\n.dockerignore\n")
            .file("app", 0o644, b"x")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(
            ctx.checksum(".").unwrap(),
            hash_string_slice("dir", std::slice::from_ref(&ctx.entries["app"].sum))
        );
    }

    #[test]
    fn checksum_changes_with_one_byte_the_mode_or_the_owner() {
        let sum = |mode: u32, uid: u64, data: &[u8]| {
            let s = Scratch::new();
            let body = Tar::default()
                .dockerfile()
                .raw(b'0', "f", mode, "", data, |h| h.set_uid(uid))
                .finish();
            s.receive(&body, "").unwrap().checksum("f").unwrap()
        };
        let base = sum(0o644, 0, b"content");
        assert_eq!(base, sum(0o644, 0, b"content"), "stable");
        assert_ne!(base, sum(0o644, 0, b"contend"));
        assert_ne!(base, sum(0o755, 0, b"content"));
        assert_ne!(base, sum(0o644, 1, b"content"));
    }

    #[test]
    fn checksum_follows_symlinks_to_the_copied_file() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file("real", 0o644, b"r")
            .symlink("link", "real")
            .symlink("escape", "../../real")
            .symlink("dangling", "nowhere")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.hash("link").unwrap(), ctx.entries["real"].sum);
        // Resolved in scope, `../../real` is `real`.
        assert_eq!(ctx.hash("escape").unwrap(), ctx.entries["real"].sum);
        assert_eq!(ctx.hash("dangling").unwrap(), "dangling");
        assert_eq!(ctx.checksum("link").unwrap(), ctx.checksum("real").unwrap());
        assert!(ctx.hash("../x").is_err());
    }

    #[test]
    fn checksum_of_a_missing_source_is_dockerds_error() {
        let s = Scratch::new();
        let ctx = s
            .receive(&Tar::default().dockerfile().finish(), "")
            .unwrap();
        let err = ctx.checksum("nope.txt").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "file not found in build context or excluded by .dockerignore: \
             stat nope.txt: file does not exist"
        );
        let err = ctx.checksum("../etc/passwd").unwrap_err();
        assert_eq!(
            err.to_string(),
            "forbidden path outside the build context: ../etc/passwd ()"
        );
    }

    #[test]
    fn multi_source_hash_is_hash_string_slice_of_the_sources() {
        let items = vec!["file:aa".to_string(), "dir:bb".to_string()];
        assert_eq!(
            hash_string_slice("multi", &items),
            format!("multi:{}", sha(b"file:aa,dir:bb"))
        );
    }

    /// Builds the same small tree under `root`.
    fn tree(root: &Path) {
        fs::create_dir_all(root.join("src/nested")).unwrap();
        fs::write(root.join("src/a.txt"), "alpha").unwrap();
        fs::write(root.join("src/nested/b.txt"), "beta").unwrap();
        symlink("a.txt", root.join("src/link")).unwrap();
        fs::set_permissions(root.join("src/a.txt"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(
            root.join("src/nested/b.txt"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }

    #[test]
    fn disk_checksum_is_stable_for_identical_trees() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(a.path());
        tree(b.path());
        // Times differ between the trees; they are not part of the key.
        fs::File::options()
            .write(true)
            .open(b.path().join("src/a.txt"))
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(7))
            .unwrap();
        for src in ["src", "src/a.txt", "src/link", "src/nested", "."] {
            let sa = checksum(a.path(), src).unwrap();
            assert_eq!(sa, checksum(b.path(), src).unwrap(), "{src}");
        }
        assert!(checksum(a.path(), "src").unwrap().starts_with("dir:"));
        assert!(checksum(a.path(), "src/a.txt")
            .unwrap()
            .starts_with("file:"));
        // The link is hashed as the file it points to.
        assert_eq!(
            checksum(a.path(), "src/link").unwrap(),
            checksum(a.path(), "src/a.txt").unwrap()
        );
    }

    #[test]
    fn disk_checksum_changes_with_one_byte_or_the_mode() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(a.path());
        tree(b.path());
        fs::write(b.path().join("src/nested/b.txt"), "betA").unwrap();
        assert_ne!(
            checksum(a.path(), "src/nested/b.txt").unwrap(),
            checksum(b.path(), "src/nested/b.txt").unwrap()
        );
        assert_ne!(
            checksum(a.path(), "src").unwrap(),
            checksum(b.path(), "src").unwrap()
        );
        fs::write(b.path().join("src/nested/b.txt"), "beta").unwrap();
        assert_eq!(
            checksum(a.path(), "src").unwrap(),
            checksum(b.path(), "src").unwrap()
        );
        fs::set_permissions(
            b.path().join("src/a.txt"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(
            checksum(a.path(), "src/a.txt").unwrap(),
            checksum(b.path(), "src/a.txt").unwrap()
        );
        assert_ne!(
            checksum(a.path(), "src").unwrap(),
            checksum(b.path(), "src").unwrap()
        );
        // A renamed file changes the directory's key even with the same content.
        fs::set_permissions(
            b.path().join("src/a.txt"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        fs::rename(
            b.path().join("src/nested/b.txt"),
            b.path().join("src/nested/c.txt"),
        )
        .unwrap();
        assert_ne!(
            checksum(a.path(), "src").unwrap(),
            checksum(b.path(), "src").unwrap()
        );
    }

    #[test]
    fn resolve_in_scope_treats_the_root_as_slash() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/a", root.join("abs")).unwrap();
        symlink("../../../..", root.join("a/b/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in_scope(&root, "abs/b").unwrap(), root.join("a/b"));
        assert_eq!(resolve_in_scope(&root, "a/b/up/a").unwrap(), root.join("a"));
        assert_eq!(resolve_in_scope(&root, "/a/../a").unwrap(), root.join("a"));
        assert_eq!(
            resolve_in_scope(&root, "missing/x").unwrap(),
            root.join("missing/x")
        );
        assert_eq!(resolve_in_scope(&root, "").unwrap(), root);
        assert!(
            resolve_in_scope(&root, "../root/a").is_err(),
            "lexical escape"
        );
        assert!(resolve_in_scope(&root, "a/../../x").is_err());
        assert!(resolve_in_scope(&root, "loop").is_err(), "symlink loop");
    }
}

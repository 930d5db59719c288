//! The tar extraction into the context directory, as dockerd's chrooted `archive.Unpack` does it
//! but confined without a chroot. The walk is the confined tar core's (`wharf_untar`): names
//! cleaned as rooted paths (`..` stops at the context root), no entry written through a symlink
//! (parents are opened beneath the context directory without following any), an existing path
//! replaced unless both are directories, hard links only to entries already extracted and never
//! to a directory, directory modes and times applied last.
//!
//! What is the builder's own is here, as the core's [`Hooks`]: headers read as Go's
//! `archive/tar` reads them ([`HeaderInfo`]) into [`EntryMeta`] records, each entry's `tarsum`
//! (its header, then its data as it goes by), devices skipped, owners and xattrs recorded but
//! not applied, the stream's cut-short end ([`EndPadded`]) and what follows the archive, and
//! dockerd's error texts.

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};
use wharf_untar::{
    lstat_at, remove_at, Blocked, EntryPath, Error, Hooks, Item, Kind, LinkProblem, Names, Op,
    Options, Place, Problem, Root, WalkError,
};

use super::error::io_error;
use super::header::{HeaderInfo, BLOCK};
use super::paths::clean_key;
use super::{Context, ContextError, EntryMeta};

fn is_header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

/// Extracts the tar `stream` into `dest`, recording each entry's header data and sum in
/// `ctx`.
pub(super) fn extract<R: Read>(
    stream: R,
    dest: &Path,
    ctx: &mut Context,
    stream_error: &dyn Fn(io::Error) -> ContextError,
) -> Result<(), ContextError> {
    let root = Root::beneath(dest).map_err(|e| ContextError::BadDestination {
        path: dest.to_path_buf(),
        reason: e.to_string(),
    })?;
    let data_end = Arc::new(AtomicU64::new(0));
    let stream = EndPadded {
        inner: stream,
        consumed: 0,
        data_end: data_end.clone(),
        zeros: None,
    };
    let mut options = Options::new(Names::Clamped);
    // A read-only directory still receives its contents; implied parents end up 0755, as
    // `MkdirAllAndChownNew` gives them.
    options.dir_modes_last = true;
    let mut receiving = Receiving {
        ctx,
        stream_error,
        data_end,
        entry: None,
    };
    let mut rest = wharf_untar::extract(stream, &root, &options, &mut receiving)?;
    // Read to the end, as docker-untar flushes its input: a corrupt compressed tail fails.
    io::copy(&mut rest, &mut io::sink()).map_err(stream_error)?;
    Ok(())
}

/// The builder's hooks into the extraction.
struct Receiving<'a> {
    ctx: &'a mut Context,
    stream_error: &'a dyn Fn(io::Error) -> ContextError,
    /// Where the data of the entry being read ends, for [`EndPadded`].
    data_end: Arc<AtomicU64>,
    /// The entry being extracted.
    entry: Option<Entry>,
}

/// One entry as it goes by: its header as Go reads it, and its sum so far.
struct Entry {
    info: HeaderInfo,
    hasher: Sha256,
    /// Whether its data is hashed (and its length checked): Go's reader gives the header-only
    /// types none.
    hashed: bool,
    received: u64,
}

impl Hooks for Receiving<'_> {
    type Error = ContextError;

    fn read<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Option<Item>, ContextError> {
        let size = entry.header().entry_size().unwrap_or(0);
        self.data_end
            .store(entry.raw_file_position() + size, Ordering::Relaxed);
        let info = HeaderInfo::read(entry).map_err(self.stream_error)?;
        let mut hasher = Sha256::new();
        info.write_tarsum_header(&mut hasher);
        if info.typeflag == b'g' {
            // A global header carries no file, but has its sum as any entry.
            record(self.ctx, clean_key(&info.name), &info, hasher);
            return Ok(None);
        }
        let item = Item {
            name: info.name.clone(),
            kind: kind_of(&info),
            // Recorded, not applied: COPY and ADD give context files their own owner.
            owner: None,
            mode: info.mode & 0o7777,
            mtime: TimeSpec::new(info.mtime.0, info.mtime.1.into()),
            xattrs: Vec::new(),
        };
        self.entry = Some(Entry {
            hashed: !is_header_only(info.typeflag),
            info,
            hasher,
            received: 0,
        });
        Ok(Some(item))
    }

    fn place(&mut self, root: &Root, path: &EntryPath, item: &Item) -> Result<Place, ContextError> {
        match &item.kind {
            Kind::Device { .. } => {
                // A build never needs the context's device nodes; dockerd would mknod them.
                self.ctx.skipped.push(path.to_slash_string());
                Ok(Place::Skip)
            }
            Kind::HardLink(_) => {
                // dockerd removes what has the link's name before it looks for the target: a
                // link to itself, or to something below it, finds nothing, and a link to
                // another name of the same file still gives it the header's mode and time.
                let Ok(parent) = root.dir(path.parent(), false) else {
                    // Nothing there yet, or a path the core refuses.
                    return Ok(Place::Make);
                };
                let key = path.to_slash_string();
                let name = path.name().expect("not the root");
                if lstat_at(&parent, name)
                    .map_err(|e| os_error("inspecting", &key, e))?
                    .is_some()
                {
                    remove_at(&parent, name).map_err(|e| os_error("replacing", &key, e))?;
                }
                Ok(Place::Make)
            }
            _ => Ok(Place::Make),
        }
    }

    fn data(&mut self, chunk: &[u8]) {
        if let Some(entry) = self.entry.as_mut().filter(|e| e.hashed) {
            entry.hasher.update(chunk);
            entry.received += chunk.len() as u64;
        }
    }

    fn done(&mut self, path: &EntryPath, _item: &Item) -> Result<(), ContextError> {
        let Some(entry) = self.entry.take() else {
            return Ok(());
        };
        if entry.hashed && entry.received != entry.info.size {
            // The tar crate ends a truncated entry quietly; Go reports io.ErrUnexpectedEOF.
            return Err(ContextError::Malformed("unexpected EOF".into()));
        }
        record(self.ctx, path.to_slash_string(), &entry.info, entry.hasher);
        Ok(())
    }

    fn error(&self, error: Error) -> ContextError {
        let (path, problem) = match error {
            Error::Archive(e) => return (self.stream_error)(e),
            Error::Finish { path, op, errno } => {
                let what = match op {
                    Op::Mode => "setting the mode of",
                    _ => "setting the times of",
                };
                return os_error(what, &path.to_slash_string(), errno);
            }
            Error::Entry { path, problem, .. } => (path, problem),
        };
        let key = path.to_slash_string();
        match problem {
            Problem::Read(e) => (self.stream_error)(e),
            Problem::Write(e) => io_error("writing the build context")(e),
            Problem::Parent(walk) => parent_error(&key, &path, walk),
            Problem::Link {
                target,
                path: target_path,
                problem,
            } => {
                let target_key =
                    target_path.map_or_else(|| clean_key(&target), |p| p.to_slash_string());
                let reason = match problem {
                    LinkProblem::Root => "target is the context root".to_string(),
                    LinkProblem::Directory => "target is a directory".to_string(),
                    LinkProblem::Parent(WalkError {
                        at,
                        blocked: blocked @ (Blocked::Symlink | Blocked::NotDirectory),
                    }) => {
                        let through = EntryPath::parse(&target, Names::Clamped)
                            .unwrap_or_default()
                            .prefix(at + 1)
                            .to_slash_string();
                        if blocked == Blocked::Symlink {
                            format!("path goes through symlink {through}")
                        } else {
                            format!("{through} is not a directory")
                        }
                    }
                    LinkProblem::Os(e) => {
                        return os_error(&format!("linking {key} to"), &target_key, e)
                    }
                    // Not there, or not to be looked at.
                    LinkProblem::Name(_)
                    | LinkProblem::Parent(_)
                    | LinkProblem::Stat(_)
                    | LinkProblem::Missing => "target not extracted yet".to_string(),
                };
                ContextError::BadHardlink {
                    name: key,
                    target: target_key,
                    reason,
                }
            }
            Problem::Unsupported(typeflag) => ContextError::UnhandledType {
                name: key,
                typeflag,
            },
            // Names are clamped, never refused; directories and non-directories replace each
            // other.
            Problem::Name(e) => ContextError::Malformed(format!("cannot extract {key}: {e}")),
            Problem::Overwrite { .. } => ContextError::Malformed(format!(
                "cannot extract {key}: a directory and a non-directory would replace each other"
            )),
            Problem::Os(op, e) => os_error(
                match op {
                    Op::Stat => "inspecting",
                    Op::Replace => "replacing",
                    Op::MakeDir => "creating directory",
                    Op::OpenDir => "opening directory",
                    Op::MakeFile => "creating",
                    Op::MakeSymlink => "creating symlink",
                    // Devices are skipped.
                    Op::MakeNode => "creating fifo",
                    Op::Owner => "setting the owner of",
                    Op::Mode => "setting the mode of",
                    Op::Xattr => "setting the extended attributes of",
                    Op::Times => "setting the times of",
                },
                &key,
                e,
            ),
        }
    }
}

/// Why the parents of the entry `key` at `path` could not be made.
fn parent_error(key: &str, path: &EntryPath, walk: WalkError) -> ContextError {
    let at = path.prefix(walk.at + 1).to_slash_string();
    match walk.blocked {
        Blocked::Symlink => ContextError::ThroughSymlink {
            name: key.to_string(),
            link: at,
        },
        Blocked::NotDirectory => {
            ContextError::Malformed(format!("cannot extract {key}: {at} is not a directory"))
        }
        Blocked::Create(e) => os_error("creating the parents of", key, e),
        Blocked::Missing | Blocked::Os(_) => {
            os_error("inspecting the parents of", key, walk.errno())
        }
    }
}

fn os_error(what: &str, key: &str, errno: Errno) -> ContextError {
    io_error(format!("{what} {key}"))(errno.into())
}

/// What to make of an entry, by its (Go-promoted) type flag.
fn kind_of(info: &HeaderInfo) -> Kind {
    let number = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    match info.typeflag {
        b'0' => Kind::File,
        b'1' => Kind::HardLink(info.linkname.clone()),
        b'2' => Kind::Symlink(info.linkname.clone()),
        b'3' | b'4' => Kind::Device {
            block: info.typeflag == b'4',
            major: number(info.devmajor),
            minor: number(info.devminor),
        },
        b'5' => Kind::Dir,
        b'6' => Kind::Fifo,
        // dockerd's `unhandled tar header type` (the root aside, which is never made).
        other => Kind::Other(other),
    }
}

/// Records the first entry of each name, as dockerd's `FileInfoSums.GetFile` finds it.
fn record(ctx: &mut Context, key: String, info: &HeaderInfo, hasher: Sha256) {
    ctx.entries.entry(key).or_insert_with(|| EntryMeta {
        uid: info.uid,
        gid: info.gid,
        mode: info.mode,
        typeflag: info.typeflag,
        sum: hex::encode(hasher.finalize()),
    });
}

/// The archive stream, ended cleanly when the sender left out what follows the last entry's
/// data: the docker CLI appends a Dockerfile from outside the context (and a `.dockerignore`)
/// to its tar without the last entry's padding and the end-of-archive blocks, and Go's reader
/// accepts that. Zeros are supplied only when the stream stops at or after the end of the last
/// entry's data; a stream cut inside an entry still fails.
struct EndPadded<R> {
    inner: R,
    consumed: u64,
    /// Where the data of the entry being read ends.
    data_end: Arc<AtomicU64>,
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
            let end = self.data_end.load(Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testutil::{gzip, mode_of, mtime_of, Scratch, Tar, MTIME};
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::Path;

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

    // ---- cut-short archives ----

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
}

//! The tar extraction into the context directory, as dockerd's chrooted `archive.Unpack` does it
//! but confined without a chroot: no entry is written through a symlink, hard links only join
//! entries already extracted, devices are skipped, and directory modes and times are applied
//! last.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::error::io_error;
use super::header::{HeaderInfo, BLOCK};
use super::paths::{clean_components, join_key};
use super::{Context, ContextError, EntryMeta};

fn is_header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

/// A directory's metadata, applied after everything else is extracted.
struct DirMeta {
    mode: u32,
    mtime: Option<(i64, u32)>,
}

/// Extracts the tar `stream` into `dest`, recording each entry's header data and sum in
/// `ctx`.
pub(super) fn extract<R: Read>(
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

/// Copies an entry's data into `out` (if any) and the hasher, checking the length.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testutil::{gzip, mode_of, mtime_of, Scratch, Tar, MTIME};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

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

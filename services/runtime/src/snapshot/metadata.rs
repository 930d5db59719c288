//! Ownership, mode, extended attributes and times of an entry, read from its tar headers and
//! applied without following symlinks.
//!
//! Order matters: ownership first (chown clears setuid/setgid and file capabilities), then the
//! mode, then the xattrs, then the times.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid};

const PAX_XATTR: &str = "SCHILY.xattr.";
const PAX_MTIME: &str = "mtime";

/// What an entry says about itself besides its content.
#[derive(Debug, Clone)]
pub(crate) struct Attrs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Permission bits with setuid, setgid and sticky.
    pub(crate) mode: u32,
    pub(crate) mtime: TimeSpec,
    pub(crate) xattrs: Vec<(CString, Vec<u8>)>,
}

impl Attrs {
    /// Reads the header fields and the entry's PAX records (`uid`/`gid`/`size` are already
    /// folded into the header by the tar crate; `mtime` and xattrs are read here).
    pub(crate) fn of<R: std::io::Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Attrs> {
        let header = entry.header();
        let (uid, gid, mode) = ids_and_mode(header)?;
        let (uid, gid) = (id_of(uid)?, id_of(gid)?);
        let mode = mode & 0o7777;
        let mut mtime = TimeSpec::new(header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64, 0);
        let mut xattrs = Vec::new();
        if let Some(records) = entry.pax_extensions()? {
            for record in records {
                let record = record?;
                let Ok(key) = record.key() else { continue };
                if key == PAX_MTIME {
                    if let Some(t) = record.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                } else if let Some(name) = key.strip_prefix(PAX_XATTR) {
                    if !is_kept_xattr(name) {
                        continue;
                    }
                    if let Ok(name) = CString::new(name) {
                        xattrs.push((name, record.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(Attrs {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }

    /// Applies everything to an open regular file or directory (`times`: directories get theirs
    /// after their contents are in place).
    pub(crate) fn apply_to_fd(&self, fd: &OwnedFd, times: bool) -> Result<(), Errno> {
        unistd::fchown(
            fd,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )?;
        stat::fchmod(fd, Mode::from_bits_truncate(self.mode as libc::mode_t))?;
        for (name, value) in &self.xattrs {
            ignore_unsupported(fsetxattr(fd, name, value))?;
        }
        if times {
            stat::futimens(fd, &self.mtime, &self.mtime)?;
        }
        Ok(())
    }

    /// Applies everything to `name` in `parent` without opening it (symlinks, devices, fifos,
    /// hard links): opening a device or a fifo could have side effects or block.
    pub(crate) fn apply_at(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        is_symlink: bool,
    ) -> Result<(), Errno> {
        unistd::fchownat(
            parent,
            name,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if !is_symlink {
            // Linux keeps no mode on symlinks.
            stat::fchmodat(
                parent,
                name,
                Mode::from_bits_truncate(self.mode as libc::mode_t),
                FchmodatFlags::NoFollowSymlink,
            )?;
        }
        for (xname, value) in &self.xattrs {
            ignore_unsupported(lsetxattr_at(parent, name, xname, value))?;
        }
        stat::utimensat(
            parent,
            name,
            &self.mtime,
            &self.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
    }
}

/// Sets the times of an open directory.
pub(crate) fn set_times(fd: &OwnedFd, mtime: &TimeSpec) -> Result<(), Errno> {
    stat::futimens(fd, mtime, mtime)
}

/// The owner and mode fields of a header as Go's `archive/tar` (so dockerd) reads them: a field
/// of only NULs and spaces is 0, where the tar crate refuses it ("numeric field was not a
/// number"). Layers and `docker cp` archives from tools that leave fields blank unpack.
pub(crate) fn ids_and_mode(header: &tar::Header) -> std::io::Result<(u64, u64, u32)> {
    let old = header.as_old();
    let blank = |field: &[u8]| field.iter().all(|b| *b == 0 || *b == b' ');
    let uid = header
        .uid()
        .or_else(|e| if blank(&old.uid) { Ok(0) } else { Err(e) })?;
    let gid = header
        .gid()
        .or_else(|e| if blank(&old.gid) { Ok(0) } else { Err(e) })?;
    let mode = header
        .mode()
        .or_else(|e| if blank(&old.mode) { Ok(0) } else { Err(e) })?;
    Ok((uid, gid, mode))
}

fn id_of(id: u64) -> std::io::Result<u32> {
    u32::try_from(id).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("owner ID {id} is out of range"),
        )
    })
}

/// Overlayfs keeps its own bookkeeping in `trusted.overlay.*` (and `user.overlay.*` in userxattr
/// mounts): a layer must not forge redirects, metacopy or opaque markers through them. Opaque
/// directories come only from `.wh..wh..opq` entries.
fn is_kept_xattr(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.") || name.starts_with("user.overlay."))
}

/// `1700000000.123456789` (PAX time: seconds, optional fraction, maybe negative).
fn parse_pax_time(value: &str) -> Option<TimeSpec> {
    let (secs, frac) = match value.split_once('.') {
        Some((s, f)) => (s, f),
        None => (value, ""),
    };
    let negative = secs.starts_with('-');
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    let mut secs = secs;
    if negative && nanos > 0 {
        secs -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Some(TimeSpec::new(secs, nanos))
}

/// Docker ignores xattrs a file system does not take (EPERM: `user.*` on a symlink or a device,
/// ENOTSUP: no xattr support); so do we, saying so in the log.
fn ignore_unsupported(result: Result<(), Errno>) -> Result<(), Errno> {
    match result {
        Err(e @ (Errno::EPERM | Errno::ENOTSUP)) => {
            tracing::debug!("extended attribute not kept: {e}");
            Ok(())
        }
        other => other,
    }
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Sets attribute `name` of an open file.
pub(crate) fn fsetxattr(fd: &impl AsFd, name: &CString, value: &[u8]) -> Result<(), Errno> {
    crate::xattrs::set(fd, OsStr::from_bytes(name.to_bytes()), value).map_err(errno)
}

/// Sets attribute `xname` of `name` in the directory `parent`, not following `name`.
fn lsetxattr_at(
    parent: &OwnedFd,
    name: &OsStr,
    xname: &CString,
    value: &[u8],
) -> Result<(), Errno> {
    crate::xattrs::set_at_nofollow(parent, name, OsStr::from_bytes(xname.to_bytes()), value)
        .map_err(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_their_fraction() {
        assert_eq!(
            parse_pax_time("1700000000"),
            Some(TimeSpec::new(1700000000, 0))
        );
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some(TimeSpec::new(1700000000, 500_000_000))
        );
        assert_eq!(
            parse_pax_time("-1.25"),
            Some(TimeSpec::new(-2, 750_000_000))
        );
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn overlay_private_xattrs_are_not_taken_from_layers() {
        assert!(!is_kept_xattr("trusted.overlay.redirect"));
        assert!(!is_kept_xattr("user.overlay.opaque"));
        assert!(is_kept_xattr("security.capability"));
        assert!(is_kept_xattr("user.comment"));
    }
}

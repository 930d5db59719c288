//! Owner, mode, extended attributes and times of what an entry made, never through a symlink.
//!
//! Order matters: ownership first (chown clears setuid/setgid and file capabilities), then the
//! mode, then the xattrs, then the times.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, FchmodatFlags, Mode, UtimensatFlags};
use nix::unistd::{self, Gid, Uid};
use xattr::FileExt as _;

use crate::error::Op;
use crate::root::io_errno;
use crate::Item;

pub(crate) fn mode_of(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits as libc::mode_t)
}

/// Applies the item's attributes to an open regular file or directory: the mode unless
/// `mode` is false, the times only with `times` (directories get theirs once their contents
/// are in place).
pub(crate) fn apply_to_fd(
    fd: &OwnedFd,
    item: &Item,
    mode: bool,
    times: bool,
) -> Result<(), (Op, Errno)> {
    if let Some((uid, gid)) = item.owner {
        unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| (Op::Owner, e))?;
    }
    if mode {
        stat::fchmod(fd, mode_of(item.mode)).map_err(|e| (Op::Mode, e))?;
    }
    if !item.xattrs.is_empty() {
        let file = std::fs::File::from(fd.try_clone().map_err(|e| (Op::Xattr, io_errno(e)))?);
        for (name, value) in &item.xattrs {
            let set = file.set_xattr(name, value).map_err(io_errno);
            ignore_unsupported(set).map_err(|e| (Op::Xattr, e))?;
        }
    }
    if times {
        stat::futimens(fd, &item.mtime, &item.mtime).map_err(|e| (Op::Times, e))?;
    }
    Ok(())
}

/// Applies the item's attributes to `name` in `parent` without opening it (symlinks, devices,
/// fifos, hard links): opening a device or a fifo could have side effects or block. Linux
/// keeps no mode on a symlink.
pub(crate) fn apply_at(
    parent: &OwnedFd,
    name: &OsStr,
    item: &Item,
    symlink: bool,
) -> Result<(), (Op, Errno)> {
    if let Some((uid, gid)) = item.owner {
        unistd::fchownat(
            parent,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| (Op::Owner, e))?;
    }
    if !symlink {
        stat::fchmodat(
            parent,
            name,
            mode_of(item.mode),
            FchmodatFlags::NoFollowSymlink,
        )
        .map_err(|e| (Op::Mode, e))?;
    }
    for (xname, value) in &item.xattrs {
        let set = lsetxattr_at(parent, name, xname, value);
        ignore_unsupported(set).map_err(|e| (Op::Xattr, e))?;
    }
    stat::utimensat(
        parent,
        name,
        &item.mtime,
        &item.mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| (Op::Times, e))
}

/// Sets attribute `xname` of `name` in the directory `parent`, not following `name` (a
/// symlink gets the attribute itself). The directory is named by its descriptor
/// (`/proc/self/fd/N`, which is that very directory).
fn lsetxattr_at(parent: &OwnedFd, name: &OsStr, xname: &OsStr, value: &[u8]) -> Result<(), Errno> {
    let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    xattr::set(OsStr::from_bytes(&path), xname, value).map_err(io_errno)
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

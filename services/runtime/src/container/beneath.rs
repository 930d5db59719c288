//! Paths inside the container's root file system, resolved with `openat2(RESOLVE_IN_ROOT)`: a
//! symlink (absolute or `..`) in the rootfs resolves as if the rootfs were `/`, so a mount or a
//! device node can never land outside it. Mounts then target the resolved descriptor through
//! `/proc/self/fd/N`, never the path again.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, Mode};

/// What to create at the destination when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    Nothing,
    Dir,
    File,
}

fn resolve(root: &OwnedFd, path: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let path: &Path = if path.as_os_str().is_empty() {
        ".".as_ref()
    } else {
        path
    };
    fcntl::openat2(root, path, how)
}

/// The names of `dest` below `/`; `..` stays (resolution in the root clamps it at the root).
fn names(dest: &Path) -> nix::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in dest.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            // Only from symlink targets; RESOLVE_IN_ROOT keeps `..` from leaving the root.
            Component::ParentDir => out.push(OsStr::new("..")),
            _ => return Err(Errno::EINVAL),
        }
    }
    Ok(out)
}

/// How many dangling symlinks one lookup may create targets for (the kernel's own limit).
const MAX_LINKS: u32 = 40;

/// Opens (`O_PATH`) `dest` inside `root`, creating missing directories (and the last component
/// as `create` says). A dangling symlink on the way gets its target created, inside the root.
pub(crate) fn open(root: &OwnedFd, dest: &Path, create: Create) -> nix::Result<OwnedFd> {
    open_limited(root, dest, create, MAX_LINKS)
}

fn open_limited(root: &OwnedFd, dest: &Path, create: Create, links: u32) -> nix::Result<OwnedFd> {
    let names = names(dest)?;
    let mut cur = resolve(root, Path::new(""))?;
    let mut prefix = PathBuf::new();
    for (i, name) in names.iter().enumerate() {
        prefix.push(name);
        match resolve(root, &prefix) {
            Ok(fd) => cur = fd,
            Err(Errno::ENOENT) if create != Create::Nothing => {
                let last = i + 1 == names.len();
                let made = if last && create == Create::File {
                    fcntl::openat(
                        &cur,
                        *name,
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                } else {
                    stat::mkdirat(&cur, *name, Mode::from_bits_truncate(0o755))
                };
                match made {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => {
                        // A dangling symlink: create what it points to, resolved in the root
                        // (an absolute target from the root, a relative one from its parent).
                        let target = fcntl::readlinkat(&cur, *name)?;
                        let links = links.checked_sub(1).ok_or(Errno::ELOOP)?;
                        let kind = if last { create } else { Create::Dir };
                        let within = prefix.parent().unwrap_or(Path::new("")).join(target);
                        open_limited(root, &within, kind, links)?;
                    }
                    Err(e) => return Err(e),
                }
                cur = resolve(root, &prefix)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// Opens the parent directory of `dest` inside `root` (created if missing) and returns it with
/// the last name.
pub(crate) fn open_parent<'a>(root: &OwnedFd, dest: &'a Path) -> nix::Result<(OwnedFd, &'a OsStr)> {
    let name = dest.file_name().ok_or(Errno::EINVAL)?;
    let parent = dest.parent().unwrap_or(Path::new("/"));
    Ok((open(root, parent, Create::Dir)?, name))
}

/// The path through which the kernel reaches what `fd` refers to.
pub(crate) fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

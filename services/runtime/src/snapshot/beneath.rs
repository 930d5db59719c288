//! File system calls confined to one layer directory: every path is resolved from the layer's
//! root descriptor one name at a time and no symlink is ever followed, so an entry cannot reach
//! outside through a link planted by an earlier entry (or by anyone else).
//!
//! Directories are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` when the kernel
//! has it, and otherwise (or to create missing parents) walked component by component with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::{self, UnlinkatFlags};

/// Whether `openat2` is usable here (cleared when the kernel or a seccomp filter refuses it).
static OPENAT2: AtomicBool = AtomicBool::new(true);

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Why a directory beneath the root could not be opened.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// A component is a symlink.
    Symlink,
    /// A component exists and is not a directory.
    NotDirectory,
    /// A component does not exist (and was not to be created).
    Missing,
    Os(Errno),
}

impl WalkError {
    pub(crate) fn reason(&self) -> String {
        match self {
            WalkError::Symlink => "its path passes through a symlink".into(),
            WalkError::NotDirectory => "a parent in its path is not a directory".into(),
            WalkError::Missing => "a parent in its path does not exist".into(),
            WalkError::Os(e) => format!("cannot open its parent directory: {e}"),
        }
    }
}

/// The root directory of one layer being unpacked.
pub(crate) struct LayerDir {
    root: OwnedFd,
}

impl LayerDir {
    pub(crate) fn open(path: &Path) -> std::io::Result<LayerDir> {
        let root = fcntl::open(path, DIR_FLAGS, Mode::empty())?;
        Ok(LayerDir { root })
    }

    /// Opens the directory `components` below the root, never through a symlink. With `create`,
    /// missing directories are made (mode 0755, owned by root, as Docker makes implied parents).
    pub(crate) fn dir(&self, components: &[OsString], create: bool) -> Result<OwnedFd, WalkError> {
        if components.is_empty() {
            return fcntl::openat(&self.root, ".", DIR_FLAGS, Mode::empty()).map_err(WalkError::Os);
        }
        if OPENAT2.load(Ordering::Relaxed) {
            match self.openat2(components) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ELOOP) => return Err(WalkError::Symlink),
                // A symlink as the last name also reads ENOTDIR here; the walk tells them apart.
                Err(Errno::ENOTDIR) => {}
                Err(Errno::ENOENT) if !create => return Err(WalkError::Missing),
                // Missing parents are created by the walk.
                Err(Errno::ENOENT) => {}
                // Not implemented, filtered, or an unknown flag: the walk does the same job.
                Err(Errno::ENOSYS | Errno::EPERM | Errno::EINVAL | Errno::E2BIG) => {
                    OPENAT2.store(false, Ordering::Relaxed);
                }
                // A concurrent rename (EAGAIN) or anything else: let the walk decide.
                Err(_) => {}
            }
        }
        self.walk(components, create)
    }

    fn openat2(&self, components: &[OsString]) -> Result<OwnedFd, Errno> {
        let mut joined = Vec::new();
        for (i, c) in components.iter().enumerate() {
            if i > 0 {
                joined.push(b'/');
            }
            joined.extend_from_slice(c.as_bytes());
        }
        let how = fcntl::OpenHow::new().flags(DIR_FLAGS).resolve(
            fcntl::ResolveFlag::RESOLVE_BENEATH
                | fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS
                | fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS
                | fcntl::ResolveFlag::RESOLVE_NO_XDEV,
        );
        fcntl::openat2(&self.root, OsStr::from_bytes(&joined), how)
    }

    fn walk(&self, components: &[OsString], create: bool) -> Result<OwnedFd, WalkError> {
        let mut current =
            fcntl::openat(&self.root, ".", DIR_FLAGS, Mode::empty()).map_err(WalkError::Os)?;
        for name in components {
            current = match open_child_dir(&current, name) {
                Ok(fd) => fd,
                Err(WalkError::Missing) if create => {
                    match stat::mkdirat(&current, name.as_os_str(), Mode::from_bits_truncate(0o755))
                    {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(WalkError::Os(e)),
                    }
                    open_child_dir(&current, name)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(current)
    }
}

/// Opens the directory `name` in `parent` without following a symlink.
fn open_child_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, WalkError> {
    match fcntl::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) => Err(WalkError::Missing),
        Err(Errno::ELOOP) => Err(WalkError::Symlink),
        Err(Errno::ENOTDIR) => match lstat_at(parent, name) {
            Ok(Some(st)) if file_type(&st) == SFlag::S_IFLNK => Err(WalkError::Symlink),
            _ => Err(WalkError::NotDirectory),
        },
        Err(e) => Err(WalkError::Os(e)),
    }
}

/// The type bits of a stat.
pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT)
}

/// `fstatat(AT_SYMLINK_NOFOLLOW)`; `None` when nothing has that name.
pub(crate) fn lstat_at(parent: &impl AsFd, name: &OsStr) -> Result<Option<FileStat>, Errno> {
    match stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `name` from `parent`, a directory with everything in it, never following a link.
pub(crate) fn remove_at(parent: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    let Some(st) = lstat_at(parent, name)? else {
        return Ok(());
    };
    if file_type(&st) != SFlag::S_IFDIR {
        return unistd::unlinkat(parent, name, UnlinkatFlags::NoRemoveDir);
    }
    let dir = fcntl::openat(parent, name, DIR_FLAGS, Mode::empty())?;
    let mut names = Vec::new();
    {
        let mut listing = nix::dir::Dir::from_fd(dir.try_clone().map_err(io_errno)?)?;
        for entry in listing.iter() {
            let entry = entry?;
            let child = entry.file_name().to_bytes();
            if child != b"." && child != b".." {
                names.push(OsStr::from_bytes(child).to_os_string());
            }
        }
    }
    for child in names {
        remove_at(&dir, &child)?;
    }
    unistd::unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &str) -> Vec<OsString> {
        path.split('/').map(OsString::from).collect()
    }

    #[test]
    fn both_resolvers_refuse_symlinks_and_non_directories() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("real/dir")).unwrap();
        std::fs::write(root.path().join("real/file"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("real/out")).unwrap();
        std::os::unix::fs::symlink("dir", root.path().join("real/rel")).unwrap();
        let layer = LayerDir::open(root.path()).unwrap();

        assert!(layer.openat2(&names("real/dir")).is_ok());
        assert!(layer.walk(&names("real/dir"), false).is_ok());
        for path in ["real/out", "real/rel", "real/out/x", "real/rel/x"] {
            assert!(layer.openat2(&names(path)).is_err(), "openat2 {path}");
            assert!(
                matches!(layer.walk(&names(path), true), Err(WalkError::Symlink)),
                "walk {path}"
            );
            assert!(
                matches!(layer.dir(&names(path), true), Err(WalkError::Symlink)),
                "dir {path}"
            );
        }
        assert!(matches!(
            layer.dir(&names("real/file/x"), true),
            Err(WalkError::NotDirectory)
        ));
        assert!(matches!(
            layer.dir(&names("real/missing"), false),
            Err(WalkError::Missing)
        ));
        assert!(layer.walk(&names("new/a/b"), true).is_ok());
        assert!(root.path().join("new/a/b").is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}

//! The directory an archive is extracted into, and every lookup confined to it. Paths are
//! resolved from the root's descriptor, never as strings joined to its path, so an entry cannot
//! reach outside through a link planted by an earlier entry (or by anyone else).
//!
//! Two confinements ([`Confine`]):
//!
//! - **Beneath** (layers, build contexts): no symlink is ever followed. Directories are opened
//!   with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` when the kernel has it, and
//!   otherwise (or to create missing parents, or to say which name was in the way) walked
//!   component by component with `openat(O_NOFOLLOW | O_DIRECTORY)`.
//! - **In root** (`docker cp`, build COPY): symlinks resolve as if the root were `/`
//!   (`openat2(RESOLVE_IN_ROOT)`), as dockerd's chrooted untar sees them; a missing directory
//!   is made, and a dangling symlink on the way gets its target made, inside the root.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::{self, UnlinkatFlags};

/// Whether `openat2` is usable here (cleared when the kernel or a seccomp filter refuses it).
static OPENAT2: AtomicBool = AtomicBool::new(true);

pub(crate) const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Dangling symlinks one in-root lookup may make targets for (the kernel's own limit).
const MAX_LINKS: u32 = 40;

/// How lookups below the root treat symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confine {
    /// No symlink is followed: a parent that is one refuses the entry.
    Beneath,
    /// Symlinks resolve inside the root, as if it were `/`.
    InRoot,
}

/// Why a directory below the root could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// A component is a symlink (beneath only).
    Symlink,
    /// A component exists and is not a directory.
    NotDirectory,
    /// A component does not exist (and was not to be made).
    Missing,
    /// A missing directory could not be made.
    Create(Errno),
    Os(Errno),
}

/// Why a directory below the root could not be opened, and at which component (beneath: the
/// one in the way; in root, where the kernel does not say: the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkError {
    pub at: usize,
    pub blocked: Blocked,
}

impl WalkError {
    /// Why, in words about the entry whose parent this is.
    pub fn reason(&self) -> String {
        match self.blocked {
            Blocked::Symlink => "its path passes through a symlink".into(),
            Blocked::NotDirectory => "a parent in its path is not a directory".into(),
            Blocked::Missing => "a parent in its path does not exist".into(),
            Blocked::Create(e) | Blocked::Os(e) => {
                format!("cannot open its parent directory: {e}")
            }
        }
    }

    /// The error number a path-based call would have given.
    pub fn errno(&self) -> Errno {
        match self.blocked {
            Blocked::Symlink => Errno::ELOOP,
            Blocked::NotDirectory => Errno::ENOTDIR,
            Blocked::Missing => Errno::ENOENT,
            Blocked::Create(e) | Blocked::Os(e) => e,
        }
    }
}

/// The directory being extracted into.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    confine: Confine,
}

impl Root {
    /// The directory at `path` (not itself a symlink), no symlink followed below it.
    pub fn beneath(path: &Path) -> std::io::Result<Root> {
        let fd = fcntl::open(path, DIR_FLAGS, Mode::empty())?;
        Ok(Root {
            fd,
            confine: Confine::Beneath,
        })
    }

    /// The open directory `fd`, symlinks below it resolved inside it.
    pub fn in_root(fd: OwnedFd) -> Root {
        Root {
            fd,
            confine: Confine::InRoot,
        }
    }

    pub fn confine(&self) -> Confine {
        self.confine
    }

    /// Opens the directory `components` below the root. With `create`, missing directories
    /// are made (mode 0755 less the umask, owned by the caller, as Docker makes implied
    /// parents).
    pub fn dir(&self, components: &[OsString], create: bool) -> Result<OwnedFd, WalkError> {
        self.dir_made(components, create).map(|(fd, _)| fd)
    }

    /// [`Root::dir`], and the index of the first of `components` it made, if it made any.
    pub(crate) fn dir_made(
        &self,
        components: &[OsString],
        create: bool,
    ) -> Result<(OwnedFd, Option<usize>), WalkError> {
        match self.confine {
            Confine::Beneath => self.beneath_dir(components, create),
            Confine::InRoot => self.in_root_dir(components, create),
        }
    }

    fn beneath_dir(
        &self,
        components: &[OsString],
        create: bool,
    ) -> Result<(OwnedFd, Option<usize>), WalkError> {
        if components.is_empty() {
            return fcntl::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
                .map(|fd| (fd, None))
                .map_err(|e| WalkError {
                    at: 0,
                    blocked: Blocked::Os(e),
                });
        }
        if OPENAT2.load(Ordering::Relaxed) {
            match self.openat2_beneath(components) {
                Ok(fd) => return Ok((fd, None)),
                // Not implemented, filtered, or an unknown flag: the walk does the same job.
                Err(Errno::ENOSYS | Errno::EPERM | Errno::EINVAL | Errno::E2BIG) => {
                    OPENAT2.store(false, Ordering::Relaxed);
                }
                // A symlink, a missing or non-directory component, a concurrent rename: the
                // walk says which component, and makes what is missing.
                Err(_) => {}
            }
        }
        self.walk(components, create)
    }

    fn openat2_beneath(&self, components: &[OsString]) -> Result<OwnedFd, Errno> {
        let how = OpenHow::new().flags(DIR_FLAGS).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
        fcntl::openat2(&self.fd, OsStr::from_bytes(&join(components)), how)
    }

    fn walk(
        &self,
        components: &[OsString],
        create: bool,
    ) -> Result<(OwnedFd, Option<usize>), WalkError> {
        let mut current =
            fcntl::openat(&self.fd, ".", DIR_FLAGS, Mode::empty()).map_err(|e| WalkError {
                at: 0,
                blocked: Blocked::Os(e),
            })?;
        let mut made = None;
        for (at, name) in components.iter().enumerate() {
            let blocked = |blocked| WalkError { at, blocked };
            current = match open_child_dir(&current, name) {
                Ok(fd) => fd,
                Err(Blocked::Missing) if create => {
                    match stat::mkdirat(&current, name.as_os_str(), Mode::from_bits_truncate(0o755))
                    {
                        Ok(()) => {
                            made.get_or_insert(at);
                        }
                        Err(Errno::EEXIST) => {}
                        Err(e) => return Err(blocked(Blocked::Create(e))),
                    }
                    open_child_dir(&current, name).map_err(blocked)?
                }
                Err(e) => return Err(blocked(e)),
            };
        }
        Ok((current, made))
    }

    fn in_root_dir(
        &self,
        components: &[OsString],
        create: bool,
    ) -> Result<(OwnedFd, Option<usize>), WalkError> {
        let at = components.len().saturating_sub(1);
        let failed = |e: Errno| WalkError {
            at,
            blocked: match e {
                Errno::ENOENT => Blocked::Missing,
                Errno::ENOTDIR => Blocked::NotDirectory,
                e => Blocked::Os(e),
            },
        };
        let path = join(components);
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        match open_in_root(&self.fd, &path, flags) {
            Ok(fd) => return Ok((fd, None)),
            Err(Errno::ENOENT) if create => {}
            Err(e) => return Err(failed(e)),
        }
        let names: Vec<Vec<u8>> = components.iter().map(|c| c.as_bytes().to_vec()).collect();
        let made = make_in_root(&self.fd, &names, MAX_LINKS).map_err(|e| WalkError {
            at,
            blocked: Blocked::Create(e),
        })?;
        let fd = open_in_root(&self.fd, &path, flags).map_err(failed)?;
        Ok((fd, made))
    }
}

fn join(components: &[OsString]) -> Vec<u8> {
    let parts: Vec<&[u8]> = components.iter().map(|c| c.as_bytes()).collect();
    parts.join(&b'/')
}

fn open_in_root(root: &OwnedFd, path: &[u8], flags: OFlag) -> Result<OwnedFd, Errno> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    fcntl::openat2(root, OsStr::from_bytes(path), how)
}

/// Makes the directories `names` (`..` may come from symlink targets: resolution in the root
/// keeps it there) inside the root; a dangling symlink on the way gets its target made (an
/// absolute target from the root, a relative one from the link's directory). Returns the index
/// of the first of `names` made.
fn make_in_root(root: &OwnedFd, names: &[Vec<u8>], links: u32) -> Result<Option<usize>, Errno> {
    let mut current = open_in_root(root, b"", OFlag::O_PATH)?;
    let mut made = None;
    for (i, name) in names.iter().enumerate() {
        let prefix = names[..=i].join(&b'/');
        match open_in_root(root, &prefix, OFlag::O_PATH) {
            Ok(fd) => current = fd,
            Err(Errno::ENOENT) => {
                let os_name = OsStr::from_bytes(name);
                match stat::mkdirat(&current, os_name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) => {
                        made.get_or_insert(i);
                    }
                    Err(Errno::EEXIST) => {
                        let target = fcntl::readlinkat(&current, os_name)?;
                        let links = links.checked_sub(1).ok_or(Errno::ELOOP)?;
                        let target = target.as_bytes();
                        let mut within: Vec<Vec<u8>> = if target.starts_with(b"/") {
                            Vec::new()
                        } else {
                            names[..i].to_vec()
                        };
                        within.extend(
                            target
                                .split(|&b| b == b'/')
                                .filter(|p| !p.is_empty() && *p != b".")
                                .map(<[u8]>::to_vec),
                        );
                        make_in_root(root, &within, links)?;
                    }
                    Err(e) => return Err(e),
                }
                current = open_in_root(root, &prefix, OFlag::O_PATH)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(made)
}

/// Opens the directory `name` in `parent` without following a symlink.
fn open_child_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Blocked> {
    match fcntl::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) => Err(Blocked::Missing),
        Err(Errno::ELOOP) => Err(Blocked::Symlink),
        Err(Errno::ENOTDIR) => match lstat_at(parent, name) {
            Ok(Some(st)) if file_type(&st) == SFlag::S_IFLNK => Err(Blocked::Symlink),
            _ => Err(Blocked::NotDirectory),
        },
        Err(e) => Err(Blocked::Os(e)),
    }
}

/// The type bits of a stat.
pub fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT)
}

/// `fstatat(AT_SYMLINK_NOFOLLOW)`; `None` when nothing has that name.
pub fn lstat_at(parent: &impl AsFd, name: &OsStr) -> Result<Option<FileStat>, Errno> {
    match stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `name` from `parent`, a directory with everything in it, never following a link.
pub fn remove_at(parent: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
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

pub(crate) fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &str) -> Vec<OsString> {
        path.split('/').map(OsString::from).collect()
    }

    #[test]
    fn beneath_both_resolvers_refuse_symlinks_and_non_directories() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("real/dir")).unwrap();
        std::fs::write(root.path().join("real/file"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("real/out")).unwrap();
        std::os::unix::fs::symlink("dir", root.path().join("real/rel")).unwrap();
        let layer = Root::beneath(root.path()).unwrap();

        assert!(layer.openat2_beneath(&names("real/dir")).is_ok());
        assert!(layer.walk(&names("real/dir"), false).is_ok());
        for path in ["real/out", "real/rel", "real/out/x", "real/rel/x"] {
            let symlink = Err(WalkError {
                at: 1,
                blocked: Blocked::Symlink,
            });
            assert!(
                layer.openat2_beneath(&names(path)).is_err(),
                "openat2 {path}"
            );
            assert_eq!(
                layer.walk(&names(path), true).map(drop),
                symlink,
                "walk {path}"
            );
            assert_eq!(layer.dir(&names(path), true).map(drop), symlink, "{path}");
        }
        assert_eq!(
            layer.dir(&names("real/file/x"), true).map(drop),
            Err(WalkError {
                at: 1,
                blocked: Blocked::NotDirectory
            })
        );
        assert_eq!(
            layer.dir(&names("real/missing"), false).map(drop),
            Err(WalkError {
                at: 1,
                blocked: Blocked::Missing
            })
        );
        let (_, made) = layer.dir_made(&names("real/new/a/b"), true).unwrap();
        assert_eq!(made, Some(1));
        assert!(root.path().join("real/new/a/b").is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn in_root_symlinks_resolve_inside_and_dangling_targets_are_made_there() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/", root.join("up")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("etc/climb")).unwrap();
        std::os::unix::fs::symlink("/made/here", root.join("dangling")).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        let r = Root::in_root(fcntl::open(&root, DIR_FLAGS, Mode::empty()).unwrap());

        r.dir(&names("up/etc/climb/new"), true).unwrap();
        assert!(root.join("etc/new").is_dir());
        r.dir(&names("dangling/x"), true).unwrap();
        assert!(root.join("made/here/x").is_dir());
        assert_eq!(
            r.dir(&names("file/x"), true).map(drop).unwrap_err().errno(),
            Errno::ENOTDIR
        );
        assert_eq!(
            r.dir(&names("none"), false).map(drop).unwrap_err().errno(),
            Errno::ENOENT
        );
        let listing: Vec<_> = std::fs::read_dir(base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(listing, ["root"]);
    }
}

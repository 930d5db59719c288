//! Copy-up: filling an empty volume with the image content at its mount point, as dockerd does
//! on first mount, keeping modes, owners, symlinks, hard links, xattrs and times.
//!
//! The image is untrusted and the volume may be written by containers, so both trees are only
//! reached through directory descriptors: every name is opened with `O_NOFOLLOW` relative to
//! its parent, every file is created with `O_EXCL` (or `mkdirat`/`symlinkat`/`mknodat`, which
//! never follow), so a symlink on either side is copied or refused, never traversed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// A failed step of the copy: where (relative to the trees' roots) and why.
#[derive(Debug)]
pub(crate) struct CopyFailure {
    pub(crate) path: PathBuf,
    pub(crate) what: &'static str,
    pub(crate) errno: Errno,
}

impl std::fmt::Display for CopyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}: {}", self.what, self.path, self.errno)
    }
}

type Step<T> = std::result::Result<T, CopyFailure>;

fn at<T>(r: nix::Result<T>, path: &Path, what: &'static str) -> Step<T> {
    r.map_err(|errno| CopyFailure {
        path: path.to_path_buf(),
        what,
        errno,
    })
}

/// Opens a directory by path, refusing a symlink as its last component.
pub(crate) fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    fcntl::open(path, DIR_FLAGS, Mode::empty())
}

/// Opens the directory `path` of the tree at `root` (an image's root file system) as the
/// tree's own processes would reach it: symlinks and `..` anywhere in `path` are resolved with
/// `root` as `/`, so an image's `VOLUME /a/etc` with `/a -> /` names the image's `/etc`, never
/// the host's.
pub(crate) fn open_dir_in(root: &Path, path: &Path) -> nix::Result<OwnedFd> {
    let root = fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = fcntl::OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(fcntl::ResolveFlag::RESOLVE_IN_ROOT | fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let path = path.strip_prefix("/").unwrap_or(path);
    let path: &Path = if path.as_os_str().is_empty() {
        ".".as_ref()
    } else {
        path
    };
    fcntl::openat2(&root, path, how)
}

/// Whether the directory holds no entry.
pub(crate) fn is_empty(dir: &OwnedFd) -> nix::Result<bool> {
    Ok(list(dir)?.is_empty())
}

/// Copies everything in `source` into the empty `dest`, then gives `dest` the owner and mode of
/// `source` (dockerd's `copyOwnership`).
pub(crate) fn copy_tree(source: &OwnedFd, dest: OwnedFd) -> Step<()> {
    let root = Path::new("");
    let root_stat = at(stat::fstat(source), root, "stat")?;
    let dest = Rc::new(dest);
    let mut copier = Copier {
        links: HashMap::new(),
    };
    copier.copy_dir(source, &dest, root)?;
    at(
        unistd::fchown(
            dest.as_fd(),
            Some(Uid::from_raw(root_stat.st_uid)),
            Some(Gid::from_raw(root_stat.st_gid)),
        ),
        root,
        "chown",
    )?;
    at(
        stat::fchmod(dest.as_fd(), permissions(&root_stat)),
        root,
        "chmod",
    )
}

struct Copier {
    /// Inodes with several links already copied: the copy's parent directory and name.
    links: HashMap<(u64, u64), (Rc<OwnedFd>, OsString)>,
}

impl Copier {
    fn copy_dir(&mut self, src: &OwnedFd, dst: &Rc<OwnedFd>, rel: &Path) -> Step<()> {
        for name in at(list(src), rel, "list")? {
            let path = rel.join(&name);
            let st = at(
                stat::fstatat(src, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW),
                &path,
                "stat",
            )?;
            let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
            let key = (st.st_dev, st.st_ino);
            if kind != SFlag::S_IFDIR && st.st_nlink > 1 {
                if let Some((first_dir, first_name)) = self.links.get(&key) {
                    at(
                        unistd::linkat(
                            first_dir.as_fd(),
                            first_name.as_os_str(),
                            dst.as_fd(),
                            name.as_os_str(),
                            AtFlags::empty(),
                        ),
                        &path,
                        "link",
                    )?;
                    continue;
                }
            }
            match kind {
                SFlag::S_IFDIR => {
                    let mode = Mode::from_bits_truncate(0o700);
                    at(stat::mkdirat(dst, name.as_os_str(), mode), &path, "mkdir")?;
                    let child_src = at(
                        fcntl::openat(src, name.as_os_str(), DIR_FLAGS, Mode::empty()),
                        &path,
                        "open",
                    )?;
                    let child_dst = Rc::new(at(
                        fcntl::openat(dst, name.as_os_str(), DIR_FLAGS, Mode::empty()),
                        &path,
                        "open",
                    )?);
                    self.copy_dir(&child_src, &child_dst, &path)?;
                    // After the children, so their creation does not change the copied mtime.
                    apply_metadata(&child_src, &child_dst, &st, &path)?;
                }
                SFlag::S_IFREG => {
                    let from = at(
                        fcntl::openat(
                            src,
                            name.as_os_str(),
                            // O_NONBLOCK: a FIFO swapped in since the stat cannot hang us.
                            OFlag::O_RDONLY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_NONBLOCK
                                | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        ),
                        &path,
                        "open",
                    )?;
                    let opened = at(stat::fstat(&from), &path, "stat")?;
                    if (opened.st_dev, opened.st_ino) != key {
                        return Err(CopyFailure {
                            path,
                            what: "open (replaced while copying)",
                            errno: Errno::ESTALE,
                        });
                    }
                    let to = at(
                        fcntl::openat(
                            dst,
                            name.as_os_str(),
                            OFlag::O_WRONLY
                                | OFlag::O_CREAT
                                | OFlag::O_EXCL
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o600),
                        ),
                        &path,
                        "create",
                    )?;
                    let (mut reader, mut writer) = (File::from(from), File::from(to));
                    std::io::copy(&mut reader, &mut writer).map_err(|e| CopyFailure {
                        path: path.clone(),
                        what: "copy",
                        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    })?;
                    apply_metadata(&OwnedFd::from(reader), &OwnedFd::from(writer), &st, &path)?;
                }
                SFlag::S_IFLNK => {
                    let target = at(fcntl::readlinkat(src, name.as_os_str()), &path, "readlink")?;
                    at(
                        unistd::symlinkat(target.as_os_str(), dst, name.as_os_str()),
                        &path,
                        "symlink",
                    )?;
                    apply_metadata_by_name(dst, &name, &st, &path, false)?;
                }
                SFlag::S_IFIFO | SFlag::S_IFCHR | SFlag::S_IFBLK => {
                    at(
                        stat::mknodat(dst, name.as_os_str(), kind, permissions(&st), st.st_rdev),
                        &path,
                        "mknod",
                    )?;
                    apply_metadata_by_name(dst, &name, &st, &path, true)?;
                }
                // Sockets belong to a running process; dockerd's copy skips them too.
                _ => continue,
            }
            if kind != SFlag::S_IFDIR && st.st_nlink > 1 {
                self.links.insert(key, (Rc::clone(dst), name));
            }
        }
        Ok(())
    }
}

fn permissions(st: &FileStat) -> Mode {
    Mode::from_bits_truncate(st.st_mode & 0o7777)
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Owner, then mode (chown clears set-id bits), then xattrs (chown clears capabilities), then
/// times, on an open copy.
fn apply_metadata(src: &OwnedFd, dst: &OwnedFd, st: &FileStat, path: &Path) -> Step<()> {
    at(
        unistd::fchown(
            dst,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        ),
        path,
        "chown",
    )?;
    at(stat::fchmod(dst, permissions(st)), path, "chmod")?;
    at(copy_xattrs(src, dst), path, "copy xattrs")?;
    let (atime, mtime) = times(st);
    at(stat::futimens(dst, &atime, &mtime), path, "set times")
}

/// The same for a symlink or device node, by name in the new parent (never following a link).
fn apply_metadata_by_name(
    dir: &OwnedFd,
    name: &OsStr,
    st: &FileStat,
    path: &Path,
    chmod: bool,
) -> Step<()> {
    at(
        unistd::fchownat(
            dir,
            name,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ),
        path,
        "chown",
    )?;
    if chmod {
        // A node this copy just made with mknodat (which fails on an existing name).
        at(
            stat::fchmodat(dir, name, permissions(st), FchmodatFlags::FollowSymlink),
            path,
            "chmod",
        )?;
    }
    let (atime, mtime) = times(st);
    at(
        stat::utimensat(dir, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink),
        path,
        "set times",
    )
}

/// Copies every extended attribute of `src` to `dst`; a destination without xattr support
/// keeps none, as continuity's copy does.
fn copy_xattrs(src: &OwnedFd, dst: &OwnedFd) -> nix::Result<()> {
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let names = match crate::xattrs::list(src) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(errno(e)),
    };
    for name in names {
        let Some(value) = crate::xattrs::get(src, &name).map_err(errno)? else {
            continue; // removed meanwhile
        };
        match crate::xattrs::set(dst, &name, &value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(())
}

/// Names in a directory, without `.` and `..`.
fn list(dir: &OwnedFd) -> nix::Result<Vec<OsString>> {
    let fd = fcntl::openat(dir, ".", DIR_FLAGS, Mode::empty())?;
    let mut listing = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

//! The container's root: private propagation, the rootfs bound on itself, pivot_root, then the
//! masked and read-only paths (done after pivot, against the container's own /proc and /sys).

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{self, Mode, SFlag};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use nix::unistd;

use super::beneath::{self, Create};
use super::error::{StepError, StepResult};
use super::mounts;

fn none() -> Option<&'static str> {
    None
}

/// Stops our mounts from propagating to the host (and the host's to us).
pub(crate) fn make_private() -> StepResult<()> {
    mount(
        none(),
        "/",
        none(),
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        none(),
    )
    .map_err(|e| StepError::os("make mounts private", e))
}

/// Binds the rootfs, our working directory, on itself (pivot_root needs a mount point) and
/// returns the new mount. Everything goes through the working directory, entered before any
/// namespace: a container in a user namespace of its own could not walk the host's path to
/// its rootfs (root's directories are closed to the IDs it runs as).
pub(crate) fn bind_cwd() -> StepResult<OwnedFd> {
    use crate::mount_api;
    use std::os::fd::AsRawFd;
    let failed = |what: &str, e: std::io::Error| {
        StepError::os(
            format!("bind rootfs: {what}"),
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    };
    let tree = mount_api::open_tree(
        libc::AT_FDCWD,
        c".",
        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
    )
    .map_err(|e| failed("open_tree", e))?;
    // Attaches the detached mount `tree` on the working directory.
    mount_api::move_mount(
        tree.as_raw_fd(),
        c"",
        libc::AT_FDCWD,
        c".",
        libc::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| failed("move_mount", e))?;
    Ok(tree)
}

/// Makes `root` (the rootfs mount) `/` and detaches the old root.
pub(crate) fn pivot(root: &OwnedFd) -> StepResult<()> {
    unistd::fchdir(root).map_err(|e| StepError::os("chdir rootfs", e))?;
    // pivot_root(".", "."): the old root is stacked under the new one, then detached, so no
    // directory for it is needed inside the rootfs.
    unistd::pivot_root(".", ".").map_err(|e| StepError::os("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| StepError::os("unmount old root", e))?;
    unistd::chdir("/").map_err(|e| StepError::os("chdir /", e))
}

fn open_root() -> StepResult<OwnedFd> {
    fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::os("open /", e))
}

/// Hides each path: /dev/null over a file, an empty read-only tmpfs over a directory.
pub(crate) fn mask(paths: &[String]) -> StepResult<()> {
    let root = open_root()?;
    for path in paths {
        let target = match beneath::open(&root, Path::new(path), Create::Nothing) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(StepError::os(format!("mask {path}"), e)),
        };
        let st = stat::fstat(&target).map_err(|e| StepError::os(format!("stat {path}"), e))?;
        let result = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            mount(
                Some("tmpfs"),
                &beneath::fd_path(&target),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                none(),
            )
        } else {
            mount(
                Some("/dev/null"),
                &beneath::fd_path(&target),
                none(),
                MsFlags::MS_BIND,
                none(),
            )
        };
        result.map_err(|e| StepError::os(format!("mask {path}"), e))?;
    }
    Ok(())
}

/// Makes each path read-only, keeping the flags (nosuid, noexec...) its mount already has.
pub(crate) fn read_only(paths: &[String]) -> StepResult<()> {
    let root = open_root()?;
    for path in paths {
        let dest = Path::new(path);
        let target = match beneath::open(&root, dest, Create::Nothing) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(StepError::os(format!("read-only {path}"), e)),
        };
        mount(
            Some(&beneath::fd_path(&target)),
            &beneath::fd_path(&target),
            none(),
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none(),
        )
        .map_err(|e| StepError::os(format!("bind {path}"), e))?;
        let flags = locked_flags(&target)?;
        mounts::remount(&root, dest, MsFlags::MS_RDONLY | MsFlags::MS_REC | flags)
            .map_err(|e| StepError(format!("read-only {path}: {}", e.0)))?;
    }
    Ok(())
}

/// Remounts `/` read-only (`root.readonly` in the spec).
pub(crate) fn read_only_root() -> StepResult<()> {
    let root = open_root()?;
    let flags = locked_flags(&root)?;
    mounts::remount(&root, Path::new("/"), MsFlags::MS_RDONLY | flags)
}

fn locked_flags(fd: &OwnedFd) -> StepResult<MsFlags> {
    let st = fstatvfs(fd).map_err(|e| StepError::os("statvfs", e))?;
    let mut flags = MsFlags::empty();
    for (have, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if st.flags().contains(have) {
            flags |= keep;
        }
    }
    Ok(flags)
}

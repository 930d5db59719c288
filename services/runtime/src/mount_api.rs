//! The kernel's new mount API (`open_tree`, `move_mount`, `mount_setattr`), which libc offers
//! only as raw system calls: their one home, with each `unsafe` call in one place. Used for the
//! container's root bind, idmapped layers and the mount views `docker cp` works in.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The kernel's `struct mount_attr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `open_tree(dir, path, flags)`: a descriptor of the mount at `path` (with
/// `OPEN_TREE_CLONE`, a detached copy of it).
pub fn open_tree(dir: RawFd, path: &CStr, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: a descriptor, a NUL-terminated path and flags; returns a new descriptor or -1.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, dir, path.as_ptr(), flags) };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `tree` was just returned to us and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as RawFd) })
}

/// `move_mount(from, from_path, to, to_path, flags)`: attaches a detached mount.
pub fn move_mount(
    from: RawFd,
    from_path: &CStr,
    to: RawFd,
    to_path: &CStr,
    flags: u32,
) -> io::Result<()> {
    // SAFETY: two descriptors, two NUL-terminated paths and flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            from_path.as_ptr(),
            to,
            to_path.as_ptr(),
            flags,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mount_setattr` on the detached mount `tree` itself: sets the `MOUNT_ATTR_*` flags `set`,
/// with the user namespace an idmapped mount maps through.
pub fn set_attr(tree: &OwnedFd, set: u64, userns: Option<RawFd>) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd as u64),
    };
    // SAFETY: the kernel reads `attr` (its size given) and an empty path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

//! Container launcher: from an OCI runtime [`Spec`](oci_spec::runtime::Spec) and a prepared root
//! file system to a running init process in new namespaces. No runc binary: the
//! kernel calls are made here, with nix and libc.
//!
//! - `spec`: Docker's defaults as a `Spec` ([`default_spec`]) and rlimit clamping.
//! - `namespaces`: which namespaces to create or join, and entering them.
//! - `beneath`: resolving paths inside the root file system without escaping it.
//! - `mounts`: the spec's mounts (and their fstab-style options).
//! - `devices`: device nodes and the /dev symlinks.
//! - `rootfs`: mount propagation, pivot_root, masked and read-only paths.
//! - `capabilities`: bounding, effective, permitted, inheritable and ambient sets.
//! - `process`: rlimits, user, no_new_privs, executable lookup and execve.
//! - `terminal`: a TTY from the container's own devpts, its master sent back to the launcher.
//! - `launch`: fork, the child's setup sequence, and its error pipe ([`launch`]); the same
//!   for a process joining a running container ([`exec_with`]).
//!
//! This is blocking code: async callers use `spawn_blocking`.

mod beneath;
mod capabilities;
mod devices;
mod error;
mod launch;
mod mounts;
mod namespaces;
mod process;
mod rootfs;
mod spec;
mod terminal;

pub use capabilities::{cap_number, docker_default_capabilities};
pub use error::{LaunchError, Result};
pub use launch::{exec_with, launch, launch_with, LaunchOptions, Launched, Stdio};
pub use spec::{
    clamp_rlimits, default_spec, host_hard_limit, DEFAULT_PATH, MASKED_PATHS, READONLY_PATHS,
};

/// Creates the directory `dir` (and its parents) inside the root file system open at `root`,
/// resolving every component inside it (`docker create` makes the working directory so).
pub fn mkdir_in_root(root: &std::os::fd::OwnedFd, dir: &std::path::Path) -> nix::Result<()> {
    beneath::open(root, dir, beneath::Create::Dir).map(drop)
}

/// Creates the empty file `path` with `mode` inside the root file system open at `root`
/// (Docker's `/.dockerenv`), resolving every component inside it.
pub fn touch_in_root(
    root: &std::os::fd::OwnedFd,
    path: &std::path::Path,
    mode: u32,
) -> nix::Result<()> {
    let fd = beneath::open(root, path, beneath::Create::File)?;
    // The descriptor is O_PATH: change the mode through /proc/self/fd.
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        link.as_str(),
        nix::sys::stat::Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
}

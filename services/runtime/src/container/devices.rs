//! Device nodes in the container's /dev: made with mknod, or bind-mounted from the host when
//! mknod is not allowed; then the /dev symlinks every Linux program expects.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::MsFlags;
use nix::sys::stat::{self, Mode, SFlag};
use nix::unistd::{self, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::beneath::{self, Create};
use super::error::{StepError, StepResult};
use super::mounts;

const SYMLINKS: [(&str, &str); 6] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("/proc/kcore", "core"),
    ("pts/ptmx", "ptmx"),
];

pub(crate) fn create_all(root: &OwnedFd, devices: &[LinuxDevice]) -> StepResult<()> {
    for device in devices {
        create(root, device)
            .map_err(|e| StepError(format!("device {}: {}", device.path().display(), e.0)))?;
    }
    let dev = beneath::open(root, Path::new("/dev"), Create::Dir)
        .map_err(|e| StepError::os("open /dev", e))?;
    for (target, name) in SYMLINKS {
        // As runc: /dev/core only where the kernel has /proc/kcore.
        if name == "core" && !Path::new("/proc/kcore").exists() {
            continue;
        }
        match unistd::symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(StepError::os(format!("symlink /dev/{name}"), e)),
        }
    }
    Ok(())
}

fn create(root: &OwnedFd, device: &LinuxDevice) -> StepResult<()> {
    let kind = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err(StepError("type 'a' is not a node".into())),
    };
    let (parent, name) = beneath::open_parent(root, device.path())
        .map_err(|e| StepError::os("resolve parent", e))?;
    let mode = Mode::from_bits_truncate(device.file_mode().unwrap_or(0o666));
    let dev = stat::makedev(device.major() as u64, device.minor() as u64);
    match stat::mknodat(&parent, name, kind, mode, dev) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(()),
        Err(Errno::EPERM) => {
            // No CAP_MKNOD here (say, a user namespace): share the host's node instead.
            return mounts::bind(
                device.path(),
                root,
                device.path(),
                Create::File,
                MsFlags::empty(),
            );
        }
        Err(e) => return Err(StepError::os("mknod", e)),
    }
    unistd::fchownat(
        &parent,
        name,
        device.uid().map(Uid::from_raw),
        device.gid().map(Gid::from_raw),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| StepError::os("chown", e))
}

//! The spec's mounts, created inside the root file system (before pivot_root). Destinations are
//! resolved beneath the rootfs ([`beneath`](super::beneath)); bind sources are host paths.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::beneath::{self, Create};
use super::error::{StepError, StepResult};

/// A mount's fstab-style options split into flags, propagation and file-system data.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: Vec::new(),
        }
    }
}

impl Options {
    pub(crate) fn parse(options: &[String]) -> Options {
        let mut out = Options::default();
        for option in options {
            let (set, clear) = match option.as_str() {
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
                "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
                "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
                "defaults" => (MsFlags::empty(), MsFlags::empty()),
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                | "unbindable" | "runbindable" => {
                    out.propagation |= propagation(option);
                    continue;
                }
                _ => {
                    out.data.push(option.clone());
                    continue;
                }
            };
            out.flags = (out.flags | set) & !clear;
        }
        out
    }
}

fn propagation(option: &str) -> MsFlags {
    let rec = option.starts_with('r') && option != "rw";
    let base = match option.trim_start_matches('r') {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        _ => MsFlags::MS_UNBINDABLE,
    };
    if rec && option != "unbindable" {
        base | MsFlags::MS_REC
    } else {
        base
    }
}

fn none() -> Option<&'static str> {
    None
}

/// Mounts every spec mount beneath `root`, in order; `cgroups` are the container's own cgroup
/// directories (host paths), which its `/sys/fs/cgroup` shows.
pub(crate) fn mount_all(root: &OwnedFd, mounts: &[Mount], cgroups: &[PathBuf]) -> StepResult<()> {
    for m in mounts {
        mount_one(root, m, cgroups)
            .map_err(|e| StepError(format!("mount {}: {}", m.destination().display(), e.0)))?;
    }
    Ok(())
}

fn mount_one(root: &OwnedFd, m: &Mount, cgroups: &[PathBuf]) -> StepResult<()> {
    let options = Options::parse(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("none");
    let is_bind = typ == "bind" || options.flags.contains(MsFlags::MS_BIND);
    let dest = m.destination();
    if is_bind {
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| StepError("bind mount without a source".into()))?;
        let create = if source.is_dir() {
            Create::Dir
        } else {
            Create::File
        };
        bind(source, root, dest, create, options.flags)?;
    } else if typ == "cgroup" {
        mount_cgroup(root, dest, options.flags, cgroups)?;
    } else {
        let target = open_dest(root, dest, Create::Dir)?;
        let data = options.data.join(",");
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let mounted = mount(
            Some(&source),
            &beneath::fd_path(&target),
            Some(typ),
            options.flags,
            (!data.is_empty()).then_some(data.as_str()),
        );
        match mounted {
            // In a user namespace of its own, a container may not mount sysfs for a network
            // namespace the host's user namespace owns: it gets the host's, as with runc.
            Err(Errno::EPERM) if typ == "sysfs" => {
                drop(target);
                bind(
                    Path::new("/sys"),
                    root,
                    dest,
                    Create::Dir,
                    options.flags | MsFlags::MS_REC,
                )?;
            }
            other => other.map_err(|e| StepError::os(format!("mount {typ}"), e))?,
        }
    }
    if !options.propagation.is_empty() {
        let target = open_dest(root, dest, Create::Nothing)?;
        mount(
            none(),
            &beneath::fd_path(&target),
            none(),
            options.propagation,
            none(),
        )
        .map_err(|e| StepError::os("set propagation", e))?;
    }
    Ok(())
}

fn open_dest(root: &OwnedFd, dest: &Path, create: Create) -> StepResult<OwnedFd> {
    beneath::open(root, dest, create).map_err(|e| StepError::os("resolve destination", e))
}

/// Bind-mounts host `source` on `dest` beneath `root`, then applies `flags` (read-only,
/// nosuid...) with a remount, since the kernel ignores them on the bind itself.
pub(crate) fn bind(
    source: &Path,
    root: &OwnedFd,
    dest: &Path,
    create: Create,
    flags: MsFlags,
) -> StepResult<()> {
    let target = open_dest(root, dest, create)?;
    let rec = flags & MsFlags::MS_REC;
    mount(
        Some(source),
        &beneath::fd_path(&target),
        none(),
        MsFlags::MS_BIND | rec,
        none(),
    )
    .map_err(|e| StepError::os(format!("bind {}", source.display()), e))?;
    remount(root, dest, flags & !(MsFlags::MS_BIND | MsFlags::MS_REC))
}

/// Applies `flags` to the mount now on `dest` (resolved afresh: a descriptor opened before the
/// mount still names the covered directory, not the mount on top).
pub(crate) fn remount(root: &OwnedFd, dest: &Path, flags: MsFlags) -> StepResult<()> {
    if flags.is_empty() {
        return Ok(());
    }
    let target = open_dest(root, dest, Create::Nothing)?;
    let path = beneath::fd_path(&target);
    let remount = |flags: MsFlags| {
        mount(
            none(),
            &path,
            none(),
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            none(),
        )
    };
    match remount(flags) {
        // In a user namespace the flags a mount came with from the host's are locked: keep
        // them (runc does the same).
        Err(Errno::EPERM) => {
            remount(flags | locked_flags(&target)).map_err(|e| StepError::os("remount", e))
        }
        other => other.map_err(|e| StepError::os("remount", e)),
    }
}

/// The flags of the mount `fd` is on that a user namespace may not clear.
fn locked_flags(fd: &OwnedFd) -> MsFlags {
    use nix::sys::statvfs::{fstatvfs, FsFlags};
    let Ok(st) = fstatvfs(fd) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (has, flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(has) {
            out |= flag;
        }
    }
    out
}

/// `/sys/fs/cgroup`: the host's layout, mounted read-only as the spec asks. On cgroup v2 that is
/// one cgroup2 mount; on v1 a tmpfs holding, per hierarchy the host has, the container's own
/// cgroup there (a bind mount of its directory, as runc does: `memory.limit_in_bytes` at the
/// top is the container's limit). Bind mounts also spare the cgroup lock, which the parent
/// holds while it moves the container into these cgroups.
fn mount_cgroup(
    root: &OwnedFd,
    dest: &Path,
    flags: MsFlags,
    cgroups: &[PathBuf],
) -> StepResult<()> {
    let target = open_dest(root, dest, Create::Dir)?;
    let path = beneath::fd_path(&target);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| StepError(format!("read mountinfo: {e}")))?;
    let hierarchies = cgroup_hierarchies(&mountinfo);
    if hierarchies.iter().any(|h| h.point.is_empty()) {
        return mount(Some("cgroup2"), &path, Some("cgroup2"), flags, none())
            .map_err(|e| StepError::os("mount cgroup2", e));
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        &path,
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .map_err(|e| StepError::os("mount cgroup tmpfs", e))?;
    let fresh = open_dest(root, dest, Create::Nothing)?;
    for h in &hierarchies {
        let dir = beneath::open(&fresh, Path::new(&h.point), Create::Dir)
            .map_err(|e| StepError::os(format!("create cgroup dir {}", h.point), e))?;
        match container_cgroup(h, cgroups, &own) {
            Some(source) => mount(
                Some(&source),
                &beneath::fd_path(&dir),
                none(),
                MsFlags::MS_BIND,
                none(),
            )
            .map_err(|e| StepError::os(format!("bind cgroup {}", source.display()), e))?,
            None => {
                let data = (!h.options.is_empty()).then_some(h.options.as_str());
                mount(
                    Some(h.fstype.as_str()),
                    &beneath::fd_path(&dir),
                    Some(h.fstype.as_str()),
                    flags & !MsFlags::MS_RDONLY,
                    data,
                )
                .map_err(|e| StepError::os(format!("mount cgroup {}", h.point), e))?
            }
        }
        remount(&fresh, Path::new(&h.point), flags)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        mount(
            none(),
            &beneath::fd_path(&fresh),
            none(),
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | tmpfs_flags,
            Some("mode=755"),
        )
        .map_err(|e| StepError::os("remount cgroup tmpfs read-only", e))?;
    }
    Ok(())
}

/// The host directory of the container's cgroup in hierarchy `h`: one of `cgroups` (those the
/// container is put in), else where the launcher is (`own`, `/proc/self/cgroup`), which the
/// container inherits in hierarchies nobody moves it in.
fn container_cgroup(h: &Hierarchy, cgroups: &[PathBuf], own: &str) -> Option<PathBuf> {
    let base = Path::new("/sys/fs/cgroup").join(&h.point);
    if let Some(dir) = cgroups.iter().find(|d| d.starts_with(&base) && d.is_dir()) {
        return Some(dir.clone());
    }
    let options: Vec<&str> = h.options.split(',').collect();
    own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match h.fstype.as_str() {
            "cgroup2" => controllers.is_empty(),
            _ => !controllers.is_empty() && controllers.split(',').all(|c| options.contains(&c)),
        };
        let dir = base.join(path.trim_start_matches('/'));
        (matches && dir.is_dir()).then_some(dir)
    })
}

/// One cgroup hierarchy of the host, below /sys/fs/cgroup.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// Relative to /sys/fs/cgroup; empty for a v2 mount on /sys/fs/cgroup itself.
    pub point: String,
    pub fstype: String,
    /// Super options without rw/ro (the controllers, or `name=systemd`).
    pub options: String,
}

pub(crate) fn cgroup_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let point = left.split(' ').nth(4).unwrap_or_default();
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or_default();
        let super_options = right.nth(1).unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let Some(rel) = point
            .strip_prefix("/sys/fs/cgroup")
            .filter(|r| r.is_empty() || r.starts_with('/'))
        else {
            continue;
        };
        let options = super_options
            .split(',')
            .filter(|o| *o != "rw" && *o != "ro")
            .collect::<Vec<_>>()
            .join(",");
        out.push(Hierarchy {
            point: rel.trim_start_matches('/').to_string(),
            fstype: fstype.to_string(),
            options: if fstype == "cgroup2" {
                String::new()
            } else {
                options
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let o = Options::parse(&[
            "nosuid".into(),
            "ro".into(),
            "mode=755".into(),
            "rprivate".into(),
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
    }

    #[test]
    fn v1_hierarchies_are_read_from_mountinfo() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n";
        let h = cgroup_hierarchies(text);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].point, "cpu");
        assert_eq!(h[0].options, "cpu");
        assert_eq!(h[1].point, "unified");
        assert_eq!(h[1].fstype, "cgroup2");
    }
}

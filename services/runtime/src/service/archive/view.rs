//! The container's files as `docker cp` sees them: its root with its volumes, bind mounts,
//! tmpfs mounts and `/etc` files mounted where the container has them, running or not.
//!
//! dockerd mounts a container's volumes and binds on its rootfs for an archive request (for a
//! stopped container too) and resolves every path there. Wharf does the same in a private
//! mount namespace of its own, made for the request by a short-lived thread: a copy of the
//! host's mounts made private (nothing propagates back), where each of the container's mounts
//! is cloned (`open_tree`) and attached (`move_mount`) at its destination, resolved inside the
//! rootfs. A read-only mount is read-only there. The namespace lives as long as the [`View`],
//! which holds it; dropping the view lets the kernel take all of it down.
//!
//! A tmpfs has content only while the container runs, in the container's own namespace. Its
//! mount is cloned from there: the thread joins the init's mount namespace only to clone the
//! tmpfs at its destination (resolved inside the container's root, no symlink followed), after
//! checking that the namespace's root is this container's rootfs (same device and inode), so a
//! pid that exited and was reused can never lend the host's files. A stopped container's tmpfs
//! is gone; the rootfs directory beneath shows, as in dockerd.
//!
//! Why not `/proc/<pid>/root` of a running container: that is the container's whole view,
//! `/proc`, `/sys` and `/dev` included, which the runtime would then read and write with the
//! host's credentials (a `docker cp ctr:/ .` archiving `/proc`, or host sysctls written through a
//! `/proc/sys` that user-namespaced root could not write). The view has only what dockerd's has,
//! plus the tmpfs mounts.
//!
//! Every lookup in a view starts from [`View::root`] with `RESOLVE_IN_ROOT`, so symlinks inside
//! a volume resolve as if the container's root were `/`; `..` at a mount's root steps to the
//! mount point, never into the directory around a volume's source on the host.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::{self, Mode, SFlag};
use wharf_untar::Root;

use super::super::Container;

/// A container's root with its mounts applied; see the module's documentation.
pub(crate) struct View {
    root: OwnedFd,
    /// The private mount namespace holding the mounts (none when there is nothing to mount).
    _namespace: Option<OwnedFd>,
}

impl View {
    /// The container's `/` (an `O_PATH` directory).
    pub(crate) fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// Whether `fd` lies on the container's root file system rather than on one of its mounts.
    pub(crate) fn on_rootfs(&self, fd: &impl AsFd) -> io::Result<bool> {
        Ok(mount_id(fd)? == mount_id(&self.root)?)
    }
}

/// Where a mount of the view takes its files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A directory or file of the host, bound with what is mounted below it: a volume's
    /// directory, a bind's source, the container's `hosts`, `hostname` and `resolv.conf`.
    Host(PathBuf),
    /// A tmpfs, taken from the running container.
    Tmpfs,
}

/// One mount of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    /// Where in the container (absolute).
    pub(crate) destination: String,
    pub(crate) source: Source,
    pub(crate) rw: bool,
}

/// What a view of a container mounts where.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) rootfs: PathBuf,
    /// In the order they are made: parents before what is mounted inside them.
    pub(crate) mounts: Vec<Planned>,
    /// The init of a running container: its tmpfs mounts come from its mount namespace.
    pub(crate) init: Option<i32>,
}

/// The number of names in a destination: dockerd mounts shallower destinations first.
fn depth(destination: &str) -> usize {
    destination.split('/').filter(|c| !c.is_empty()).count()
}

impl Plan {
    /// The mounts of container `c` as its record has them: volumes, binds and tmpfs mounts,
    /// then the `/etc` files the runtime binds at start where no mount of the user is.
    pub(crate) fn of(c: &Container) -> Plan {
        let rec = c.snapshot();
        let mut mounts: Vec<Planned> = rec
            .mounts
            .iter()
            .map(|m| Planned {
                destination: m.destination.clone(),
                source: if m.kind == "tmpfs" {
                    Source::Tmpfs
                } else {
                    Source::Host(PathBuf::from(&m.source))
                },
                rw: m.rw,
            })
            .collect();
        for (destination, file) in [
            ("/etc/resolv.conf", c.paths.resolv_conf()),
            ("/etc/hostname", c.paths.hostname()),
            ("/etc/hosts", c.paths.hosts()),
        ] {
            if file.is_file() && !mounts.iter().any(|m| m.destination == destination) {
                mounts.push(Planned {
                    destination: destination.into(),
                    source: Source::Host(file),
                    rw: !rec.host_config.readonly_rootfs,
                });
            }
        }
        let init = (rec.state.status.is_live() && rec.state.pid > 0).then_some(rec.state.pid);
        Plan {
            rootfs: c.paths.rootfs(),
            mounts,
            init,
        }
        .sorted()
    }

    fn sorted(mut self) -> Plan {
        self.mounts.sort_by_key(|m| depth(&m.destination));
        self
    }

    /// Makes the view (blocking). Without anything to mount, it is the rootfs itself.
    pub(crate) fn open(mut self) -> io::Result<View> {
        if self.init.is_none() {
            self.mounts.retain(|m| m.source != Source::Tmpfs);
        }
        if self.mounts.is_empty() {
            let root = fcntl::open(
                &self.rootfs,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            return Ok(View {
                root,
                _namespace: None,
            });
        }
        // The thread's namespaces and root change; it ends once the view is made.
        std::thread::Builder::new()
            .name("wharf-cp-view".into())
            .spawn(move || self.build())?
            .join()
            .map_err(|_| io::Error::other("the thread making the view panicked"))?
    }

    /// Runs on a thread of its own: the namespace changes stay with it.
    fn build(self) -> io::Result<View> {
        unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
            .map_err(|e| context("cannot make a mount namespace", e))?;
        // Before any mount: nothing made here may reach the host.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| context("cannot make the mounts private", e))?;
        let ours = fcntl::open(
            "/proc/thread-self/ns/mnt",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let root = fcntl::open(
            &self.rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let st = stat::fstat(&root)?;
        let rootfs_id = (st.st_dev, st.st_ino);
        // Opened once: every tmpfs comes from the same namespace, checked each time.
        let container = self.init.and_then(|pid| {
            fcntl::open(
                format!("/proc/{pid}/ns/mnt").as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ok()
        });
        for m in &self.mounts {
            let tree = match &m.source {
                Source::Host(path) => clone_path(path)
                    .map_err(|e| context(&format!("cannot mount {}", path.display()), e))?,
                Source::Tmpfs => {
                    let Some(container) = &container else {
                        continue;
                    };
                    match clone_from(container, &ours, rootfs_id, &m.destination)? {
                        Some(tree) => tree,
                        None => continue,
                    }
                }
            };
            if !m.rw {
                set_readonly(&tree)?;
            }
            let dir = SFlag::from_bits_truncate(stat::fstat(&tree)?.st_mode) & SFlag::S_IFMT
                == SFlag::S_IFDIR;
            let at = mount_point(&root, &m.destination, dir).map_err(|e| {
                context(&format!("cannot make the mount point {}", m.destination), e)
            })?;
            attach(&tree, &at)
                .map_err(|e| context(&format!("cannot mount on {}", m.destination), e))?;
        }
        Ok(View {
            root,
            _namespace: Some(ours),
        })
    }
}

fn context(what: &str, e: impl Into<io::Error>) -> io::Error {
    let e: io::Error = e.into();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of the mount tree at `path`
/// from `dir` (`AT_FDCWD`, or a descriptor with an empty path for the descriptor itself).
fn clone_tree(dir: RawFd, path: &CStr, empty: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as u32;
    if empty {
        flags |= libc::AT_EMPTY_PATH as u32;
    }
    crate::mount_api::open_tree(dir, path, flags)
}

/// A detached copy of the mounts at the host's absolute `path` (symlinks in it followed, as
/// when the container starts).
fn clone_path(path: &Path) -> io::Result<OwnedFd> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a mount source must be absolute",
        ));
    }
    let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    clone_tree(libc::AT_FDCWD, &path, false)
}

/// A detached copy of the mount at `destination` in the container's mount namespace
/// `container`; `None` when that namespace's root is not the rootfs `rootfs_id` (not this
/// container's) or nothing is there. Comes back to `ours` before returning.
fn clone_from(
    container: &OwnedFd,
    ours: &OwnedFd,
    rootfs_id: (u64, u64),
    destination: &str,
) -> io::Result<Option<OwnedFd>> {
    setns(container, CloneFlags::CLONE_NEWNS)
        .map_err(|e| context("cannot enter the container's mount namespace", e))?;
    let cloned = (|| -> io::Result<Option<OwnedFd>> {
        // setns made the namespace's root our root.
        let root = fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let st = stat::fstat(&root)?;
        if (st.st_dev, st.st_ino) != rootfs_id {
            tracing::warn!("a container's init is not in the container: its tmpfs is not shown");
            return Ok(None);
        }
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_IN_ROOT
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let at = match fcntl::openat2(&root, relative(destination).as_os_str(), how) {
            Ok(at) => at,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        clone_tree(at.as_raw_fd(), c"", true).map(Some)
    })();
    // Never stay in the container's namespace: nothing more is done if this fails.
    setns(ours, CloneFlags::CLONE_NEWNS)
        .map_err(|e| context("cannot leave the container's mount namespace", e))?;
    cloned
}

/// `destination` without its leading `/` (`.` for the root).
fn relative(destination: &str) -> OsString {
    let names: Vec<&str> = destination.split('/').filter(|c| !c.is_empty()).collect();
    if names.is_empty() {
        ".".into()
    } else {
        names.join("/").into()
    }
}

/// Makes the detached mount `tree` read-only (its top mount, as `rbind,ro` does).
fn set_readonly(tree: &OwnedFd) -> io::Result<()> {
    crate::mount_api::set_attr(tree, libc::MOUNT_ATTR_RDONLY, None)
        .map_err(|e| context("cannot make a mount read-only", e))
}

/// Attaches the detached mount `tree` on the open file or directory `at`.
fn attach(tree: &OwnedFd, at: &OwnedFd) -> io::Result<()> {
    crate::mount_api::move_mount(
        tree.as_raw_fd(),
        c"",
        at.as_raw_fd(),
        c"",
        libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// The mount point `destination` inside `root`, resolved there (symlinks inside the root) and
/// made if missing, as dockerd and the container's start make it: directories, and an empty
/// file for a file mounted.
fn mount_point(root: &OwnedFd, destination: &str, dir: bool) -> io::Result<OwnedFd> {
    let names: Vec<OsString> = destination
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(OsString::from)
        .collect();
    let inside = Root::in_root(root.try_clone()?);
    let walked = |e: wharf_untar::WalkError| io::Error::from(e.errno());
    if dir {
        return inside.dir(&names, true).map_err(walked);
    }
    let Some((name, parents)) = names.split_last() else {
        return Err(Errno::EISDIR.into());
    };
    let parent = inside.dir(parents, true).map_err(walked)?;
    match fcntl::openat(
        &parent,
        name.as_os_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    Ok(fcntl::openat2(
        root,
        relative(destination).as_os_str(),
        how,
    )?)
}

/// The ID of the mount `fd` is on (`statx`'s `STATX_MNT_ID`); the device number on a kernel
/// without it (a volume on the host's disk is never on the rootfs's overlay device).
fn mount_id(fd: &impl AsFd) -> io::Result<u64> {
    // SAFETY: `statx` is plain data; all zeroes is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor, an empty NUL-terminated path, and a buffer the kernel fills.
    let rc = unsafe {
        libc::statx(
            fd.as_fd().as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID != 0 {
        Ok(stx.stx_mnt_id)
    } else {
        Ok(libc::makedev(stx.stx_dev_major, stx.stx_dev_minor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn host(destination: &str, source: &Path, rw: bool) -> Planned {
        Planned {
            destination: destination.into(),
            source: Source::Host(source.to_path_buf()),
            rw,
        }
    }

    fn read_in(view: &View, path: &str) -> nix::Result<Vec<u8>> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = fcntl::openat2(view.root(), relative(path).as_os_str(), how)?;
        Ok(std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap())
    }

    #[test]
    fn mounts_are_made_shallow_first() {
        let plan = Plan {
            rootfs: PathBuf::from("/r"),
            mounts: vec![
                host("/a/b/c", Path::new("/x"), true),
                host("/a", Path::new("/y"), true),
                host("/z/q", Path::new("/w"), true),
            ],
            init: None,
        }
        .sorted();
        let order: Vec<&str> = plan.mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(order, ["/a", "/z/q", "/a/b/c"]);
    }

    /// A volume's files show at its destination, nested mounts inside it; a symlink in a volume
    /// to `/` or `../../..` leads to the container's root, never to the host's directories
    /// around the volume; nothing is left mounted on the host.
    #[test]
    fn a_view_shows_volumes_at_their_destination_and_keeps_symlinks_inside() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let volume = dir.path().join("volumes/v1/_data");
        let nested = dir.path().join("nested");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/marker"), b"container\n").unwrap();
        std::fs::create_dir_all(&volume).unwrap();
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(volume.join("f"), b"volume\n").unwrap();
        std::fs::write(nested.join("n"), b"nested\n").unwrap();
        // The host's file the links would reach if they escaped.
        std::fs::write(dir.path().join("volumes/v1/marker"), b"host\n").unwrap();
        std::fs::create_dir_all(dir.path().join("volumes/v1/etc")).unwrap();
        std::fs::write(dir.path().join("volumes/v1/etc/marker"), b"host\n").unwrap();
        symlink("/", volume.join("to-root")).unwrap();
        symlink("../../..", volume.join("up")).unwrap();
        let file = dir.path().join("hostname");
        std::fs::write(&file, b"box\n").unwrap();
        let view = Plan {
            rootfs: rootfs.clone(),
            mounts: vec![
                host("/data", &volume, true),
                host("/data/deep/inner", &nested, false),
                host("/etc/hostname", &file, true),
            ],
            init: None,
        }
        .sorted()
        .open()
        .unwrap();
        assert_eq!(read_in(&view, "/data/f").unwrap(), b"volume\n");
        assert_eq!(read_in(&view, "/data/deep/inner/n").unwrap(), b"nested\n");
        assert_eq!(read_in(&view, "/etc/hostname").unwrap(), b"box\n");
        for path in ["/data/to-root/etc/marker", "/data/up/etc/marker"] {
            assert_eq!(read_in(&view, path).unwrap(), b"container\n", "{path}");
        }
        assert_eq!(
            read_in(&view, "/data/up/marker").unwrap_err(),
            Errno::ENOENT
        );
        // The mount points were made in the rootfs (and in the volume for the nested one), but
        // nothing is mounted there on the host.
        assert!(rootfs.join("data").is_dir());
        assert!(volume.join("deep/inner").is_dir());
        assert!(!rootfs.join("data/f").exists());
        assert_eq!(std::fs::read(rootfs.join("etc/hostname")).unwrap(), b"");
        // Which mount a file is on: the rootfs, or not; a read-only mount says so.
        let inner = fcntl::openat(
            view.root(),
            "data/deep/inner",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let etc = fcntl::openat(
            view.root(),
            "etc",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        assert!(view.on_rootfs(&etc).unwrap());
        assert!(!view.on_rootfs(&inner).unwrap());
        let flags = nix::sys::statvfs::fstatvfs(&inner).unwrap().flags();
        assert!(flags.contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
        assert_eq!(
            fcntl::openat(
                &inner,
                "new",
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644)
            )
            .unwrap_err(),
            Errno::EROFS
        );
        drop(view);
    }

    /// A running container's tmpfs is cloned from its namespace: its files show, writes land
    /// in it. The "container" is a shell in a mount namespace whose root is the rootfs.
    #[test]
    fn a_running_containers_tmpfs_shows_with_its_files() {
        use std::io::BufRead;
        let busybox = Path::new("/bin/busybox");
        if !busybox.is_file() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("t")).unwrap();
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
        let r = rootfs.display();
        let script = format!(
            "/bin/busybox mount --bind {r} {r} && cd {r} && /bin/busybox pivot_root . . && \
             /bin/busybox umount -l . && /bin/busybox mount -t tmpfs t /t && \
             echo live > /t/f && echo ready && exec /bin/busybox sleep 60"
        );
        let mut child = std::process::Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "/bin/busybox",
                "sh",
                "-c",
            ])
            .arg(&script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        let view = Plan {
            rootfs: rootfs.clone(),
            mounts: vec![Planned {
                destination: "/t".into(),
                source: Source::Tmpfs,
                rw: true,
            }],
            init: Some(child.id() as i32),
        }
        .open();
        let _ = child.kill();
        let _ = child.wait();
        let view = view.unwrap();
        assert_eq!(read_in(&view, "/t/f").unwrap(), b"live\n");
        assert!(!rootfs.join("t/f").exists());
    }

    /// A pid whose mount namespace is not the container's (here: this test's own, the host's)
    /// lends no tmpfs: the host's `/dev/shm` never shows in the view.
    #[test]
    fn a_tmpfs_comes_only_from_the_containers_own_namespace() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        struct Removed(PathBuf);
        impl Drop for Removed {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let marker = Removed(shm.join(format!("wharf-view-{}", std::process::id())));
        std::fs::write(&marker.0, b"host\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("dev/shm")).unwrap();
        let view = Plan {
            rootfs,
            mounts: vec![Planned {
                destination: "/dev/shm".into(),
                source: Source::Tmpfs,
                rw: true,
            }],
            init: Some(std::process::id() as i32),
        }
        .open()
        .unwrap();
        let name = marker.0.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            read_in(&view, &format!("/dev/shm/{name}")).unwrap_err(),
            Errno::ENOENT
        );
    }
}

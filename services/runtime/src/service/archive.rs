//! `docker cp`, `docker export` and `docker diff`: a container's files read and written from the
//! host through its mounted root (`<container>/rootfs`, mounted from create to removal). `docker
//! cp` sees the root with the container's volumes, bind mounts, tmpfs mounts and `/etc` files
//! mounted on it, running or stopped, as dockerd does ([`view`]); `docker export` and `docker
//! diff` see the rootfs alone, as in dockerd.
//!
//! Safety: a path the client names is resolved with `openat2(RESOLVE_IN_ROOT)` on that root, so
//! symlinks in the container (absolute or `..`, in a volume too) resolve as if it were `/`; a
//! mount's source on the host is entered only through its mount point. Trees are then walked
//! from descriptors, one name at a time with `O_NOFOLLOW`, so a symlink met on the way is
//! archived as a symlink, never followed. An upload is extracted by the confined tar core
//! (`wharf_untar`) with the target directory as the root of every lookup (dockerd 20.10 chroots
//! its untar to the container's root instead; the target is the narrower root): names with `..`
//! climbing out are refused, parents that are symlinks resolve inside the target, the last name
//! is never followed, and hard links can only point inside the target. A directory on a
//! read-only mount refuses an upload with dockerd's words.

mod view;

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use serde_json::{json, Value};
use wharf_bus::api;
use wharf_bus::container::{ArchiveRequest, PathStat};
use wharf_bus::endpoint::{Empty, StreamRequest};
use wharf_bus::stream::{Receiver, Sender, CHUNK_SIZE};
use wharf_bus::BusError;
use wharf_untar::{
    header, EntryPath, Error, Hooks, Item, Kind, LinkProblem, Names, Options, Place, Problem, Root,
};

use super::record::Status;
use super::{internal, Container, Node};
use crate::userns::IdMap;
use view::{Plan, View};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Mount points the runtime makes in every container (dockerd keeps them in its init layer, so
/// they never show in `docker diff` or in a commit while they are empty placeholders).
const INIT_PATHS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/console",
    "/.dockerenv",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/mtab",
];

/// Parents of [`INIT_PATHS`]: they exist below the container in dockerd's init layer.
const INIT_PARENTS: &[&str] = &["/dev", "/etc"];

// ---------------------------------------------------------------------------------------------
// Resolution inside the container's root.

fn in_root(root: &impl AsFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    fcntl::openat2(root, OsStr::from_bytes(path), how)
}

/// A path of the container as dockerd's `ResolvePath` splits it: the directory part resolved in
/// the root (symlinks followed inside it), the last name kept as it is.
struct Resolved {
    dir: OwnedFd,
    /// The last name; `None` when the path names the directory itself (`/`, `dir/`, `dir/.`).
    base: Option<OsString>,
    /// What dockerd calls the path's base name (`/` for the root, `.` for `dir/.`).
    name: String,
}

/// `path` made absolute and cleaned, keeping a trailing `/` or `/.` (Go's
/// `PreserveTrailingDotOrSeparator`).
fn absolute(path: &str) -> String {
    let mut out = wharf_bus::paths::clean_absolute(path);
    if path.ends_with("/.") || path == "." {
        if !out.ends_with('/') {
            out.push('/');
        }
        out.push('.');
    } else if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Go's `filepath.Base`.
fn go_base(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

fn open_root(c: &Container) -> Result<OwnedFd, BusError> {
    fcntl::open(
        &c.paths.rootfs(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| internal("cannot open the container's root", e))
}

/// The container's root with its mounts, as `docker cp` sees it (blocking).
fn open_view(c: &Container) -> Result<View, BusError> {
    Plan::of(c)
        .open()
        .map_err(|e| internal("cannot mount the container's volumes", e))
}

fn not_found(path: &str, id: &str) -> BusError {
    BusError::not_found(format!("Could not find the file {path} in container {id}"))
}

fn resolve(root: &impl AsFd, path: &str, id: &str) -> Result<Resolved, BusError> {
    let abs = absolute(path);
    let (dir, base) = abs.rsplit_once('/').unwrap_or(("", &abs));
    let failed = |e: Errno| match e {
        Errno::ENOENT | Errno::ENOTDIR => not_found(path, id),
        e => internal(format!("cannot resolve {path}"), e),
    };
    let dir =
        in_root(root, dir.as_bytes(), OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(failed)?;
    let base = match base {
        "" | "." => None,
        b => Some(OsString::from(b)),
    };
    if let Some(b) = &base {
        stat::fstatat(&dir, b.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(failed)?;
    }
    Ok(Resolved {
        dir,
        base,
        name: go_base(&abs),
    })
}

fn stat_of(r: &Resolved) -> nix::Result<FileStat> {
    match &r.base {
        Some(b) => stat::fstatat(&r.dir, b.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW),
        None => stat::fstat(&r.dir),
    }
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT)
}

/// Go's `os.FileMode` of a stat.
fn go_mode(st: &FileStat) -> u32 {
    let mut mode = st.st_mode & 0o777;
    let bits = st.st_mode;
    if bits & libc::S_ISUID != 0 {
        mode |= 1 << 23;
    }
    if bits & libc::S_ISGID != 0 {
        mode |= 1 << 22;
    }
    if bits & libc::S_ISVTX != 0 {
        mode |= 1 << 20;
    }
    mode |= match file_type(st) {
        SFlag::S_IFDIR => 1 << 31,
        SFlag::S_IFLNK => 1 << 27,
        SFlag::S_IFIFO => 1 << 25,
        SFlag::S_IFSOCK => 1 << 24,
        SFlag::S_IFBLK => 1 << 26,
        SFlag::S_IFCHR => (1 << 26) | (1 << 21),
        _ => 0,
    };
    mode
}

/// Go's RFC 3339 with nanoseconds (trailing zeros dropped), in UTC.
fn go_time(secs: i64, nanos: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, nanos.clamp(0, 999_999_999) as u32)
        .unwrap_or_default();
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{:09}", nanos);
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// The path of an open file as the kernel names it (in the view's namespace when the file is
/// there: the root and what is below it are named alike).
fn fd_path(fd: &impl AsFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// Where a symlink at `abs` leads, resolved inside the root, as an absolute container path.
fn link_target(root: &impl AsFd, abs: &str, r: &Resolved) -> String {
    if let Ok(fd) = in_root(root, abs.as_bytes(), OFlag::O_PATH) {
        if let (Ok(root), Ok(host)) = (fd_path(root), fd_path(&fd)) {
            if let Ok(rel) = host.strip_prefix(&root) {
                return format!("/{}", rel.display());
            }
        }
    }
    // A dangling link: its target, made absolute from its directory.
    let Some(base) = &r.base else {
        return String::new();
    };
    let target = fcntl::readlinkat(&r.dir, base.as_os_str()).unwrap_or_default();
    let target = target.to_string_lossy();
    if target.starts_with('/') {
        absolute(&target)
    } else {
        let parent = abs.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        absolute(&format!("{parent}/{target}"))
    }
}

fn path_stat(
    c: &Container,
    root: &impl AsFd,
    req: &ArchiveRequest,
) -> Result<(Resolved, PathStat), BusError> {
    let r = resolve(root, &req.path, &c.id)?;
    let st = stat_of(&r).map_err(|e| internal(format!("cannot stat {}", req.path), e))?;
    let link = if file_type(&st) == SFlag::S_IFLNK {
        link_target(root, &absolute(&req.path), &r)
    } else {
        String::new()
    };
    let stat = PathStat {
        name: r.name.clone(),
        size: st.st_size,
        mode: go_mode(&st),
        mtime: go_time(st.st_mtime, st.st_mtime_nsec),
        link_target: link,
    };
    Ok((r, stat))
}

fn check_path(req: &ArchiveRequest) -> Result<(), BusError> {
    if req.path.is_empty() {
        return Err(BusError::invalid("bad parameter: pathcannot be empty"));
    }
    // No file has such a name; dockerd fails the lookup with a 500 (EINVAL), we say why.
    if req.path.contains('\0') {
        return Err(BusError::invalid("bad parameter: path contains a NUL byte"));
    }
    Ok(())
}

/// `HEAD /containers/{id}/archive`.
pub async fn stat(node: &Arc<Node>, req: ArchiveRequest) -> Result<PathStat, BusError> {
    check_path(&req)?;
    let c = node.get(&req.id)?;
    tokio::task::spawn_blocking(move || {
        let view = open_view(&c)?;
        path_stat(&c, view.root(), &req).map(|(_, s)| s)
    })
    .await
    .map_err(|e| internal("stat", e))?
}

// ---------------------------------------------------------------------------------------------
// Reading trees into tar streams.

/// Writes tar entries (GNU long names when needed), as Docker's archives read.
pub(super) struct TarOut<W: Write> {
    out: W,
    /// Hard links: the first name of every multiply linked inode.
    links: HashMap<(u64, u64), Vec<u8>>,
    pub(super) entries: u64,
    /// With `--userns-remap`: entries are owned as the container sees them.
    map: Option<IdMap>,
}

impl<W: Write> TarOut<W> {
    pub(super) fn new(out: W) -> Self {
        TarOut {
            out,
            links: HashMap::new(),
            entries: 0,
            map: None,
        }
    }

    /// Entries owned as a container with this user namespace map sees its files.
    pub(super) fn with_map(mut self, map: Option<IdMap>) -> Self {
        self.map = map;
        self
    }

    /// The owner of a file of stat `st` in the archive.
    pub(super) fn owner(&self, st: &FileStat) -> (u32, u32) {
        let ids = (st.st_uid, st.st_gid);
        self.map.map_or(ids, |m| m.to_container(ids))
    }

    fn long(&mut self, kind: u8, value: &[u8]) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(value.len() as u64 + 1);
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(value)?;
        self.out.write_all(&[0])?;
        self.pad(value.len() as u64 + 1)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rest = (512 - size % 512) % 512;
        self.out.write_all(&vec![0u8; rest as usize])
    }

    /// Appends one entry; `data` must give exactly the header's size.
    pub(super) fn append(
        &mut self,
        mut h: tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: Option<&mut dyn Read>,
    ) -> io::Result<()> {
        if name.len() > 100 {
            self.long(b'L', name)?;
        }
        let n = name.len().min(100);
        h.as_old_mut().name = [0; 100];
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        if let Some(link) = link {
            if link.len() > 100 {
                self.long(b'K', link)?;
            }
            let n = link.len().min(100);
            h.as_old_mut().linkname = [0; 100];
            h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        let size = h.entry_size()?;
        if let Some(data) = data {
            let copied = io::copy(&mut data.take(size), &mut self.out)?;
            if copied < size {
                // The file shrank while read: keep the archive consistent.
                io::copy(&mut io::repeat(0).take(size - copied), &mut self.out)?;
            }
        }
        self.pad(size)?;
        self.entries += 1;
        Ok(())
    }

    pub(super) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Appends `name` in `parent` (stat `st`) as `tar_name`, not following it if a symlink.
    pub(super) fn append_file(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        tar_name: &[u8],
        st: &FileStat,
    ) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        let (uid, gid) = self.owner(st);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(uid as u64);
        h.set_gid(gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        let kind = file_type(st);
        if kind != SFlag::S_IFDIR && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                h.set_entry_type(tar::EntryType::Link);
                return self.append(h, tar_name, Some(&first), None);
            }
            self.links.insert(key, tar_name.to_vec());
        }
        match kind {
            SFlag::S_IFDIR => {
                h.set_entry_type(tar::EntryType::Directory);
                let mut dir_name = tar_name.to_vec();
                if !dir_name.ends_with(b"/") {
                    dir_name.push(b'/');
                }
                self.append(h, &dir_name, None, None)
            }
            SFlag::S_IFLNK => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = fcntl::readlinkat(parent, name).map_err(io::Error::from)?;
                self.append(h, tar_name, Some(target.as_bytes()), None)
            }
            SFlag::S_IFREG => {
                // O_NONBLOCK: if the file was swapped for a fifo meanwhile, opening never blocks.
                let fd = fcntl::openat(
                    parent,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io::Error::from)?;
                let now = stat::fstat(&fd).map_err(io::Error::from)?;
                if file_type(&now) != SFlag::S_IFREG {
                    return Ok(());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(now.st_size.max(0) as u64);
                let mut file = std::fs::File::from(fd);
                self.append(h, tar_name, None, Some(&mut file))
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                h.set_entry_type(match kind {
                    SFlag::S_IFCHR => tar::EntryType::Char,
                    SFlag::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if kind != SFlag::S_IFIFO {
                    h.set_device_major(libc::major(st.st_rdev))?;
                    h.set_device_minor(libc::minor(st.st_rdev))?;
                }
                self.append(h, tar_name, None, None)
            }
            // Sockets have no tar form (dockerd skips them too).
            _ => Ok(()),
        }
    }
}

/// The names in a directory, sorted (as Go's walk visits them).
pub(super) fn names_in(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let fd = fcntl::openat(dir, ".", DIR_FLAGS, Mode::empty()).map_err(io::Error::from)?;
    let mut listing = nix::dir::Dir::from_fd(fd).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

pub(super) fn open_dir(parent: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    fcntl::openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(io::Error::from)
}

pub(super) fn join_name(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    if !out.is_empty() && !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Appends everything below `dir`, each name prefixed with `prefix`.
fn append_tree<W: Write>(tar: &mut TarOut<W>, dir: &OwnedFd, prefix: &[u8]) -> io::Result<()> {
    for name in names_in(dir)? {
        let st = match stat::fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed meanwhile (a running container).
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let tar_name = join_name(prefix, name.as_bytes());
        tar.append_file(dir, &name, &tar_name, &st)?;
        if file_type(&st) == SFlag::S_IFDIR {
            match open_dir(dir, &name) {
                Ok(child) => append_tree(tar, &child, &tar_name)?,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// A `Write` handing full chunks to an async task.
pub(super) struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    pub(super) fn new(tx: tokio::sync::mpsc::Sender<Bytes>) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK_SIZE),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_SIZE),
        ));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_SIZE {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Runs the blocking tar `producer` and streams what it writes through `sender`.
fn stream_tar(
    mut sender: Sender,
    map: Option<IdMap>,
    producer: impl FnOnce(&mut TarOut<ChunkWriter>) -> io::Result<()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let work = tokio::task::spawn_blocking(move || {
            let mut tar = TarOut::new(ChunkWriter::new(tx)).with_map(map);
            producer(&mut tar)?;
            tar.finish().map(drop)
        });
        while let Some(chunk) = rx.recv().await {
            if sender.send(chunk).await.is_err() {
                // The client went away: the producer stops at its next chunk.
                drop(rx);
                let _ = work.await;
                return;
            }
        }
        match work.await {
            Ok(Ok(())) => {
                let _ = sender.finish().await;
            }
            Ok(Err(e)) => sender.fail(&internal("cannot archive", e)).await,
            Err(e) => sender.fail(&internal("cannot archive", e)).await,
        }
    })
}

/// `GET /containers/{id}/archive`: a tar of the path, its stat in the accept payload.
pub async fn get(
    node: &Arc<Node>,
    req: ArchiveRequest,
    request: &StreamRequest<api::ArchiveGet>,
) -> Result<(), BusError> {
    check_path(&req)?;
    let c = node.get(&req.id)?;
    let (resolved, stat) = locate(node, c, req).await?;
    let sender = request.accept_download(&node.client, &stat).await?;
    send_path(sender, resolved);
    Ok(())
}

/// The path `req` names in container `c`, resolved, and its stat.
pub(super) async fn locate(
    node: &Node,
    c: Arc<Container>,
    req: ArchiveRequest,
) -> Result<(ResolvedPath, PathStat), BusError> {
    check_path(&req)?;
    let map = id_map(node, &c);
    let (resolved, stat, view) = tokio::task::spawn_blocking(move || {
        let view = open_view(&c)?;
        let (resolved, stat) = path_stat(&c, view.root(), &req)?;
        Ok::<_, BusError>((resolved, stat, view))
    })
    .await
    .map_err(|e| internal("archive", e))??;
    Ok((ResolvedPath(resolved, map, view), stat))
}

/// A path [`locate`] found, to be sent by [`send_path`], the container's ID map, and the view
/// it was found in (whose mounts last as long as it).
pub(super) struct ResolvedPath(Resolved, Option<IdMap>, View);

/// With `--userns-remap`, the map between the container's owners and the host's.
pub(super) fn id_map(node: &Node, c: &Container) -> Option<IdMap> {
    super::host::remap(node, &c.snapshot().host_config).map(|(_, m)| m)
}

/// Sends a tar of the path on `sender` (`docker cp`'s archive); the handle ends once the tar
/// is sent, or the stream failed.
pub(super) fn send_path(sender: Sender, path: ResolvedPath) -> tokio::task::JoinHandle<()> {
    let ResolvedPath(resolved, map, view) = path;
    stream_tar(sender, map, move |tar| {
        let _view = view;
        // Entries are named from dockerd's base name (`/` for the root, `.` for `dir/.`).
        let prefix = resolved.name.as_bytes().to_vec();
        match &resolved.base {
            Some(base) => {
                let st = stat::fstatat(
                    &resolved.dir,
                    base.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(io::Error::from)?;
                tar.append_file(&resolved.dir, base, &prefix, &st)?;
                if file_type(&st) == SFlag::S_IFDIR {
                    let dir = open_dir(&resolved.dir, base)?;
                    append_tree(tar, &dir, &prefix)?;
                }
            }
            None => {
                let st = stat::fstat(&resolved.dir).map_err(io::Error::from)?;
                tar.append_file(&resolved.dir, OsStr::new("."), &prefix, &st)?;
                append_tree(tar, &resolved.dir, &prefix)?;
            }
        }
        Ok(())
    })
}

/// `GET /containers/{id}/export`: the container's whole file system.
pub async fn export(
    node: &Arc<Node>,
    c: Arc<Container>,
    request: &StreamRequest<api::ContainerExport>,
) -> Result<(), BusError> {
    let root = {
        let c = c.clone();
        tokio::task::spawn_blocking(move || {
            let root = open_root(&c)?;
            fcntl::openat(&root, ".", DIR_FLAGS, Mode::empty())
                .map_err(|e| internal("cannot open the container's root", e))
        })
        .await
        .map_err(|e| internal("export", e))??
    };
    let sender = request.accept_download(&node.client, &Empty).await?;
    stream_tar(sender, id_map(node, &c), move |tar| {
        append_tree(tar, &root, b"")
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Extraction.

/// Reads the chunks an async task hands over.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Extraction of a tar into a directory: `docker cp`'s upload, and a build's COPY and ADD. The
/// confined tar core (`wharf_untar`) does the work with the target as the root of every lookup
/// ([`Root::in_root`], as dockerd's chrooted untar sees it): names are cleaned as Go's
/// `filepath.Clean` and refused when they climb out ([`Names::NoEscape`]), parents resolve
/// inside the target, the last name is never followed, hard links only point inside. What is
/// the upload's own ([`Upload`]): the owners and dockerd's words for every failure.
pub(super) struct Extraction {
    /// The target directory: the root of every lookup.
    target: OwnedFd,
    /// The path as the client gave it (for messages).
    dest: String,
    no_overwrite_dir_non_dir: bool,
    owner: Option<(u32, u32)>,
    /// Entry names with `..` or a leading `/` are refused instead of cleaned (a build's
    /// COPY, whose tar the builder made).
    strict_names: bool,
    /// The name every entry gets (a COPY of one file to a new name).
    rename: Option<OsString>,
    /// With `--userns-remap`: the owners in the tar (or `owner`) are the container's, stored
    /// as the host IDs of its range.
    map: Option<IdMap>,
    /// The host IDs files are created with before they get their owners (see [`with_fs_ids`]).
    creator: Option<(u32, u32)>,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Extraction {
    /// Extraction into `target` (`dest` names it in messages); `owner` owns every entry when
    /// set, else the tar's owners do.
    pub(super) fn new(target: OwnedFd, dest: &str, owner: Option<(u32, u32)>) -> Extraction {
        Extraction {
            target,
            dest: dest.to_string(),
            no_overwrite_dir_non_dir: false,
            owner,
            strict_names: false,
            rename: None,
            map: None,
            creator: None,
        }
    }

    /// Files are made by these host IDs (the container's root under `--userns-remap`), then
    /// given their owners.
    pub(super) fn created_as(mut self, ids: Option<(u32, u32)>) -> Extraction {
        self.creator = ids;
        self
    }

    /// Owners are container IDs of a user namespace with this map.
    pub(super) fn mapped(mut self, map: Option<IdMap>) -> Extraction {
        self.map = map;
        self
    }

    /// Refuses entry names with `..` or a leading `/`.
    pub(super) fn strict_names(mut self) -> Extraction {
        self.strict_names = true;
        self
    }

    /// Extracts every entry as `name` (a tar of one file).
    pub(super) fn renamed(mut self, name: OsString) -> Extraction {
        self.rename = Some(name);
        self
    }

    /// Extracts the whole tar `input` (blocking). The client's faults (a bad archive, a name
    /// climbing out...) are `InvalidInput` errors, in dockerd's words.
    pub(super) fn extract(self, input: impl Read + Send) -> io::Result<()> {
        let mut options = Options::new(Names::NoEscape);
        options.strict = self.strict_names;
        options.rename = self.rename;
        options.no_overwrite_dir_non_dir = self.no_overwrite_dir_non_dir;
        let mut upload = Upload {
            dest: self.dest,
            owner: self.owner,
            map: self.map,
            refused: None,
        };
        let root = Root::in_root(self.target);
        let work = move || wharf_untar::extract(input, &root, &options, &mut upload).map(drop);
        match self.creator {
            Some(ids) => with_fs_ids(ids, work),
            None => work(),
        }
    }
}

/// The kernel's capability header and data (version 3: two data structs).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Runs `work` on a thread of its own whose file system user and group are `ids`, with its
/// capabilities kept. A tmpfs of a container in a user namespace belongs to that namespace: the
/// kernel creates nothing there for a caller whose IDs it cannot map (host root's, EOVERFLOW),
/// so an upload to such a container creates as the container's root does, then sets owners.
fn with_fs_ids<T: Send>(
    ids: (u32, u32),
    work: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: the raw system calls change this thread's file system IDs only (not
                // glibc's wrappers, which may act for the whole process).
                let (gid, uid) = unsafe {
                    libc::syscall(libc::SYS_setfsgid, ids.1);
                    libc::syscall(libc::SYS_setfsuid, ids.0);
                    // An invalid ID changes nothing and returns the current one.
                    (
                        libc::syscall(libc::SYS_setfsgid, u32::MAX),
                        libc::syscall(libc::SYS_setfsuid, u32::MAX),
                    )
                };
                if (uid as u32, gid as u32) != ids {
                    return Err(io::Error::other("cannot take the container root's IDs"));
                }
                // Leaving root's file system ID cleared the file capabilities from the effective
                // set: take them back from the permitted one.
                let mut header = CapHeader {
                    version: 0x2008_0522,
                    pid: 0,
                };
                let mut data = [CapData::default(); 2];
                // SAFETY: version 3 capget writes two data structs, which we own.
                let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
                Errno::result(rc)?;
                for d in data.iter_mut() {
                    d.effective = d.permitted;
                }
                // SAFETY: version 3 capset reads one header and two data structs, which we own.
                let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
                Errno::result(rc)?;
                work()
            })
            .join()
            .map_err(|_| io::Error::other("the extraction panicked"))?
    })
}

/// An upload's reading of headers and its words for failures.
struct Upload {
    dest: String,
    owner: Option<(u32, u32)>,
    map: Option<IdMap>,
    /// Why the entry just read cannot be made (its owner fields, an owner the map cannot
    /// hold, a link without a target), said only if it is to be made: the target itself
    /// (`./`) is left alone whatever its header says, as dockerd does.
    refused: Option<io::Error>,
}

impl Upload {
    /// The host owner and the mode (setuid, setgid and sticky included) of an entry.
    fn owner_and_mode(&self, shown: &str, h: &tar::Header) -> io::Result<((u32, u32), u32)> {
        // Blank numeric fields read as 0, as Go's archive/tar (dockerd) reads them.
        let (uid, gid, mode) =
            header::ids_and_mode(h).map_err(|e| bad(format!("{shown:?}: {e}")))?;
        let owner = self.owner.unwrap_or((uid as u32, gid as u32));
        let owner = match self.map {
            Some(m) => m.to_host(owner).map_err(bad)?,
            None => owner,
        };
        Ok((owner, mode & 0o7777))
    }
}

impl Hooks for Upload {
    type Error = io::Error;

    fn read<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> io::Result<Option<Item>> {
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(None);
        }
        let name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&name).into_owned();
        self.refused = None;
        let (owner, mode) = match self.owner_and_mode(&shown, entry.header()) {
            Ok((owner, mode)) => (Some(owner), mode),
            Err(e) => {
                self.refused = Some(e);
                (None, 0)
            }
        };
        let kind = header::kind(entry).unwrap_or_else(|missing| {
            self.refused
                .get_or_insert_with(|| bad(format!("{shown:?}: {missing}")));
            Kind::Other(0)
        });
        // Whole seconds and no extended attributes: `docker cp` keeps no PAX records.
        Ok(Some(Item {
            name,
            kind,
            owner,
            mode,
            mtime: header::mtime(entry.header()),
            xattrs: Vec::new(),
        }))
    }

    fn place(&mut self, _root: &Root, _path: &EntryPath, _item: &Item) -> io::Result<Place> {
        match self.refused.take() {
            Some(refused) => Err(refused),
            None => Ok(Place::Make),
        }
    }

    fn error(&self, error: Error) -> io::Error {
        let (raw, path, problem) = match error {
            // What the tar reader refuses is the client's archive (a 400), unless the upload
            // stream itself failed, which extract_upload tells apart.
            Error::Archive(e) if e.kind() == io::ErrorKind::InvalidInput => return e,
            Error::Archive(e) => return bad(format!("Error processing tar file: {e}")),
            // A directory's times, set once everything else is in place.
            Error::Finish { errno, .. } => return errno.into(),
            Error::Entry {
                entry,
                path,
                problem,
            } => (entry, path, problem),
        };
        let shown = String::from_utf8_lossy(&raw);
        let at = || format!("/{}", path.to_slash_string());
        match problem {
            Problem::Name(_) => bad(format!("{shown:?} is outside of {:?}", self.dest)),
            Problem::Overwrite { existing_dir: true } => bad(format!(
                "cannot overwrite directory {:?} with non-directory {shown:?}",
                at()
            )),
            Problem::Overwrite {
                existing_dir: false,
            } => bad(format!(
                "cannot overwrite non-directory {:?} with directory {shown:?}",
                at()
            )),
            Problem::Link {
                target, problem, ..
            } => match problem {
                LinkProblem::Name(_) | LinkProblem::Root => bad(format!(
                    "invalid hardlink {shown:?} -> {:?}",
                    String::from_utf8_lossy(&target)
                )),
                LinkProblem::Directory => bad(format!("{shown:?}: a hard link to a directory")),
                LinkProblem::Parent(walk) => walk.errno().into(),
                LinkProblem::Missing => Errno::ENOENT.into(),
                LinkProblem::Stat(e) | LinkProblem::Os(e) => e.into(),
            },
            Problem::Unsupported(flag) => bad(format!("unhandled tar header type {flag}")),
            Problem::Parent(walk) => walk.errno().into(),
            Problem::Read(e) | Problem::Write(e) => e,
            Problem::Os(_, e) => e.into(),
        }
    }
}

/// Why an upload was not extracted.
pub(super) enum UploadError {
    /// The stream failed: the sender went away, nobody to answer.
    Stream(BusError),
    /// The work failed (`invalid` for a bad archive): the answer to send.
    Failed(BusError),
}

/// Extracts the tar arriving on `receiver` with `x`, on a blocking thread, as it comes.
pub(super) async fn extract_upload(
    receiver: &mut Receiver,
    x: Extraction,
) -> Result<(), UploadError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let work = tokio::task::spawn_blocking(move || {
        x.extract(ChunkReader {
            rx,
            current: Bytes::new(),
        })
    });
    let mut stream_error = None;
    while let Some(frame) = receiver.next().await {
        match frame {
            Ok(chunk) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(io::Error::other(e.message.clone()))).await;
                stream_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let outcome = work.await;
    if let Some(e) = stream_error {
        return Err(UploadError::Stream(e));
    }
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidInput => {
            Err(UploadError::Failed(BusError::invalid(e.to_string())))
        }
        Ok(Err(e)) => Err(UploadError::Failed(internal(
            "cannot extract the archive",
            e,
        ))),
        Err(e) => Err(UploadError::Failed(internal(
            "cannot extract the archive",
            e,
        ))),
    }
}

/// Refuses an upload to `target` as dockerd does: on the rootfs of a `--read-only` container, or
/// on a read-only mount (dockerd 20.10 answers both with a 500).
fn check_writable(c: &Container, view: &View, target: &OwnedFd) -> Result<(), BusError> {
    let on_rootfs = view
        .on_rootfs(target)
        .map_err(|e| internal("cannot tell the extraction point's mount", e))?;
    if on_rootfs {
        if c.with(|r| r.host_config.readonly_rootfs) {
            return Err(BusError::internal("container rootfs is marked read-only"));
        }
        return Ok(());
    }
    let flags = nix::sys::statvfs::fstatvfs(target)
        .map_err(|e| internal("cannot tell the extraction point's mount", e))?
        .flags();
    if flags.contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Err(BusError::internal("mounted volume is marked read-only"));
    }
    Ok(())
}

/// `PUT /containers/{id}/archive`: extracts the uploaded tar into the directory at the path.
pub async fn put(
    node: &Arc<Node>,
    req: ArchiveRequest,
    request: &StreamRequest<api::ArchivePut>,
) -> Result<(), BusError> {
    check_path(&req)?;
    let c = node.get(&req.id)?;
    let rec = c.snapshot();
    if matches!(rec.state.status, Status::Removing | Status::Dead) {
        return Err(BusError::conflict(format!(
            "container {} is marked for removal and cannot be modified",
            c.id
        )));
    }
    let (view, target, owner) = {
        let c = c.clone();
        let req = req.clone();
        tokio::task::spawn_blocking(move || -> Result<_, BusError> {
            let view = open_view(&c)?;
            // The last name is followed too: extracting to a symlink to a directory works.
            let target = in_root(
                view.root(),
                absolute(&req.path).as_bytes(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            )
            .map_err(|e| match e {
                Errno::ENOENT => not_found(&req.path, &c.id),
                Errno::ENOTDIR => BusError::internal("extraction point is not a directory"),
                e => internal(format!("cannot resolve {}", req.path), e),
            })?;
            check_writable(&c, &view, &target)?;
            let owner = if req.copy_uid_gid {
                let user = c.with(|r| r.config.user.clone());
                if user.is_empty() {
                    None
                } else {
                    let u = super::user::resolve(&c.paths.rootfs(), &user, &[])
                        .map_err(BusError::invalid)?;
                    Some((u.uid, u.gid))
                }
            } else {
                None
            };
            Ok((view, target, owner))
        })
        .await
        .map_err(|e| internal("extract", e))??
    };
    let mut receiver = request.accept_upload(&node.client, &Empty).await?;
    let node = node.clone();
    tokio::spawn(async move {
        let map = id_map(&node, &c);
        let mut x = Extraction::new(target, &req.path, owner)
            .mapped(map)
            .created_as(map.map(|m| (m.uid, m.gid)));
        x.no_overwrite_dir_non_dir = req.no_overwrite_dir_non_dir;
        let extracted = extract_upload(&mut receiver, x).await;
        // The mounts stay until the extraction is over.
        drop(view);
        match extracted {
            Ok(()) => {
                let rec = c.snapshot();
                node.publish_event(&rec, "extract-to-dir", &[]).await;
                let _ = receiver.respond(wharf_bus::rpc::encode(&json!({}))).await;
            }
            Err(UploadError::Failed(e)) => {
                let _ = receiver.respond(Err(e)).await;
            }
            Err(UploadError::Stream(_)) => {}
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Changes.

/// Whether `path` (components below a layer root) exists in the layer at `root`, looked up
/// without following any symlink.
fn in_layer(root: &Path, parts: &[&[u8]]) -> bool {
    let Ok(fd) = fcntl::open(root, DIR_FLAGS, Mode::empty()) else {
        return false;
    };
    let Some((name, dirs)) = parts.split_last() else {
        return true;
    };
    let how = OpenHow::new().flags(DIR_FLAGS).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    let joined = dirs.join(&b'/');
    let parent = if joined.is_empty() {
        fd
    } else {
        match fcntl::openat2(&fd, OsStr::from_bytes(&joined), how) {
            Ok(p) => p,
            Err(_) => return false,
        }
    };
    stat::fstatat(
        &parent,
        OsStr::from_bytes(name),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .is_ok()
}

fn layer_stat(root: &Path, parts: &[&[u8]]) -> Option<FileStat> {
    let fd = fcntl::open(root, DIR_FLAGS, Mode::empty()).ok()?;
    let (name, dirs) = parts.split_last()?;
    let joined = dirs.join(&b'/');
    let parent = if joined.is_empty() {
        fd
    } else {
        let how = OpenHow::new().flags(DIR_FLAGS).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        fcntl::openat2(&fd, OsStr::from_bytes(&joined), how).ok()?
    };
    stat::fstatat(
        &parent,
        OsStr::from_bytes(name),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ok()
}

/// Whether a directory is opaque for overlayfs.
pub(super) fn is_opaque(dir: &OwnedFd) -> bool {
    let marker = crate::xattrs::get(dir, OsStr::new(crate::snapshot::OPAQUE_XATTR));
    matches!(marker, Ok(Some(v)) if v == b"y")
}

pub(super) fn is_whiteout(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// Whether the upper entry at `path` is one of the runtime's empty mount points.
pub(super) fn is_placeholder(path: &str, parent: &OwnedFd, name: &OsStr, st: &FileStat) -> bool {
    if !INIT_PATHS.contains(&path) {
        return false;
    }
    match file_type(st) {
        SFlag::S_IFREG => st.st_size == 0,
        SFlag::S_IFDIR => open_dir(parent, name)
            .and_then(|d| names_in(&d))
            .map(|n| n.is_empty() || path == "/dev")
            .unwrap_or(false),
        _ => false,
    }
}

struct DiffWalk<'a> {
    lowers: &'a [PathBuf],
    out: Vec<(String, u8)>,
}

impl DiffWalk<'_> {
    fn lower_stat(&self, path: &str) -> Option<FileStat> {
        let parts: Vec<&[u8]> = path
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        self.lowers.iter().find_map(|l| layer_stat(l, &parts))
    }

    fn exists_below(&self, path: &str) -> bool {
        if INIT_PARENTS.contains(&path) || INIT_PATHS.contains(&path) {
            return true;
        }
        let parts: Vec<&[u8]> = path
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        self.lowers.iter().any(|l| in_layer(l, &parts))
    }

    /// Walks `dir` (at container path `prefix`); returns whether anything below was reported.
    fn walk(&mut self, dir: &OwnedFd, prefix: &str) -> io::Result<bool> {
        let mut any = false;
        for name in names_in(dir)? {
            let Ok(st) = stat::fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            let path = format!("{}/{}", prefix, name.to_string_lossy());
            if is_placeholder(&path, dir, &name, &st) {
                continue;
            }
            if is_whiteout(&st) {
                self.out.push((path, 2));
                any = true;
                continue;
            }
            if file_type(&st) == SFlag::S_IFDIR {
                let child = open_dir(dir, &name)?;
                if is_opaque(&child) {
                    // dockerd reports an opaque directory as deleted, its contents as added.
                    self.out.push((path.clone(), 2));
                    self.walk(&child, &path)?;
                    any = true;
                    continue;
                }
                let mark = self.out.len();
                let below = self.walk(&child, &path)?;
                if !self.exists_below(&path) {
                    self.out.insert(mark, (path, 1));
                    any = true;
                } else {
                    let changed_itself = self.lower_stat(&path).is_some_and(|l| {
                        file_type(&l) != SFlag::S_IFDIR
                            || l.st_mode != st.st_mode
                            || l.st_uid != st.st_uid
                            || l.st_gid != st.st_gid
                    });
                    if below || changed_itself {
                        self.out.insert(mark, (path, 0));
                        any = true;
                    }
                }
                continue;
            }
            let kind = if self.exists_below(&path) { 0 } else { 1 };
            self.out.push((path, kind));
            any = true;
        }
        Ok(any)
    }
}

/// The image's layer directories of a container, top first.
pub(super) fn lower_dirs(node: &Node, c: &Container) -> Result<Vec<PathBuf>, BusError> {
    let chain_ids = c.with(|r| r.chain_ids.clone());
    chain_ids
        .iter()
        .rev()
        .map(|id| {
            node.snapshots
                .fs_path(id)
                .map_err(|e| internal("cannot find the image's layers", e))
        })
        .collect()
}

/// dockerd's changes of the upper directory against the lower ones (0 modified, 1 added,
/// 2 deleted), sorted by path. Blocking.
pub(super) fn changed_paths(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<(String, u8)>> {
    let dir = fcntl::open(upper, DIR_FLAGS, Mode::empty()).map_err(io::Error::from)?;
    let mut walk = DiffWalk {
        lowers,
        out: Vec::new(),
    };
    walk.walk(&dir, "")?;
    let mut seen = BTreeSet::new();
    let mut rows: Vec<(String, u8)> = walk
        .out
        .into_iter()
        .filter(|(p, _)| seen.insert(p.clone()))
        .collect();
    rows.sort();
    Ok(rows)
}

/// `GET /containers/{id}/changes`: the upper layer against the image's layers.
pub async fn changes(node: &Arc<Node>, c: Arc<Container>) -> Result<Value, BusError> {
    let lowers = lower_dirs(node, &c)?;
    let upper = c.paths.upper();
    let rows = tokio::task::spawn_blocking(move || changed_paths(&upper, &lowers))
        .await
        .map_err(|e| internal("changes", e))?
        .map_err(|e| internal("cannot read the container's changes", e))?;
    // dockerd answers `null` for none.
    if rows.is_empty() {
        return Ok(Value::Null);
    }
    Ok(Value::Array(
        rows.into_iter()
            .map(|(path, kind)| json!({"Path": path, "Kind": kind}))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_keeping_a_trailing_slash_or_dot() {
        assert_eq!(absolute("etc/passwd"), "/etc/passwd");
        assert_eq!(absolute("/a/../../b/"), "/b/");
        assert_eq!(absolute("/www/."), "/www/.");
        assert_eq!(absolute("/"), "/");
        assert_eq!(go_base("/"), "/");
        assert_eq!(go_base("/www/"), "www");
        assert_eq!(go_base("/www/."), ".");
    }

    #[test]
    fn times_print_as_go_does() {
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(go_time(1, 500_000_000), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn extraction_stays_inside_the_target() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target_path = root.path().join("t");
        std::fs::create_dir(&target_path).unwrap();
        std::os::unix::fs::symlink(outside.path(), target_path.join("evil")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "evil/pwned", &b"hi"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let target = fcntl::open(&target_path, DIR_FLAGS, Mode::empty()).unwrap();
        Extraction::new(target, "/t", None)
            .extract(&data[..])
            .unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        let landed = target_path
            .join(outside.path().strip_prefix("/").unwrap())
            .join("pwned");
        assert_eq!(std::fs::read(landed).unwrap(), b"hi");
    }

    fn upload(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn entry(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(7);
        h.set_gid(8);
        h.set_mtime(1_500_000_000);
        h.set_size(size);
        h
    }

    /// A header whose name is written as it is (the tar crate refuses `..` in names).
    fn raw_entry(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, link: &str) {
        let mut h = entry(kind, 0o644, 0);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    /// The client sees dockerd's words, as a 400 (`InvalidInput`).
    #[test]
    fn failures_are_worded_as_dockerd_words_them() {
        use tar::EntryType::{Directory, Link, Regular};
        let cases: Vec<(&str, Vec<u8>, bool, String)> = vec![
            (
                "climbing out",
                upload(|b| raw_entry(b, Regular, "a/../../x", "")),
                false,
                r#""a/../../x" is outside of "/t""#.into(),
            ),
            (
                "strict names",
                upload(|b| raw_entry(b, Regular, "/abs", "")),
                true,
                r#""/abs" is outside of "/t""#.into(),
            ),
            (
                "a directory replaced",
                upload(|b| {
                    raw_entry(b, Directory, "d/", "");
                    raw_entry(b, Regular, "./d", "");
                }),
                false,
                r#"cannot overwrite directory "/d" with non-directory "./d""#.into(),
            ),
            (
                "a file replaced",
                upload(|b| {
                    raw_entry(b, Regular, "f", "");
                    raw_entry(b, Directory, "f/", "");
                }),
                false,
                r#"cannot overwrite non-directory "/f" with directory "f/""#.into(),
            ),
            (
                "a hard link out",
                upload(|b| raw_entry(b, Link, "l", "../x")),
                false,
                r#"invalid hardlink "l" -> "../x""#.into(),
            ),
            (
                "a hard link to the target",
                upload(|b| raw_entry(b, Link, "l", "./")),
                false,
                r#"invalid hardlink "l" -> "./""#.into(),
            ),
            (
                "a hard link to a directory",
                upload(|b| {
                    raw_entry(b, Directory, "d/", "");
                    raw_entry(b, Link, "l", "d");
                }),
                false,
                r#""l": a hard link to a directory"#.into(),
            ),
            (
                "a hard link without a target",
                upload(|b| raw_entry(b, Link, "l", "")),
                false,
                r#""l": a hard link without a target"#.into(),
            ),
            (
                "an unknown type",
                upload(|b| raw_entry(b, tar::EntryType::new(b'Z'), "z", "")),
                false,
                "unhandled tar header type 90".into(),
            ),
        ];
        for (what, data, strict, want) in cases {
            let root = tempfile::tempdir().unwrap();
            let target = fcntl::open(root.path(), DIR_FLAGS, Mode::empty()).unwrap();
            let mut x = Extraction::new(target, "/t", None);
            x.no_overwrite_dir_non_dir = true;
            if strict {
                x = x.strict_names();
            }
            let err = x.extract(&data[..]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{what}: {err}");
            assert_eq!(err.to_string(), want, "{what}");
        }
        // A hard link to what is not there is the node's error (a 500), as in dockerd.
        let root = tempfile::tempdir().unwrap();
        let target = fcntl::open(root.path(), DIR_FLAGS, Mode::empty()).unwrap();
        let err = Extraction::new(target, "/t", None)
            .extract(&upload(|b| raw_entry(b, Link, "l", "missing"))[..])
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
        // The target itself is left alone, whatever its header says.
        let root = tempfile::tempdir().unwrap();
        let target = fcntl::open(root.path(), DIR_FLAGS, Mode::empty()).unwrap();
        Extraction::new(target, "/t", None)
            .extract(&upload(|b| raw_entry(b, Link, "./", ""))[..])
            .unwrap();
    }

    #[test]
    fn owners_are_mapped_and_modes_and_times_kept() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let data = upload(|b| {
            let mut h = entry(tar::EntryType::Directory, 0o1750, 0);
            b.append_data(&mut h, "d/", &[][..]).unwrap();
            let mut h = entry(tar::EntryType::Regular, 0o4755, 2);
            b.append_data(&mut h, "d/f", &b"hi"[..]).unwrap();
            let mut h = entry(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut h, "d/s", "f").unwrap();
        });
        let map = IdMap {
            uid: 100_000,
            gid: 200_000,
            size: 65_536,
        };
        let root = tempfile::tempdir().unwrap();
        let target = fcntl::open(root.path(), DIR_FLAGS, Mode::empty()).unwrap();
        Extraction::new(target, "/", None)
            .mapped(Some(map))
            .extract(&data[..])
            .unwrap();
        let meta = |p: &str| std::fs::symlink_metadata(root.path().join(p)).unwrap();
        for p in ["d", "d/f", "d/s"] {
            assert_eq!((meta(p).uid(), meta(p).gid()), (100_007, 200_008), "{p}");
            assert_eq!(meta(p).mtime(), 1_500_000_000, "{p}");
        }
        assert_eq!(meta("d").permissions().mode() & 0o7777, 0o1750);
        assert_eq!(meta("d/f").permissions().mode() & 0o7777, 0o4755);
        // The owner override is the container's too; one the range cannot hold is refused.
        let root = tempfile::tempdir().unwrap();
        let target = fcntl::open(root.path(), DIR_FLAGS, Mode::empty()).unwrap();
        let err = Extraction::new(target, "/", Some((70_000, 0)))
            .mapped(Some(map))
            .extract(&data[..])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert_eq!(
            err.to_string(),
            "Container ID 70000 cannot be mapped to a host ID"
        );
    }

    /// Files made as the container's root still get the archive's owners, modes and times; the
    /// calling thread keeps its own IDs.
    #[test]
    fn an_upload_made_as_the_containers_root_keeps_owners_and_the_callers_ids() {
        use std::os::unix::fs::MetadataExt;
        let data = upload(|b| {
            let mut h = entry(tar::EntryType::Directory, 0o700, 0);
            b.append_data(&mut h, "d/", &[][..]).unwrap();
            let mut h = entry(tar::EntryType::Regular, 0o600, 2);
            b.append_data(&mut h, "d/f", &b"hi"[..]).unwrap();
        });
        let map = IdMap {
            uid: 100_000,
            gid: 200_000,
            size: 65_536,
        };
        let root = tempfile::tempdir().unwrap();
        let target = fcntl::open(root.path(), DIR_FLAGS, Mode::empty()).unwrap();
        Extraction::new(target, "/", None)
            .mapped(Some(map))
            .created_as(Some((map.uid, map.gid)))
            .extract(&data[..])
            .unwrap();
        let meta = |p: &str| std::fs::symlink_metadata(root.path().join(p)).unwrap();
        for p in ["d", "d/f"] {
            assert_eq!((meta(p).uid(), meta(p).gid()), (100_007, 200_008), "{p}");
        }
        assert_eq!(std::fs::read(root.path().join("d/f")).unwrap(), b"hi");
        // SAFETY: an invalid ID changes nothing and returns this thread's current one.
        let current = unsafe { libc::syscall(libc::SYS_setfsuid, u32::MAX) };
        assert_eq!(current, 0);
    }

    /// Found by tests/fuzz_api.rs: blank owner fields (Go reads them as 0) failed `docker cp`
    /// with a 500; a field that is no number at all is the client's error.
    #[test]
    fn blank_owner_fields_read_as_zero_and_garbage_is_bad_input() {
        let root = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "blank", &b"hi"[..]).unwrap();
        let mut data = b.into_inner().unwrap();
        let good = data.clone();
        let target = fcntl::open(root.path(), DIR_FLAGS, Mode::empty()).unwrap();
        Extraction::new(target, "/", None)
            .extract(&data[..])
            .unwrap();
        assert_eq!(std::fs::read(root.path().join("blank")).unwrap(), b"hi");
        // The uid field made of letters, the checksum fixed up.
        data[108..115].copy_from_slice(b"zzzzzzz");
        let mut header = tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(&data[..512]);
        header.set_cksum();
        data[..512].copy_from_slice(header.as_bytes());
        let target = fcntl::open(root.path(), DIR_FLAGS, Mode::empty()).unwrap();
        let err = Extraction::new(target, "/", None)
            .extract(&data[..])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        // Bytes that are no tar, and a tar cut short, are the client's error too (were 500).
        let noise: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for upload in [&noise[..], &good[..700]] {
            let target = fcntl::open(root.path(), DIR_FLAGS, Mode::empty()).unwrap();
            let err = Extraction::new(target, "/", None)
                .extract(upload)
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use wharf_bus::testkit::{hostile_tar, proptest_cases};

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: proptest_cases(192),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// `docker cp` into a container: any sequence of tar entries, with any of the
            /// upload's options, is extracted or refused, and nothing outside the target
            /// directory is written, linked, chmodded or removed.
            #[test]
            fn no_upload_writes_outside_its_target(
                picks in prop::collection::vec(any::<u16>(), 0..96),
                options in 0u8..8,
            ) {
                let entries = hostile_tar::entries(&picks);
                let arena = hostile_tar::Arena::new();
                let tar = hostile_tar::build(&entries, arena.outside());
                let target = fcntl::open(arena.root(), DIR_FLAGS, Mode::empty()).unwrap();
                let owner = (options & 1 == 1).then_some((1000, 1000));
                let mut x = Extraction::new(target, "/t", owner);
                x.no_overwrite_dir_non_dir = options & 2 == 2;
                if options & 4 == 4 {
                    x = x.strict_names();
                }
                let result = x.extract(&tar[..]);
                prop_assert_eq!(
                    arena.check(),
                    Ok(()),
                    "entries {:#?} gave {:?}",
                    entries,
                    result
                );
            }
        }
    }
}

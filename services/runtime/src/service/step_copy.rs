//! `build.copy`: a Dockerfile COPY or ADD step, as dockerd's classic builder copies
//! (`performCopyForInfo`): the builder uploads a tar of what to copy, named relative to the
//! destination; the node creates a container from the step's image (never started),
//! extracts the tar into its root and stores the diff as a layer.
//!
//! The destination is resolved as dockerd's `FollowSymlinkInScope` does: relative to the
//! working directory, every symlink (the last name too) followed as if the root were `/`, so
//! `/link/` with `/link -> /../../etc` is the root's `/etc`; names that do not exist are kept.
//! Missing directories of the destination are created 0755, owned by the `--chown` identity
//! (or root). Then the entries are extracted with the destination as the root of every
//! lookup; names with `..` or a leading `/` are refused.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, FchmodatFlags, Mode, SFlag};
use nix::unistd::{self, Gid, Uid};
use wharf_bus::api;
use wharf_bus::build::{StepCopy, StepDone};
use wharf_bus::container::HostConfig;
use wharf_bus::endpoint::{Empty, StreamRequest};
use wharf_bus::stream::Receiver;
use wharf_bus::BusError;

use super::archive::{self, Extraction, UploadError};
use super::{commit, create, internal, remove, user, Container, Node};
use crate::userns::IdMap;

/// Symlinks one destination may pass through (Go's `FollowSymlinkInScope` allows 255).
const MAX_LINKS: u32 = 255;

/// Serves one `build.copy` request: accepts the upload and copies behind it.
pub async fn copy(
    node: &Arc<Node>,
    req: StepCopy,
    request: &StreamRequest<api::BuildCopy>,
) -> Result<(), BusError> {
    // Accepted before the work: unpacking the image may take longer than a request may wait
    // (the builder's upload waits for credit meanwhile).
    let mut receiver = request.accept_upload(&node.client, &Empty).await?;
    let node = node.clone();
    tokio::spawn(async move {
        match step(&node, req, &mut receiver).await {
            Ok(done) => {
                let _ = receiver.respond(wharf_bus::rpc::encode(&done)).await;
            }
            Err(UploadError::Failed(e)) => {
                let _ = receiver.respond(Err(e)).await;
            }
            // The builder went away: nobody to answer.
            Err(UploadError::Stream(e)) => {
                tracing::info!("build copy abandoned: {}", e.message);
            }
        }
    });
    Ok(())
}

async fn step(
    node: &Arc<Node>,
    req: StepCopy,
    receiver: &mut Receiver,
) -> Result<StepDone, UploadError> {
    let mut config = req.config.clone();
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        // Never run, but a container needs a command.
        config.cmd = Some(vec!["/bin/sh".into(), "-c".into(), "#(nop) COPY".into()]);
    }
    let c = create::create_for_step(node, &req.image, config, HostConfig::default())
        .await
        .map_err(UploadError::Failed)?;
    let outcome = copy_into(node, &c, &req, receiver).await;
    // A failed copy leaves nothing worth keeping.
    let remove = req.remove || outcome.is_err();
    let removed = remove
        && {
            match remove::remove(node, &c, true, true).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(container = %c.id, "cannot remove a build step's container: {}", e.message);
                    false
                }
            }
        };
    let layer = outcome?;
    Ok(StepDone {
        id: c.id.clone(),
        exit_code: 0,
        layer,
        removed,
    })
}

async fn copy_into(
    node: &Arc<Node>,
    c: &Arc<Container>,
    req: &StepCopy,
    receiver: &mut Receiver,
) -> Result<Option<wharf_bus::image::LayerInfo>, UploadError> {
    let rootfs = c.paths.rootfs();
    let r = req.clone();
    let map = archive::id_map(node, c);
    let x = tokio::task::spawn_blocking(move || prepare(&rootfs, &r, map))
        .await
        .map_err(|e| UploadError::Failed(internal("copy", e)))?
        .map_err(UploadError::Failed)?;
    archive::extract_upload(receiver, x).await?;
    commit::store_layer(node, c)
        .await
        .map_err(UploadError::Failed)
}

/// The destination made ready: the owner, the target directory, the extraction (owners are
/// stored through `map` with `--userns-remap`).
fn prepare(rootfs: &Path, req: &StepCopy, map: Option<IdMap>) -> Result<Extraction, BusError> {
    let owner = if req.chown.is_empty() {
        None
    } else {
        Some(user::chown_identity(rootfs, &req.chown).map_err(|e| {
            BusError::invalid(format!(
                "unable to convert uid/gid chown string to host mapping: {e}"
            ))
        })?)
    };
    let root = fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| internal("cannot open the container's root", e))?;
    let dest = destination(&req.working_dir, &req.dest);
    let failed = |e: io::Error| match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOTDIR | Errno::EEXIST) => BusError::invalid(format!(
            "cannot copy to {}: a part of it is not a directory",
            req.dest
        )),
        Some(Errno::ELOOP) => BusError::invalid(format!(
            "cannot copy to {}: too many levels of symbolic links",
            req.dest
        )),
        _ => internal(format!("cannot copy to {}", req.dest), e),
    };
    let names = in_scope(&root, &dest).map_err(failed)?;
    let into_dir = dest.ends_with('/');
    let made_by = owner.unwrap_or((0, 0));
    let made_by = match map {
        Some(m) => m.to_host(made_by).map_err(BusError::invalid)?,
        None => made_by,
    };
    match &req.file_name {
        // One file: into `dest` when that is a directory, else as `dest`.
        Some(_) if !into_dir && !is_dir(&root, &names) => {
            let Some((last, parents)) = names.split_last() else {
                unreachable!("the root is a directory");
            };
            let target = make_dirs(&root, parents, made_by).map_err(failed)?;
            Ok(Extraction::new(target, &req.dest, owner)
                .strict_names()
                .mapped(map)
                .renamed(last.clone()))
        }
        _ => {
            let target = make_dirs(&root, &names, made_by).map_err(failed)?;
            Ok(Extraction::new(target, &req.dest, owner)
                .strict_names()
                .mapped(map))
        }
    }
}

/// The destination as dockerd's `normalizeDest` makes it: relative to the working directory,
/// cleaned, a trailing `/` kept.
fn destination(working_dir: &str, dest: &str) -> String {
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("/{working_dir}/{dest}")
    };
    let mut out = wharf_bus::paths::clean_absolute(&joined);
    if dest.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out
}

fn in_root(root: &OwnedFd, names: &[OsString], flags: OFlag) -> nix::Result<OwnedFd> {
    let joined = names
        .iter()
        .map(|n| n.as_bytes())
        .collect::<Vec<_>>()
        .join(&b'/');
    let path: &[u8] = if joined.is_empty() { b"." } else { &joined };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    fcntl::openat2(root, OsStr::from_bytes(path), how)
}

/// `path` (absolute) resolved in the root as Go's `FollowSymlinkInScope` resolves it: the
/// names of a path without symlinks, whose leading part exists and the rest does not.
fn in_scope(root: &OwnedFd, path: &str) -> io::Result<Vec<OsString>> {
    let split = |p: &[u8]| -> VecDeque<Vec<u8>> {
        p.split(|&b| b == b'/')
            .filter(|n| !n.is_empty() && *n != b".")
            .map(<[u8]>::to_vec)
            .collect()
    };
    let mut todo = split(path.as_bytes());
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    let mut missing = false;
    while let Some(name) = todo.pop_front() {
        if name == b".." {
            done.pop();
            continue;
        }
        let name = OsString::from_vec(name);
        if missing {
            done.push(name);
            continue;
        }
        let dir = in_root(root, &done, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        match stat::fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::ELOOP.into());
                }
                let target = fcntl::readlinkat(&dir, name.as_os_str())?;
                let target = target.as_bytes();
                if target.starts_with(b"/") {
                    done.clear();
                }
                for n in split(target).into_iter().rev() {
                    todo.push_front(n);
                }
            }
            Ok(_) => done.push(name),
            Err(Errno::ENOENT) => {
                missing = true;
                done.push(name);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Whether the (symlink-free) path `names` is an existing directory.
fn is_dir(root: &OwnedFd, names: &[OsString]) -> bool {
    in_root(root, names, OFlag::O_PATH | OFlag::O_DIRECTORY).is_ok()
}

/// Opens the directory `names` (symlink-free) in the root, creating what is missing with mode
/// 0755 owned by `owner`.
fn make_dirs(root: &OwnedFd, names: &[OsString], owner: (u32, u32)) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = in_root(root, &[], OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    for name in names {
        match stat::mkdirat(&dir, name.as_os_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) => {
                unistd::fchownat(
                    &dir,
                    name.as_os_str(),
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
                // Not what the umask left.
                stat::fchmodat(
                    &dir,
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                    FchmodatFlags::NoFollowSymlink,
                )?;
            }
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        dir = fcntl::openat(&dir, name.as_os_str(), flags, Mode::empty())?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_relative_to_the_working_directory() {
        assert_eq!(destination("", "app"), "/app");
        assert_eq!(destination("/srv", "app/"), "/srv/app/");
        assert_eq!(destination("/srv", "."), "/srv");
        assert_eq!(destination("/srv", "./"), "/srv/");
        assert_eq!(destination("/srv", "../x"), "/x");
        assert_eq!(destination("/srv", "/abs/../y/"), "/y/");
        assert_eq!(destination("/srv", "/abs/."), "/abs");
        assert_eq!(destination("", "/"), "/");
    }

    fn open(dir: &Path) -> OwnedFd {
        fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    fn names(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_missing_names_stay() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/conf")).unwrap();
        std::os::unix::fs::symlink("/../../etc", r.join("link")).unwrap();
        std::os::unix::fs::symlink("../etc/conf", r.join("etc/rel")).unwrap();
        std::os::unix::fs::symlink("/nowhere/deep", r.join("dangling")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        let fd = open(r);
        assert_eq!(in_scope(&fd, "/link/").unwrap(), names(&["etc"]));
        assert_eq!(
            in_scope(&fd, "/link/rel/x").unwrap(),
            names(&["etc", "conf", "x"])
        );
        assert_eq!(
            in_scope(&fd, "/dangling/y").unwrap(),
            names(&["nowhere", "deep", "y"])
        );
        assert_eq!(in_scope(&fd, "/new/../etc").unwrap(), names(&["etc"]));
        assert_eq!(
            in_scope(&fd, "/loop").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    #[test]
    fn missing_directories_are_made_0755_for_the_owner() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = tempfile::tempdir().unwrap();
        let fd = open(root.path());
        make_dirs(&fd, &names(&["a", "b"]), (1234, 4321)).unwrap();
        for p in ["a", "a/b"] {
            let m = std::fs::metadata(root.path().join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (1234, 4321), "{p}");
            assert_eq!(m.permissions().mode() & 0o7777, 0o755, "{p}");
        }
    }
}

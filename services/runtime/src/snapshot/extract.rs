//! Unpacks one layer tar into an empty directory, treating every entry as hostile.
//!
//! - Names are made relative (leading `/` dropped); a `..` component refuses the layer.
//! - Parents are opened from the layer root without following any symlink (see [`beneath`]); an
//!   entry whose path passes through a symlink refuses the layer. Symlinks themselves are written
//!   as they are: they are resolved later, inside the container's root.
//! - Hard links may only point to something this layer already wrote (the directory starts
//!   empty), found the same way, and never to a directory.
//! - Devices and fifos are made as dockerd makes them when it runs as root; whiteout markers
//!   become overlayfs whiteouts (see [`whiteout`]).
//! - An entry repeated in the layer replaces the earlier one (directories merge), as in Docker.
//! - Owners, modes (setuid/setgid/sticky included), PAX xattrs and mtimes are kept; directory
//!   times are set last, once their contents are in place.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd;
use tar::EntryType;

use super::beneath::{self, LayerDir};
use super::entry_path::EntryPath;
use super::error::{Result, SnapshotError};
use super::metadata::{self, Attrs};
use super::whiteout;

/// Size of the copy buffer for file contents.
const COPY_BUFFER: usize = 256 * 1024;

/// Unpacks the tar read from `reader` into `dest` (an empty directory).
pub(crate) fn extract(reader: impl Read, dest: &Path) -> Result<()> {
    let layer = LayerDir::open(dest)
        .map_err(|e| SnapshotError::io(format!("opening {}", dest.display()), e))?;
    let mut unpacker = Unpacker {
        layer,
        dir_times: HashMap::new(),
        buffer: vec![0; COPY_BUFFER],
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| SnapshotError::reading("reading the layer tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| SnapshotError::reading("reading the layer tar", e))?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish()
}

struct Unpacker {
    layer: LayerDir,
    /// Directory times to set at the end (the last entry for a directory wins).
    dir_times: HashMap<EntryPath, TimeSpec>,
    buffer: Vec<u8>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            // Docker ignores global PAX headers too.
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let path = EntryPath::parse(&raw).map_err(|r| SnapshotError::unsafe_entry(&raw, r))?;
        let attrs = Attrs::of(entry)
            .map_err(|e| SnapshotError::reading(&format!("reading entry {}", lossy(&raw)), e))?;
        let Some(name) = path.name() else {
            // The layer root (`./`) is the snapshot directory: it keeps its own attributes.
            return Ok(());
        };
        if whiteout::is_marker(name) {
            return whiteout::apply(&self.layer, &path, &raw, &attrs);
        }
        let parent = self
            .layer
            .dir(path.parent(), true)
            .map_err(|e| SnapshotError::unsafe_entry(&raw, e.reason()))?;
        let failed = |what: &str, e: Errno| {
            SnapshotError::io(format!("{what} {}", lossy(&raw)), std::io::Error::from(e))
        };
        match kind {
            EntryType::Directory => {
                let existing = beneath::lstat_at(&parent, name).map_err(|e| failed("stat", e))?;
                match existing {
                    Some(st) if beneath::file_type(&st) == SFlag::S_IFDIR => {}
                    Some(_) => {
                        beneath::remove_at(&parent, name).map_err(|e| failed("replacing", e))?;
                        make_dir(&parent, name).map_err(|e| failed("creating directory", e))?;
                    }
                    None => make_dir(&parent, name).map_err(|e| failed("creating directory", e))?,
                }
                let dir = fcntl::openat(
                    &parent,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| failed("opening directory", e))?;
                attrs
                    .apply_to_fd(&dir, false)
                    .map_err(|e| failed("setting attributes of", e))?;
                self.dir_times.insert(path.clone(), attrs.mtime);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                beneath::remove_at(&parent, name).map_err(|e| failed("replacing", e))?;
                let fd = fcntl::openat(
                    &parent,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| failed("creating file", e))?;
                let fd = self.copy_content(entry, fd, &raw)?;
                attrs
                    .apply_to_fd(&fd, true)
                    .map_err(|e| failed("setting attributes of", e))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| malformed(&raw, "a symlink without a target"))?
                    .into_owned();
                if target.is_empty() || target.contains(&0) {
                    return Err(malformed(&raw, "a symlink with an empty or NUL target"));
                }
                beneath::remove_at(&parent, name).map_err(|e| failed("replacing", e))?;
                // The target is stored, never followed here.
                unistd::symlinkat(OsStr::from_bytes(&target), &parent, name)
                    .map_err(|e| failed("creating symlink", e))?;
                attrs
                    .apply_at(&parent, name, true)
                    .map_err(|e| failed("setting attributes of", e))?;
            }
            EntryType::Link => self.hard_link(entry, &raw, &parent, name, &attrs)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (kind_flag, dev) = match kind {
                    EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    other => {
                        let header = entry.header();
                        let major = header.device_major().ok().flatten().unwrap_or(0);
                        let minor = header.device_minor().ok().flatten().unwrap_or(0);
                        let flag = if other == EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (flag, stat::makedev(major as u64, minor as u64))
                    }
                };
                beneath::remove_at(&parent, name).map_err(|e| failed("replacing", e))?;
                match stat::mknodat(&parent, name, kind_flag, Mode::empty(), dev) {
                    Ok(()) => {}
                    // Without CAP_MKNOD (rootless, user namespaces) dockerd skips devices too.
                    Err(Errno::EPERM) if kind_flag != SFlag::S_IFIFO => {
                        tracing::warn!("device {} not created: not permitted here", lossy(&raw));
                        return Ok(());
                    }
                    Err(e) => return Err(failed("creating node", e)),
                }
                attrs
                    .apply_at(&parent, name, false)
                    .map_err(|e| failed("setting attributes of", e))?;
            }
            other => {
                return Err(malformed(
                    &raw,
                    &format!("unsupported entry type {other:?}"),
                ));
            }
        }
        Ok(())
    }

    fn copy_content<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        fd: OwnedFd,
        raw: &[u8],
    ) -> Result<OwnedFd> {
        let mut file = std::fs::File::from(fd);
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(SnapshotError::reading(
                        &format!("reading entry {}", lossy(raw)),
                        e,
                    ))
                }
            };
            file.write_all(&self.buffer[..n])
                .map_err(|e| SnapshotError::io(format!("writing {}", lossy(raw)), e))?;
        }
        Ok(OwnedFd::from(file))
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        parent: &OwnedFd,
        name: &OsStr,
        attrs: &Attrs,
    ) -> Result<()> {
        let refuse = |reason: String| SnapshotError::unsafe_entry(raw, reason);
        let failed = |what: &str, e: Errno| {
            SnapshotError::io(format!("{what} {}", lossy(raw)), std::io::Error::from(e))
        };
        let target_raw = entry
            .link_name_bytes()
            .ok_or_else(|| malformed(raw, "a hard link without a target"))?
            .into_owned();
        let target = EntryPath::parse(&target_raw)
            .map_err(|r| refuse(format!("its hard link target: {r}")))?;
        let Some(target_name) = target.name() else {
            return Err(refuse("a hard link to the layer root".into()));
        };
        // Only what this layer wrote is there: the target must be found beneath the root,
        // through no symlink, and must not be a directory.
        let target_parent = self.layer.dir(target.parent(), false).map_err(|e| {
            refuse(format!(
                "its hard link target is not in this layer: {}",
                e.reason()
            ))
        })?;
        let target_stat = beneath::lstat_at(&target_parent, target_name)
            .map_err(|e| failed("stat of the link target of", e))?
            .ok_or_else(|| refuse("its hard link target is not in this layer".into()))?;
        let target_type = beneath::file_type(&target_stat);
        if target_type == SFlag::S_IFDIR {
            return Err(refuse("a hard link to a directory".into()));
        }
        if let Some(existing) = beneath::lstat_at(parent, name).map_err(|e| failed("stat", e))? {
            if existing.st_dev == target_stat.st_dev && existing.st_ino == target_stat.st_ino {
                return Ok(());
            }
            beneath::remove_at(parent, name).map_err(|e| failed("replacing", e))?;
        }
        unistd::linkat(&target_parent, target_name, parent, name, AtFlags::empty())
            .map_err(|e| failed("creating hard link", e))?;
        // Docker applies the link header's attributes to the shared inode, unless it is a symlink.
        if target_type != SFlag::S_IFLNK {
            attrs
                .apply_at(parent, name, false)
                .map_err(|e| failed("setting attributes of", e))?;
        }
        Ok(())
    }

    /// Sets directory times now that nothing more is written into them.
    fn finish(self) -> Result<()> {
        for (path, mtime) in &self.dir_times {
            // A directory a later entry replaced is no longer there as a directory: skip it.
            let Ok(dir) = self.layer.dir(path.components(), false) else {
                continue;
            };
            metadata::set_times(&dir, mtime).map_err(|e| {
                SnapshotError::io(
                    format!("setting times of {:?}", path.components()),
                    e.into(),
                )
            })?;
        }
        Ok(())
    }
}

fn make_dir(parent: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    // Restrictive until the entry's own mode is applied.
    stat::mkdirat(parent, name, Mode::from_bits_truncate(0o700))
}

fn malformed(raw: &[u8], what: &str) -> SnapshotError {
    SnapshotError::Malformed(format!("entry {}: {what}", lossy(raw)))
}

fn lossy(raw: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(raw))
}

#[cfg(test)]
mod tests {
    /// Found by tests/fuzz_api.rs (an image imported from a tar the tar crate wrote with a bare
    /// `Header::new_gnu()`): blank uid and gid fields failed the layer ("numeric field was not a
    /// number") and `docker run` with a 500; Go's archive/tar, so dockerd, reads them as 0.
    #[test]
    fn blank_owner_fields_read_as_zero_as_go_does() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "bin/file", &b"hi"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(tar::Archive::new(&data[..])
            .entries()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .header()
            .uid()
            .is_err());
        let dir = tempfile::tempdir().unwrap();
        super::extract(&data[..], dir.path()).unwrap();
        let meta = std::fs::metadata(dir.path().join("bin/file")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
        assert_eq!(std::fs::read(dir.path().join("bin/file")).unwrap(), b"hi");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use wharf_bus::testkit::{hostile_tar, proptest_cases};

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: proptest_cases(192),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any sequence of tar entries (see `hostile_tar::entries`) is unpacked or refused, and
        /// nothing outside the layer directory is written, linked, chmodded or removed.
        #[test]
        fn no_layer_writes_outside_its_directory(
            picks in prop::collection::vec(any::<u16>(), 0..96)
        ) {
            let entries = hostile_tar::entries(&picks);
            let arena = hostile_tar::Arena::new();
            let tar = hostile_tar::build(&entries, arena.outside());
            let result = super::extract(&tar[..], arena.root());
            prop_assert_eq!(
                arena.check(),
                Ok(()),
                "entries {:#?} gave {:?}",
                entries,
                result.map_err(|e| e.to_string())
            );
        }
    }
}

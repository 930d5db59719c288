//! Unpacks one layer tar into an empty directory with the confined tar core (`wharf_untar`),
//! treating every entry as hostile. What is the layer's own:
//!
//! - Names are made relative (leading `/` dropped); a `..` component or a NUL byte refuses the
//!   layer.
//! - Parents are opened beneath the layer root without following any symlink; an entry whose
//!   path passes through a symlink refuses the layer. Symlinks themselves are written as they
//!   are: they are resolved later, inside the container's root.
//! - Hard links may only point to something this layer already wrote (the directory starts
//!   empty), found the same way, and never to a directory.
//! - Devices and fifos are made as dockerd makes them when it runs as root; whiteout markers
//!   become overlayfs whiteouts (see [`whiteout`]).
//! - An entry repeated in the layer replaces the earlier one (directories merge), as in Docker.
//! - Owners, modes (setuid/setgid/sticky included), PAX xattrs (not overlayfs' own) and mtimes
//!   are kept; directory times are set last, once their contents are in place.
//!
//! Failures keep the snapshotter's words: refused entries are [`SnapshotError::UnsafeEntry`],
//! unreadable ones [`SnapshotError::Malformed`].

use std::io::Read;
use std::path::Path;

use nix::errno::Errno;
use tar::EntryType;
use wharf_untar::{
    header, EntryPath, Error, Hooks, Item, Kind, LinkProblem, Names, Op, Options, Place, Problem,
    Root,
};

use super::error::{Result, SnapshotError};
use super::whiteout;

/// Unpacks the tar read from `reader` into `dest` (an empty directory).
pub(crate) fn extract(reader: impl Read, dest: &Path) -> Result<()> {
    let root = Root::beneath(dest)
        .map_err(|e| SnapshotError::io(format!("opening {}", dest.display()), e))?;
    let mut layer = Layer { refused: None };
    wharf_untar::extract(reader, &root, &Options::new(Names::NoDotDot), &mut layer)?;
    Ok(())
}

/// The layer's reading of headers, its whiteouts and its words for failures.
struct Layer {
    /// Why the entry just read cannot be made (a link without a target), said only if it is
    /// to be made: the layer root and whiteouts take any type.
    refused: Option<SnapshotError>,
}

impl Hooks for Layer {
    type Error = SnapshotError;

    fn read<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<Option<Item>> {
        if entry.header().entry_type() == EntryType::XGlobalHeader {
            // Docker ignores global PAX headers too.
            return Ok(None);
        }
        let name = entry.path_bytes().into_owned();
        let reading = |e| SnapshotError::reading(&format!("reading entry {}", lossy(&name)), e);
        let (uid, gid, mode) = header::ids_and_mode(entry.header()).map_err(reading)?;
        let owner = (id_of(uid).map_err(reading)?, id_of(gid).map_err(reading)?);
        let mtime = header::mtime(entry.header());
        let pax = header::pax(entry).map_err(reading)?;
        self.refused = None;
        let kind = match header::kind(entry) {
            // The tar crate reads GNU sparse files as their whole content.
            Ok(Kind::Other(b'S')) => Kind::File,
            Ok(Kind::Symlink(target)) => {
                if target.is_empty() || target.contains(&0) {
                    self.refused = Some(malformed(&name, "a symlink with an empty or NUL target"));
                }
                Kind::Symlink(target)
            }
            Ok(kind) => kind,
            Err(missing) => {
                self.refused = Some(malformed(&name, missing));
                Kind::Other(0)
            }
        };
        Ok(Some(Item {
            name,
            kind,
            owner: Some(owner),
            mode: mode & 0o7777,
            mtime: pax.mtime.unwrap_or(mtime),
            xattrs: pax.xattrs,
        }))
    }

    fn place(&mut self, root: &Root, path: &EntryPath, item: &Item) -> Result<Place> {
        if path.name().is_some_and(whiteout::is_marker) {
            whiteout::apply(root, path, item)?;
            return Ok(Place::Done);
        }
        match self.refused.take() {
            Some(refused) => Err(refused),
            None => Ok(Place::Make),
        }
    }

    fn error(&self, error: Error) -> SnapshotError {
        let (raw, problem) = match error {
            Error::Archive(e) => return SnapshotError::reading("reading the layer tar", e),
            Error::Finish { path, errno, .. } => {
                return SnapshotError::io(
                    format!("setting times of {:?}", path.components()),
                    errno.into(),
                )
            }
            Error::Entry { entry, problem, .. } => (entry, problem),
        };
        let refuse = |reason: String| SnapshotError::unsafe_entry(&raw, reason);
        let failed = |what: &str, e: Errno| {
            SnapshotError::io(format!("{what} {}", lossy(&raw)), std::io::Error::from(e))
        };
        match problem {
            Problem::Read(e) => {
                SnapshotError::reading(&format!("reading entry {}", lossy(&raw)), e)
            }
            Problem::Write(e) => SnapshotError::io(format!("writing {}", lossy(&raw)), e),
            Problem::Name(reason) => refuse(reason.to_string()),
            Problem::Parent(walk) => refuse(walk.reason()),
            // Not asked for (Options::no_overwrite_dir_non_dir).
            Problem::Overwrite { .. } => {
                refuse("a directory and a non-directory would replace each other".into())
            }
            Problem::Link { problem, .. } => match problem {
                LinkProblem::Name(reason) => refuse(format!("its hard link target: {reason}")),
                LinkProblem::Root => refuse("a hard link to the layer root".into()),
                LinkProblem::Parent(walk) => refuse(format!(
                    "its hard link target is not in this layer: {}",
                    walk.reason()
                )),
                LinkProblem::Stat(e) => failed("stat of the link target of", e),
                LinkProblem::Missing => refuse("its hard link target is not in this layer".into()),
                LinkProblem::Directory => refuse("a hard link to a directory".into()),
                LinkProblem::Os(e) => failed("creating hard link", e),
            },
            Problem::Unsupported(flag) => malformed(
                &raw,
                &format!("unsupported entry type {:?}", EntryType::new(flag)),
            ),
            Problem::Os(op, e) => failed(
                match op {
                    Op::Stat => "stat",
                    Op::Replace => "replacing",
                    Op::MakeDir => "creating directory",
                    Op::OpenDir => "opening directory",
                    Op::MakeFile => "creating file",
                    Op::MakeSymlink => "creating symlink",
                    Op::MakeNode => "creating node",
                    Op::Owner | Op::Mode | Op::Xattr | Op::Times => "setting attributes of",
                },
                e,
            ),
        }
    }
}

fn id_of(id: u64) -> std::io::Result<u32> {
    u32::try_from(id).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("owner ID {id} is out of range"),
        )
    })
}

fn malformed(raw: &[u8], what: &str) -> SnapshotError {
    SnapshotError::Malformed(format!("entry {}: {what}", lossy(raw)))
}

pub(super) fn lossy(raw: &[u8]) -> String {
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

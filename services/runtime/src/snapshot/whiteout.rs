//! Docker's whiteout markers turned into what overlayfs reads: `.wh.<name>` becomes a character
//! device 0/0 named `<name>`, `.wh..wh..opq` marks its directory opaque. The layer extractor's
//! hook ([`apply`]) makes them inside the layer root, as the core makes every other entry.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, Mode, SFlag};
use nix::unistd::{self, Gid, Uid};
use wharf_untar::{remove_at, EntryPath, Item, Root};

use super::error::{Result, SnapshotError};
use super::extract::lossy;

pub(crate) const PREFIX: &[u8] = b".wh.";
/// Names `.wh..wh.*` are the whiteout format's own bookkeeping (aufs hard link dirs and the like).
const META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Whether `name` is a whiteout marker (and so is not to be written as itself).
pub(crate) fn is_marker(name: &OsStr) -> bool {
    name.as_bytes().starts_with(PREFIX)
}

/// Applies the marker entry `item` at `path` (whose name starts with `.wh.`) to the layer.
pub(crate) fn apply(layer: &Root, path: &EntryPath, item: &Item) -> Result<()> {
    let raw = &item.name;
    let name = path.name().unwrap_or_default().as_bytes();
    let unsafe_entry = |reason: String| SnapshotError::unsafe_entry(raw, reason);
    let failed =
        |what: &str, e: std::io::Error| SnapshotError::io(format!("{what} for {}", lossy(raw)), e);
    if name == OPAQUE {
        let dir = layer
            .dir(path.parent(), true)
            .map_err(|e| unsafe_entry(e.reason()))?;
        return crate::xattrs::set(&dir, OsStr::new(OPAQUE_XATTR), b"y")
            .map_err(|e| failed("opaque marker", e));
    }
    if name.starts_with(META_PREFIX) {
        tracing::debug!("skipping whiteout metadata entry {}", lossy(raw));
        return Ok(());
    }
    let target = &name[PREFIX.len()..];
    if target.is_empty() || target == b"." || target == b".." {
        return Err(unsafe_entry("a whiteout that names no file".into()));
    }
    let target = path.with_name(OsStr::from_bytes(target));
    let target_name = target.name().expect("named");
    let parent = layer
        .dir(target.parent(), true)
        .map_err(|e| unsafe_entry(e.reason()))?;
    let os = |what: &'static str| move |e: Errno| failed(what, e.into());
    // A later entry wins over an earlier one of the same name.
    remove_at(&parent, target_name).map_err(os("removing an earlier entry"))?;
    stat::mknodat(
        &parent,
        target_name,
        SFlag::S_IFCHR,
        Mode::empty(),
        stat::makedev(0, 0),
    )
    .map_err(os("creating a whiteout"))?;
    let (uid, gid) = item.owner.unwrap_or((0, 0));
    unistd::fchownat(
        &parent,
        target_name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(os("owning a whiteout"))
}

//! Disk usage of a volume as dockerd's `directory.Size` counts it: sizes of everything but
//! directories, symlinks by their own size, each hard-linked inode once.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes used under `dir`; entries that vanish while walking are skipped.
pub(crate) fn disk_usage(dir: &Path) -> std::io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    walk(dir, &mut seen, &mut total)?;
    Ok(total)
}

fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, total: &mut u64) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        // symlink_metadata: a link is measured, never followed.
        let meta = match entry.path().symlink_metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            walk(&entry.path(), seen, total)?;
            continue;
        }
        if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        *total += meta.len();
    }
    Ok(())
}

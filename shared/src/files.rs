//! Small files replaced whole: written to a temporary file beside the target, then renamed over
//! it, so a reader sees the old or the new content, never a mix. The one helper every service
//! uses for its records and indexes (not a wire type: it lives here because every service
//! depends on this crate).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Whether a replacement must survive a crash of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The data is synced before the rename and the directory after it: what was written
    /// stays written (image metadata, volume records).
    Synced,
    /// No syncs: a crash may bring back the old content, never a torn one. For state that
    /// lives no longer than what it describes (a container's record, its published ports,
    /// address allocations), so starts and exits never wait for the disk.
    Unsynced,
}

/// Replaces `path` with `data` atomically. The temporary file is named after the target, the
/// process and a counter, so concurrent writers of one file never share it; it is removed
/// when the write fails.
pub fn write_atomic(path: &Path, data: &[u8], durability: Durability) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let synced = durability == Durability::Synced;
    let result = (|| {
        let mut f = File::create(&temp)?;
        f.write_all(data)?;
        if synced {
            f.sync_all()?;
        }
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    if synced {
        sync_dir(dir);
    }
    Ok(())
}

/// Removes the temporary files a crash between write and rename left for `dir/name`.
pub fn remove_leftovers(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file.starts_with(&prefix) && file.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Makes a rename in `dir` durable; best effort.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_leaves_the_new_content_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        write_atomic(&path, b"old", Durability::Unsynced).unwrap();
        write_atomic(&path, b"new", Durability::Synced).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // What a crash between write and rename would leave is found and removed.
        fs::write(dir.path().join(".record.json.1.2.tmp"), b"torn").unwrap();
        fs::write(dir.path().join("other.tmp"), b"kept").unwrap();
        remove_leftovers(dir.path(), "record.json");
        assert!(!dir.path().join(".record.json.1.2.tmp").exists());
        assert!(dir.path().join("other.tmp").exists());
    }

    #[test]
    fn a_failed_write_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        write_atomic(&path, b"old", Durability::Unsynced).unwrap();
        // A directory where the target is cannot be replaced by a file.
        let blocked = dir.path().join("dir");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"").unwrap();
        assert!(write_atomic(&blocked, b"new", Durability::Unsynced).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}

//! The file set of `max-size`/`max-file`: `<path>` is written, `<path>.1` is the newest
//! rotated file, `<path>.<max-file - 1>` the oldest, as dockerd's `loggerutils` names them.

use std::path::{Path, PathBuf};

use crate::logs::{LogError, Result};

/// `<path>.<index>`.
pub fn rotated_path(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// Shifts `<path>` to `<path>.1`, `.1` to `.2`, ..., dropping `<path>.<max_files - 1>`.
/// With fewer than two files there is nothing to shift; the caller truncates `<path>`.
pub(crate) fn shift(path: &Path, max_files: u32) -> Result<()> {
    if max_files < 2 {
        return Ok(());
    }
    let oldest = rotated_path(path, max_files - 1);
    match std::fs::remove_file(&oldest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io(format!("remove {}", oldest.display()), e)),
    }
    for index in (2..max_files).rev() {
        let from = rotated_path(path, index - 1);
        let to = rotated_path(path, index);
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(format!("rename {}", from.display()), e)),
        }
    }
    let newest = rotated_path(path, 1);
    std::fs::rename(path, &newest)
        .map_err(|e| LogError::io(format!("rename {}", path.display()), e))
}

/// The rotated files on disk, oldest first (not including `<path>` itself).
pub(crate) fn rotated_oldest_first(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for index in 1.. {
        let file = rotated_path(path, index);
        if !file.exists() {
            break;
        }
        files.push(file);
    }
    files.reverse();
    files
}

//! Paths inside the context: archive names cleaned into the `/`-separated keys of
//! [`Context::entries`](super::Context::entries), and paths resolved as if the context
//! directory were `/`, so that no symlink leads out of it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use wharf_untar::{EntryPath, Names};

/// `evalSymlinksInScope`'s bound on path components walked (symlink targets included).
const MAX_SCOPE_STEPS: usize = 255;

/// The key of an archive name: `path.Clean("/" + name)` without its leading `/` (`.` for the
/// root), as the extraction cleans names ([`Names::Clamped`]).
pub(super) fn clean_key(name: &[u8]) -> String {
    EntryPath::parse(name, Names::Clamped)
        .unwrap_or_default()
        .to_slash_string()
}

fn under(root: &Path, components: &[Vec<u8>]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in components {
        p.push(OsStr::from_bytes(c));
    }
    p
}

/// moby's `FollowSymlinkInScope(filepath.Join(root, path), root)`: `path` (absolute or not) is
/// joined to `root` and must not climb out of it lexically (an error otherwise); then each
/// symlink on the way is expanded as if `root` were `/`, so the result is always inside
/// `root`. Missing components are accepted as they are. More than 255 steps is an error.
pub fn resolve_in_scope(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    for part in path.as_bytes().split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if pending.pop_back().is_none() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{path} is not in {}", root.display()),
                    ));
                }
            }
            other => pending.push_back(other.to_vec()),
        }
    }
    let mut resolved: Vec<Vec<u8>> = Vec::new();
    let mut steps = 0;
    while let Some(part) = pending.pop_front() {
        steps += 1;
        if steps > MAX_SCOPE_STEPS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("too many links in {path}"),
            ));
        }
        match part.as_slice() {
            b"" | b"." => continue,
            b".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        resolved.push(part);
        let full = under(root, &resolved);
        match fs::symlink_metadata(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
            Ok(m) if !m.file_type().is_symlink() => {}
            Ok(_) => {
                resolved.pop();
                let target = fs::read_link(&full)?.into_os_string().into_vec();
                if target.starts_with(b"/") {
                    resolved.clear();
                }
                for piece in target.split(|&b| b == b'/').rev() {
                    pending.push_front(piece.to_vec());
                }
            }
        }
    }
    Ok(under(root, &resolved))
}

/// `/`-separated path of `full` relative to `root`, `.` for the root itself.
pub(super) fn relative_key(root: &Path, full: &Path) -> String {
    let rel = full.strip_prefix(root).unwrap_or(full);
    let parts: Vec<OsString> = rel
        .components()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    EntryPath::from(parts).to_slash_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_in_scope_treats_the_root_as_slash() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/a", root.join("abs")).unwrap();
        symlink("../../../..", root.join("a/b/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in_scope(&root, "abs/b").unwrap(), root.join("a/b"));
        assert_eq!(resolve_in_scope(&root, "a/b/up/a").unwrap(), root.join("a"));
        assert_eq!(resolve_in_scope(&root, "/a/../a").unwrap(), root.join("a"));
        assert_eq!(
            resolve_in_scope(&root, "missing/x").unwrap(),
            root.join("missing/x")
        );
        assert_eq!(resolve_in_scope(&root, "").unwrap(), root);
        assert!(
            resolve_in_scope(&root, "../root/a").is_err(),
            "lexical escape"
        );
        assert!(resolve_in_scope(&root, "a/../../x").is_err());
        assert!(resolve_in_scope(&root, "loop").is_err(), "symlink loop");
    }
}

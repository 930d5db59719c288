//! The cache keys of `COPY`/`ADD` sources, as dockerd 20.10's classic builder writes them into
//! `COPY file:<...> in /dest`: from the per-entry tarsums of a received context, or hashed from
//! disk for a tree that never was a tar (`COPY --from`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::paths::{clean_key, relative_key, resolve_in_scope};
use super::tarsum::{write_v1_header, HashWriter, V1Fields};
use super::Context;

/// `hashStringSlice`: `prefix:` + hex sha256 of the items joined with `,`. The classic builder
/// uses it for `dir:` (a directory's sorted entry sums) and `multi:` (several sources).
pub fn hash_string_slice(prefix: &str, items: &[String]) -> String {
    format!(
        "{prefix}:{}",
        hex::encode(Sha256::digest(items.join(",").as_bytes()))
    )
}

/// `calcCopyInfo` for one source path without wildcards: `file:<hash>` for a file (symlinks
/// followed in scope) or `dir:<hash_string_slice of the sorted hashes of the directory and
/// everything under it>`, where `hash` is the source's per-path `Hash`.
fn source_checksum(
    root: &Path,
    src: &str,
    hash: &mut dyn FnMut(&str) -> io::Result<String>,
) -> io::Result<String> {
    let path = src.strip_prefix('/').unwrap_or(src);
    let path = path.strip_prefix("./").unwrap_or(path);
    let full = resolve_in_scope(root, path).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("forbidden path outside the build context: {path} ()"),
        )
    })?;
    let meta = fs::metadata(&full).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "file not found in build context or excluded by .dockerignore: \
                     stat {path}: file does not exist"
                ),
            )
        } else {
            e
        }
    })?;
    if !meta.is_dir() {
        return Ok(format!("file:{}", hash(path)?));
    }
    let mut sums = Vec::new();
    walk(&full, &mut |p| {
        let rel = relative_key(root, p);
        if rel != "." {
            // walkSource drops paths that fail to hash.
            if let Ok(sum) = hash(&rel) {
                sums.push(sum);
            }
        }
    })?;
    sums.sort();
    Ok(hash_string_slice("dir", &sums))
}

/// Go's `filepath.Walk` order (a directory, then its entries by name), never following
/// symlinks.
fn walk(path: &Path, visit: &mut dyn FnMut(&Path)) -> io::Result<()> {
    visit(path);
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mut names: Vec<OsString> = fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        walk(&path.join(name), visit)?;
    }
    Ok(())
}

impl Context {
    /// `archiveContext.Hash`: the tarsum of `path` after following symlinks in scope ("the file
    /// that is actually copied"); a path the archive did not list (a parent it never named, a
    /// dangling link) hashes to `path` itself, as in dockerd.
    pub fn hash(&self, path: &str) -> io::Result<String> {
        let full = resolve_in_scope(&self.root, path).map_err(|e| {
            let clean = clean_key(path.as_bytes());
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("forbidden path outside the build context: {path} ({clean}): {e}"),
            )
        })?;
        let rel = relative_key(&self.root, &full);
        Ok(self
            .entries
            .get(&rel)
            .map_or_else(|| path.to_string(), |e| e.sum.clone()))
    }

    /// The cache-key source hash for `COPY <src>` from this context, exactly as dockerd 20.10
    /// puts it into `COPY file:<...> in /dest` / `COPY dir:<...> in /dest`: `file:` + the
    /// entry's tarsum, or `dir:` + sha256 over the comma-joined, sorted tarsums of the
    /// directory and all it contains (on disk now, so files `.dockerignore` removed do not
    /// count). Several sources combine with `hash_string_slice("multi", ..)`.
    pub fn checksum(&self, src: &str) -> io::Result<String> {
        source_checksum(&self.root, src, &mut |p| self.hash(p))
    }
}

/// The same cache key as [`Context::checksum`] for a tree that did not come from a tar (e.g. a
/// previous stage for `COPY --from`), hashing from disk like dockerd's `lazySource`:
/// `archive.FileInfoHeader` of each path (name with `/` after directories, `st_mode` with its
/// type bits, uid, gid, size of regular files, type flag, symlink target, owner and group
/// names looked up on this host, device numbers, the `security.capability` xattr) in tarsum.v1
/// order, then a regular file's content.
pub fn checksum(root: &Path, src: &str) -> io::Result<String> {
    source_checksum(root, src, &mut |p| lazy_hash(root, p))
}

/// `lazySource.Hash` for one path.
fn lazy_hash(root: &Path, path: &str) -> io::Result<String> {
    let full = resolve_in_scope(root, path)?;
    let rel = relative_key(root, &full);
    let meta = match fs::symlink_metadata(&full) {
        Ok(meta) => meta,
        // "a missing file returns a path as hash", e.g. a broken symlink.
        Err(_) => return Ok(rel),
    };
    let ft = meta.file_type();
    let (typeflag, linkname) = if ft.is_file() {
        (b'0', Vec::new())
    } else if ft.is_dir() {
        (b'5', Vec::new())
    } else if ft.is_symlink() {
        (b'2', fs::read_link(&full)?.into_os_string().into_vec())
    } else if ft.is_char_device() {
        (b'3', Vec::new())
    } else if ft.is_block_device() {
        (b'4', Vec::new())
    } else if ft.is_fifo() {
        (b'6', Vec::new())
    } else {
        // Go's FileInfoHeader: "archive/tar: sockets not supported".
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{rel}: sockets not supported"),
        ));
    };
    let mut name = rel.clone().into_bytes();
    if ft.is_dir() && !name.ends_with(b"/") {
        name.push(b'/');
    }
    let (devmajor, devminor) = if ft.is_char_device() || ft.is_block_device() {
        let rdev = meta.rdev();
        (u64::from(libc::major(rdev)), u64::from(libc::minor(rdev)))
    } else {
        (0, 0)
    };
    let uname = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let gname = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_default();
    let mut xattrs = BTreeMap::new();
    if let Some(cap) = security_capability(&full) {
        xattrs.insert(b"security.capability".to_vec(), cap);
    }
    let mut hasher = Sha256::new();
    write_v1_header(
        &mut hasher,
        &V1Fields {
            name: &name,
            mode: i64::from(meta.mode()),
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            size: if ft.is_file() { meta.len() } else { 0 },
            typeflag,
            linkname: &linkname,
            uname: uname.as_bytes(),
            gname: gname.as_bytes(),
            devmajor,
            devminor,
            xattrs: &xattrs,
        },
    );
    if ft.is_file() && meta.len() > 0 {
        let mut f = fs::File::open(&full)?;
        io::copy(&mut f, &mut HashWriter(&mut hasher))?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `ReadSecurityXattrToTarHeader`: the file capability, revision 3 rewritten as revision 2.
fn security_capability(path: &Path) -> Option<Vec<u8>> {
    // Not following a symlink, as lgetxattr.
    let mut buf = xattr::get(path, "security.capability").ok()??;
    if buf.is_empty() {
        return None;
    }
    const XATTR_CAPS_SZ_2: usize = 20;
    if buf.len() > 3 && buf[3] == 3 {
        buf[3] = 2;
        buf.truncate(XATTR_CAPS_SZ_2);
    }
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testutil::{sha, Scratch, Tar};
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dir_checksum_hashes_the_sorted_sums_of_the_directory_and_everything_in_it() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .dir("src/", 0o755)
            .file("src/b.rs", 0o644, b"b")
            .file("src/a.rs", 0o644, b"a")
            .file("other", 0o644, b"o")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        let mut sums = vec![
            ctx.entries["src"].sum.clone(),
            ctx.entries["src/a.rs"].sum.clone(),
            ctx.entries["src/b.rs"].sum.clone(),
        ];
        sums.sort();
        let expected = format!("dir:{}", sha(sums.join(",").as_bytes()));
        assert_eq!(ctx.checksum("src").unwrap(), expected);
        assert_eq!(ctx.checksum("src/").unwrap(), expected);
        assert_eq!(hash_string_slice("dir", &sums), expected);
        // The whole context: every entry but the root.
        let mut all: Vec<String> = ctx.entries.values().map(|e| e.sum.clone()).collect();
        all.sort();
        assert_eq!(ctx.checksum(".").unwrap(), hash_string_slice("dir", &all));
    }

    #[test]
    fn context_checksum_leaves_out_build_files_removed_by_dockerignore() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file(".dockerignore", 0o644, b"Dockerfile\n.dockerignore\n")
            .file("app", 0o644, b"x")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(
            ctx.checksum(".").unwrap(),
            hash_string_slice("dir", std::slice::from_ref(&ctx.entries["app"].sum))
        );
    }

    #[test]
    fn checksum_follows_symlinks_to_the_copied_file() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .file("real", 0o644, b"r")
            .symlink("link", "real")
            .symlink("escape", "../../real")
            .symlink("dangling", "nowhere")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.hash("link").unwrap(), ctx.entries["real"].sum);
        // Resolved in scope, `../../real` is `real`.
        assert_eq!(ctx.hash("escape").unwrap(), ctx.entries["real"].sum);
        assert_eq!(ctx.hash("dangling").unwrap(), "dangling");
        assert_eq!(ctx.checksum("link").unwrap(), ctx.checksum("real").unwrap());
        assert!(ctx.hash("../x").is_err());
    }

    #[test]
    fn checksum_of_a_missing_source_is_dockerds_error() {
        let s = Scratch::new();
        let ctx = s
            .receive(&Tar::default().dockerfile().finish(), "")
            .unwrap();
        let err = ctx.checksum("nope.txt").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "file not found in build context or excluded by .dockerignore: \
             stat nope.txt: file does not exist"
        );
        let err = ctx.checksum("../etc/passwd").unwrap_err();
        assert_eq!(
            err.to_string(),
            "forbidden path outside the build context: ../etc/passwd ()"
        );
    }

    #[test]
    fn multi_source_hash_is_hash_string_slice_of_the_sources() {
        let items = vec!["file:aa".to_string(), "dir:bb".to_string()];
        assert_eq!(
            hash_string_slice("multi", &items),
            format!("multi:{}", sha(b"file:aa,dir:bb"))
        );
    }

    /// Builds the same small tree under `root`.
    fn tree(root: &Path) {
        fs::create_dir_all(root.join("src/nested")).unwrap();
        fs::write(root.join("src/a.txt"), "alpha").unwrap();
        fs::write(root.join("src/nested/b.txt"), "beta").unwrap();
        symlink("a.txt", root.join("src/link")).unwrap();
        fs::set_permissions(root.join("src/a.txt"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(
            root.join("src/nested/b.txt"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }

    #[test]
    fn disk_checksum_is_stable_for_identical_trees() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(a.path());
        tree(b.path());
        // Times differ between the trees; they are not part of the key.
        fs::File::options()
            .write(true)
            .open(b.path().join("src/a.txt"))
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(7))
            .unwrap();
        for src in ["src", "src/a.txt", "src/link", "src/nested", "."] {
            let sa = checksum(a.path(), src).unwrap();
            assert_eq!(sa, checksum(b.path(), src).unwrap(), "{src}");
        }
        assert!(checksum(a.path(), "src").unwrap().starts_with("dir:"));
        assert!(checksum(a.path(), "src/a.txt")
            .unwrap()
            .starts_with("file:"));
        // The link is hashed as the file it points to.
        assert_eq!(
            checksum(a.path(), "src/link").unwrap(),
            checksum(a.path(), "src/a.txt").unwrap()
        );
    }

    #[test]
    fn disk_checksum_changes_with_one_byte_or_the_mode() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(a.path());
        tree(b.path());
        fs::write(b.path().join("src/nested/b.txt"), "betA").unwrap();
        assert_ne!(
            checksum(a.path(), "src/nested/b.txt").unwrap(),
            checksum(b.path(), "src/nested/b.txt").unwrap()
        );
        assert_ne!(
            checksum(a.path(), "src").unwrap(),
            checksum(b.path(), "src").unwrap()
        );
        fs::write(b.path().join("src/nested/b.txt"), "beta").unwrap();
        assert_eq!(
            checksum(a.path(), "src").unwrap(),
            checksum(b.path(), "src").unwrap()
        );
        fs::set_permissions(
            b.path().join("src/a.txt"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(
            checksum(a.path(), "src/a.txt").unwrap(),
            checksum(b.path(), "src/a.txt").unwrap()
        );
        assert_ne!(
            checksum(a.path(), "src").unwrap(),
            checksum(b.path(), "src").unwrap()
        );
        // A renamed file changes the directory's key even with the same content.
        fs::set_permissions(
            b.path().join("src/a.txt"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        fs::rename(
            b.path().join("src/nested/b.txt"),
            b.path().join("src/nested/c.txt"),
        )
        .unwrap();
        assert_ne!(
            checksum(a.path(), "src").unwrap(),
            checksum(b.path(), "src").unwrap()
        );
    }
}

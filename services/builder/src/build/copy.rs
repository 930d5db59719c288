//! COPY and ADD on the builder's side: which files a step brings in (dockerd's `calcCopyInfo`:
//! wildcards, directories, the cache checksum) and the tar that carries them to the runtime node,
//! with entries named relative to the destination directory (see `wharf_bus::build::StepCopy`).

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::context::{hash_string_slice, resolve_in_scope, Context};
use crate::ignore::path_match;

/// One source of a COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The tree it is read from (the context, a download directory, an image export).
    pub root: PathBuf,
    /// Path relative to `root` (`.` for the root itself).
    pub rel: String,
    /// Cache checksum (`file:...`, `dir:...`).
    pub hash: String,
    /// Never extract it, even for ADD (downloads).
    pub no_decompress: bool,
}

/// The combined checksum of a step's sources, as dockerd prints it in the step's history.
pub fn sources_hash(sources: &[Source]) -> String {
    match sources {
        [one] => one.hash.clone(),
        many => hash_string_slice(
            "multi",
            &many.iter().map(|s| s.hash.clone()).collect::<Vec<_>>(),
        ),
    }
}

/// Go's `containsWildcards` (a backslash escapes the next character).
pub fn has_wildcards(path: &str) -> bool {
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// `/`-separated path below `root` for a walked path.
fn rel_of(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let s = rel.to_string_lossy().to_string();
    if s.is_empty() {
        ".".to_string()
    } else {
        s
    }
}

/// Every path under `dir` (not `dir` itself), directories before their contents, by name.
fn walk_all(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = dir.join(name);
        out.push(path.clone());
        if fs::symlink_metadata(&path)?.is_dir() {
            walk_all(&path, out)?;
        }
    }
    Ok(())
}

/// The sources of `COPY`/`ADD` from the build context, with dockerd's errors (without the
/// leading `COPY failed: `, which the caller adds).
pub fn context_sources(ctx: &Context, sources: &[String]) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    for orig in sources {
        let path = orig.trim_start_matches('/');
        let path = path.strip_prefix("./").unwrap_or(path);
        if has_wildcards(path) {
            let mut all = Vec::new();
            walk_all(&ctx.root, &mut all).map_err(|e| e.to_string())?;
            for p in all {
                let rel = rel_of(&ctx.root, &p);
                if path_match(path, &rel) {
                    let hash = ctx.checksum(&rel).map_err(|e| e.to_string())?;
                    out.push(Source {
                        root: ctx.root.clone(),
                        rel,
                        hash,
                        no_decompress: false,
                    });
                }
            }
            continue;
        }
        let rel = if path.is_empty() { "." } else { path };
        let hash = ctx.checksum(rel).map_err(|e| e.to_string())?;
        out.push(Source {
            root: ctx.root.clone(),
            rel: rel.to_string(),
            hash,
            no_decompress: false,
        });
    }
    if out.is_empty() {
        return Err("no source files were specified".to_string());
    }
    Ok(out)
}

/// Parses `--chmod` (octal, as BuildKit takes it).
pub fn parse_chmod(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid chmod parameter: {s}"))
}

/// What the tar for one step holds.
pub struct StepTar {
    /// Set when the tar is one file that may become the destination itself.
    pub file_name: Option<String>,
}

/// Writes the tar of a COPY/ADD step from `sources` into `out`.
///
/// - A directory source contributes its contents (not itself).
/// - A file source contributes one file named by its base name; symlinks to it are followed in
///   scope (the file copied is the one the link names).
/// - With `add`, a local archive source (any compression) is unpacked instead: its entries,
///   with their owners.
///
/// Copied entries belong to root (0:0) unless `preserve_owner` (`COPY --from` without
/// `--chown`); the runtime node applies `--chown` when there is one. `chmod` sets every copied
/// entry's permission bits.
pub fn write_step_tar(
    sources: &[Source],
    add: bool,
    dest_is_dir: bool,
    chmod: Option<u32>,
    out: &Path,
    preserve_owner: bool,
) -> io::Result<StepTar> {
    let owner = |m: &fs::Metadata| {
        if preserve_owner {
            (m.uid(), m.gid())
        } else {
            (0, 0)
        }
    };
    let file = fs::File::create(out)?;
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, file));
    tar.mode(tar::HeaderMode::Complete);
    tar.follow_symlinks(false);
    let mut single: Option<String> = None;
    let mut entries = 0usize;
    for src in sources {
        let full = resolve_in_scope(&src.root, &src.rel)?;
        let meta = fs::metadata(&full)?;
        if meta.is_dir() {
            let mut all = Vec::new();
            walk_all(&full, &mut all)?;
            for p in all {
                let name = rel_of(&full, &p);
                append_path(&mut tar, &p, &name, chmod, &owner)?;
                entries += 1;
            }
            continue;
        }
        if add && !src.no_decompress {
            if let Some(n) = append_archive(&mut tar, &full)? {
                entries += n;
                continue;
            }
        }
        let base = Path::new(&src.rel)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| src.rel.clone());
        append_path(&mut tar, &full, &base, chmod, &owner)?;
        entries += 1;
        if sources.len() == 1 && !dest_is_dir {
            single = Some(base);
        }
    }
    let mut w = tar.into_inner()?;
    w.flush()?;
    let _ = entries;
    Ok(StepTar { file_name: single })
}

/// Appends the file, directory or symlink at `path` (not followed) as `name`, owned as `owner`
/// says.
fn append_path<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    chmod: Option<u32>,
    owner: &dyn Fn(&fs::Metadata) -> (u32, u32),
) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    let (uid, gid) = owner(&meta);
    h.set_uid(uid as u64);
    h.set_gid(gid as u64);
    h.set_username("")?;
    h.set_groupname("")?;
    if let Some(mode) = chmod {
        h.set_mode(mode);
    } else {
        h.set_mode(meta.permissions().mode() & 0o7777);
    }
    h.set_mtime(meta.mtime().max(0) as u64);
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(path)?;
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        tar.append_link(&mut h, name, target)
    } else if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        tar.append_data(&mut h, format!("{name}/"), io::empty())
    } else if ft.is_file() {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(meta.len());
        let f = fs::File::open(path)?;
        tar.append_data(&mut h, name, f)
    } else {
        // Fifos and devices from a context are not copied (the context receiver skipped them).
        Ok(())
    }
}

/// When `path` is an archive dockerd would unpack (a tar, maybe compressed, with at least one
/// entry), appends its entries and returns how many; `None` for any other file.
fn append_archive<W: Write>(tar: &mut tar::Builder<W>, path: &Path) -> io::Result<Option<usize>> {
    let is_archive = {
        let f = fs::File::open(path)?;
        match wharf_bus::layer::decompress(BufReader::new(f)) {
            Ok((_, r)) => {
                let mut a = tar::Archive::new(r);
                let ok = a
                    .entries()
                    .ok()
                    .and_then(|mut e| e.next())
                    .is_some_and(|e| e.is_ok());
                ok
            }
            Err(_) => false,
        }
    };
    if !is_archive {
        return Ok(None);
    }
    let f = fs::File::open(path)?;
    let (_, reader) = wharf_bus::layer::decompress(BufReader::new(f))?;
    let mut archive = tar::Archive::new(reader);
    let mut n = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().to_string();
        let name = clean_entry_name(&name);
        if name.is_empty() {
            continue;
        }
        let mut h = entry.header().clone();
        match h.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .map(|t| t.to_string_lossy().to_string())
                    .unwrap_or_default();
                let target = if h.entry_type() == tar::EntryType::Link {
                    clean_entry_name(&target)
                } else {
                    target
                };
                tar.append_link(&mut h, &name, target)?;
            }
            tar::EntryType::Directory => {
                tar.append_data(&mut h, format!("{name}/"), io::empty())?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            _ => {
                let mut data = Vec::new();
                let size = entry.read_to_end(&mut data)?;
                h.set_size(size as u64);
                tar.append_data(&mut h, &name, data.as_slice())?;
            }
        }
        n += 1;
    }
    Ok(Some(n))
}

/// An archive entry's name made relative: no leading `/` or `./`, no `..` climbing out.
fn clean_entry_name(name: &str) -> String {
    wharf_bus::paths::clean_relative(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_found_unless_escaped() {
        assert!(has_wildcards("*.txt"));
        assert!(has_wildcards("a/[bc]"));
        assert!(!has_wildcards("plain/name"));
        assert!(!has_wildcards("esc\\*aped"));
    }

    #[test]
    fn several_sources_hash_as_multi() {
        let a = Source {
            root: PathBuf::new(),
            rel: "a".into(),
            hash: "file:1".into(),
            no_decompress: false,
        };
        assert_eq!(sources_hash(std::slice::from_ref(&a)), "file:1");
        let m = sources_hash(&[a.clone(), a]);
        assert!(m.starts_with("multi:"));
    }

    #[test]
    fn archive_names_are_cleaned() {
        assert_eq!(clean_entry_name("./a/b"), "a/b");
        assert_eq!(clean_entry_name("/../../etc/x"), "etc/x");
        assert_eq!(clean_entry_name("."), "");
    }

    #[test]
    fn step_tar_holds_dir_contents_files_by_base_name_and_unpacked_archives() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("ctx");
        fs::create_dir_all(root.join("dir/sub")).unwrap();
        fs::write(root.join("dir/sub/f"), b"x").unwrap();
        fs::write(root.join("one.txt"), b"1").unwrap();
        // A tar to unpack with ADD.
        {
            let f = fs::File::create(root.join("a.tar")).unwrap();
            let mut b = tar::Builder::new(f);
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o640);
            h.set_uid(7);
            h.set_cksum();
            b.append_data(&mut h, "inner/x", &b"hi"[..]).unwrap();
            b.finish().unwrap();
        }
        let src = |rel: &str| Source {
            root: root.clone(),
            rel: rel.into(),
            hash: String::new(),
            no_decompress: false,
        };
        let out = t.path().join("step.tar");
        let st = write_step_tar(
            &[src("dir"), src("one.txt"), src("a.tar")],
            true,
            true,
            None,
            &out,
            false,
        )
        .unwrap();
        assert!(st.file_name.is_none());
        let mut names = Vec::new();
        let mut a = tar::Archive::new(fs::File::open(&out).unwrap());
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            names.push((
                e.path().unwrap().to_string_lossy().to_string(),
                e.header().uid().unwrap(),
            ));
        }
        assert_eq!(
            names,
            vec![
                ("sub/".to_string(), 0),
                ("sub/f".to_string(), 0),
                ("one.txt".to_string(), 0),
                ("inner/x".to_string(), 7),
            ]
        );
        let st = write_step_tar(&[src("one.txt")], false, false, Some(0o600), &out, false).unwrap();
        assert_eq!(st.file_name.as_deref(), Some("one.txt"));
    }
}

//! Hostile tar archives for the property tests of the extractors (layer unpacking, `docker cp`,
//! build contexts), and the check that an extraction wrote nothing outside its root.
//!
//! [`build`] writes headers byte by byte (GNU long names and link names, PAX records), so
//! entries may carry anything the tar crate's builder would refuse: `..`, leading `/`, NUL
//! bytes, names longer than 100 bytes, unknown type flags. [`Arena`] is a fresh temporary
//! directory holding the target root beside marker files, and [`Arena::check`] tells whether
//! anything outside the root changed.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Replaced, in names and link targets, by the absolute path of the arena's `outside` directory.
pub const OUTSIDE: &[u8] = b"@OUTSIDE@";

/// Names of the components the tests' strategies draw from: probes check that none of them
/// appeared at the host's `/` or in the temporary directory (an absolute symlink followed).
pub const PROBE_NAMES: &[&str] = &["a", "b", "c", "evil", "outside"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
    Fifo,
    /// Any other type flag byte (`'7'`, `'S'`, `'g'`, `'x'` with no records, `'Z'`...).
    Other(u8, Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    /// PAX records written in an `x` header before the entry (e.g. `path`, `linkpath`,
    /// `mtime`, `uid`, `size`, `SCHILY.xattr.*`), values as they are.
    pub pax: Vec<(String, Vec<u8>)>,
    /// Owner and mtime fields left all NULs (Go reads them as 0; the tar crate refuses them).
    pub blank_numbers: bool,
}

impl Entry {
    pub fn new(name: impl Into<Vec<u8>>, kind: Kind) -> Entry {
        Entry {
            name: name.into(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            pax: Vec::new(),
            blank_numbers: false,
        }
    }
}

fn substitute(raw: &[u8], outside: &Path) -> Vec<u8> {
    let with = outside.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(OUTSIDE) {
            out.extend_from_slice(with);
            i += OUTSIDE.len();
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let text = text.as_bytes();
    // Too large for the field: keep the low digits (a malformed number is fine here).
    let text = &text[text.len().saturating_sub(width)..];
    field[..text.len()].copy_from_slice(text);
    field[text.len()] = 0;
}

fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8], e: &Entry) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(e.mode));
    if !e.blank_numbers {
        octal(&mut h[108..116], u64::from(e.uid));
        octal(&mut h[116..124], u64::from(e.gid));
        octal(&mut h[136..148], e.mtime);
    }
    octal(&mut h[124..136], size);
    h[156] = typeflag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar ");
    h[263..265].copy_from_slice(b" \0");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    let (major, minor) = match e.kind {
        Kind::CharDevice(a, b) | Kind::BlockDevice(a, b) => (a, b),
        _ => (0, 0),
    };
    octal(&mut h[329..337], u64::from(major));
    octal(&mut h[337..345], u64::from(minor));
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(&text.as_bytes()[..8]);
    h
}

fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn long(out: &mut Vec<u8>, typeflag: u8, value: &[u8], e: &Entry) {
    let mut data = value.to_vec();
    data.push(0);
    let meta = Entry {
        kind: Kind::File(Vec::new()),
        ..e.clone()
    };
    out.extend_from_slice(&header(
        b"././@LongLink",
        typeflag,
        data.len() as u64,
        b"",
        &meta,
    ));
    push_data(out, &data);
}

fn pax_records(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        // "<len> <key>=<value>\n", where len counts itself.
        let body = 1 + key.len() + 1 + value.len() + 1;
        let mut len = body + 1;
        while len.to_string().len() + body != len {
            len = len.to_string().len() + body;
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// The archive of `entries`, with [`OUTSIDE`] replaced by `outside` in names, link targets
/// and PAX values, ended by two zero blocks.
pub fn build(entries: &[Entry], outside: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let name = substitute(&e.name, outside);
        let (typeflag, data, link): (u8, &[u8], Vec<u8>) = match &e.kind {
            Kind::File(d) => (b'0', d, Vec::new()),
            Kind::Dir => (b'5', &[], Vec::new()),
            Kind::Symlink(t) => (b'2', &[], substitute(t, outside)),
            Kind::HardLink(t) => (b'1', &[], substitute(t, outside)),
            Kind::CharDevice(..) => (b'3', &[], Vec::new()),
            Kind::BlockDevice(..) => (b'4', &[], Vec::new()),
            Kind::Fifo => (b'6', &[], Vec::new()),
            Kind::Other(flag, d) => (*flag, d, Vec::new()),
        };
        if !e.pax.is_empty() {
            let records: Vec<(String, Vec<u8>)> = e
                .pax
                .iter()
                .map(|(k, v)| (k.clone(), substitute(v, outside)))
                .collect();
            let body = pax_records(&records);
            let meta = Entry {
                kind: Kind::File(Vec::new()),
                ..e.clone()
            };
            out.extend_from_slice(&header(
                b"PaxHeaders/x",
                b'x',
                body.len() as u64,
                b"",
                &meta,
            ));
            push_data(&mut out, &body);
        }
        if name.len() > 100 {
            long(&mut out, b'L', &name, e);
        }
        if link.len() > 100 {
            long(&mut out, b'K', &link, e);
        }
        out.extend_from_slice(&header(&name, typeflag, data.len() as u64, &link, e));
        push_data(&mut out, data);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Reads choices from a list of numbers a property test generated; zeros once it runs out.
struct Picks<'a> {
    picks: &'a [u16],
    at: usize,
}

impl Picks<'_> {
    fn next(&mut self) -> u16 {
        let v = self.picks.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        v
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[usize::from(self.next()) % from.len()].clone()
    }

    fn done(&self) -> bool {
        self.at >= self.picks.len()
    }
}

/// Name components, simplest first (shrinking moves towards the start).
const COMPONENTS: &[&[u8]] = &[
    b"a",
    b"b",
    b"..",
    b"c",
    b".",
    b"",
    b"evil",
    b".wh.a",
    b".wh..wh..opq",
    b".wh.",
    b".wh..",
    b"outside",
    b"@OUTSIDE@",
    b"a\0b",
    b"\xff\xfe",
    b"..a",
    b" ",
];

/// Link targets besides the names themselves.
const TARGETS: &[&[u8]] = &[
    b"@OUTSIDE@",
    b"../outside",
    b"/",
    b"..",
    b"../..",
    b"../../outside",
    b"../outside/marker",
    b"../../outside/marker",
    b"@OUTSIDE@/marker",
    b"@OUTSIDE@/dir",
    b"@OUTSIDE@/back",
    b".",
    b"",
    b"a",
    b"/a",
    b"../../../../../../..",
];

const MODES: &[u32] = &[
    0o755,
    0o644,
    0o000,
    0o4755,
    0o2755,
    0o1777,
    0o7777,
    0o600,
    0o111,
    0o7_777_777,
];

fn pick_name(p: &mut Picks<'_>) -> Vec<u8> {
    let shape = p.next();
    let mut name = Vec::new();
    if shape % 4 == 1 {
        name.push(b'/');
    }
    if shape % 8 == 2 {
        name.extend_from_slice(b"./");
    }
    let parts = 1 + usize::from(p.next() % 3);
    for i in 0..parts {
        if i > 0 {
            name.push(b'/');
        }
        let n = usize::from(p.next() % 64);
        match n {
            // Mostly plain names, so that entries meet each other.
            0..=29 => name.extend_from_slice(COMPONENTS[[0, 1, 3][n % 3]]),
            // A long component, and a name long enough for a GNU long-name header.
            62 => name.extend(std::iter::repeat_n(b'x', 130)),
            63 => name.extend(std::iter::repeat_n(b'y', 300)),
            n => name.extend_from_slice(COMPONENTS[n % COMPONENTS.len()]),
        }
    }
    if shape % 16 == 3 {
        name.push(b'/');
    }
    if shape % 32 == 7 {
        name.extend_from_slice(b"/.");
    }
    name
}

fn pick_target(p: &mut Picks<'_>) -> Vec<u8> {
    match p.next() % 6 {
        0 => b"@OUTSIDE@".to_vec(),
        1 => pick_name(p),
        _ => p.pick(TARGETS).to_vec(),
    }
}

fn pick_pax(p: &mut Picks<'_>) -> Vec<(String, Vec<u8>)> {
    let mut records = Vec::new();
    for _ in 0..p.next() % 3 {
        let record = match p.next() % 12 {
            0 => ("path".to_string(), pick_name(p)),
            1 => ("linkpath".to_string(), pick_target(p)),
            2 => ("mtime".to_string(), b"-1.5".to_vec()),
            3 => ("mtime".to_string(), b"99999999999999999999.1".to_vec()),
            4 => ("uid".to_string(), b"4294967296".to_vec()),
            5 => ("gid".to_string(), b"-1".to_vec()),
            6 => ("size".to_string(), b"3".to_vec()),
            7 => ("SCHILY.xattr.user.fuzz".to_string(), b"v".to_vec()),
            8 => (
                "SCHILY.xattr.trusted.overlay.opaque".to_string(),
                b"y".to_vec(),
            ),
            9 => ("SCHILY.xattr.security.capability".to_string(), vec![1; 20]),
            10 => ("atime".to_string(), b"x".to_vec()),
            _ => ("comment".to_string(), vec![0, 255, b'\n']),
        };
        records.push(record);
    }
    records
}

/// A sequence of hostile entries decoded from `picks` (numbers a property test generated; each
/// entry takes several): regular files, directories, symlinks with absolute, relative and
/// `..` targets, hard links, devices, fifos, whiteouts, unknown types, names with `..`, a
/// leading `/`, NUL bytes and long names, repeated names, PAX records. Small numbers give
/// simple entries, so a shrunk failure reads easily.
pub fn entries(picks: &[u16]) -> Vec<Entry> {
    let mut p = Picks { picks, at: 0 };
    let mut out = Vec::new();
    while !p.done() && out.len() < 24 {
        let kind_pick = p.next() % 24;
        let mut name = pick_name(&mut p);
        // Often an entry goes below an earlier one: a file through a symlink, into a
        // directory that a later entry replaces, a repeated name.
        if !out.is_empty() && p.next() % 2 == 1 {
            // The latest entry first (small numbers).
            let earlier: &Entry = &out[out.len() - 1 - usize::from(p.next()) % out.len()];
            let mut below = earlier.name.clone();
            if !p.next().is_multiple_of(3) {
                below.push(b'/');
                below.extend_from_slice(&name);
            }
            name = below;
        }
        let kind = match kind_pick {
            0..=5 => {
                let len = usize::from(p.next() % 4) * 7;
                Kind::File(name.iter().cycle().take(len).copied().collect())
            }
            6..=9 => Kind::Dir,
            10..=14 => Kind::Symlink(pick_target(&mut p)),
            15..=17 => Kind::HardLink(pick_target(&mut p)),
            18 => Kind::CharDevice(u32::from(p.next() % 3), u32::from(p.next() % 4)),
            19 => Kind::BlockDevice(7, u32::from(p.next() % 2)),
            20 => Kind::Fifo,
            _ => Kind::Other(p.pick(b"7SgZ\0xVM"), b"data".to_vec()),
        };
        let mut e = Entry::new(name, kind);
        let extras = p.next();
        if extras % 3 == 1 {
            e.mode = p.pick(MODES);
        }
        if extras % 5 == 1 {
            e.uid = p.pick(&[1000, 65534, 2_097_151]);
            e.gid = e.uid;
        }
        if extras % 7 == 1 {
            e.mtime = p.pick(&[0, 8_589_934_591, 1]);
        }
        if extras % 11 == 1 {
            e.pax = pick_pax(&mut p);
        }
        if extras % 13 == 1 {
            e.blank_numbers = true;
        }
        out.push(e);
    }
    out
}

/// What one path outside the root looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    mode: u32,
    uid: u32,
    gid: u32,
    ino: u64,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    /// sha256 of a regular file's content, or a symlink's target.
    content: Vec<u8>,
}

fn seen(path: &Path) -> std::io::Result<Seen> {
    let m = std::fs::symlink_metadata(path)?;
    let content = if m.file_type().is_file() {
        Sha256::digest(std::fs::read(path)?).to_vec()
    } else if m.file_type().is_symlink() {
        std::fs::read_link(path)?.as_os_str().as_bytes().to_vec()
    } else {
        Vec::new()
    };
    Ok(Seen {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        ino: m.ino(),
        nlink: m.nlink(),
        size: if m.is_dir() { 0 } else { m.size() },
        mtime: (m.mtime(), m.mtime_nsec()),
        content,
    })
}

static ARENAS: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary directory: `root/` (the extraction target, empty), `outside/` with a
/// marker file, a directory holding another marker, and a symlink back to the root, and a
/// marker file `sibling` beside the root. Removed when dropped.
pub struct Arena {
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    before: BTreeMap<PathBuf, Seen>,
    root_ino: u64,
    probes: Vec<(PathBuf, bool)>,
    /// `/` and the temporary directory: mode and owner.
    host_dirs: Vec<(PathBuf, (u32, u32, u32))>,
}

impl Arena {
    pub fn new() -> Arena {
        let n = ARENAS.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let base =
            std::env::temp_dir().join(format!("wharf-fuzz-{}-{n}-{nanos}", std::process::id()));
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).expect("arena root");
        std::fs::create_dir_all(outside.join("dir")).expect("arena outside");
        std::fs::write(outside.join("marker"), b"outside marker\n").expect("marker");
        std::fs::write(outside.join("dir/marker"), b"inner marker\n").expect("marker");
        std::fs::set_permissions(
            outside.join("marker"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("marker mode");
        std::os::unix::fs::symlink("../root", outside.join("back")).expect("back link");
        std::fs::write(base.join("sibling"), b"sibling marker\n").expect("sibling");
        let root_ino = std::fs::metadata(&root).expect("root").ino();
        let mut probes = Vec::new();
        let mut host_dirs = Vec::new();
        for dir in [Path::new("/"), std::env::temp_dir().as_path()] {
            host_dirs.push((dir.to_path_buf(), owner_and_mode(dir)));
            for name in PROBE_NAMES {
                let p = dir.join(name);
                let exists = std::fs::symlink_metadata(&p).is_ok();
                probes.push((p, exists));
            }
        }
        let mut arena = Arena {
            base,
            root,
            outside,
            before: BTreeMap::new(),
            root_ino,
            probes,
            host_dirs,
        };
        arena.before = arena.scan().expect("scanning a fresh arena");
        arena
    }

    /// The extraction target (an empty directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory [`OUTSIDE`] names.
    pub fn outside(&self) -> &Path {
        &self.outside
    }

    /// Every path of the arena but those under the root, never following a symlink.
    fn scan(&self) -> std::io::Result<BTreeMap<PathBuf, Seen>> {
        let mut out = BTreeMap::new();
        let mut pending = vec![self.base.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path == self.root {
                    continue;
                }
                let s = seen(&path)?;
                if std::fs::symlink_metadata(&path)?.is_dir() {
                    pending.push(path.clone());
                }
                out.insert(path, s);
            }
        }
        Ok(out)
    }

    /// Whether everything outside the root is as it was: the same paths with the same type,
    /// mode, owner, inode, link count, size, mtime and content; the root still the same
    /// directory; and no probe name new at `/` or in the temporary directory.
    pub fn check(&self) -> Result<(), String> {
        let root =
            std::fs::symlink_metadata(&self.root).map_err(|e| format!("the root is gone: {e}"))?;
        if !root.is_dir() || root.ino() != self.root_ino {
            return Err("the root was replaced".into());
        }
        let after = self
            .scan()
            .map_err(|e| format!("scanning the arena: {e}"))?;
        for (path, was) in &self.before {
            match after.get(path) {
                None => return Err(format!("{} was removed", path.display())),
                Some(now) if now != was => {
                    return Err(format!("{} changed: {was:?} -> {now:?}", path.display()))
                }
                Some(_) => {}
            }
        }
        if let Some(new) = after.keys().find(|p| !self.before.contains_key(*p)) {
            return Err(format!("{} appeared outside the root", new.display()));
        }
        for (probe, existed) in &self.probes {
            if !existed && std::fs::symlink_metadata(probe).is_ok() {
                return Err(format!("{} appeared on the host", probe.display()));
            }
        }
        for (dir, was) in &self.host_dirs {
            let now = owner_and_mode(dir);
            if now != *was {
                return Err(format!("{} changed: {was:?} -> {now:?}", dir.display()));
            }
        }
        Ok(())
    }
}

fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    std::fs::symlink_metadata(path)
        .map(|m| (m.mode(), m.uid(), m.gid()))
        .unwrap_or_default()
}

impl Default for Arena {
    fn default() -> Self {
        Arena::new()
    }
}

/// Makes every directory under `path` writable and searchable (an extraction may leave mode
/// 0 directories), not following symlinks.
fn open_up(path: &Path) {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            open_up(&e.path());
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.base).is_err() {
            open_up(&self.base);
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arena_sees_writes_outside_the_root_and_ignores_the_root() {
        let arena = Arena::new();
        assert_eq!(arena.check(), Ok(()));
        std::fs::write(arena.root().join("inside"), b"x").unwrap();
        std::fs::create_dir(arena.root().join("d")).unwrap();
        assert_eq!(arena.check(), Ok(()));
        std::fs::write(arena.outside().join("marker"), b"changed!!!!!!!\n").unwrap();
        assert!(arena.check().is_err());
        let arena = Arena::new();
        std::fs::hard_link(arena.outside().join("marker"), arena.root().join("l")).unwrap();
        assert!(arena.check().unwrap_err().contains("changed"));
        let arena = Arena::new();
        std::fs::write(arena.outside().join("new"), b"x").unwrap();
        assert!(arena.check().is_err());
    }

    #[test]
    fn built_archives_read_back_with_long_names_links_and_pax() {
        let long = "d/".repeat(80) + "file";
        let mut pax = Entry::new("p", Kind::File(b"pax".to_vec()));
        pax.pax = vec![("path".into(), b"from-pax".to_vec())];
        let entries = vec![
            Entry::new("../up", Kind::File(b"hi".to_vec())),
            Entry::new(long.clone(), Kind::Dir),
            Entry::new("l", Kind::Symlink(b"@OUTSIDE@/marker".to_vec())),
            Entry::new("h", Kind::HardLink("x".repeat(150).into())),
            pax,
        ];
        let data = build(&entries, Path::new("/out"));
        let mut archive = tar::Archive::new(&data[..]);
        let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path_bytes().into_owned(),
                    e.link_name_bytes().map(|l| l.into_owned()),
                )
            })
            .collect();
        assert_eq!(got[0].0, b"../up");
        assert_eq!(got[1].0, long.as_bytes());
        assert_eq!(got[2].1.as_deref(), Some(&b"/out/marker"[..]));
        assert_eq!(got[3].1.as_deref(), Some("x".repeat(150).as_bytes()));
        assert_eq!(got[4].0, b"from-pax");
    }

    /// An extractor that joins names to the root and follows symlinks, as a naive one would.
    fn naive_extract(data: &[u8], root: &Path) {
        let mut archive = tar::Archive::new(data);
        for entry in archive.entries().unwrap() {
            let Ok(mut entry) = entry else { return };
            let name = entry.path_bytes().into_owned();
            let name = name.strip_prefix(b"/").unwrap_or(&name);
            let path = root.join(std::ffi::OsStr::from_bytes(name));
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = match entry.header().entry_type() {
                tar::EntryType::Directory => std::fs::create_dir_all(&path),
                tar::EntryType::Symlink => match entry.link_name_bytes() {
                    Some(t) => std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&t), &path),
                    None => Ok(()),
                },
                _ => {
                    let mut data = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut entry, &mut data);
                    std::fs::write(&path, data)
                }
            };
        }
    }

    /// The generator is worth its cases: a naive extractor is caught writing outside.
    #[test]
    fn the_entries_find_the_escapes_of_a_naive_extractor() {
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 2048,
            max_shrink_iters: 0,
            failure_persistence: None,
            ..Config::default()
        });
        let found = runner.run(
            &proptest::collection::vec(proptest::prelude::any::<u16>(), 0..96),
            |picks| {
                let entries = entries(&picks);
                let arena = Arena::new();
                // Only escapes that stay in the arena: no absolute target but the outside one.
                let climbs = |s: &[u8]| s.starts_with(b"/") || s.windows(2).any(|w| w == b"..");
                let climbs_name = |s: &[u8]| s.windows(2).any(|w| w == b"..");
                if entries.iter().any(|e| {
                    climbs_name(&e.name) || matches!(&e.kind, Kind::Symlink(t) if climbs(t))
                }) {
                    return Ok(());
                }
                naive_extract(&build(&entries, arena.outside()), arena.root());
                proptest::prop_assert_eq!(arena.check(), Ok(()));
                Ok(())
            },
        );
        assert!(found.is_err(), "no escape found");
    }
}

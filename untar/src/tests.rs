//! The core with plain hooks (the tar crate's reading, every PAX record kept, owners as the
//! archive says): what each option does, and the property that no combination of options and
//! confinement writes outside the root.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::fcntl;
use nix::sys::stat::Mode;

use crate::root::DIR_FLAGS;
use crate::*;

/// Hooks reading headers as the runtime does, recording what went by.
#[derive(Default)]
struct Plain {
    data: Vec<u8>,
    done: Vec<String>,
}

impl Hooks for Plain {
    type Error = Error;

    fn read<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<Option<Item>, Error> {
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            return Ok(None);
        }
        let (uid, gid, mode) = header::ids_and_mode(entry.header()).map_err(Error::Archive)?;
        let pax = header::pax(entry).map_err(Error::Archive)?;
        let kind = header::kind(entry).unwrap_or(Kind::Other(0));
        Ok(Some(Item {
            name: entry.path_bytes().into_owned(),
            kind,
            owner: Some((uid as u32, gid as u32)),
            mode: mode & 0o7777,
            mtime: pax.mtime.unwrap_or_else(|| header::mtime(entry.header())),
            xattrs: pax.xattrs,
        }))
    }

    fn data(&mut self, chunk: &[u8]) {
        self.data.extend_from_slice(chunk);
    }

    fn done(&mut self, path: &EntryPath, _item: &Item) -> Result<(), Error> {
        self.done.push(path.to_slash_string());
        Ok(())
    }

    fn error(&self, error: Error) -> Error {
        error
    }
}

fn tar(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_500_000_000);
    h.set_size(size);
    h
}

fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    b.append_data(&mut h, name, data).unwrap();
}

fn dir(b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32) {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, name, &[][..]).unwrap();
}

fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
    let mut h = header(kind, 0o777, 0);
    b.append_link(&mut h, name, target).unwrap();
}

fn run(data: &[u8], root: &Root, options: &Options) -> Result<Plain, Error> {
    let mut hooks = Plain::default();
    extract(data, root, options, &mut hooks)?;
    Ok(hooks)
}

fn in_root(path: &Path) -> Root {
    Root::in_root(fcntl::open(path, DIR_FLAGS, Mode::empty()).unwrap())
}

#[test]
fn entries_are_made_with_their_attributes_and_directory_times_last() {
    let t = tempfile::tempdir().unwrap();
    let data = tar(|b| {
        dir(b, "d/", 0o750);
        file(b, "d/f", b"hello");
        link(b, tar::EntryType::Symlink, "d/s", "f");
        link(b, tar::EntryType::Link, "h", "d/f");
        file(b, "./", b"root data");
    });
    let hooks = run(
        &data,
        &Root::beneath(t.path()).unwrap(),
        &Options::new(Names::NoDotDot),
    )
    .unwrap();
    let meta = |p: &str| std::fs::symlink_metadata(t.path().join(p)).unwrap();
    assert_eq!(meta("d").mode() & 0o7777, 0o750);
    assert_eq!(meta("d").mtime(), 1_500_000_000);
    assert_eq!(std::fs::read(t.path().join("d/f")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read_link(t.path().join("d/s")).unwrap(),
        Path::new("f")
    );
    assert_eq!(meta("h").ino(), meta("d/f").ino());
    assert_eq!(hooks.data, b"helloroot data");
    assert_eq!(hooks.done, ["d", "d/f", "d/s", "h", "."]);
}

#[test]
fn beneath_a_symlinked_parent_refuses_and_in_root_it_resolves_inside() {
    let data = tar(|b| {
        link(b, tar::EntryType::Symlink, "up", "/");
        file(b, "up/x", b"x");
    });
    let t = tempfile::tempdir().unwrap();
    let err = run(
        &data,
        &Root::beneath(t.path()).unwrap(),
        &Options::new(Names::Clamped),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, Error::Entry { problem: Problem::Parent(w), .. }
            if w.blocked == Blocked::Symlink && w.at == 0),
        "{err:?}"
    );
    let t = tempfile::tempdir().unwrap();
    run(&data, &in_root(t.path()), &Options::new(Names::NoEscape)).unwrap();
    assert_eq!(std::fs::read(t.path().join("x")).unwrap(), b"x");
}

#[test]
fn names_are_cleaned_as_each_option_says() {
    let data = tar(|b| {
        let mut h = header(tar::EntryType::Regular, 0o644, 1);
        h.as_old_mut().name[..6].copy_from_slice(b"../top");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
    });
    let t = tempfile::tempdir().unwrap();
    let root = Root::beneath(t.path()).unwrap();
    let refused = |options: &Options| match run(&data, &root, options).err() {
        Some(Error::Entry {
            problem: Problem::Name(e),
            ..
        }) => Some(e),
        _ => None,
    };
    assert_eq!(
        refused(&Options::new(Names::NoDotDot)),
        Some(NameError::DotDot)
    );
    assert_eq!(
        refused(&Options::new(Names::NoEscape)),
        Some(NameError::Outside)
    );
    assert_eq!(refused(&Options::new(Names::Clamped)), None);
    assert!(t.path().join("top").is_file());
    let mut renamed = Options::new(Names::Clamped);
    renamed.rename = Some(OsString::from("new"));
    assert_eq!(refused(&renamed), None);
    assert!(t.path().join("new").is_file());
    renamed.strict = true;
    assert_eq!(refused(&renamed), Some(NameError::Outside));
}

#[test]
fn hard_links_stay_inside_and_never_name_a_directory() {
    let t = tempfile::tempdir().unwrap();
    let root = Root::beneath(t.path()).unwrap();
    let options = Options::new(Names::NoDotDot);
    for (target, want) in [
        ("missing", "Missing"),
        ("d", "Directory"),
        ("./", "Root"),
        ("../etc/passwd", "Name(DotDot)"),
    ] {
        let data = tar(|b| {
            dir(b, "d/", 0o755);
            link(b, tar::EntryType::Link, "l", target);
        });
        match run(&data, &root, &options).err() {
            Some(Error::Entry {
                problem: Problem::Link { problem, .. },
                ..
            }) => assert_eq!(format!("{problem:?}"), want, "{target}"),
            other => panic!("{target}: {other:?}"),
        }
    }
    // A name linked to what it already is stays.
    let data = tar(|b| {
        file(b, "f", b"x");
        link(b, tar::EntryType::Link, "f", "f");
    });
    run(&data, &root, &options).unwrap();
    assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"x");
}

#[test]
fn directories_and_non_directories_replace_each_other_unless_forbidden() {
    let data = tar(|b| {
        dir(b, "x/", 0o755);
        file(b, "x/inner", b"i");
        file(b, "x", b"file now");
    });
    let t = tempfile::tempdir().unwrap();
    run(&data, &in_root(t.path()), &Options::new(Names::NoEscape)).unwrap();
    assert_eq!(std::fs::read(t.path().join("x")).unwrap(), b"file now");
    let t = tempfile::tempdir().unwrap();
    let mut options = Options::new(Names::NoEscape);
    options.no_overwrite_dir_non_dir = true;
    let err = run(&data, &in_root(t.path()), &options).err().unwrap();
    assert!(
        matches!(
            err,
            Error::Entry {
                problem: Problem::Overwrite { existing_dir: true },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn with_modes_last_read_only_directories_still_receive_their_contents() {
    let data = tar(|b| {
        dir(b, "ro/", 0o555);
        file(b, "ro/deep/f", b"inside");
    });
    let t = tempfile::tempdir().unwrap();
    let mut options = Options::new(Names::Clamped);
    options.dir_modes_last = true;
    run(&data, &Root::beneath(t.path()).unwrap(), &options).unwrap();
    let mode = |p: &str| std::fs::metadata(t.path().join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(mode("ro/deep"), 0o755);
    assert_eq!(
        std::fs::read(t.path().join("ro/deep/f")).unwrap(),
        b"inside"
    );
    std::fs::set_permissions(t.path().join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use wharf_bus::testkit::{hostile_tar, proptest_cases};

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: proptest_cases(128),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any sequence of tar entries, with any names, confinement and options, is extracted
        /// or refused, and nothing outside the root is written, linked, chmodded or removed.
        #[test]
        fn no_option_writes_outside_the_root(
            picks in prop::collection::vec(any::<u16>(), 0..96),
            options in 0u8..64,
        ) {
            let entries = hostile_tar::entries(&picks);
            let arena = hostile_tar::Arena::new();
            let tar = hostile_tar::build(&entries, arena.outside());
            let root = if options & 1 == 1 {
                in_root(arena.root())
            } else {
                Root::beneath(arena.root()).unwrap()
            };
            let mut o = Options::new(
                [Names::NoDotDot, Names::NoEscape, Names::Clamped, Names::Clamped]
                    [usize::from(options >> 1 & 3)],
            );
            o.strict = options & 8 == 8;
            o.no_overwrite_dir_non_dir = options & 16 == 16;
            o.dir_modes_last = options & 32 == 32;
            let result = run(&tar, &root, &o).map(drop);
            prop_assert_eq!(
                arena.check(),
                Ok(()),
                "entries {:#?} gave {:?}",
                entries,
                result
            );
        }
    }
}

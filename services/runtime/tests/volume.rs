//! The local volume driver against the real file system (we run as root): dockerd's names,
//! texts and prune rules, records that survive a restart, and copy-up that keeps every
//! attribute while never following a link out of the image or the volume.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use wharf_runtime::volume::{VolumeError, VolumeFilters, VolumeStore, ANONYMOUS_LABEL};

/// A store in a temporary directory (removed when the fixture drops).
struct Fixture {
    dir: tempfile::TempDir,
    store: VolumeStore,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path().join("runtime/volumes")).unwrap();
        Fixture { dir, store }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("runtime/volumes")
    }

    fn reopen(&self) -> VolumeStore {
        VolumeStore::open(self.root()).unwrap()
    }

    fn named(&self, name: &str) -> PathBuf {
        self.store
            .create(Some(name), BTreeMap::new(), BTreeMap::new())
            .unwrap()
            .mountpoint
    }

    fn anonymous(&self) -> String {
        self.store
            .create(None, BTreeMap::new(), BTreeMap::new())
            .unwrap()
            .name
    }

    fn names(&self, filters: &[(&str, &str)]) -> Vec<String> {
        let filters = VolumeFilters::for_list(filters.iter().copied()).unwrap();
        self.store
            .list(&filters)
            .into_iter()
            .map(|v| v.name)
            .collect()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn prune(pairs: &[(&str, &str)]) -> VolumeFilters {
    VolumeFilters::for_prune(pairs.iter().copied()).unwrap()
}

#[test]
fn creates_inspects_lists_and_removes_a_named_volume() {
    let fx = Fixture::new();
    let v = fx
        .store
        .create(
            Some("data"),
            map(&[("app", "web")]),
            map(&[("type", "tmpfs")]),
        )
        .unwrap();
    assert_eq!(v.name, "data");
    assert_eq!(v.driver, "local");
    assert_eq!(v.scope, "local");
    assert_eq!(v.labels, map(&[("app", "web")]));
    assert_eq!(v.options, map(&[("type", "tmpfs")]));
    assert_eq!(v.mountpoint, fx.root().join("data/_data"));
    assert!(v.mountpoint.is_dir());
    assert!(chrono::DateTime::parse_from_rfc3339(&v.created_at).is_ok());
    assert!(v.is_dangling() && !v.is_anonymous());

    assert_eq!(fx.store.get("data").unwrap(), v);
    assert_eq!(fx.names(&[]), ["data"]);

    fx.store.remove("data", false).unwrap();
    assert!(!fx.root().join("data").exists());
    assert!(fx.names(&[]).is_empty());
    let err = fx.store.get("data").unwrap_err();
    assert!(matches!(err, VolumeError::NotFound(_)), "{err}");
    assert!(matches!(
        fx.store.remove("data", false),
        Err(VolumeError::NotFound(_))
    ));
    // As `docker volume rm -f`: a missing volume is no error.
    fx.store.remove("data", true).unwrap();
}

#[test]
fn refuses_names_and_options_dockerd_refuses_with_its_texts() {
    let fx = Fixture::new();
    let create = |name| {
        fx.store
            .create(Some(name), BTreeMap::new(), BTreeMap::new())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        create("a"),
        "volume name is too short, names should be at least two alphanumeric characters"
    );
    for name in ["/host/dir", "-ab", "a b", "a/b", "../x"] {
        assert_eq!(
            create(name),
            format!("\"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")
        );
    }
    let err = fx
        .store
        .create(Some("ok"), BTreeMap::new(), map(&[("bogus", "1")]))
        .unwrap_err();
    assert!(matches!(err, VolumeError::InvalidParameter(_)), "{err}");
    assert!(fx.names(&[]).is_empty());
    assert_eq!(std::fs::read_dir(fx.root()).unwrap().count(), 0);
}

#[test]
fn anonymous_volumes_get_64_hex_names_and_the_anonymous_label() {
    let fx = Fixture::new();
    let a = fx.anonymous();
    let b = fx
        .store
        .create(Some(""), BTreeMap::new(), BTreeMap::new())
        .unwrap();
    for name in [&a, &b.name] {
        assert_eq!(name.len(), 64);
        assert!(name.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
    }
    assert_ne!(a, b.name);
    assert!(b.is_anonymous());
    assert_eq!(b.labels.get(ANONYMOUS_LABEL).map(String::as_str), Some(""));
}

#[test]
fn creating_an_existing_name_returns_it_unless_options_differ() {
    let fx = Fixture::new();
    let first = fx
        .store
        .create(Some("db"), map(&[("v", "1")]), map(&[("o", "size=1m")]))
        .unwrap();
    std::fs::write(first.mountpoint.join("keep"), b"x").unwrap();
    // Same options, none at all, or other labels: the existing volume, untouched.
    for (labels, options) in [
        (map(&[("v", "1")]), map(&[("o", "size=1m")])),
        (BTreeMap::new(), BTreeMap::new()),
        (map(&[("v", "2")]), BTreeMap::new()),
    ] {
        assert_eq!(fx.store.create(Some("db"), labels, options).unwrap(), first);
    }
    assert!(first.mountpoint.join("keep").exists());
    let err = fx
        .store
        .create(Some("db"), BTreeMap::new(), map(&[("o", "size=2m")]))
        .unwrap_err();
    assert!(matches!(err, VolumeError::Conflict(_)), "{err}");
    assert_eq!(fx.names(&[]), ["db"]);
}

#[test]
fn records_and_references_survive_reopening_the_store() {
    let fx = Fixture::new();
    let named = fx
        .store
        .create(
            Some("web"),
            map(&[("tier", "front")]),
            map(&[("type", "none")]),
        )
        .unwrap();
    let anon = fx.anonymous();
    fx.store.acquire("web", "c1").unwrap();
    // A temporary record left by a crash, and a directory without a record, are ignored.
    let torn = fx.root().join("web/.volume.json.4242.0.tmp");
    std::fs::write(&torn, b"{half").unwrap();
    std::fs::create_dir_all(fx.root().join("stray/_data")).unwrap();

    let reopened = fx.reopen();
    let web = reopened.get("web").unwrap();
    assert_eq!(web.labels, named.labels);
    assert_eq!(web.options, named.options);
    assert_eq!(web.created_at, named.created_at);
    assert_eq!(web.mountpoint, named.mountpoint);
    assert_eq!(web.references.iter().collect::<Vec<_>>(), ["c1"]);
    assert!(reopened.get(&anon).unwrap().is_anonymous());
    assert!(reopened.get("stray").is_err());
    assert!(!torn.exists());
    let mut names: Vec<_> = reopened
        .list(&VolumeFilters::default())
        .into_iter()
        .map(|v| v.name)
        .collect();
    names.sort();
    let mut expected = vec![anon, "web".to_string()];
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn removing_a_volume_in_use_is_refused_with_dockerds_text_even_with_force() {
    let fx = Fixture::new();
    let data = fx.named("shared");
    fx.store.acquire("shared", "c2").unwrap();
    fx.store.acquire("shared", "c1").unwrap();
    fx.store.acquire("shared", "c1").unwrap();
    for force in [false, true] {
        let err = fx.store.remove("shared", force).unwrap_err();
        assert_eq!(
            err.to_string(),
            "remove shared: volume is in use - [c1, c2]"
        );
        assert!(matches!(err, VolumeError::InUse { .. }));
    }
    assert!(data.is_dir());
    // References are persisted: a restarted store refuses too.
    assert!(fx.reopen().remove("shared", true).is_err());

    fx.store.release("shared", "c1").unwrap();
    assert_eq!(
        fx.store.remove("shared", false).unwrap_err().to_string(),
        "remove shared: volume is in use - [c2]"
    );
    fx.store.release("shared", "c2").unwrap();
    fx.store.release("shared", "c2").unwrap();
    fx.store.remove("shared", false).unwrap();
    assert!(!data.exists());
    assert!(matches!(
        fx.store.acquire("shared", "c1"),
        Err(VolumeError::NotFound(_))
    ));
}

#[test]
fn list_filters_by_dangling_name_label_and_driver() {
    let fx = Fixture::new();
    fx.store
        .create(
            Some("app-data"),
            map(&[("env", "prod"), ("team", "a")]),
            BTreeMap::new(),
        )
        .unwrap();
    fx.store
        .create(Some("app-cache"), map(&[("env", "dev")]), BTreeMap::new())
        .unwrap();
    fx.store
        .create(Some("other"), BTreeMap::new(), BTreeMap::new())
        .unwrap();
    fx.store.acquire("app-cache", "c1").unwrap();

    assert_eq!(fx.names(&[("dangling", "true")]), ["app-data", "other"]);
    assert_eq!(fx.names(&[("dangling", "false")]), ["app-cache"]);
    assert_eq!(fx.names(&[("name", "app")]), ["app-cache", "app-data"]);
    assert_eq!(fx.names(&[("label", "env")]), ["app-cache", "app-data"]);
    assert_eq!(fx.names(&[("label", "env=prod")]), ["app-data"]);
    assert_eq!(
        fx.names(&[("label", "env"), ("label", "team=a")]),
        ["app-data"]
    );
    assert_eq!(
        fx.names(&[("name", "app"), ("dangling", "true")]),
        ["app-data"]
    );
    assert_eq!(fx.names(&[("driver", "local")]).len(), 3);
    assert!(fx.names(&[("driver", "nfs")]).is_empty());

    let err = VolumeFilters::for_list([("colour", "red")]).unwrap_err();
    assert_eq!(err.to_string(), "invalid filter 'colour'");
    let err = VolumeFilters::for_list([("dangling", "maybe")]).unwrap_err();
    assert_eq!(err.to_string(), "invalid filter 'dangling=maybe'");
}

#[test]
fn prune_removes_unused_anonymous_volumes_unless_all_and_reports_reclaimed_bytes() {
    let fx = Fixture::new();
    let unused_anon = fx.anonymous();
    let used_anon = fx.anonymous();
    fx.store.acquire(&used_anon, "c1").unwrap();
    let named = fx.named("keepme");
    let used_named = fx.named("busy");
    fx.store.acquire("busy", "c1").unwrap();
    let anon_data = fx.store.get(&unused_anon).unwrap().mountpoint;
    std::fs::write(anon_data.join("a"), vec![0u8; 1000]).unwrap();
    std::fs::create_dir(anon_data.join("d")).unwrap();
    std::fs::write(anon_data.join("d/b"), vec![0u8; 234]).unwrap();
    std::fs::write(named.join("n"), vec![0u8; 4096]).unwrap();
    std::fs::write(used_named.join("n"), vec![0u8; 10]).unwrap();

    let report = fx.store.prune(&prune(&[])).unwrap();
    assert_eq!(report.volumes_deleted, [unused_anon]);
    assert_eq!(report.space_reclaimed, 1234);
    assert!(!anon_data.exists());

    // A label filter narrows what `all=true` removes.
    let report = fx
        .store
        .prune(&prune(&[("all", "true"), ("label", "x")]))
        .unwrap();
    assert!(report.volumes_deleted.is_empty());

    let report = fx.store.prune(&prune(&[("all", "true")])).unwrap();
    assert_eq!(report.volumes_deleted, ["keepme"]);
    assert_eq!(report.space_reclaimed, 4096);
    let mut left = fx.names(&[]);
    left.sort();
    let mut expected = vec!["busy".to_string(), used_anon];
    expected.sort();
    assert_eq!(left, expected);
    assert!(VolumeFilters::for_prune([("dangling", "true")]).is_err());
}

#[test]
fn size_counts_hard_linked_files_once_and_symlinks_by_their_own_size() {
    let fx = Fixture::new();
    let data = fx.named("sized");
    std::fs::write(data.join("f"), vec![1u8; 500]).unwrap();
    std::fs::hard_link(data.join("f"), data.join("g")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("l")).unwrap();
    assert_eq!(
        fx.store.size("sized").unwrap(),
        500 + "/etc/passwd".len() as u64
    );
}

/// Sets an xattr with `setxattr(2)` (no follow needed: regular files only).
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: both names are NUL-terminated; `value` is read for its own length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name}: {}",
        std::io::Error::last_os_error()
    );
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: both names are NUL-terminated; at most `buf.len()` bytes are written to `buf`.
    let rc = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (rc >= 0).then(|| {
        buf.truncate(rc as usize);
        buf
    })
}

fn set_mtime_nofollow(path: &Path, secs: i64) {
    let t = TimeSpec::new(secs, 123_000_000);
    utimensat(
        std::fs::File::open(path.parent().unwrap()).unwrap(),
        path.file_name().unwrap(),
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn chown_nofollow(path: &Path, id: u32) {
    std::os::unix::fs::lchown(path, Some(id), Some(id)).unwrap();
}

/// An image directory as a container's rootfs would show it at the mount point.
fn image_tree() -> tempfile::TempDir {
    let image = tempfile::tempdir().unwrap();
    let root = image.path();
    std::fs::create_dir(root.join("conf")).unwrap();
    std::fs::write(root.join("conf/app.ini"), b"port=80\n").unwrap();
    std::fs::write(root.join("suid-tool"), b"#!/bin/sh\n").unwrap();
    chown_nofollow(&root.join("suid-tool"), 1234);
    // After chown, which clears set-id bits.
    std::fs::set_permissions(root.join("suid-tool"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::hard_link(root.join("conf/app.ini"), root.join("app-link.ini")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
    chown_nofollow(&root.join("passwd"), 1234);
    set_xattr(&root.join("conf/app.ini"), "user.origin", b"image");
    chown_nofollow(&root.join("conf"), 1234);
    std::fs::set_permissions(root.join("conf"), PermissionsExt::from_mode(0o750)).unwrap();
    set_mtime_nofollow(&root.join("conf/app.ini"), 1_000_000_000);
    set_mtime_nofollow(&root.join("passwd"), 1_100_000_000);
    set_mtime_nofollow(&root.join("conf"), 1_200_000_000);
    chown_nofollow(root, 1234);
    std::fs::set_permissions(root, PermissionsExt::from_mode(0o770)).unwrap();
    image
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::symlink_metadata(path).unwrap().modified().unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(secs, 123_000_000)
}

#[test]
fn copy_up_preserves_owners_modes_hard_links_symlinks_xattrs_and_times() {
    let fx = Fixture::new();
    let image = image_tree();
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let data = fx.named("seeded");
    fx.store.acquire("seeded", "c1").unwrap();
    assert!(fx
        .store
        .populate_from("seeded", image.path(), Path::new("/"))
        .unwrap());

    assert_eq!(
        std::fs::read(data.join("conf/app.ini")).unwrap(),
        b"port=80\n"
    );
    let tool = std::fs::metadata(data.join("suid-tool")).unwrap();
    assert_eq!((tool.uid(), tool.gid()), (1234, 1234));
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    let conf = std::fs::metadata(data.join("conf")).unwrap();
    assert_eq!((conf.uid(), conf.mode() & 0o7777), (1234, 0o750));
    // The volume root takes the owner and mode of the image directory, as dockerd.
    let root = std::fs::metadata(&data).unwrap();
    assert_eq!(
        (root.uid(), root.gid(), root.mode() & 0o7777),
        (1234, 1234, 0o770)
    );

    let a = std::fs::metadata(data.join("conf/app.ini")).unwrap();
    let b = std::fs::metadata(data.join("app-link.ini")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    assert_eq!(
        get_xattr(&data.join("conf/app.ini"), "user.origin").as_deref(),
        Some(&b"image"[..])
    );

    let link = std::fs::symlink_metadata(data.join("passwd")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(link.uid(), 1234);
    assert_eq!(
        std::fs::read_link(data.join("passwd")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);

    assert_eq!(mtime(&data.join("conf/app.ini")), at(1_000_000_000));
    assert_eq!(mtime(&data.join("passwd")), at(1_100_000_000));
    assert_eq!(mtime(&data.join("conf")), at(1_200_000_000));

    // Populated is recorded: a restarted store does not copy again.
    assert!(fx.reopen().get("seeded").unwrap().populated);
}

#[test]
fn copy_up_is_skipped_for_a_non_empty_volume_even_one_holding_a_symlink_out() {
    let fx = Fixture::new();
    let image = image_tree();
    let outside = tempfile::tempdir().unwrap();
    let data = fx.named("full");
    // A container planted a link to the host; the image has `conf/` which would go through it.
    std::os::unix::fs::symlink(outside.path(), data.join("conf")).unwrap();
    assert!(!fx
        .store
        .populate_from("full", image.path(), Path::new("/"))
        .unwrap());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
    assert!(fx.store.get("full").unwrap().populated);
}

#[test]
fn copy_up_happens_once_and_not_from_a_missing_or_symlinked_image_path() {
    let fx = Fixture::new();
    let image = image_tree();
    let data = fx.named("once");

    // Nothing at the mount point in the image, or a link there: no copy, not marked.
    assert!(!fx
        .store
        .populate_from("once", image.path(), Path::new("/absent"))
        .unwrap());
    assert!(!fx
        .store
        .populate_from("once", image.path(), Path::new("/passwd"))
        .unwrap());
    assert!(!fx.store.get("once").unwrap().populated);

    assert!(fx
        .store
        .populate_from("once", image.path(), Path::new("/"))
        .unwrap());
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir(&data).unwrap();
    assert!(!fx
        .store
        .populate_from("once", image.path(), Path::new("/"))
        .unwrap());
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);

    let anon = fx.anonymous();
    assert!(fx
        .store
        .populate_from(&anon, image.path(), Path::new("/conf"))
        .unwrap());
    let anon_data = fx.store.get(&anon).unwrap().mountpoint;
    assert_eq!(
        std::fs::read(anon_data.join("app.ini")).unwrap(),
        b"port=80\n"
    );
}

#[test]
fn copy_up_resolves_symlinks_in_the_mount_path_inside_the_image_root() {
    let fx = Fixture::new();
    let image = image_tree();
    // A host directory with a marker, and an image whose `/a` is `/` and `/up` climbs out.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("secret"), b"host marker\n").unwrap();
    std::os::unix::fs::symlink("/", image.path().join("a")).unwrap();
    std::os::unix::fs::symlink("../../../../../..", image.path().join("up")).unwrap();
    for through in ["/a", "/up"] {
        let anon = fx.anonymous();
        let path = format!("{through}{}", host.path().display());
        // The host directory does not exist in the image: nothing to copy.
        assert!(!fx
            .store
            .populate_from(&anon, image.path(), Path::new(&path))
            .unwrap());
        let data = fx.store.get(&anon).unwrap().mountpoint;
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "{path}");
    }
    // Through the link, the image's own directory is what is copied.
    let anon = fx.anonymous();
    assert!(fx
        .store
        .populate_from(&anon, image.path(), Path::new("/up/a/conf"))
        .unwrap());
    let data = fx.store.get(&anon).unwrap().mountpoint;
    assert_eq!(std::fs::read(data.join("app.ini")).unwrap(), b"port=80\n");
}

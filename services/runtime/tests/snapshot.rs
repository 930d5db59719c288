//! The snapshotter against the real kernel (we run as root): hostile layers stay inside their
//! directory, attributes survive, whiteouts work in a real overlayfs mount, and a chain is
//! unpacked once and published whole or not at all.

mod support;

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::{image_of, Compression, Fixture, HostFile, Layer, OverlayMount};
use wharf_bus::digest::sha256_of;
use wharf_bus::image::LayerInfo;
use wharf_bus::BusError;
use wharf_runtime::snapshot::{
    chain_ids, BlobSource, BlobStream, DirBlobSource, SnapshotError, Snapshotter,
};

async fn prepare(fx: &Fixture, layers: Vec<LayerInfo>) -> Result<Vec<PathBuf>, SnapshotError> {
    fx.snapshots
        .prepare_image(&image_of(layers), &fx.blobs)
        .await
}

async fn prepare_one(fx: &Fixture, layer: Layer) -> Result<PathBuf, SnapshotError> {
    let info = fx.add_layer(&layer.tar(), Compression::Gzip);
    prepare(fx, vec![info]).await.map(|mut v| v.remove(0))
}

#[track_caller]
fn assert_unsafe(err: &SnapshotError) {
    assert!(
        matches!(err.cause(), SnapshotError::UnsafeEntry { .. }),
        "expected an unsafe entry error, got {err}"
    );
}

/// A refused layer publishes nothing and leaves no temporary directory behind.
#[track_caller]
fn assert_nothing_left(fx: &Fixture) {
    assert!(fx.published().is_empty(), "published: {:?}", fx.published());
    assert!(fx.leftovers().is_empty(), "left over: {:?}", fx.leftovers());
}

fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name() == name {
            out.push(path.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(find_named(&path, name));
        }
    }
    out
}

fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

// ---- hostile names and links -------------------------------------------------------------

#[tokio::test]
async fn parent_escape_entry_refuses_the_layer_and_leaves_nothing() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer
        .file("ok", b"fine", 0o644)
        .file("../escape", b"evil", 0o644);
    let err = prepare_one(&fx, layer).await.unwrap_err();
    assert_unsafe(&err);
    assert!(find_named(fx.dir.path(), "escape").is_empty());
    assert_nothing_left(&fx);
    // Hidden deeper, too.
    let mut layer = Layer::new();
    layer.file("a/b/../../../escape", b"evil", 0o644);
    assert_unsafe(&prepare_one(&fx, layer).await.unwrap_err());
    assert!(find_named(fx.dir.path(), "escape").is_empty());
    assert_nothing_left(&fx);
}

#[tokio::test]
async fn absolute_names_land_inside_the_layer() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer
        .file("/abs/path", b"inside", 0o644)
        .file("//twice", b"2", 0o644);
    let fs = prepare_one(&fx, layer).await.unwrap();
    assert_eq!(std::fs::read(fs.join("abs/path")).unwrap(), b"inside");
    assert_eq!(std::fs::read(fs.join("twice")).unwrap(), b"2");
    assert!(!Path::new("/abs/path").exists());
}

#[tokio::test]
async fn a_symlink_to_etc_cannot_redirect_a_write_to_the_host_passwd() {
    let passwd = HostFile::watch("/etc/passwd");
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer
        .symlink("evil", "/etc")
        .file("evil/passwd", b"root::0:0::/:/bin/sh\n", 0o644);
    let err = prepare_one(&fx, layer).await.unwrap_err();
    assert_unsafe(&err);
    passwd.assert_untouched();
    assert_nothing_left(&fx);
}

#[tokio::test]
async fn symlinks_to_outside_directories_are_never_written_through() {
    let outside = tempfile::tempdir().unwrap();
    let fx = Fixture::new();
    let out = outside.path().display().to_string();
    // Absolute, relative climbing, and a chain of links (a -> b -> outside).
    for layer in [
        {
            let mut l = Layer::new();
            l.symlink("out", &out).file("out/planted", b"x", 0o644);
            l
        },
        {
            let mut l = Layer::new();
            l.symlink("up", "../../../../../../../../..").file(
                &format!("up{out}/planted"),
                b"x",
                0o644,
            );
            l
        },
        {
            let mut l = Layer::new();
            l.symlink("b", &out)
                .symlink("a", "b")
                .dir("a/sub", 0o755)
                .file("a/sub/planted", b"x", 0o644);
            l
        },
        {
            let mut l = Layer::new();
            l.dir("d", 0o755)
                .symlink("d/loop", "..")
                .symlink("d/far", &out)
                .file("d/loop/d/far/planted", b"x", 0o644);
            l
        },
    ] {
        let err = prepare_one(&fx, layer).await.unwrap_err();
        assert_unsafe(&err);
        assert!(find_named(outside.path(), "planted").is_empty());
        assert_nothing_left(&fx);
    }
}

#[tokio::test]
async fn a_file_over_a_symlink_replaces_the_link_instead_of_following_it() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer
        .symlink("target", &victim.display().to_string())
        .file("target", b"replaced", 0o644);
    let fs = prepare_one(&fx, layer).await.unwrap();
    assert!(!victim.exists());
    let meta = std::fs::symlink_metadata(fs.join("target")).unwrap();
    assert!(meta.is_file());
    assert_eq!(std::fs::read(fs.join("target")).unwrap(), b"replaced");
}

#[tokio::test]
async fn hard_links_to_host_files_or_outside_the_layer_are_refused() {
    let passwd = HostFile::watch("/etc/passwd");
    let fx = Fixture::new();
    for layer in [
        {
            let mut l = Layer::new();
            l.hardlink("pw", "/etc/passwd");
            l
        },
        {
            let mut l = Layer::new();
            l.hardlink("pw", "../../../../../../etc/passwd");
            l
        },
        {
            let mut l = Layer::new();
            l.hardlink("up", "../");
            l
        },
        {
            let mut l = Layer::new();
            l.symlink("etc", "/etc").hardlink("pw", "etc/passwd");
            l
        },
        {
            let mut l = Layer::new();
            l.dir("d", 0o755).hardlink("d2", "d");
            l
        },
    ] {
        let err = prepare_one(&fx, layer).await.unwrap_err();
        assert_unsafe(&err);
        passwd.assert_untouched();
        assert_nothing_left(&fx);
    }
}

#[tokio::test]
async fn a_path_through_a_regular_file_is_refused() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer.file("f", b"x", 0o644).file("f/child", b"y", 0o644);
    assert_unsafe(&prepare_one(&fx, layer).await.unwrap_err());
    assert_nothing_left(&fx);
}

// ---- attributes ----------------------------------------------------------------------------

#[tokio::test]
async fn setuid_setgid_and_sticky_modes_are_kept_with_foreign_owners() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer.uid = 1234;
    layer.gid = 5678;
    layer
        .file("suid", b"#!/bin/sh\n", 0o4755)
        .file("sgid", b"#!/bin/sh\n", 0o2711)
        .dir("sticky", 0o1777)
        .symlink("link", "suid")
        .file("plain", b"", 0o640);
    let fs = prepare_one(&fx, layer).await.unwrap();
    let mode = |p: &str| std::fs::symlink_metadata(fs.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o4755);
    assert_eq!(mode("sgid"), 0o2711);
    assert_eq!(mode("sticky"), 0o1777);
    assert_eq!(mode("plain"), 0o640);
    for p in ["suid", "sgid", "sticky", "link", "plain"] {
        let meta = std::fs::symlink_metadata(fs.join(p)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678), "owner of {p}");
    }
    assert!(std::fs::symlink_metadata(fs.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[tokio::test]
async fn fifos_and_device_nodes_are_kept() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer
        .fifo("pipe", 0o620)
        .device(tar::EntryType::Char, "dev/null", 1, 3)
        .device(tar::EntryType::Block, "dev/loop9", 7, 9);
    let fs = prepare_one(&fx, layer).await.unwrap();
    let pipe = std::fs::symlink_metadata(fs.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!(pipe.mode() & 0o7777, 0o620);
    let null = std::fs::symlink_metadata(fs.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    let block = std::fs::symlink_metadata(fs.join("dev/loop9")).unwrap();
    assert!(block.file_type().is_block_device());
    assert_eq!(block.rdev(), nix::sys::stat::makedev(7, 9));
}

#[tokio::test]
async fn pax_xattrs_are_kept_but_overlay_private_ones_are_not() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer
        .pax(&[
            ("SCHILY.xattr.user.comment", b"hello"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ])
        .file("f", b"data", 0o644)
        .pax(&[("SCHILY.xattr.trusted.wharf", b"dir")])
        .dir("d", 0o755);
    let fs = prepare_one(&fx, layer).await.unwrap();
    assert_eq!(
        lgetxattr(&fs.join("f"), "user.comment").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(lgetxattr(&fs.join("f"), "trusted.overlay.redirect"), None);
    assert_eq!(
        lgetxattr(&fs.join("d"), "trusted.wharf").as_deref(),
        Some(&b"dir"[..])
    );
}

#[tokio::test]
async fn hard_links_share_an_inode() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer
        .file("orig", b"shared", 0o644)
        .hardlink("sub/copy", "orig")
        .hardlink("alias", "/orig");
    let fs = prepare_one(&fx, layer).await.unwrap();
    let ino = |p: &str| std::fs::metadata(fs.join(p)).unwrap().ino();
    assert_eq!(ino("orig"), ino("sub/copy"));
    assert_eq!(ino("orig"), ino("alias"));
    assert_eq!(std::fs::metadata(fs.join("orig")).unwrap().nlink(), 3);
    assert_eq!(std::fs::read(fs.join("alias")).unwrap(), b"shared");
}

#[tokio::test]
async fn mtimes_are_kept_for_files_symlinks_and_directories_after_their_contents() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer.mtime = 1_500_000_000;
    layer.dir("d", 0o755);
    layer.mtime = 1_600_000_000;
    layer.file("d/f", b"x", 0o644).symlink("d/l", "f");
    layer
        .pax(&[("mtime", b"1234567890.5")])
        .file("precise", b"y", 0o644);
    let fs = prepare_one(&fx, layer).await.unwrap();
    let meta = |p: &str| std::fs::symlink_metadata(fs.join(p)).unwrap();
    assert_eq!(meta("d").mtime(), 1_500_000_000);
    assert_eq!(meta("d/f").mtime(), 1_600_000_000);
    assert_eq!(meta("d/l").mtime(), 1_600_000_000);
    assert_eq!(meta("precise").mtime(), 1_234_567_890);
    assert_eq!(meta("precise").mtime_nsec(), 500_000_000);
}

#[tokio::test]
async fn a_repeated_entry_replaces_the_earlier_one() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer
        .file("x", b"one", 0o644)
        .file("x", b"two", 0o600)
        .dir("d", 0o755)
        .file("d/inner", b"gone", 0o644)
        .file("d", b"now a file", 0o644)
        .symlink("s", "/etc")
        .dir("s", 0o700)
        .dir("keep", 0o755)
        .file("keep/a", b"a", 0o644)
        .dir("keep", 0o750);
    let fs = prepare_one(&fx, layer).await.unwrap();
    assert_eq!(std::fs::read(fs.join("x")).unwrap(), b"two");
    assert_eq!(
        std::fs::metadata(fs.join("x")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read(fs.join("d")).unwrap(), b"now a file");
    assert!(std::fs::symlink_metadata(fs.join("s")).unwrap().is_dir());
    assert_eq!(std::fs::read(fs.join("keep/a")).unwrap(), b"a");
    assert_eq!(
        std::fs::metadata(fs.join("keep")).unwrap().mode() & 0o777,
        0o750
    );
}

// ---- whiteouts in a real overlayfs ----------------------------------------------------------

#[tokio::test]
async fn whiteouts_and_opaque_directories_hide_lower_content_in_overlayfs() {
    let fx = Fixture::new();
    let mut lower = Layer::new();
    lower
        .dir("a", 0o755)
        .file("a/deleted", b"old", 0o644)
        .file("a/kept", b"kept", 0o644)
        .dir("opq", 0o755)
        .file("opq/old", b"hidden", 0o644)
        .file("top", b"top", 0o644);
    let mut upper = Layer::new();
    upper
        .dir("a", 0o755)
        .file("a/.wh.deleted", b"", 0o644)
        .dir("opq", 0o755)
        .file("opq/.wh..wh..opq", b"", 0o644)
        .file("opq/new", b"fresh", 0o644);
    let lower = fx.add_layer(&lower.tar(), Compression::Gzip);
    let upper = fx.add_layer(&upper.tar(), Compression::Zstd);
    let lowers = prepare(&fx, vec![lower, upper]).await.unwrap();
    assert_eq!(lowers.len(), 2);

    // In the upper snapshot: a 0/0 character device and an opaque marker, no `.wh.` files.
    let whiteout = std::fs::symlink_metadata(lowers[0].join("a/deleted")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert_eq!(
        lgetxattr(&lowers[0].join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(find_named(&lowers[0], ".wh.deleted").is_empty());
    assert!(find_named(&lowers[0], ".wh..wh..opq").is_empty());

    let merged = tempfile::tempdir().unwrap();
    let mount = OverlayMount::read_only(&lowers, merged.path());
    let m = &mount.target;
    assert!(
        !m.join("a/deleted").exists(),
        "whiteout did not hide a/deleted"
    );
    assert_eq!(std::fs::read(m.join("a/kept")).unwrap(), b"kept");
    assert!(
        !m.join("opq/old").exists(),
        "opaque dir shows lower content"
    );
    assert_eq!(std::fs::read(m.join("opq/new")).unwrap(), b"fresh");
    assert_eq!(std::fs::read(m.join("top")).unwrap(), b"top");
    drop(mount);
}

// ---- digests, chains, publication ------------------------------------------------------------

#[tokio::test]
async fn a_diff_id_mismatch_is_refused_and_nothing_is_left() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer.file("f", b"content", 0o644);
    let blob = support::compress(&layer.tar(), Compression::Gzip);
    let info = fx.add_blob(&blob, sha256_of(b"some other tar"));
    let err = prepare(&fx, vec![info]).await.unwrap_err();
    assert!(
        matches!(err.cause(), SnapshotError::DiffIdMismatch { .. }),
        "{err}"
    );
    assert_nothing_left(&fx);
}

#[tokio::test]
async fn gzip_zstd_and_plain_layers_stack_by_chain_id_top_first() {
    let fx = Fixture::new();
    let mut infos = Vec::new();
    for (i, how) in [Compression::Gzip, Compression::Zstd, Compression::None]
        .into_iter()
        .enumerate()
    {
        let mut layer = Layer::new();
        layer.file(&format!("layer{i}"), format!("{how:?}").as_bytes(), 0o644);
        infos.push(fx.add_layer(&layer.tar(), how));
    }
    let chains = chain_ids(infos.iter().map(|l| l.diff_id.as_str())).unwrap();
    let lowers = prepare(&fx, infos).await.unwrap();
    let expected: Vec<PathBuf> = chains
        .iter()
        .rev()
        .map(|c| fx.root().join(c.trim_start_matches("sha256:")).join("fs"))
        .collect();
    assert_eq!(lowers, expected);
    assert_eq!(std::fs::read(lowers[2].join("layer0")).unwrap(), b"Gzip");
    assert_eq!(std::fs::read(lowers[1].join("layer1")).unwrap(), b"Zstd");
    assert_eq!(std::fs::read(lowers[0].join("layer2")).unwrap(), b"None");
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lowers[1].parent().unwrap().join("snapshot.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["compression"], "zstd");
    assert_eq!(info["parent"], chains[0].as_str());
    assert_eq!(fx.snapshots.list().await.unwrap().len(), 3);
}

/// Counts the blobs opened.
struct CountingSource {
    inner: DirBlobSource,
    opened: AtomicUsize,
}

impl BlobSource for CountingSource {
    fn open(
        &self,
        digest: &str,
    ) -> impl std::future::Future<Output = Result<BlobStream, BusError>> + Send {
        self.opened.fetch_add(1, Ordering::SeqCst);
        self.inner.open(digest)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_prepares_of_one_chain_both_succeed_with_one_unpack() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    for i in 0..200 {
        layer.file(
            &format!("dir{}/file{i}", i % 10),
            &vec![i as u8; 20_000],
            0o644,
        );
    }
    let info = fx.add_layer(&layer.tar(), Compression::Gzip);
    let image = Arc::new(image_of(vec![info]));
    let source = Arc::new(CountingSource {
        inner: fx.blobs.clone(),
        opened: AtomicUsize::new(0),
    });
    let snapshots = Arc::new(Snapshotter::open(fx.root()).unwrap());
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (s, i, src) = (snapshots.clone(), image.clone(), source.clone());
            tokio::spawn(async move { s.prepare_image(&i, &*src).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(source.opened.load(Ordering::SeqCst), 1);
    assert_eq!(
        std::fs::read(results[0][0].join("dir3/file13"))
            .unwrap()
            .len(),
        20_000
    );
    // Prepared already: no more fetching.
    snapshots.prepare_image(&image, &*source).await.unwrap();
    assert_eq!(source.opened.load(Ordering::SeqCst), 1);
    assert!(fx.leftovers().is_empty());
}

/// Serves the first part of a blob, then fails.
struct CutOffSource(DirBlobSource);

impl BlobSource for CutOffSource {
    fn open(
        &self,
        digest: &str,
    ) -> impl std::future::Future<Output = Result<BlobStream, BusError>> + Send {
        let path = self.0.path_of(digest).unwrap();
        async move {
            let blob = std::fs::read(path).unwrap();
            let half = bytes::Bytes::from(blob[..blob.len() / 2].to_vec());
            let items: Vec<Result<bytes::Bytes, BusError>> = vec![
                Ok(half),
                Err(BusError::unavailable("image-store went away")),
            ];
            Ok(Box::pin(futures::stream::iter(items)) as BlobStream)
        }
    }
}

#[tokio::test]
async fn a_download_cut_off_midway_publishes_nothing() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    for i in 0..50 {
        layer.file(&format!("f{i}"), &[i as u8; 10_000], 0o644);
    }
    let info = fx.add_layer(&layer.tar(), Compression::None);
    let err = fx
        .snapshots
        .prepare_image(&image_of(vec![info]), &CutOffSource(fx.blobs.clone()))
        .await
        .unwrap_err();
    match err.cause() {
        SnapshotError::Fetch(e) => assert_eq!(e.kind, wharf_bus::ErrorKind::Unavailable),
        other => panic!("expected a fetch error, got {other}"),
    }
    assert_nothing_left(&fx);
}

#[tokio::test]
async fn leftovers_of_a_crash_are_cleared_when_the_snapshotter_opens() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer.file("f", b"x", 0o644);
    prepare_one(&fx, layer).await.unwrap();
    let half = fx.root().join(".ingest/deadbeef-1/fs/half");
    std::fs::create_dir_all(half.parent().unwrap()).unwrap();
    std::fs::write(&half, b"partial").unwrap();
    std::fs::create_dir_all(fx.root().join(".trash/old/fs")).unwrap();
    let reopened = Snapshotter::open(fx.root()).unwrap();
    assert!(fx.leftovers().is_empty());
    assert_eq!(reopened.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn remove_unused_deletes_only_snapshots_not_kept() {
    let fx = Fixture::new();
    let mut base = Layer::new();
    base.file("base", b"b", 0o644);
    let mut top = Layer::new();
    top.file("top", b"t", 0o644);
    let base = fx.add_layer(&base.tar(), Compression::Gzip);
    let top = fx.add_layer(&top.tar(), Compression::Gzip);
    let small = image_of(vec![base.clone()]);
    let big = image_of(vec![base, top]);
    fx.snapshots.prepare_image(&big, &fx.blobs).await.unwrap();
    let all = Snapshotter::chain_ids_of(&big).unwrap();
    assert_eq!(fx.snapshots.list().await.unwrap().len(), 2);

    let keep: HashSet<String> = Snapshotter::chain_ids_of(&small)
        .unwrap()
        .into_iter()
        .collect();
    let removed = fx.snapshots.remove_unused(&keep).await.unwrap();
    assert_eq!(removed, vec![all[1].clone()]);
    assert_eq!(fx.snapshots.list().await.unwrap(), vec![all[0].clone()]);
    assert!(fx.leftovers().is_empty());
    // What was removed comes back on demand.
    let lowers = fx.snapshots.prepare_image(&big, &fx.blobs).await.unwrap();
    assert_eq!(std::fs::read(lowers[0].join("top")).unwrap(), b"t");
}

#[tokio::test]
async fn an_image_whose_config_disagrees_with_its_layers_is_refused() {
    let fx = Fixture::new();
    let mut layer = Layer::new();
    layer.file("f", b"x", 0o644);
    let info = fx.add_layer(&layer.tar(), Compression::Gzip);
    let mut image = image_of(vec![info]);
    image.config = serde_json::json!({"rootfs": {"diff_ids": [sha256_of(b"other")]}});
    let err = fx
        .snapshots
        .prepare_image(&image, &fx.blobs)
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::InvalidImage(_)), "{err}");
    assert_nothing_left(&fx);
}

/// A snapshot is used at once and synced later; at open, one that never got to the disk
/// before the machine went down (an earlier boot, no `synced` mark) is discarded, while one
/// of this boot stays (its files are in the page cache) and older ones without a boot are
/// taken as synced (they were synced before they were published).
#[tokio::test]
async fn unsynced_snapshots_of_an_earlier_boot_are_discarded_at_open() {
    let fx = Fixture::new();
    let mut layers = Vec::new();
    for name in ["a", "b", "c"] {
        let mut layer = Layer::new();
        layer.file(name, name.as_bytes(), 0o644);
        layers.push(fx.add_layer(&layer.tar(), Compression::Gzip));
    }
    let dirs: Vec<PathBuf> = {
        let mut out = Vec::new();
        for layer in &layers {
            let dir = prepare(&fx, vec![layer.clone()]).await.unwrap().remove(0);
            out.push(dir.parent().unwrap().to_path_buf());
        }
        out
    };
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let rewrite = |dir: &Path, boot_id: &str| {
        let _ = std::fs::remove_file(dir.join("synced"));
        let path = dir.join("snapshot.json");
        let mut info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            info["boot_id"],
            boot.trim(),
            "the unpacking boot is recorded"
        );
        info["boot_id"] = boot_id.into();
        std::fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
    };
    rewrite(&dirs[0], "an-earlier-boot");
    rewrite(&dirs[1], boot.trim());
    rewrite(&dirs[2], "");

    let reopened = Snapshotter::open(fx.root()).unwrap();
    assert!(!dirs[0].exists(), "torn candidate discarded");
    assert!(dirs[1].join("fs/b").exists(), "this boot's snapshot stays");
    assert!(
        dirs[2].join("synced").exists(),
        "a snapshot from before boot IDs counts as synced"
    );
    assert_eq!(reopened.list().await.unwrap().len(), 2);
    // Needed again, the discarded layer is unpacked again.
    let again = reopened
        .prepare_image(&image_of(vec![layers[0].clone()]), &fx.blobs)
        .await
        .unwrap();
    assert_eq!(std::fs::read(again[0].join("a")).unwrap(), b"a");
}

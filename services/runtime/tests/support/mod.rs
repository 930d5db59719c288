//! Real parts for the snapshot tests: layers built with the tar crate (hostile names written
//! byte for byte), blobs in a directory, and guards that undo mounts and host changes even when
//! a test fails.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use wharf_bus::digest::sha256_of;
use wharf_bus::image::{ImageRecord, LayerInfo};
use wharf_runtime::snapshot::{DirBlobSource, Snapshotter};

/// How a layer blob is stored.
#[derive(Debug, Clone, Copy)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// A layer tar under construction. Names go into the header as given (`../x`, `/abs`), which
/// the tar crate's own path setters refuse to write.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            builder: tar::Builder::new(Vec::new()),
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
        }
    }

    fn header(&self, kind: tar::EntryType, name: &str, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let bytes = name.as_bytes();
        assert!(bytes.len() < 100, "short names only");
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..bytes.len()].copy_from_slice(bytes);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(self.mtime);
        h
    }

    fn push(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        let h = self.header(tar::EntryType::Regular, name, mode, data.len() as u64);
        self.push(h, data)
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = self.header(tar::EntryType::Directory, name, mode, 0);
        self.push(h, &[])
    }

    fn link(&mut self, kind: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut h = self.header(kind, name, 0o777, 0);
        h.set_link_name_literal(target).unwrap();
        self.push(h, &[])
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, name, target)
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, name, target)
    }

    pub fn fifo(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = self.header(tar::EntryType::Fifo, name, mode, 0);
        self.push(h, &[])
    }

    pub fn device(
        &mut self,
        kind: tar::EntryType,
        name: &str,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = self.header(kind, name, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, &[])
    }

    /// PAX records that apply to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    pub fn tar(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

pub fn compress(tar: &[u8], how: Compression) -> Vec<u8> {
    match how {
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(tar).unwrap();
            enc.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(tar, 1).unwrap(),
        Compression::None => tar.to_vec(),
    }
}

/// A snapshotter over a temporary root, with its blobs in a directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub blobs: DirBlobSource,
    pub snapshots: Snapshotter,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        let blobs = DirBlobSource::new(dir.path().join("blobs"));
        let snapshots = Snapshotter::open(dir.path().join("runtime/snapshots")).unwrap();
        Fixture {
            dir,
            blobs,
            snapshots,
        }
    }

    pub fn root(&self) -> &Path {
        self.snapshots.root()
    }

    /// Stores a layer blob and returns what the store would know of it.
    pub fn add_layer(&self, tar: &[u8], how: Compression) -> LayerInfo {
        let blob = compress(tar, how);
        self.add_blob(&blob, sha256_of(tar))
    }

    /// Stores `blob` as is, claiming `diff_id` for it.
    pub fn add_blob(&self, blob: &[u8], diff_id: String) -> LayerInfo {
        let digest = sha256_of(blob);
        std::fs::write(self.blobs.path_of(&digest).unwrap(), blob).unwrap();
        LayerInfo {
            digest,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: blob.len() as u64,
            diff_id,
            unpacked_size: 0,
        }
    }

    /// Everything left in the snapshot root besides the published snapshots' names.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in [".ingest", ".trash"] {
            for e in std::fs::read_dir(self.root().join(sub)).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        out
    }

    pub fn published(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        out.sort();
        out
    }
}

pub fn image_of(layers: Vec<LayerInfo>) -> ImageRecord {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    ImageRecord {
        id: sha256_of(b"test image"),
        repo_tags: vec![],
        repo_digests: vec![],
        layers,
        manifest: None,
        config: serde_json::json!({"rootfs": {"type": "layers", "diff_ids": diff_ids}}),
        config_size: 0,
        size: 0,
        stored_at: String::new(),
        last_tag_time: None,
        parent: None,
    }
}

/// Keeps a host file's bytes; if a test changed it, puts them back (and fails the test).
pub struct HostFile {
    path: PathBuf,
    content: Vec<u8>,
    links: u64,
}

impl HostFile {
    pub fn watch(path: &str) -> HostFile {
        use std::os::unix::fs::MetadataExt;
        HostFile {
            path: path.into(),
            content: std::fs::read(path).unwrap(),
            links: std::fs::metadata(path).unwrap().nlink(),
        }
    }

    pub fn assert_untouched(&self) {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::read(&self.path).unwrap(),
            self.content,
            "{} was written",
            self.path.display()
        );
        assert_eq!(
            std::fs::metadata(&self.path).unwrap().nlink(),
            self.links,
            "{} gained a hard link",
            self.path.display()
        );
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        if std::fs::read(&self.path).ok().as_deref() != Some(&self.content[..]) {
            let _ = std::fs::write(&self.path, &self.content);
        }
    }
}

/// An overlayfs mount, detached when dropped.
pub struct OverlayMount {
    pub target: PathBuf,
}

impl OverlayMount {
    /// Mounts `lowers` (top first) read-only at `target`.
    pub fn read_only(lowers: &[PathBuf], target: &Path) -> OverlayMount {
        let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let data = format!("lowerdir={}", lowerdir.join(":"));
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(data.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount -t overlay -o {data} {}: {e}", target.display()));
        OverlayMount {
            target: target.to_path_buf(),
        }
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
    }
}

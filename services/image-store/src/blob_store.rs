//! Content-addressed blobs under `<root>/blobs/sha256/<hex>`, verified on write and never
//! half-visible: an ingest writes a private temp file in `<root>/ingest/`, checks size and
//! digest, syncs it and renames it into place. What the store learnt of a layer (diff ID,
//! unpacked size) sits beside it in `<root>/layers/sha256/<hex>.json`.
//!
//! The lease rule: a blob's file modification time is when it was last stored or found
//! ("Already exists", [`BlobStore::touch`]). Garbage collection never deletes a blob used more
//! recently than [`GC_GRACE`] ago, so content a pull or build is about to commit survives a
//! concurrent `rmi` or `prune` until the image that holds it is recorded. Stores, touches and
//! deletes are serialized per store, so a blob is never deleted just as it is renewed.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use wharf_bus::image::{BlobInfo, BlobLocation, LayerInfo, StagingArea};
use wharf_bus::BusError;

use crate::layer_scan::{self, LayerDigest, PipelinedScan};
use wharf_bus::digest;
use wharf_bus::layer::{self as compression, Compression};

/// What the store keeps about a layer blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    #[serde(flatten)]
    pub info: LayerInfo,
    /// Length of the uncompressed tar (what `docker save` writes).
    pub tar_size: u64,
    pub compression: Compression,
}

/// Whether an ingest also reads its content as a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMode {
    Never,
    /// The content must be a layer; a malformed one fails the ingest.
    Layer,
    /// Scan when the content looks like a tar or a compressed stream; a failed scan only means
    /// "not a layer" (used for archive members whose role is not known yet).
    Probe,
}

/// What the ingested content must be.
#[derive(Debug, Clone)]
pub struct IngestSpec {
    /// `sha256:<hex>`; `None` takes the digest of whatever arrives.
    pub expected: Option<String>,
    pub size: Option<u64>,
    pub media_type: Option<String>,
    pub scan: ScanMode,
}

impl IngestSpec {
    /// The spec of a `blob.ingest` request: layer media types are scanned; an empty `digest`
    /// takes the digest of what arrives.
    pub fn for_blob(digest: &str, size: Option<u64>, media_type: Option<&str>) -> Self {
        let scan = match media_type {
            Some(mt) if compression::is_layer_media_type(mt) => ScanMode::Layer,
            _ => ScanMode::Never,
        };
        IngestSpec {
            expected: (!digest.is_empty()).then(|| digest.to_string()),
            size,
            media_type: media_type.map(str::to_string),
            scan,
        }
    }
}

/// How long a stored or touched blob is safe from garbage collection (see the lease rule).
pub const GC_GRACE: Duration = Duration::from_secs(10 * 60);

/// A committed ingest.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub blob: BlobInfo,
    pub layer: Option<LayerMeta>,
    /// Set when this ingest created the blob (it was absent): the version it wrote.
    pub created: Option<BlobVersion>,
}

/// One version of a blob file: touching it or storing it again makes another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobVersion {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl BlobVersion {
    fn of(meta: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        BlobVersion {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

pub struct BlobStore {
    root: PathBuf,
    /// Held while a blob file is made visible, touched or deleted.
    lease: Arc<Mutex<()>>,
}

fn lock(lease: &Mutex<()>) -> MutexGuard<'_, ()> {
    lease.lock().unwrap_or_else(|e| e.into_inner())
}

static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// Where writers on this host stage blobs for [`BlobStore::adopt`] (see `blob.staging`).
const STAGING_DIR: &str = "staging";
/// Read size when adopting a staged file.
const ADOPT_CHUNK: usize = 1 << 20;

impl BlobStore {
    /// Opens (creating) the store under `root`; leftovers of interrupted ingests are removed.
    pub fn open(root: &Path) -> io::Result<Self> {
        for dir in ["blobs/sha256", "layers/sha256", "ingest", STAGING_DIR] {
            fs::create_dir_all(root.join(dir))?;
        }
        for dir in ["ingest", STAGING_DIR] {
            for entry in fs::read_dir(root.join(dir))? {
                let _ = fs::remove_file(entry?.path());
            }
        }
        // Only this host's root may stage files.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join(STAGING_DIR), fs::Permissions::from_mode(0o700))?;
        Ok(BlobStore {
            root: root.to_path_buf(),
            lease: Arc::new(Mutex::new(())),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf, BusError> {
        Ok(self
            .root
            .join("blobs/sha256")
            .join(digest::sha256_hex(digest)?))
    }

    fn layer_path(&self, hex: &str) -> PathBuf {
        self.root.join("layers/sha256").join(format!("{hex}.json"))
    }

    pub fn stat(&self, digest: &str) -> Result<BlobInfo, BusError> {
        let path = self.path(digest)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(BlobInfo {
                digest: digest.to_string(),
                size: m.len(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(blob_not_found(digest)),
            Err(e) => Err(BusError::internal(format!(
                "cannot stat blob {digest}: {e}"
            ))),
        }
    }

    pub fn exists(&self, digest: &str) -> bool {
        self.stat(digest).is_ok()
    }

    /// Stats a blob and marks it as just used, renewing its lease: a caller that found it
    /// ("Already exists") has [`GC_GRACE`] to commit the image that uses it.
    pub fn touch(&self, digest: &str) -> Result<BlobInfo, BusError> {
        let path = self.path(digest)?;
        let _lease = lock(&self.lease);
        let info = self.stat(digest)?;
        let renewed = File::open(&path).and_then(|f| f.set_modified(SystemTime::now()));
        if let Err(e) = renewed {
            tracing::warn!("cannot renew the lease of blob {digest}: {e}");
        }
        Ok(info)
    }

    /// Where the blob's file is, for a reader on this host (`blob.locate`).
    pub fn locate(&self, digest: &str) -> Result<BlobLocation, BusError> {
        use std::os::unix::fs::MetadataExt;
        let host = this_host()?;
        let path = self.path(digest)?;
        let meta = fs::metadata(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => blob_not_found(digest),
            _ => BusError::internal(format!("cannot stat blob {digest}: {e}")),
        })?;
        Ok(BlobLocation {
            host,
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
        })
    }

    /// The directory where writers on this host may stage blobs (`blob.staging`).
    pub fn staging_area(&self) -> Result<StagingArea, BusError> {
        use std::os::unix::fs::MetadataExt;
        let host = this_host()?;
        let dir = self.root.join(STAGING_DIR);
        let meta = fs::metadata(&dir)
            .map_err(|e| BusError::internal(format!("cannot stat {}: {e}", dir.display())))?;
        Ok(StagingArea {
            host,
            dir,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Ingests the staged file `name` (`blob.adopt`): it is moved out of the staging directory
    /// first, then checked exactly as a streamed ingest is, and becomes the blob without a
    /// copy. Whatever the outcome, the staged file is gone afterwards.
    pub fn adopt(&self, spec: IngestSpec, name: &str) -> Result<Ingested, BusError> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !plain {
            return Err(BusError::invalid(format!("bad staged file name {name:?}")));
        }
        let staged = self.root.join(STAGING_DIR).join(name);
        let mut ingest = self.ingest(spec)?;
        // The ingest's own temporary name takes the file: nobody else holds that name.
        drop(ingest.file.take());
        fs::rename(&staged, &ingest.temp).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BusError::invalid(format!("no staged file {name:?}")),
            _ => BusError::internal(format!("cannot take staged file {name:?}: {e}")),
        })?;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&ingest.temp)
            .map_err(|e| BusError::invalid(format!("cannot open staged file {name:?}: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| BusError::internal(format!("cannot stat staged file: {e}")))?;
        if !meta.is_file() {
            return Err(BusError::invalid(format!("staged {name:?} is not a file")));
        }
        loop {
            let mut chunk = vec![0u8; ADOPT_CHUNK];
            let n = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BusError::internal(format!("cannot read staged file: {e}"))),
            };
            chunk.truncate(n);
            ingest.take(Bytes::from(chunk))?;
        }
        ingest.file = Some(file);
        ingest.commit()
    }

    /// Digests of every stored blob.
    pub fn digests(&self) -> Result<Vec<String>, BusError> {
        let dir = fs::read_dir(self.root.join("blobs/sha256"))
            .map_err(|e| BusError::internal(format!("cannot list blobs: {e}")))?;
        Ok(dir
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| digest::is_hex64(name))
            .map(|hex| format!("sha256:{hex}"))
            .collect())
    }

    pub fn open_blob(&self, digest: &str) -> Result<File, BusError> {
        File::open(self.path(digest)?).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => blob_not_found(digest),
            _ => BusError::internal(format!("cannot open blob {digest}: {e}")),
        })
    }

    /// Reads a small blob (configs, manifests) whole; larger than `limit` is refused.
    pub fn read_small(&self, digest: &str, limit: u64) -> Result<Vec<u8>, BusError> {
        let file = self.open_blob(digest)?;
        let mut data = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| BusError::internal(format!("cannot read blob {digest}: {e}")))?;
        if data.len() as u64 > limit {
            return Err(BusError::invalid(format!(
                "blob {digest} is larger than the {limit} bytes allowed"
            )));
        }
        Ok(data)
    }

    /// What the store knows of a layer blob; scans a blob stored without it (and remembers).
    pub fn layer(&self, digest: &str, media_type: &str) -> Result<LayerMeta, BusError> {
        let hex = digest::sha256_hex(digest)?;
        if let Ok(data) = fs::read(self.layer_path(hex)) {
            if let Ok(meta) = serde_json::from_slice::<LayerMeta>(&data) {
                return Ok(meta);
            }
        }
        let file = self.open_blob(digest)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let scanned = layer_scan::scan(file).map_err(layer_error)?;
        let meta = layer_meta(digest, media_type, size, scanned);
        self.write_layer_meta(hex, &meta)?;
        Ok(meta)
    }

    fn write_layer_meta(&self, hex: &str, meta: &LayerMeta) -> Result<(), BusError> {
        let data = serde_json::to_vec(meta).map_err(|e| BusError::internal(e.to_string()))?;
        wharf_bus::files::write_atomic(
            &self.layer_path(hex),
            &data,
            wharf_bus::files::Durability::Synced,
        )
        .map_err(|e| BusError::internal(format!("cannot record layer {hex}: {e}")))
    }

    /// Starts writing a blob.
    pub fn ingest(&self, spec: IngestSpec) -> Result<Ingest, BusError> {
        if let Some(d) = &spec.expected {
            digest::sha256_hex(d)?;
        }
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            INGEST_SEQ.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        );
        let temp = self.root.join("ingest").join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| BusError::internal(format!("cannot start ingest: {e}")))?;
        let scan = match spec.scan {
            ScanMode::Layer => {
                Some(PipelinedScan::start().map_err(|e| BusError::internal(e.to_string()))?)
            }
            _ => None,
        };
        Ok(Ingest {
            root: self.root.clone(),
            lease: self.lease.clone(),
            temp,
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
            spec,
            scan,
            probed: false,
            committed: false,
            synced_to: 0,
        })
    }

    /// Stores `data` as a blob (small content: configs, manifests).
    pub fn put(&self, data: &[u8], media_type: Option<&str>) -> Result<Ingested, BusError> {
        let mut ingest = self.ingest(IngestSpec {
            expected: None,
            size: Some(data.len() as u64),
            media_type: media_type.map(str::to_string),
            scan: ScanMode::Never,
        })?;
        ingest.write(Bytes::copy_from_slice(data))?;
        ingest.commit()
    }

    /// Removes a blob and its layer record; returns the bytes freed (0 if it was gone).
    pub fn delete(&self, digest: &str) -> Result<u64, BusError> {
        let _lease = lock(&self.lease);
        self.delete_locked(digest)
    }

    /// Garbage collection's delete: removes the blob unless it was stored or touched less
    /// than `grace` ago (the lease rule). Returns the bytes freed.
    pub fn delete_idle(&self, digest: &str, grace: Duration) -> Result<u64, BusError> {
        let _lease = lock(&self.lease);
        let Ok(meta) = fs::metadata(self.path(digest)?) else {
            return Ok(0);
        };
        let used = meta.modified().unwrap_or_else(|_| SystemTime::now());
        if used.elapsed().unwrap_or_default() < grace {
            return Ok(0);
        }
        self.delete_locked(digest)
    }

    /// Removes the blob if its file is still `version`: nobody stored or touched it since.
    pub fn delete_version(&self, digest: &str, version: BlobVersion) -> Result<u64, BusError> {
        let _lease = lock(&self.lease);
        match fs::metadata(self.path(digest)?) {
            Ok(meta) if BlobVersion::of(&meta) == version => self.delete_locked(digest),
            _ => Ok(0),
        }
    }

    fn delete_locked(&self, digest: &str) -> Result<u64, BusError> {
        let hex = digest::sha256_hex(digest)?;
        let path = self.path(digest)?;
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let _ = fs::remove_file(self.layer_path(hex));
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(BusError::internal(format!(
                "cannot delete blob {digest}: {e}"
            ))),
        }
    }
}

fn this_host() -> Result<String, BusError> {
    wharf_bus::image::host_id()
        .ok_or_else(|| BusError::unavailable("this host has no boot ID: no same-host shortcut"))
}

fn blob_not_found(digest: &str) -> BusError {
    BusError::not_found(format!("blob {digest} not found"))
}

fn layer_error(err: io::Error) -> BusError {
    BusError::invalid(format!("failed to register layer: {err}"))
}

fn layer_meta(digest: &str, media_type: &str, size: u64, d: LayerDigest) -> LayerMeta {
    LayerMeta {
        info: LayerInfo {
            digest: digest.to_string(),
            media_type: media_type.to_string(),
            size,
            diff_id: d.diff_id,
            unpacked_size: d.unpacked_size,
        },
        tar_size: d.tar_size,
        compression: d.compression,
    }
}

/// A blob being written. Dropped without [`Ingest::commit`], it leaves nothing behind.
pub struct Ingest {
    root: PathBuf,
    lease: Arc<Mutex<()>>,
    temp: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    written: u64,
    spec: IngestSpec,
    scan: Option<PipelinedScan>,
    probed: bool,
    committed: bool,
    synced_to: u64,
}

impl Ingest {
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends a chunk. More bytes than the expected size fail at once.
    pub fn write(&mut self, chunk: Bytes) -> Result<(), BusError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.file
            .as_mut()
            .expect("ingest file open until commit")
            .write_all(&chunk)
            .map_err(|e| BusError::internal(format!("cannot write blob: {e}")))?;
        self.take(chunk)?;
        self.start_writeback();
        Ok(())
    }

    /// Counts, hashes and scans a chunk that is in the file already.
    fn take(&mut self, chunk: Bytes) -> Result<(), BusError> {
        if chunk.is_empty() {
            return Ok(());
        }
        if !self.probed {
            self.probed = true;
            if self.spec.scan == ScanMode::Probe && looks_like_layer(&chunk) {
                self.scan =
                    Some(PipelinedScan::start().map_err(|e| BusError::internal(e.to_string()))?);
            }
        }
        self.written += chunk.len() as u64;
        if let Some(size) = self.spec.size {
            if self.written > size {
                return Err(self.size_error(size));
            }
        }
        self.hasher.update(&chunk);
        if let Some(scan) = &mut self.scan {
            scan.feed(chunk);
        }
        Ok(())
    }

    /// Starts writing back what is written so far, so the final fsync has little left to do.
    fn start_writeback(&mut self) {
        const STEP: u64 = 16 << 20;
        if self.written - self.synced_to < STEP {
            return;
        }
        if let Some(f) = &self.file {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a file descriptor we own; failure only loses the hint.
            unsafe {
                libc::sync_file_range(
                    f.as_raw_fd(),
                    self.synced_to as i64,
                    (self.written - self.synced_to) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.synced_to = self.written;
    }

    fn is_layer(&self) -> bool {
        self.spec.scan == ScanMode::Layer
    }

    fn size_error(&self, size: u64) -> BusError {
        match (&self.spec.expected, self.is_layer()) {
            (Some(d), true) => verification_failed(d),
            _ => BusError::invalid(format!(
                "blob size mismatch: expected {size} bytes, got {}{}",
                if self.written > size {
                    "more than "
                } else {
                    ""
                },
                if self.written > size {
                    size
                } else {
                    self.written
                }
            )),
        }
    }

    /// Verifies size and digest, then makes the blob visible.
    pub fn commit(mut self) -> Result<Ingested, BusError> {
        let actual = digest::finish(std::mem::take(&mut self.hasher));
        if let Some(size) = self.spec.size {
            if self.written != size {
                return Err(self.size_error(size));
            }
        }
        if let Some(expected) = &self.spec.expected {
            if *expected != actual {
                return Err(if self.is_layer() {
                    verification_failed(expected)
                } else {
                    BusError::invalid(format!(
                        "digest mismatch: expected {expected}, got {actual}"
                    ))
                });
            }
        }
        let hex = digest::sha256_hex(&actual)?.to_string();
        let layer = match self.scan.take().map(PipelinedScan::finish) {
            Some(Ok(d)) => {
                let media_type = self
                    .spec
                    .media_type
                    .clone()
                    .unwrap_or_else(|| d.compression.oci_layer_media_type().to_string());
                Some(layer_meta(&actual, &media_type, self.written, d))
            }
            Some(Err(e)) if self.is_layer() => return Err(layer_error(e)),
            _ => None,
        };
        let file = self.file.take().expect("ingest file open until commit");
        // Its lease starts now, however long the upload took.
        file.set_modified(SystemTime::now())
            .and_then(|()| file.sync_all())
            .map_err(|e| BusError::internal(format!("cannot sync blob: {e}")))?;
        drop(file);
        let store = BlobStore {
            root: self.root.clone(),
            lease: self.lease.clone(),
        };
        // The layer record goes first: once the blob is visible, so is what we know of it.
        if let Some(meta) = &layer {
            store.write_layer_meta(&hex, meta)?;
        }
        let dest = self.root.join("blobs/sha256").join(&hex);
        let created = {
            let _lease = lock(&self.lease);
            let existed = dest.exists();
            fs::rename(&self.temp, &dest)
                .map_err(|e| BusError::internal(format!("cannot store blob {actual}: {e}")))?;
            match existed {
                true => None,
                false => fs::metadata(&dest).ok().map(|m| BlobVersion::of(&m)),
            }
        };
        self.committed = true;
        wharf_bus::files::sync_dir(&self.root.join("blobs/sha256"));
        Ok(Ingested {
            blob: BlobInfo {
                digest: actual,
                size: self.written,
            },
            layer,
            created,
        })
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.committed {
            self.file = None;
            let _ = fs::remove_file(&self.temp);
        }
    }
}

fn verification_failed(digest: &str) -> BusError {
    BusError::invalid(format!(
        "filesystem layer verification failed for digest {digest}"
    ))
}

/// A tar (ustar magic, or an all-zero first block as in an empty layer) or a compressed stream.
fn looks_like_layer(head: &[u8]) -> bool {
    if Compression::detect(head) != Compression::None {
        return true;
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return true;
    }
    head.len() >= 512 && head[..512].iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_scan::tests::{build_tar, gzip, Item};
    use std::sync::Arc;
    use wharf_bus::ErrorKind;

    const GZ_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        (dir, s)
    }

    fn ingest_all(s: &BlobStore, spec: IngestSpec, data: &[u8]) -> Result<Ingested, BusError> {
        let mut i = s.ingest(spec)?;
        for c in data.chunks(1000) {
            i.write(Bytes::copy_from_slice(c))?;
        }
        i.commit()
    }

    fn ingest_dir_is_empty(s: &BlobStore) -> bool {
        fs::read_dir(s.root().join("ingest")).unwrap().count() == 0
    }

    #[test]
    fn ingest_with_the_right_digest_is_readable_afterwards() {
        let (_d, s) = store();
        let data = b"hello blob".repeat(500);
        let dg = digest::sha256_of(&data);
        let r = ingest_all(
            &s,
            IngestSpec::for_blob(&dg, Some(data.len() as u64), None),
            &data,
        )
        .unwrap();
        assert_eq!(r.blob.size, data.len() as u64);
        assert!(r.layer.is_none());
        assert_eq!(s.stat(&dg).unwrap().size, data.len() as u64);
        assert_eq!(fs::read(s.path(&dg).unwrap()).unwrap(), data);
        assert!(ingest_dir_is_empty(&s));
    }

    #[test]
    fn wrong_digest_fails_and_leaves_nothing_visible() {
        let (_d, s) = store();
        let wrong = digest::sha256_of(b"other");
        let err = ingest_all(&s, IngestSpec::for_blob(&wrong, None, None), b"content").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(
            err.message.starts_with("digest mismatch"),
            "{}",
            err.message
        );
        assert_eq!(s.stat(&wrong).unwrap_err().kind, ErrorKind::NotFound);
        assert!(!s.exists(&digest::sha256_of(b"content")));
        assert!(ingest_dir_is_empty(&s));
    }

    fn stage(s: &BlobStore, name: &str, data: &[u8]) -> PathBuf {
        let area = s.staging_area().unwrap();
        let path = area.dir.join(name);
        fs::write(&path, data).unwrap();
        path
    }

    #[test]
    fn a_staged_layer_is_adopted_as_a_streamed_one_would_be() {
        let (_d, s) = store();
        let tar = build_tar(&[Item::File("a", b"staged")]);
        let layer = gzip(&tar);
        let dg = digest::sha256_of(&layer);
        let staged = stage(&s, "pull-1", &layer);
        let done = s
            .adopt(
                IngestSpec::for_blob(&dg, Some(layer.len() as u64), Some(GZ_LAYER)),
                "pull-1",
            )
            .unwrap();
        assert_eq!(done.blob.digest, dg);
        assert_eq!(done.layer.unwrap().info.diff_id, digest::sha256_of(&tar));
        assert_eq!(fs::read(s.path(&dg).unwrap()).unwrap(), layer);
        assert!(!staged.exists(), "the store took the file");
        assert!(ingest_dir_is_empty(&s));
        // The same-host answers name this boot and the real files.
        let at = s.locate(&dg).unwrap();
        assert_eq!(Some(at.host), wharf_bus::image::host_id());
        assert_eq!(at.size, layer.len() as u64);
        assert_eq!(at.path, s.path(&dg).unwrap());
    }

    #[test]
    fn a_staged_file_with_the_wrong_digest_is_refused_and_removed() {
        let (_d, s) = store();
        let layer = gzip(&build_tar(&[Item::File("a", b"x")]));
        let wrong = digest::sha256_of(b"nope");
        let staged = stage(&s, "pull-2", &layer);
        let err = s
            .adopt(IngestSpec::for_blob(&wrong, None, Some(GZ_LAYER)), "pull-2")
            .unwrap_err();
        assert_eq!(
            err.message,
            format!("filesystem layer verification failed for digest {wrong}")
        );
        assert!(!staged.exists());
        assert!(!s.exists(&wrong));
        assert!(ingest_dir_is_empty(&s));
    }

    #[test]
    fn only_plain_staged_names_are_taken() {
        let (dir, s) = store();
        let secret = dir.path().join("secret");
        fs::write(&secret, b"not a blob").unwrap();
        let dg = digest::sha256_of(b"not a blob");
        for name in ["../secret", "/etc/passwd", ".hidden", "", "a/b"] {
            let err = s
                .adopt(IngestSpec::for_blob(&dg, None, None), name)
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Invalid, "{name}");
        }
        // A symlink placed in the staging area is not followed.
        std::os::unix::fs::symlink(&secret, s.staging_area().unwrap().dir.join("link")).unwrap();
        let err = s
            .adopt(IngestSpec::for_blob(&dg, None, None), "link")
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid, "{}", err.message);
        assert!(!s.exists(&dg));
        assert!(secret.exists());
        let missing = s
            .adopt(IngestSpec::for_blob(&dg, None, None), "gone")
            .unwrap_err();
        assert_eq!(missing.kind, ErrorKind::Invalid);
    }

    #[test]
    fn a_layer_with_the_wrong_digest_fails_with_dockerds_text() {
        let (_d, s) = store();
        let layer = gzip(&build_tar(&[Item::File("a", b"x")]));
        let wrong = digest::sha256_of(b"nope");
        let err = ingest_all(
            &s,
            IngestSpec::for_blob(&wrong, None, Some(GZ_LAYER)),
            &layer,
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            format!("filesystem layer verification failed for digest {wrong}")
        );
    }

    #[test]
    fn short_and_long_content_fail_the_expected_size() {
        let (_d, s) = store();
        let data = b"0123456789";
        let dg = digest::sha256_of(data);
        let short = ingest_all(&s, IngestSpec::for_blob(&dg, Some(11), None), data).unwrap_err();
        assert!(short.message.contains("size mismatch"), "{}", short.message);
        let mut i = s.ingest(IngestSpec::for_blob(&dg, Some(5), None)).unwrap();
        let long = i.write(Bytes::from_static(data)).unwrap_err();
        assert_eq!(long.kind, ErrorKind::Invalid);
        drop(i);
        assert!(!s.exists(&dg));
        assert!(ingest_dir_is_empty(&s));
    }

    #[test]
    fn a_partial_ingest_is_never_visible_and_is_cleaned_up_when_dropped() {
        let (_d, s) = store();
        let data = vec![9u8; 100_000];
        let dg = digest::sha256_of(&data);
        let mut i = s.ingest(IngestSpec::for_blob(&dg, None, None)).unwrap();
        i.write(Bytes::copy_from_slice(&data[..50_000])).unwrap();
        assert!(!s.exists(&dg));
        drop(i);
        assert!(!s.exists(&dg));
        assert!(ingest_dir_is_empty(&s));
    }

    #[test]
    fn concurrent_ingests_of_the_same_digest_both_succeed() {
        let (_d, s) = store();
        let s = Arc::new(s);
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let layer = gzip(&build_tar(&[Item::File("big", &data)]));
        let dg = digest::sha256_of(&layer);
        let layer = Arc::new(layer);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (s, layer, dg) = (s.clone(), layer.clone(), dg.clone());
                std::thread::spawn(move || {
                    ingest_all(&s, IngestSpec::for_blob(&dg, None, Some(GZ_LAYER)), &layer)
                })
            })
            .collect();
        for t in threads {
            let r = t.join().unwrap().unwrap();
            assert_eq!(r.layer.unwrap().info.unpacked_size, 2_000_000);
        }
        assert_eq!(fs::read(s.path(&dg).unwrap()).unwrap(), *layer);
        assert!(ingest_dir_is_empty(&s));
    }

    #[test]
    fn layer_ingest_records_diff_id_and_size_that_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let tar = build_tar(&[Item::File("f", &[1u8; 4096]), Item::Symlink("l", "f")]);
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let dg = digest::sha256_of(&zst);
        {
            let s = BlobStore::open(dir.path()).unwrap();
            // The media type claims gzip: the content decides.
            let r = ingest_all(&s, IngestSpec::for_blob(&dg, None, Some(GZ_LAYER)), &zst).unwrap();
            let layer = r.layer.unwrap();
            assert_eq!(layer.compression, Compression::Zstd);
            assert_eq!(layer.info.diff_id, digest::sha256_of(&tar));
        }
        let s = BlobStore::open(dir.path()).unwrap();
        let meta = s.layer(&dg, GZ_LAYER).unwrap();
        assert_eq!(meta.info.unpacked_size, 4097);
        assert_eq!(meta.tar_size, tar.len() as u64);
    }

    #[test]
    fn garbage_collection_spares_blobs_used_within_the_grace_period() {
        let (_d, s) = store();
        let dg = s.put(b"config", None).unwrap().blob.digest;
        assert_eq!(s.delete_idle(&dg, GC_GRACE).unwrap(), 0);
        assert!(s.exists(&dg), "just stored");
        let old = SystemTime::now() - 2 * GC_GRACE;
        File::open(s.path(&dg).unwrap())
            .unwrap()
            .set_modified(old)
            .unwrap();
        s.touch(&dg).unwrap();
        assert_eq!(s.delete_idle(&dg, GC_GRACE).unwrap(), 0);
        assert!(s.exists(&dg), "just found by a stat");
        File::open(s.path(&dg).unwrap())
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(s.delete_idle(&dg, GC_GRACE).unwrap(), 6);
        assert!(!s.exists(&dg));
    }

    #[test]
    fn a_blob_is_deleted_by_version_only_if_nobody_renewed_it() {
        let (_d, s) = store();
        let first = s.put(b"blob", None).unwrap();
        let version = first.created.expect("the first store creates the blob");
        assert!(s.put(b"blob", None).unwrap().created.is_none());
        assert_eq!(s.delete_version(&first.blob.digest, version).unwrap(), 0);
        assert!(s.exists(&first.blob.digest), "stored again since");
        let again = s.put(b"other", None).unwrap();
        s.touch(&again.blob.digest).unwrap();
        s.delete_version(&again.blob.digest, again.created.unwrap())
            .unwrap();
        assert!(s.exists(&again.blob.digest), "touched since");
        let last = s.put(b"last", None).unwrap();
        assert_eq!(
            s.delete_version(&last.blob.digest, last.created.unwrap())
                .unwrap(),
            4
        );
        assert!(!s.exists(&last.blob.digest));
    }

    #[test]
    fn a_malformed_layer_is_invalid() {
        let (_d, s) = store();
        let mut gz = gzip(&build_tar(&[Item::File("f", &[1u8; 100_000])]));
        gz.truncate(gz.len() - 20);
        let dg = digest::sha256_of(&gz);
        let err = ingest_all(&s, IngestSpec::for_blob(&dg, None, Some(GZ_LAYER)), &gz).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(
            err.message.starts_with("failed to register layer"),
            "{}",
            err.message
        );
        assert!(!s.exists(&dg));
    }
}

//! The snapshotter: one read-only directory per layer chain, unpacked once, shared by every image
//! and container on this node that has that chain.
//!
//! Layout under the root:
//! - `<chain-hex>/fs`: the unpacked layer (an overlayfs lower directory);
//!   `<chain-hex>/snapshot.json`: what it was made from. A `<chain-hex>` directory only appears
//!   by an atomic rename once complete, so none is ever half there.
//! - `<chain-hex>/synced`: the snapshot's files are on disk. A new snapshot is used at once and
//!   synced in the background (a container start does not wait for the disk). One that never
//!   got there before the machine went down (its `snapshot.json` names an earlier boot, and
//!   there is no `synced`) may hold torn files: opening the snapshotter discards it, and it is
//!   unpacked again when needed.
//! - `.ingest/`: layers being unpacked; `.trash/`: snapshots being deleted. Both are emptied when
//!   the snapshotter opens (what is left there is from a crash).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use nix::errno::Errno;
use nix::fcntl::{self, OFlag, RenameFlags};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use wharf_bus::image::{ImageRecord, LayerInfo};
use wharf_bus::BusError;

use super::blob_source::BlobSource;
use super::chain_id::{chain_hex, chain_ids};
use super::channel_reader::{self, ChannelReader, Piece};
use super::error::{Result, SnapshotError};
use super::layer_unpack::{self, Expected};
use crate::worker::Worker;

pub(crate) const INGEST_DIR: &str = ".ingest";
pub(crate) const TRASH_DIR: &str = ".trash";
const FS_DIR: &str = "fs";
const INFO_FILE: &str = "snapshot.json";
const SYNCED_FILE: &str = "synced";

/// What a snapshot was made from (`snapshot.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub chain_id: String,
    /// Chain ID of the layers below, if any.
    pub parent: Option<String>,
    pub diff_id: String,
    /// The blob it was unpacked from.
    pub blob_digest: String,
    /// `gzip`, `zstd` or `none`, as found in the blob.
    pub compression: String,
    /// Unix seconds.
    pub unpacked_at: u64,
    /// The boot it was unpacked in ([`wharf_bus::image::host_id`]).
    #[serde(default)]
    pub boot_id: String,
}

/// Layer snapshots of this node.
pub struct Snapshotter {
    root: PathBuf,
    /// One lock per chain being prepared (or collected), so a chain is unpacked once.
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Snapshotter {
    /// Opens (creating) the snapshot root, usually `<data_root>/runtime/snapshots`, and clears
    /// what a crash left in `.ingest` and `.trash`. Blocking: call it at start-up (from
    /// `spawn_blocking` on a runtime).
    pub fn open(root: impl Into<PathBuf>) -> Result<Snapshotter> {
        let root = root.into();
        for dir in [root.clone(), root.join(INGEST_DIR), root.join(TRASH_DIR)] {
            make_private_dir(&dir)?;
        }
        discard_unsynced(&root)?;
        for dir in [INGEST_DIR, TRASH_DIR] {
            clear_dir(&root.join(dir))?;
        }
        Ok(Snapshotter {
            root,
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The unpacked directory of a chain (whether it exists yet or not).
    pub fn fs_path(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.root.join(chain_hex(chain_id)?).join(FS_DIR))
    }

    /// Chain IDs of an image's layers, base first.
    pub fn chain_ids_of(image: &ImageRecord) -> Result<Vec<String>> {
        check_diff_ids(image)?;
        chain_ids(image.layers.iter().map(|l| l.diff_id.as_str()))
    }

    /// Makes sure every layer of `image` is unpacked (fetching from `source` what is missing)
    /// and returns the layer directories top first, as overlayfs' `lowerdir=` lists them.
    /// An image without layers gives an empty list.
    pub async fn prepare_image<S: BlobSource>(
        &self,
        image: &ImageRecord,
        source: &S,
    ) -> Result<Vec<PathBuf>> {
        let chains = Self::chain_ids_of(image)?;
        // Every layer unpacks into its own directory, so they unpack side by side (each is
        // a fetch, an inflate, two digests and file writes: work for every core).
        let unpacks = image
            .layers
            .iter()
            .zip(&chains)
            .enumerate()
            .map(|(i, (layer, chain))| {
                let parent = i.checked_sub(1).map(|p| chains[p].as_str());
                async move {
                    self.prepare_layer(chain, parent, layer, source)
                        .await
                        .map_err(|e| e.in_layer(&layer.digest))
                }
            });
        let mut dirs = futures::future::try_join_all(unpacks).await?;
        dirs.reverse();
        Ok(dirs)
    }

    /// Makes sure the snapshot `chain_id` (the layer `layer` over `parent`) is unpacked and
    /// returns its directory. Concurrent calls for one chain unpack it once.
    pub async fn prepare_layer<S: BlobSource>(
        &self,
        chain_id: &str,
        parent: Option<&str>,
        layer: &LayerInfo,
        source: &S,
    ) -> Result<PathBuf> {
        let hex = chain_hex(chain_id)?.to_string();
        let final_dir = self.root.join(&hex);
        let fs_dir = final_dir.join(FS_DIR);
        let lock = self.lock_for(chain_id);
        let _held = lock.lock().await;
        if exists(&fs_dir).await {
            return Ok(fs_dir);
        }
        let job = UnpackJob {
            root: self.root.clone(),
            hex,
            expected: Expected {
                diff_id: layer.diff_id.clone(),
                blob_digest: wharf_bus::digest::is_sha256(&layer.digest)
                    .then(|| layer.digest.clone()),
            },
            info: SnapshotInfo {
                chain_id: chain_id.to_string(),
                parent: parent.map(str::to_string),
                diff_id: layer.diff_id.clone(),
                blob_digest: layer.digest.clone(),
                compression: String::new(),
                unpacked_at: 0,
                boot_id: wharf_bus::image::host_id().unwrap_or_default(),
            },
        };
        tracing::debug!(chain_id, blob = %layer.digest, "unpacking layer");
        let (tx, reader) = channel_reader::channel();
        // The unpacker owns its temporary directory: if this future is dropped, it still
        // finishes or cleans up on its own.
        let unpack = tokio::task::spawn_blocking(move || job.run(reader));
        let (fetched, unpacked) = tokio::join!(download(source, &layer.digest, tx), unpack);
        let unpacked =
            unpacked.map_err(|e| SnapshotError::io("layer unpacker", std::io::Error::other(e)))?;
        if let Err(e) = fetched {
            return Err(SnapshotError::Fetch(e));
        }
        unpacked?;
        Ok(fs_dir)
    }

    /// The lock of one chain (shared while anyone holds it).
    pub(crate) fn lock_for(&self, chain_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("snapshot locks");
        locks.retain(|_, weak| weak.strong_count() > 0);
        if let Some(lock) = locks.get(chain_id).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(chain_id.to_string(), Arc::downgrade(&lock));
        lock
    }
}

/// The image's own list of diff IDs (its config) must agree with the layers the store scanned.
fn check_diff_ids(image: &ImageRecord) -> Result<()> {
    let Some(listed) = image
        .config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
    else {
        return Ok(());
    };
    let listed: Vec<&str> = listed.iter().filter_map(|v| v.as_str()).collect();
    let scanned: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    if listed != scanned {
        return Err(SnapshotError::InvalidImage(format!(
            "image {}: its config lists diff IDs {listed:?} but its layers are {scanned:?}",
            image.id
        )));
    }
    Ok(())
}

/// Streams the blob into the unpacker's channel. Stops quietly when the unpacker gave up (it
/// reports why); returns the source's error when the download failed.
async fn download<S: BlobSource>(
    source: &S,
    digest: &str,
    tx: mpsc::Sender<Piece>,
) -> Result<(), BusError> {
    let mut chunks = match source.open(digest).await {
        Ok(chunks) => chunks,
        Err(e) => {
            let _ = tx.send(Piece::Failed(e.clone())).await;
            return Err(e);
        }
    };
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(data) => {
                if tx.send(Piece::Data(data)).await.is_err() {
                    return Ok(());
                }
            }
            Err(e) => {
                let _ = tx.send(Piece::Failed(e.clone())).await;
                return Err(e);
            }
        }
    }
    let _ = tx.send(Piece::End).await;
    Ok(())
}

/// The blocking half of a prepare: unpack into `.ingest`, verify, publish by rename.
struct UnpackJob {
    root: PathBuf,
    hex: String,
    expected: Expected,
    info: SnapshotInfo,
}

impl UnpackJob {
    fn run(mut self, reader: ChannelReader) -> Result<()> {
        let ingest = self
            .root
            .join(INGEST_DIR)
            .join(format!("{}-{}", self.hex, nonce()));
        make_private_dir(&ingest)?;
        let discard = RemoveOnDrop(ingest.clone());
        let fs_dir = ingest.join(FS_DIR);
        std::fs::create_dir(&fs_dir)
            .map_err(|e| SnapshotError::io(format!("creating {}", fs_dir.display()), e))?;
        let unpacked = layer_unpack::unpack_verified(reader, &fs_dir, &self.expected)?;
        self.info.compression = format!("{:?}", unpacked.compression).to_lowercase();
        self.info.unpacked_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let info_path = ingest.join(INFO_FILE);
        let info = serde_json::to_vec_pretty(&self.info).expect("plain struct");
        std::fs::write(&info_path, info)
            .map_err(|e| SnapshotError::io(format!("writing {}", info_path.display()), e))?;
        tracing::debug!(
            chain_id = %self.info.chain_id,
            blob_size = unpacked.blob_size,
            "layer unpacked and verified"
        );
        let root_fd = open_dir(&self.root)?;
        let ingest_parent = open_dir(&self.root.join(INGEST_DIR))?;
        let from = ingest.file_name().expect("named");
        match fcntl::renameat2(
            &ingest_parent,
            from,
            &root_fd,
            self.hex.as_str(),
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => {
                std::mem::forget(discard);
                sync_in_background(self.root.join(&self.hex));
                Ok(())
            }
            // Another unpacker (another process on this root) published it first: same content.
            Err(Errno::EEXIST | Errno::ENOTEMPTY) => Ok(()),
            Err(e) => Err(SnapshotError::io("publishing the snapshot", e.into())),
        }
    }
}

/// Removes a directory tree when dropped (temporary unpack directories, on every error path).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // std's remove_dir_all does not follow symlinks inside the tree.
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {e}", self.0.display());
            }
        }
    }
}

pub(crate) fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn open_dir(path: &Path) -> Result<std::os::fd::OwnedFd> {
    fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SnapshotError::io(format!("opening {}", path.display()), e.into()))
}

fn make_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(SnapshotError::io(format!("creating {}", path.display()), e)),
    }
}

/// Syncs come this long after the last snapshot published: a sync makes every metadata
/// change on the file system wait behind the data it writes, and the snapshot was just
/// published for a container that is starting.
const SYNC_QUIET: std::time::Duration = std::time::Duration::from_secs(5);
/// ... but no later than this after the first one waiting.
const SYNC_AT_MOST: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes a published snapshot's files to disk, then marks it `synced`, off the caller's path
/// (one background thread; snapshots published close together share one sync).
fn sync_in_background(dir: PathBuf) {
    static SYNCER: Worker<PathBuf> = Worker::new("snapshot-sync", sync_loop);
    if let Err(dir) = SYNCER.send(dir) {
        // No thread: it stays unsynced this boot, and counts as this boot's at the next open.
        tracing::warn!("snapshot {} is not synced", dir.display());
    }
}

fn sync_loop(rx: std::sync::mpsc::Receiver<PathBuf>) {
    use std::sync::mpsc::RecvTimeoutError;
    while let Ok(first) = rx.recv() {
        let began = std::time::Instant::now();
        let mut batch = vec![first];
        loop {
            let left = SYNC_AT_MOST.saturating_sub(began.elapsed());
            match rx.recv_timeout(SYNC_QUIET.min(left)) {
                Ok(dir) => batch.push(dir),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if left.is_zero() {
                break;
            }
        }
        if let Err(e) = sync_snapshots(&batch) {
            tracing::warn!("cannot sync {} snapshot(s): {e}", batch.len());
        }
    }
}

fn sync_snapshots(dirs: &[PathBuf]) -> std::io::Result<()> {
    let mut synced_fs = false;
    for dir in dirs {
        // Removed meanwhile: nothing to keep.
        let Ok(fd) = open_dir(dir) else { continue };
        if !synced_fs {
            nix::unistd::syncfs(&fd)?;
            synced_fs = true;
        }
        let marker = std::fs::File::create(dir.join(SYNCED_FILE))?;
        marker.sync_all()?;
        nix::unistd::fsync(&fd)?;
    }
    Ok(())
}

/// At open: snapshots without `synced` from an earlier boot go to the trash (their files may
/// be torn); those of this boot (their files are in the page cache) are synced again.
fn discard_unsynced(root: &Path) -> Result<()> {
    let boot = wharf_bus::image::host_id().unwrap_or_default();
    let entries = std::fs::read_dir(root)
        .map_err(|e| SnapshotError::io(format!("reading {}", root.display()), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(hex) = name.to_str().filter(|n| wharf_bus::digest::is_hex64(n)) else {
            continue;
        };
        let dir = entry.path();
        if dir.join(SYNCED_FILE).exists() {
            continue;
        }
        let info: Option<SnapshotInfo> = std::fs::read(dir.join(INFO_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match info {
            // Unpacked before snapshots recorded their boot: those were synced before publishing.
            Some(i) if i.boot_id.is_empty() => {
                let _ = std::fs::File::create(dir.join(SYNCED_FILE));
                continue;
            }
            Some(i) if !boot.is_empty() && i.boot_id == boot => {
                sync_in_background(dir);
                continue;
            }
            _ => {}
        }
        tracing::warn!("discarding snapshot {hex}: it was not on disk when the machine stopped");
        let trash = root.join(TRASH_DIR).join(format!("{hex}-{}", nonce()));
        std::fs::rename(&dir, &trash)
            .map_err(|e| SnapshotError::io(format!("discarding {}", dir.display()), e))?;
    }
    Ok(())
}

fn clear_dir(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SnapshotError::io(format!("reading {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        tracing::info!("removing leftover {}", path.display());
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(|e| SnapshotError::io(format!("removing {}", path.display()), e))?;
    }
    Ok(())
}

async fn exists(path: &Path) -> bool {
    tokio::fs::symlink_metadata(path)
        .await
        .map(|m| m.is_dir())
        .unwrap_or(false)
}

//! Which snapshots exist, and removing the ones nothing needs.
//!
//! The snapshotter does not know who uses a snapshot: containers and images tell it by the set
//! of chain IDs to keep (an image keeps every chain of its layers). A snapshot being prepared is
//! never removed; one being removed disappears at once (renamed into `.trash`) and is deleted
//! after, so a crash in between leaves only trash.

use std::collections::HashSet;
use std::path::Path;

use super::error::{Result, SnapshotError};
use super::snapshotter::{nonce, Snapshotter, TRASH_DIR};

impl Snapshotter {
    /// Chain IDs of the snapshots present.
    pub async fn list(&self) -> Result<Vec<String>> {
        let root = self.root().to_path_buf();
        tokio::task::spawn_blocking(move || list_blocking(&root))
            .await
            .map_err(|e| SnapshotError::io("listing snapshots", std::io::Error::other(e)))?
    }

    /// Deletes every snapshot whose chain ID is not in `keep`; returns the chain IDs removed.
    pub async fn remove_unused(&self, keep: &HashSet<String>) -> Result<Vec<String>> {
        let present = self.list().await?;
        // Hold the lock of every chain we remove, so no prepare hands it out meanwhile.
        let mut doomed = Vec::new();
        for chain_id in present.into_iter().filter(|c| !keep.contains(c)) {
            let lock = self.lock_for(&chain_id);
            if let Ok(guard) = lock.try_lock_owned() {
                doomed.push((chain_id, guard));
            }
        }
        let root = self.root().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut removed = Vec::new();
            for (chain_id, _guard) in doomed {
                let hex = chain_id.trim_start_matches("sha256:");
                let trash = root.join(TRASH_DIR).join(format!("{hex}-{}", nonce()));
                std::fs::rename(root.join(hex), &trash)
                    .map_err(|e| SnapshotError::io(format!("removing snapshot {chain_id}"), e))?;
                std::fs::remove_dir_all(&trash)
                    .map_err(|e| SnapshotError::io(format!("deleting {}", trash.display()), e))?;
                tracing::info!(chain_id, "snapshot removed");
                removed.push(chain_id);
            }
            Ok(removed)
        })
        .await
        .map_err(|e| SnapshotError::io("removing snapshots", std::io::Error::other(e)))?
    }
}

fn list_blocking(root: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(root)
        .map_err(|e| SnapshotError::io(format!("reading {}", root.display()), e))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if wharf_bus::digest::is_hex64(name) && entry.path().join("fs").is_dir() {
            out.push(format!("sha256:{name}"));
        }
    }
    out.sort();
    Ok(out)
}

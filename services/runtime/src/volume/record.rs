//! The record of one volume, persisted as `<root>/<name>/volume.json` by writing a temporary
//! file and renaming it over the old one, so a crash leaves either the old or the new record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::volume::{Result, VolumeError};

pub(crate) const RECORD_FILE: &str = "volume.json";
pub(crate) const DATA_DIR: &str = "_data";

/// One volume as `docker volume inspect` describes it, plus what the store tracks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// RFC 3339, as dockerd's `CreatedAt`.
    pub created_at: String,
    pub scope: String,
    /// `<root>/<name>/_data`; recomputed on load so a moved data root stays right.
    #[serde(skip)]
    pub mountpoint: PathBuf,
    /// IDs of the containers that mount the volume.
    #[serde(default)]
    pub references: BTreeSet<String>,
    /// Whether image content was copied in once (copy-up is not repeated).
    #[serde(default)]
    pub populated: bool,
}

impl Volume {
    /// Whether no container uses the volume (`dangling=true`).
    pub fn is_dangling(&self) -> bool {
        self.references.is_empty()
    }

    /// Whether the volume was made without a name (dockerd's anonymous label).
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(crate::volume::ANONYMOUS_LABEL)
    }
}

/// Reads the record in `dir`; `None` when the directory holds none.
pub(crate) fn load(dir: &Path) -> Result<Option<Volume>> {
    let path = dir.join(RECORD_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(VolumeError::io(format!("read {}", path.display()), e)),
    };
    let mut volume: Volume = serde_json::from_slice(&bytes).map_err(|e| {
        VolumeError::io(
            format!("parse {}", path.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    volume.mountpoint = dir.join(DATA_DIR);
    Ok(Some(volume))
}

/// Writes the record into `dir` atomically (temporary file, fsync, rename, fsync the directory).
pub(crate) fn store(dir: &Path, volume: &Volume) -> Result<()> {
    let json = serde_json::to_vec_pretty(volume).expect("a volume record serializes");
    wharf_bus::files::write_atomic(
        &dir.join(RECORD_FILE),
        &json,
        wharf_bus::files::Durability::Synced,
    )
    .map_err(|e| VolumeError::io(format!("write record of volume {}", volume.name), e))
}

/// Drops a temporary record left by a crash between write and rename.
pub(crate) fn discard_temp(dir: &Path) {
    wharf_bus::files::remove_leftovers(dir, RECORD_FILE);
}

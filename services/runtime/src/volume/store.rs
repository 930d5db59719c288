//! The local driver's store: one directory per volume under `<data_root>/runtime/volumes`,
//! records kept in memory and on disk, changes serialized by one lock.
//!
//! The methods block on the file system; async callers run them in `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::volume::copy_up;
use crate::volume::name::{anonymous_name, validate_name, ANONYMOUS_LABEL};
use crate::volume::record::{self, Volume, DATA_DIR};
use crate::volume::{size, Result, VolumeError, VolumeFilters, LOCAL_DRIVER};

/// Options the local driver knows (`docker volume create -o`); dockerd refuses others.
const LOCAL_OPTIONS: &[&str] = &["type", "device", "o", "size"];

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub volumes_deleted: Vec<String>,
    pub space_reclaimed: u64,
}

/// The volumes of this node.
#[derive(Debug)]
pub struct VolumeStore {
    root: PathBuf,
    volumes: Mutex<BTreeMap<String, Volume>>,
    /// Serializes copy-ups (long) without holding the records' lock.
    copying: Mutex<()>,
}

impl VolumeStore {
    /// Opens (creating) the store at `root` and loads every volume recorded there.
    pub fn open(root: impl Into<PathBuf>) -> Result<VolumeStore> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| VolumeError::io(format!("create {}", root.display()), e))?;
        let mut volumes = BTreeMap::new();
        let entries = std::fs::read_dir(&root)
            .map_err(|e| VolumeError::io(format!("read {}", root.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| VolumeError::io(format!("read {}", root.display()), e))?;
            let dir = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            record::discard_temp(&dir);
            match record::load(&dir)? {
                Some(volume) if volume.name == entry.file_name().to_string_lossy() => {
                    volumes.insert(volume.name.clone(), volume);
                }
                Some(volume) => tracing::warn!(
                    dir = %dir.display(), name = %volume.name,
                    "volume record names another directory; ignored"
                ),
                None => {
                    tracing::warn!(dir = %dir.display(), "volume directory without a record; ignored")
                }
            }
        }
        Ok(VolumeStore {
            root,
            volumes: Mutex::new(volumes),
            copying: Mutex::new(()),
        })
    }

    /// The directory of the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a volume; without a name (or with an empty one) an anonymous one. An existing
    /// name is returned as it is (labels are not updated, as dockerd), unless different
    /// options are asked for.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<Volume> {
        let mut labels = labels;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                validate_name(n)?;
                n.to_string()
            }
            None => {
                labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                anonymous_name()
            }
        };
        if let Some(key) = options
            .keys()
            .find(|k| !LOCAL_OPTIONS.contains(&k.as_str()))
        {
            return Err(VolumeError::InvalidParameter(format!(
                "invalid option: {key:?}"
            )));
        }
        let mut volumes = self.lock();
        if let Some(existing) = volumes.get(&name) {
            if !options.is_empty() && options != existing.options {
                return Err(VolumeError::Conflict(format!(
                    "volume {name} already exists with different options"
                )));
            }
            return Ok(existing.clone());
        }
        let dir = self.root.join(&name);
        let volume = Volume {
            name: name.clone(),
            driver: LOCAL_DRIVER.to_string(),
            labels,
            options,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            scope: "local".to_string(),
            mountpoint: dir.join(DATA_DIR),
            references: BTreeSet::new(),
            populated: false,
        };
        // A directory left without a record is not ours to reuse or clean up.
        std::fs::create_dir(&dir)
            .map_err(|e| VolumeError::io(format!("create volume {name}"), e))?;
        let made = std::fs::create_dir(&volume.mountpoint)
            .map_err(|e| VolumeError::io(format!("create volume {name}"), e))
            .and_then(|()| record::store(&dir, &volume));
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        volumes.insert(name, volume.clone());
        Ok(volume)
    }

    /// The volume called `name`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))
    }

    /// The volumes passing `filters`, by name.
    pub fn list(&self, filters: &VolumeFilters) -> Vec<Volume> {
        self.lock()
            .values()
            .filter(|v| filters.matches(v))
            .cloned()
            .collect()
    }

    /// Removes a volume and its content. A volume in use is refused even with `force`, as by
    /// dockerd; `force` only makes a missing volume no error.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let mut volumes = self.lock();
        let Some(volume) = volumes.get(name) else {
            return if force {
                Ok(())
            } else {
                Err(VolumeError::NotFound(name.to_string()))
            };
        };
        if !volume.is_dangling() {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                containers: volume.references.iter().cloned().collect(),
            });
        }
        self.delete(name)?;
        volumes.remove(name);
        Ok(())
    }

    /// Removes unused volumes passing `filters`: anonymous ones only unless `all=true`
    /// (dockerd ≥ 23), reporting the bytes their content used.
    pub fn prune(&self, filters: &VolumeFilters) -> Result<PruneReport> {
        let mut volumes = self.lock();
        let doomed: Vec<String> = volumes
            .values()
            .filter(|v| v.is_dangling() && (filters.all || v.is_anonymous()))
            .filter(|v| filters.matches(v))
            .map(|v| v.name.clone())
            .collect();
        let mut report = PruneReport::default();
        for name in doomed {
            let used = size::disk_usage(&self.root.join(&name).join(DATA_DIR)).unwrap_or(0);
            self.delete(&name)?;
            volumes.remove(&name);
            report.volumes_deleted.push(name);
            report.space_reclaimed += used;
        }
        Ok(report)
    }

    /// Records that `container_id` mounts the volume (idempotent).
    pub fn acquire(&self, name: &str, container_id: &str) -> Result<Volume> {
        self.update(name, |v| v.references.insert(container_id.to_string()))
    }

    /// Records that `container_id` no longer mounts the volume (idempotent).
    pub fn release(&self, name: &str, container_id: &str) -> Result<Volume> {
        self.update(name, |v| v.references.remove(container_id))
    }

    /// Bytes used by the volume's content (`docker system df -v`).
    pub fn size(&self, name: &str) -> Result<u64> {
        let volume = self.get(name)?;
        size::disk_usage(&volume.mountpoint)
            .map_err(|e| VolumeError::io(format!("measure volume {name}"), e))
    }

    /// Copies the directory `path` of the container's root file system `rootfs` (the mount
    /// point, resolved inside `rootfs`: symlinks never lead out of it) into the volume, once:
    /// nothing happens if the volume was populated before, if it is not empty (then it counts
    /// as populated), or if `path` is not a directory. Returns whether content was copied. Call
    /// it after `acquire`, so the volume cannot be removed meanwhile.
    pub fn populate_from(&self, name: &str, rootfs: &Path, path: &Path) -> Result<bool> {
        let _copying = self.copying.lock().unwrap_or_else(|e| e.into_inner());
        let volume = self.get(name)?;
        if volume.populated {
            return Ok(false);
        }
        let failed = |reason: String| VolumeError::CopyUp {
            name: name.to_string(),
            reason,
        };
        let source = match copy_up::open_dir_in(rootfs, path) {
            Ok(fd) => fd,
            // Missing or not a directory in the image: nothing to copy (not marked: another
            // mount point may have content).
            Err(_) => return Ok(false),
        };
        let dest = copy_up::open_dir(&volume.mountpoint)
            .map_err(|e| failed(format!("open {}: {e}", volume.mountpoint.display())))?;
        let empty = copy_up::is_empty(&dest).map_err(|e| failed(format!("list volume: {e}")))?;
        if empty {
            copy_up::copy_tree(&source, dest).map_err(|e| failed(e.to_string()))?;
        }
        self.update(name, |v| !std::mem::replace(&mut v.populated, true))?;
        Ok(empty)
    }

    /// Applies `change` to a volume and persists it when it says it changed something.
    fn update(&self, name: &str, change: impl FnOnce(&mut Volume) -> bool) -> Result<Volume> {
        let mut volumes = self.lock();
        let volume = volumes
            .get_mut(name)
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
        let mut changed = volume.clone();
        if change(&mut changed) {
            record::store(&self.root.join(name), &changed)?;
            *volume = changed;
        }
        Ok(volume.clone())
    }

    /// Deletes a volume's directory: the record first, so a crash midway cannot bring back a
    /// half-removed volume on the next open.
    fn delete(&self, name: &str) -> Result<()> {
        let dir = self.root.join(name);
        match std::fs::remove_file(dir.join(record::RECORD_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(VolumeError::io(format!("remove volume {name}"), e)),
        }
        // remove_dir_all works through descriptors and does not follow symlinks.
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VolumeError::io(format!("remove volume {name}"), e)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Volume>> {
        self.volumes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

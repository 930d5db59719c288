//! Image metadata: one JSON file per image under `<root>/images/<hex>.json` and the reference
//! table (normalized reference -> image ID) in `<root>/refs.json`. Every change is written
//! atomically before it is visible in memory, so a restart sees a consistent index.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use wharf_bus::image::ImageRecord;
use wharf_bus::reference::{self, Reference};
use wharf_bus::BusError;

use crate::digest;
use crate::fsutil::write_atomic;

pub struct ImageIndex {
    root: PathBuf,
    /// Records by ID, without their references (those live in `refs`).
    images: BTreeMap<String, ImageRecord>,
    /// Normalized reference (`docker.io/library/busybox:latest`, `...@sha256:...`) -> image ID.
    refs: BTreeMap<String, String>,
}

impl ImageIndex {
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("images"))?;
        let mut images = BTreeMap::new();
        for entry in fs::read_dir(root.join("images"))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&path)
                .ok()
                .and_then(|d| serde_json::from_slice::<ImageRecord>(&d).ok())
            {
                Some(rec) => {
                    images.insert(rec.id.clone(), rec);
                }
                None => tracing::warn!("ignoring unreadable image record {}", path.display()),
            }
        }
        let mut refs: BTreeMap<String, String> = match fs::read(root.join("refs.json")) {
            Ok(d) => serde_json::from_slice(&d).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        refs.retain(|_, id| images.contains_key(id));
        Ok(ImageIndex {
            root: root.to_path_buf(),
            images,
            refs,
        })
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.images.keys()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.images.contains_key(id)
    }

    /// The record of `id` with its references.
    pub fn get(&self, id: &str) -> Option<ImageRecord> {
        let mut rec = self.images.get(id)?.clone();
        for (r, target) in &self.refs {
            if target == id {
                if r.contains('@') {
                    rec.repo_digests.push(r.clone());
                } else {
                    rec.repo_tags.push(r.clone());
                }
            }
        }
        Some(rec)
    }

    pub fn all(&self) -> Vec<ImageRecord> {
        self.images.keys().filter_map(|id| self.get(id)).collect()
    }

    /// References (tags and digests) pointing at `id`, sorted.
    pub fn refs_of(&self, id: &str) -> Vec<String> {
        self.refs
            .iter()
            .filter(|(_, t)| *t == id)
            .map(|(r, _)| r.clone())
            .collect()
    }

    pub fn target(&self, full_ref: &str) -> Option<&String> {
        self.refs.get(full_ref)
    }

    /// Stores a record (its references are ignored; use [`ImageIndex::set_ref`]).
    pub fn put(&mut self, mut rec: ImageRecord) -> io::Result<()> {
        rec.repo_tags.clear();
        rec.repo_digests.clear();
        let hex = rec
            .id
            .strip_prefix("sha256:")
            .unwrap_or(&rec.id)
            .to_string();
        let data = serde_json::to_vec_pretty(&rec).map_err(io::Error::other)?;
        write_atomic(&self.root.join("images").join(format!("{hex}.json")), &data)?;
        self.images.insert(rec.id.clone(), rec);
        Ok(())
    }

    /// Removes an image and every reference to it.
    pub fn remove(&mut self, id: &str) -> io::Result<()> {
        let before = self.refs.len();
        self.refs.retain(|_, t| t != id);
        if self.refs.len() != before {
            self.save_refs()?;
        }
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        match fs::remove_file(self.root.join("images").join(format!("{hex}.json"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.images.remove(id);
        Ok(())
    }

    /// Points `full_ref` at `id`; returns the image it pointed at before.
    pub fn set_ref(&mut self, full_ref: &str, id: &str) -> io::Result<Option<String>> {
        let old = self.refs.insert(full_ref.to_string(), id.to_string());
        if old.as_deref() != Some(id) {
            if let Err(e) = self.save_refs() {
                match &old {
                    Some(o) => self.refs.insert(full_ref.to_string(), o.clone()),
                    None => self.refs.remove(full_ref),
                };
                return Err(e);
            }
        }
        Ok(old)
    }

    pub fn remove_ref(&mut self, full_ref: &str) -> io::Result<Option<String>> {
        let old = self.refs.remove(full_ref);
        if old.is_some() {
            self.save_refs()?;
        }
        Ok(old)
    }

    /// Updates a record in memory and on disk (say, its last tag time).
    pub fn update(&mut self, id: &str, f: impl FnOnce(&mut ImageRecord)) -> io::Result<()> {
        if let Some(mut rec) = self.images.get(id).cloned() {
            f(&mut rec);
            self.put(rec)?;
        }
        Ok(())
    }

    fn save_refs(&self) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(&self.refs).map_err(io::Error::other)?;
        write_atomic(&self.root.join("refs.json"), &data)
    }

    /// Finds an image as dockerd does: a full ID (`sha256:` optional), then a reference
    /// (`:latest` when neither tag nor digest is given), then a unique ID prefix.
    pub fn resolve(&self, name: &str) -> Result<String, BusError> {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if digest::is_hex64(hex) {
            let id = format!("sha256:{hex}");
            if self.images.contains_key(&id) {
                return Ok(id);
            }
            return Err(no_such_image(&id));
        }
        let parsed = Reference::parse(name);
        if let Ok(r) = &parsed {
            let key = reference_key(r);
            if let Some(id) = self.refs.get(&key) {
                return Ok(id.clone());
            }
        }
        if reference::is_id_prefix(name) {
            let prefix = format!("sha256:{hex}");
            let mut found = self
                .images
                .range(prefix.clone()..)
                .take_while(|(id, _)| id.starts_with(&prefix));
            if let (Some((id, _)), None) = (found.next(), found.next()) {
                return Ok(id.clone());
            }
        }
        match parsed {
            Ok(r) => Err(no_such_image(&r.with_default_tag().familiar())),
            Err(e) => Err(e),
        }
    }
}

/// The table key of a parsed reference: `name@digest` when it has a digest, else
/// `name:tag` with `latest` by default.
pub fn reference_key(r: &Reference) -> String {
    match &r.digest {
        Some(d) => format!("{}@{}", r.name(), d),
        None => r.clone().with_default_tag().to_string(),
    }
}

pub fn no_such_image(what: &str) -> BusError {
    BusError::not_found(format!("No such image: {what}"))
}

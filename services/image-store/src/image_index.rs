//! Image metadata: one JSON file per image under `<root>/images/<hex>.json` and the reference
//! table (normalized reference -> image ID) in `<root>/refs.json`. Every change is written
//! atomically before it is visible in memory, so a restart sees a consistent index. An image's
//! parent is part of its record; the children of each image are derived from those on open.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use wharf_bus::image::ImageRecord;
use wharf_bus::reference::{self, Reference};
use wharf_bus::BusError;

use wharf_bus::digest;
use wharf_bus::files::{write_atomic, Durability};

pub struct ImageIndex {
    root: PathBuf,
    /// Records by ID, without their references (those live in `refs`).
    images: BTreeMap<String, ImageRecord>,
    /// Normalized reference (`docker.io/library/busybox:latest`, `...@sha256:...`) -> image ID.
    refs: BTreeMap<String, String>,
    /// The same table the other way round: image ID -> its references, sorted.
    refs_by_image: HashMap<String, BTreeSet<String>>,
    /// Image ID -> the stored images whose parent it is.
    children: HashMap<String, BTreeSet<String>>,
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
        let mut refs_by_image: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (r, id) in &refs {
            refs_by_image
                .entry(id.clone())
                .or_default()
                .insert(r.clone());
        }
        let mut children: HashMap<String, BTreeSet<String>> = HashMap::new();
        for rec in images.values() {
            // A parent that is gone is no parent (dockerd ignores such a link too).
            if let Some(p) = rec.parent.as_ref().filter(|p| images.contains_key(*p)) {
                children
                    .entry(p.clone())
                    .or_default()
                    .insert(rec.id.clone());
            }
        }
        Ok(ImageIndex {
            root: root.to_path_buf(),
            images,
            refs,
            refs_by_image,
            children,
        })
    }

    /// Every stored record, by ID, without its references.
    pub fn records(&self) -> impl Iterator<Item = &ImageRecord> {
        self.images.values()
    }

    /// The stored record of `id`, without its references.
    pub fn record(&self, id: &str) -> Option<&ImageRecord> {
        self.images.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.images.contains_key(id)
    }

    /// The record of `id` with its references.
    pub fn get(&self, id: &str) -> Option<ImageRecord> {
        self.images.get(id).map(|rec| self.with_refs(rec))
    }

    /// A copy of `rec` with its references filled in.
    pub fn with_refs(&self, rec: &ImageRecord) -> ImageRecord {
        let mut rec = rec.clone();
        for r in self.refs_by_image.get(&rec.id).into_iter().flatten() {
            if r.contains('@') {
                rec.repo_digests.push(r.clone());
            } else {
                rec.repo_tags.push(r.clone());
            }
        }
        rec
    }

    /// Whether any reference points at `id`.
    pub fn is_referenced(&self, id: &str) -> bool {
        self.refs_by_image.get(id).is_some_and(|r| !r.is_empty())
    }

    /// The stored parent of `id`, if it has one.
    pub fn parent_of(&self, id: &str) -> Option<&String> {
        self.images
            .get(id)
            .and_then(|r| r.parent.as_ref())
            .filter(|p| self.images.contains_key(*p))
    }

    /// Whether any stored image has `id` as its parent.
    pub fn has_children(&self, id: &str) -> bool {
        self.children.get(id).is_some_and(|c| !c.is_empty())
    }

    /// The images whose parent is `id`, sorted.
    pub fn children_of(&self, id: &str) -> Vec<String> {
        self.children
            .get(id)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `ancestor` is `id` or one of its parents, grandparents, ...
    pub fn descends_from(&self, id: &str, ancestor: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut at = Some(id);
        while let Some(i) = at {
            if i == ancestor {
                return true;
            }
            if !seen.insert(i) {
                return false;
            }
            at = self.parent_of(i).map(String::as_str);
        }
        false
    }

    /// References (tags and digests) pointing at `id`, sorted.
    pub fn refs_of(&self, id: &str) -> Vec<String> {
        self.refs_by_image
            .get(id)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn target(&self, full_ref: &str) -> Option<&String> {
        self.refs.get(full_ref)
    }

    /// Stores a record (its references are ignored; use [`ImageIndex::set_ref`]). Its parent, if
    /// any, must be stored.
    pub fn put(&mut self, mut rec: ImageRecord) -> io::Result<()> {
        rec.repo_tags.clear();
        rec.repo_digests.clear();
        let hex = rec
            .id
            .strip_prefix("sha256:")
            .unwrap_or(&rec.id)
            .to_string();
        let data = serde_json::to_vec_pretty(&rec).map_err(io::Error::other)?;
        write_atomic(
            &self.root.join("images").join(format!("{hex}.json")),
            &data,
            Durability::Synced,
        )?;
        let old_parent = self.images.get(&rec.id).and_then(|r| r.parent.clone());
        if old_parent != rec.parent {
            if let Some(p) = old_parent {
                self.unlink_child(&p, &rec.id);
            }
            if let Some(p) = &rec.parent {
                self.children
                    .entry(p.clone())
                    .or_default()
                    .insert(rec.id.clone());
            }
        }
        self.images.insert(rec.id.clone(), rec);
        Ok(())
    }

    fn unlink_child(&mut self, parent: &str, child: &str) {
        if let Some(c) = self.children.get_mut(parent) {
            c.remove(child);
            if c.is_empty() {
                self.children.remove(parent);
            }
        }
    }

    /// Removes an image and every reference to it. Its children (if any) lose their parent, as
    /// in dockerd.
    pub fn remove(&mut self, id: &str) -> io::Result<()> {
        for child in self.children_of(id) {
            self.update(&child, |r| r.parent = None)?;
        }
        if let Some(refs) = self.refs_by_image.remove(id) {
            for r in &refs {
                self.refs.remove(r);
            }
            if !refs.is_empty() {
                self.save_refs()?;
            }
        }
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        match fs::remove_file(self.root.join("images").join(format!("{hex}.json"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = self.images.remove(id).and_then(|r| r.parent) {
            self.unlink_child(&p, id);
        }
        Ok(())
    }

    /// Points `full_ref` at `id`, which must be stored; returns the image it pointed at before.
    pub fn set_ref(&mut self, full_ref: &str, id: &str) -> Result<Option<String>, BusError> {
        if !self.images.contains_key(id) {
            return Err(no_such_image(id));
        }
        let old = self.refs.insert(full_ref.to_string(), id.to_string());
        if old.as_deref() == Some(id) {
            return Ok(old);
        }
        if let Err(e) = self.save_refs() {
            match &old {
                Some(o) => self.refs.insert(full_ref.to_string(), o.clone()),
                None => self.refs.remove(full_ref),
            };
            return Err(BusError::internal(format!("image store: {e}")));
        }
        if let Some(o) = &old {
            self.unlink_ref(o, full_ref);
        }
        self.refs_by_image
            .entry(id.to_string())
            .or_default()
            .insert(full_ref.to_string());
        Ok(old)
    }

    pub fn remove_ref(&mut self, full_ref: &str) -> io::Result<Option<String>> {
        let Some(old) = self.refs.remove(full_ref) else {
            return Ok(None);
        };
        if let Err(e) = self.save_refs() {
            self.refs.insert(full_ref.to_string(), old);
            return Err(e);
        }
        self.unlink_ref(&old, full_ref);
        Ok(Some(old))
    }

    fn unlink_ref(&mut self, id: &str, full_ref: &str) {
        if let Some(refs) = self.refs_by_image.get_mut(id) {
            refs.remove(full_ref);
            if refs.is_empty() {
                self.refs_by_image.remove(id);
            }
        }
    }

    /// Updates a record in memory and on disk (say, its last tag time).
    pub fn update(&mut self, id: &str, f: impl FnOnce(&mut ImageRecord)) -> io::Result<()> {
        if let Some(mut rec) = self.images.get(id).cloned() {
            f(&mut rec);
            self.put(rec)?;
        }
        Ok(())
    }

    /// Sets an image's last tag time, in memory and on disk without a sync: a crash may bring
    /// back the previous time, which only `docker inspect` shows (a rebuild re-tags its image on
    /// every build; a sync there cost a few milliseconds each time).
    pub fn set_last_tag_time(&mut self, id: &str, time: String) -> io::Result<()> {
        let Some(rec) = self.images.get_mut(id) else {
            return Ok(());
        };
        rec.last_tag_time = Some(time);
        let mut stored = rec.clone();
        stored.repo_tags.clear();
        stored.repo_digests.clear();
        let hex = id.strip_prefix("sha256:").unwrap_or(id).to_string();
        let data = serde_json::to_vec_pretty(&stored).map_err(io::Error::other)?;
        write_atomic(
            &self.root.join("images").join(format!("{hex}.json")),
            &data,
            Durability::Unsynced,
        )
    }

    fn save_refs(&self) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(&self.refs).map_err(io::Error::other)?;
        write_atomic(&self.root.join("refs.json"), &data, Durability::Synced)
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

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_bus::ErrorKind;

    fn record(id: &str) -> ImageRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "repo_tags": [], "repo_digests": [], "size": 0, "layers": [], "config": {}, "config_size": 2,
            "stored_at": "2024-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn a_reference_to_an_unknown_image_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = ImageIndex::open(dir.path()).unwrap();
        let id = format!("sha256:{}", "a".repeat(64));
        let err = index.set_ref("docker.io/library/a:1", &id).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(index.target("docker.io/library/a:1").is_none());
        index.put(record(&id)).unwrap();
        index.set_ref("docker.io/library/a:1", &id).unwrap();
        index.remove(&id).unwrap();
        assert!(index.set_ref("docker.io/library/a:2", &id).is_err());
        assert!(index.target("docker.io/library/a:1").is_none());
    }

    #[test]
    fn references_are_found_by_image_as_they_move() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = ImageIndex::open(dir.path()).unwrap();
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        index.put(record(&a)).unwrap();
        index.put(record(&b)).unwrap();
        let pinned = format!("docker.io/library/x@sha256:{}", "c".repeat(64));
        index.set_ref("docker.io/library/x:1", &a).unwrap();
        index.set_ref(&pinned, &a).unwrap();
        assert_eq!(
            index.get(&a).unwrap().repo_tags,
            vec!["docker.io/library/x:1"]
        );
        assert_eq!(
            index.set_ref("docker.io/library/x:1", &b).unwrap(),
            Some(a.clone())
        );
        assert_eq!(index.refs_of(&a), vec![pinned.clone()]);
        assert_eq!(index.refs_of(&b), vec!["docker.io/library/x:1"]);
        index.remove_ref(&pinned).unwrap();
        assert!(!index.is_referenced(&a));
        let reopened = ImageIndex::open(dir.path()).unwrap();
        assert_eq!(
            reopened.get(&b).unwrap().repo_tags,
            vec!["docker.io/library/x:1"]
        );
    }
}

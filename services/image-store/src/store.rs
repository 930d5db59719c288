//! The image store: blobs plus image metadata, with dockerd's rules for committing, tagging,
//! resolving, listing, deleting and pruning images. Mutations report the events dockerd would
//! log into an [`Events`] list; the bus adapter publishes them.
//!
//! Images may have a parent (the image a `docker commit` or a classic build step started from),
//! as in dockerd: an untagged image with children is an intermediate image, hidden from lists
//! and prunes; an image with children cannot be deleted; deleting an image deletes its untagged,
//! unused ancestors too (unless `no_prune`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use wharf_bus::digest::{self, short_id};
use wharf_bus::image::{
    BlobRefTyped, DeleteItem, ImageCommit, ImageDelete, ImageList, ImagePrune, ImageRecord,
    ImageTag, LayerInfo, PruneReport,
};
use wharf_bus::reference::{self, Reference};
use wharf_bus::BusError;

use crate::blob_store::{BlobStore, BlobVersion, LayerMeta, GC_GRACE};
use crate::filters;
use crate::image_index::{self, reference_key, ImageIndex};

/// Largest config (or manifest) the store reads into memory.
pub const MAX_CONFIG_SIZE: u64 = 8 << 20;

/// An image event as dockerd logs it: `Actor.ID` and attributes (`name` and the image labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEvent {
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
}

pub type Events = Vec<ImageEvent>;

pub struct ImageStore {
    pub blobs: BlobStore,
    index: RwLock<ImageIndex>,
    /// The lease rule's grace period (see [`crate::blob_store`]).
    gc_grace: Duration,
}

/// An image recorded by [`ImageStore::create`].
#[derive(Debug, Clone)]
pub struct Created {
    /// The record, with its references.
    pub image: ImageRecord,
    /// For each tag asked for, in order: the image that held it before, if another.
    pub retagged_from: Vec<Option<String>>,
}

/// An image checked against its blobs, ready to be recorded.
struct Prepared {
    id: String,
    config: serde_json::Value,
    config_size: u64,
    layers: Vec<LayerMeta>,
    manifest: Option<BlobRefTyped>,
    /// The parent to record; `None` keeps the one an image already stored has.
    parent: Option<String>,
}

fn internal(e: impl std::fmt::Display) -> BusError {
    BusError::internal(format!("image store: {e}"))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Who uses an image: `in_use` maps image IDs (with or without `sha256:`) to container IDs.
fn user_of<'a>(in_use: &'a BTreeMap<String, String>, id: &str) -> Option<&'a String> {
    in_use
        .get(id)
        .or_else(|| in_use.get(id.strip_prefix("sha256:").unwrap_or(id)))
}

/// A delete conflict: a hard one (child images) stops even a forced delete; a soft one
/// (references, containers) is overridden by `force`. (dockerd's other hard conflict, an image
/// used by a running container, needs container states the request does not carry.)
struct Conflict {
    hard: bool,
    used: bool,
    message: String,
}

impl Conflict {
    fn error(&self, id: &str) -> BusError {
        BusError::conflict(format!(
            "conflict: unable to delete {} ({}) - {}",
            short_id(id),
            if self.hard {
                "cannot be forced"
            } else {
                "must be forced"
            },
            self.message
        ))
    }
}

impl ImageStore {
    pub fn open(root: &Path) -> std::io::Result<Self> {
        Ok(ImageStore {
            blobs: BlobStore::open(root)?,
            index: RwLock::new(ImageIndex::open(root)?),
            gc_grace: GC_GRACE,
        })
    }

    /// Changes the lease rule's grace period ([`GC_GRACE`] by default); zero lets garbage
    /// collection take unreferenced blobs at once.
    pub fn with_gc_grace(mut self, grace: Duration) -> Self {
        self.gc_grace = grace;
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ImageIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ImageIndex> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn event(&self, action: &str, id: &str, name: &str) -> ImageEvent {
        let labels = self
            .read()
            .record(id)
            .map(|r| filters::config_labels(&r.config))
            .unwrap_or_default();
        event_with_labels(action, id, name, labels)
    }

    pub fn resolve(&self, name: &str) -> Result<ImageRecord, BusError> {
        let index = self.read();
        let id = index.resolve(name)?;
        index
            .get(&id)
            .ok_or_else(|| image_index::no_such_image(name))
    }

    pub fn get(&self, id: &str) -> Option<ImageRecord> {
        self.read().get(id)
    }

    /// The image a full reference (`docker.io/library/busybox:latest`) points at.
    pub fn get_ref(&self, full_ref: &str) -> Option<String> {
        self.read().target(full_ref).cloned()
    }

    /// Makes an image visible from blobs already stored; moves `tags` to it.
    pub fn commit(&self, req: &ImageCommit, events: &mut Events) -> Result<ImageRecord, BusError> {
        let layers: Vec<LayerMeta> = req
            .layers
            .iter()
            .map(|l| {
                digest::sha256_hex(&l.digest)?;
                self.blobs.layer(&l.digest, &l.media_type)
            })
            .collect::<Result<_, _>>()?;
        let tags = req
            .tags
            .iter()
            .map(|t| parse_tag(t))
            .collect::<Result<Vec<_>, _>>()?;
        let digests = req
            .repo_digests
            .iter()
            .map(|d| {
                let r = Reference::parse(d)?;
                if r.digest.is_none() {
                    return Err(BusError::invalid(format!("{d} is not a digest reference")));
                }
                Ok(reference_key(&r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(p) = &req.parent {
            digest::sha256_hex(p)?;
        }
        let mut image = self.prepare(&req.config, layers, req.manifest.clone())?;
        image.parent = req.parent.clone();
        // One write guard from record to references: a prune never sees the image untagged.
        let mut index = self.write();
        let id = self.create_locked(&mut index, image)?;
        for key in digests {
            index.set_ref(&key, &id)?;
        }
        for key in tags {
            self.move_tag(&mut index, &key, &id, events)?;
        }
        index.get(&id).ok_or_else(|| internal("image vanished"))
    }

    /// Records an image from stored blobs and points the tag keys `tags` at it (in one step,
    /// so no prune sees it untagged). Checks the config against the layers; an image already
    /// known keeps its first store time.
    pub fn create(
        &self,
        config_digest: &str,
        layers: Vec<LayerMeta>,
        manifest: Option<BlobRefTyped>,
        tags: &[String],
        events: &mut Events,
    ) -> Result<Created, BusError> {
        let image = self.prepare(config_digest, layers, manifest)?;
        let mut index = self.write();
        let id = self.create_locked(&mut index, image)?;
        let retagged_from = tags
            .iter()
            .map(|key| self.move_tag(&mut index, key, &id, events))
            .collect::<Result<_, _>>()?;
        let image = index.get(&id).ok_or_else(|| internal("image vanished"))?;
        Ok(Created {
            image,
            retagged_from,
        })
    }

    /// The checks that need no lock: the config is read, parsed and matched to the layers.
    fn prepare(
        &self,
        config_digest: &str,
        layers: Vec<LayerMeta>,
        manifest: Option<BlobRefTyped>,
    ) -> Result<Prepared, BusError> {
        digest::sha256_hex(config_digest)?;
        let raw = self.blobs.read_small(config_digest, MAX_CONFIG_SIZE)?;
        let config = parse_config(&raw)?;
        check_diff_ids(&config, &layers)?;
        Ok(Prepared {
            id: config_digest.to_string(),
            config,
            config_size: raw.len() as u64,
            layers,
            manifest,
            parent: None,
        })
    }

    /// Stores the record of a prepared image under the caller's write guard; returns its ID.
    fn create_locked(&self, index: &mut ImageIndex, image: Prepared) -> Result<String, BusError> {
        // Re-checked under the lock: a garbage collection may have run since `prepare`.
        for blob in std::iter::once(image.id.as_str())
            .chain(image.layers.iter().map(|l| l.info.digest.as_str()))
            .chain(image.manifest.iter().map(|m| m.digest.as_str()))
        {
            self.blobs.stat(blob)?;
        }
        if let Some(p) = &image.parent {
            if !index.contains(p) {
                return Err(BusError::not_found(format!("unknown parent image ID {p}")));
            }
            // Its own ancestor would make the chain a loop (dockerd does not check; we must).
            if index.descends_from(p, &image.id) {
                return Err(BusError::invalid(format!(
                    "image {} cannot have its own descendant {p} as parent",
                    image.id
                )));
            }
        }
        let previous = index.record(&image.id);
        let rec = ImageRecord {
            id: image.id.clone(),
            repo_tags: vec![],
            repo_digests: vec![],
            size: image.layers.iter().map(|l| l.info.unpacked_size).sum(),
            manifest: image
                .manifest
                .or_else(|| previous.and_then(|p| p.manifest.clone())),
            layers: image
                .layers
                .into_iter()
                .map(|l| l.info)
                .collect::<Vec<LayerInfo>>(),
            config: image.config,
            config_size: image.config_size,
            stored_at: previous
                .map(|p| p.stored_at.clone())
                .unwrap_or_else(now_rfc3339),
            last_tag_time: previous.and_then(|p| p.last_tag_time.clone()),
            parent: image
                .parent
                .or_else(|| previous.and_then(|p| p.parent.clone())),
        };
        index.put(rec).map_err(internal)?;
        Ok(image.id)
    }

    /// Points the tag `key` at `id`; returns the image that held it before, if another.
    fn move_tag(
        &self,
        index: &mut ImageIndex,
        key: &str,
        id: &str,
        events: &mut Events,
    ) -> Result<Option<String>, BusError> {
        let old = index.set_ref(key, id)?;
        let now = now_rfc3339();
        index.set_last_tag_time(id, now).map_err(internal)?;
        let labels = index
            .record(id)
            .map(|r| filters::config_labels(&r.config))
            .unwrap_or_default();
        events.push(event_with_labels(
            "tag",
            id,
            &reference::familiarize(key),
            labels,
        ));
        Ok(old.filter(|o| o != id))
    }

    pub fn tag(&self, req: &ImageTag, events: &mut Events) -> Result<(), BusError> {
        let key = parse_tag(&req.target)?;
        let mut index = self.write();
        let id = index.resolve(&req.source)?;
        self.move_tag(&mut index, &key, &id, events)?;
        Ok(())
    }

    pub fn list(&self, req: &ImageList) -> Result<Vec<ImageRecord>, BusError> {
        let f = &req.filters;
        filters::validate(
            f,
            &["dangling", "label", "before", "since", "reference", "until"],
        )?;
        let dangling_only = filters::bool_or(f, "dangling", false)?;
        let index = self.read();
        let created_of = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, BusError> {
            let id = index.resolve(name)?;
            Ok(index.record(&id).and_then(|r| filters::created(&r.config)))
        };
        let mut before: Option<chrono::DateTime<chrono::Utc>> = None;
        for v in f.get("before").into_iter().flatten() {
            if let Some(t) = created_of(v)? {
                before = Some(before.map_or(t, |b| b.min(t)));
            }
        }
        let now = chrono::Utc::now();
        for v in f.get("until").into_iter().flatten() {
            let t = filters::parse_timestamp(v, now)?;
            before = Some(before.map_or(t, |b| b.min(t)));
        }
        let mut since: Option<chrono::DateTime<chrono::Utc>> = None;
        for v in f.get("since").into_iter().flatten() {
            if let Some(t) = created_of(v)? {
                since = Some(since.map_or(t, |s| s.max(t)));
            }
        }
        let patterns = f
            .get("reference")
            .into_iter()
            .flatten()
            .map(|p| filters::Glob::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let labels = f.get("label").cloned().unwrap_or_default();
        let mut out = Vec::new();
        for rec in index.records() {
            // As dockerd: `dangling=true` looks only at images without children ("heads").
            let has_children = index.has_children(&rec.id);
            if dangling_only && has_children {
                continue;
            }
            let created = filters::created(&rec.config);
            if let Some(b) = before {
                if created.is_none_or(|c| c >= b) {
                    continue;
                }
            }
            if let Some(s) = since {
                if created.is_none_or(|c| c <= s) {
                    continue;
                }
            }
            if !labels.is_empty()
                && !filters::labels_match(&labels, &filters::config_labels(&rec.config))
            {
                continue;
            }
            let mut rec = index.with_refs(rec);
            if !patterns.is_empty() {
                rec.repo_tags.retain(|r| reference_matches(&patterns, r));
                rec.repo_digests.retain(|r| reference_matches(&patterns, r));
            }
            if rec.repo_tags.is_empty() && rec.repo_digests.is_empty() {
                // An untagged image with children is an intermediate (build) image: only `all`
                // shows it.
                if (has_children && !req.all)
                    || (f.contains_key("dangling") && !dangling_only)
                    || !patterns.is_empty()
                {
                    continue;
                }
            } else if dangling_only && !rec.repo_tags.is_empty() {
                continue;
            }
            out.push((created, rec));
        }
        out.sort_by(|(a, ra), (b, rb)| b.cmp(a).then_with(|| ra.id.cmp(&rb.id)));
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Collects the blobs no image references and nobody used for the grace period: build
    /// contexts once their build is over, blobs of pulls that were abandoned. Returns the bytes
    /// freed. The service runs it every grace period.
    pub fn sweep(&self) -> Result<u64, BusError> {
        let index = self.write();
        self.collect_garbage(&index)
    }

    /// Removes a reference or an image, with dockerd's rules and texts.
    pub fn delete(
        &self,
        req: &ImageDelete,
        events: &mut Events,
    ) -> Result<Vec<DeleteItem>, BusError> {
        let mut index = self.write();
        let items = self.delete_locked(&mut index, req, events)?;
        if items.iter().any(|i| matches!(i, DeleteItem::Deleted(_))) {
            self.collect_garbage(&index)?;
        }
        Ok(items)
    }

    /// Removes references or the image; the caller collects garbage afterwards.
    fn delete_locked(
        &self,
        index: &mut ImageIndex,
        req: &ImageDelete,
        events: &mut Events,
    ) -> Result<Vec<DeleteItem>, BusError> {
        let id = index.resolve(&req.name)?;
        let mut items = Vec::new();
        let mut refs = index.refs_of(&id);
        let user = user_of(&req.in_use, &id);
        let labels = index
            .record(&id)
            .map(|r| filters::config_labels(&r.config))
            .unwrap_or_default();
        let untag_event = || event_with_labels("untag", &id, &id, labels.clone());
        let mut quiet = false;
        if !is_id_prefix_of(&id, &req.name) {
            if !req.force && is_single_reference(&refs) {
                if let Some(c) = user {
                    return Err(BusError::conflict(format!(
                        "conflict: unable to remove repository reference \"{}\" (must force) - container {} is using its referenced image {}",
                        req.name,
                        short_id(c),
                        short_id(&id)
                    )));
                }
            }
            let parsed = Reference::parse(&req.name)?;
            let key = reference_key(&parsed);
            if index.remove_ref(&key).map_err(internal)?.is_none() {
                return Err(image_index::no_such_image(&reference::familiarize(&key)));
            }
            events.push(untag_event());
            items.push(DeleteItem::Untagged(reference::familiarize(&key)));
            refs = index.refs_of(&id);
            if parsed.digest.is_none() {
                let name = parsed.name();
                let tag_left = refs.iter().any(|r| !r.contains('@') && ref_name(r) == name);
                if !tag_left {
                    for r in refs.clone() {
                        if r.contains('@') && ref_name(&r) == name {
                            index.remove_ref(&r).map_err(internal)?;
                            items.push(DeleteItem::Untagged(reference::familiarize(&r)));
                        }
                    }
                    refs = index.refs_of(&id);
                }
            }
            if !refs.is_empty() {
                return Ok(items);
            }
            quiet = true;
        } else if is_single_reference(&refs) {
            if let Some(c) = self.conflict(index, &id, user, req.force, false) {
                return Err(c.error(&id));
            }
            for r in refs {
                index.remove_ref(&r).map_err(internal)?;
                events.push(untag_event());
                items.push(DeleteItem::Untagged(reference::familiarize(&r)));
            }
        }
        self.delete_chain(index, &id, req, quiet, &mut items, events)?;
        Ok(items)
    }

    /// dockerd's `imageDeleteHelper`: deletes `id` (with its remaining references) unless
    /// something holds it, then, unless `no_prune`, each parent in turn while it is dangling
    /// and unused (quietly, never forced). `quiet` ignores a conflict on `id` unless `id` is
    /// dangling and unused (then the caller must hear of it).
    fn delete_chain(
        &self,
        index: &mut ImageIndex,
        id: &str,
        req: &ImageDelete,
        mut quiet: bool,
        items: &mut Vec<DeleteItem>,
        events: &mut Events,
    ) -> Result<(), BusError> {
        let mut force = req.force;
        let mut next = Some(id.to_string());
        while let Some(id) = next.take() {
            let user = user_of(&req.in_use, &id);
            if let Some(c) = self.conflict(index, &id, user, force, true) {
                let dangling = !index.is_referenced(&id) && !index.has_children(&id);
                if quiet && (!dangling || c.used) {
                    return Ok(());
                }
                return Err(c.error(&id));
            }
            let labels = index
                .record(&id)
                .map(|r| filters::config_labels(&r.config))
                .unwrap_or_default();
            let parent = index.parent_of(&id).cloned();
            for r in index.refs_of(&id) {
                index.remove_ref(&r).map_err(internal)?;
                events.push(event_with_labels("untag", &id, &id, labels.clone()));
                items.push(DeleteItem::Untagged(reference::familiarize(&r)));
            }
            index.remove(&id).map_err(internal)?;
            events.push(event_with_labels("delete", &id, &id, labels));
            items.push(DeleteItem::Deleted(id));
            if !req.no_prune {
                next = parent;
            }
            force = false;
            quiet = true;
        }
        Ok(())
    }

    /// dockerd's delete conflicts, in its order. `in_use` holds containers of unknown state:
    /// they count as stopped ones (a conflict that `force` overrides).
    fn conflict(
        &self,
        index: &ImageIndex,
        id: &str,
        user: Option<&String>,
        force: bool,
        active_refs: bool,
    ) -> Option<Conflict> {
        if index.has_children(id) {
            return Some(Conflict {
                hard: true,
                used: false,
                message: "image has dependent child images".into(),
            });
        }
        if force {
            return None;
        }
        if active_refs && index.is_referenced(id) {
            return Some(Conflict {
                hard: false,
                used: false,
                message: "image is referenced in multiple repositories".into(),
            });
        }
        user.map(|c| Conflict {
            hard: false,
            used: true,
            message: format!("image is being used by stopped container {}", short_id(c)),
        })
    }

    /// Removes the blobs no image references, under the lease rule: a blob stored or touched
    /// within the grace period stays (a pull or load may be about to commit it) and goes in a
    /// later collection. Runs under the index write guard, so no commit interleaves.
    fn collect_garbage(&self, index: &ImageIndex) -> Result<u64, BusError> {
        let referenced: HashSet<&str> = index.records().flat_map(blobs_of).collect();
        let mut freed = 0;
        for blob in self.blobs.digests()? {
            if !referenced.contains(blob.as_str()) {
                freed += self.blobs.delete_idle(&blob, self.gc_grace)?;
            }
        }
        Ok(freed)
    }

    /// Deletes the blobs `created` (by a load that gave up on them, say) that no image
    /// references and nobody stored or touched since: under the index write guard, so an image
    /// committed meanwhile keeps them.
    pub fn drop_unused_blobs(
        &self,
        created: &BTreeMap<String, BlobVersion>,
    ) -> Result<(), BusError> {
        let index = self.write();
        let referenced: HashSet<&str> = index.records().flat_map(blobs_of).collect();
        for (blob, version) in created {
            if !referenced.contains(blob.as_str()) {
                self.blobs.delete_version(blob, *version)?;
            }
        }
        Ok(())
    }

    pub fn prune(&self, req: &ImagePrune, events: &mut Events) -> Result<PruneReport, BusError> {
        let f = &req.filters;
        filters::validate(f, &["dangling", "label", "label!", "until"])?;
        let dangling_only = filters::bool_or(f, "dangling", true)?;
        let until = match f.get("until").map(Vec::as_slice) {
            None | Some([]) => None,
            Some([v]) => Some(filters::parse_timestamp(v, chrono::Utc::now())?),
            Some(_) => return Err(BusError::invalid("more than one until filter specified")),
        };
        let labels = f.get("label").cloned().unwrap_or_default();
        let not_labels = f.get("label!").cloned().unwrap_or_default();
        let mut index = self.write();
        let mut report = PruneReport::default();
        let mut doomed: Vec<Vec<String>> = Vec::new();
        for rec in index.records() {
            if let Some(u) = until {
                if filters::created(&rec.config).is_none_or(|c| c > u) {
                    continue;
                }
            }
            let image_labels = filters::config_labels(&rec.config);
            if !filters::labels_match(&labels, &image_labels) {
                continue;
            }
            if !not_labels.is_empty()
                && not_labels
                    .iter()
                    .any(|l| filters::labels_match(std::slice::from_ref(l), &image_labels))
            {
                continue;
            }
            let refs = index.refs_of(&rec.id);
            // As dockerd: a dangling prune looks only at images without children, and no prune
            // starts from an untagged one with children (it goes with its last child).
            let has_children = index.has_children(&rec.id);
            if has_children && (dangling_only || refs.is_empty()) {
                continue;
            }
            if refs.is_empty() {
                doomed.push(vec![rec.id.clone()]);
            } else if !dangling_only || !refs.iter().any(|r| !r.contains('@')) {
                doomed.push(refs);
            }
        }
        for names in doomed {
            for name in names {
                let del = ImageDelete {
                    name,
                    force: false,
                    no_prune: false,
                    in_use: req.in_use.clone(),
                };
                match self.delete_locked(&mut index, &del, events) {
                    Ok(items) => report.deleted.extend(items),
                    Err(e) => tracing::debug!("prune skips {}: {}", del.name, e.message),
                }
            }
        }
        report.space_reclaimed = self.collect_garbage(&index)?;
        let mut attributes = BTreeMap::new();
        attributes.insert("reclaimed".into(), report.space_reclaimed.to_string());
        events.push(ImageEvent {
            action: "prune".into(),
            id: String::new(),
            attributes,
        });
        Ok(report)
    }
}

pub fn event_with_labels(
    action: &str,
    id: &str,
    name: &str,
    labels: HashMap<String, String>,
) -> ImageEvent {
    let mut attributes: BTreeMap<String, String> = labels.into_iter().collect();
    attributes.insert("name".into(), name.to_string());
    ImageEvent {
        action: action.into(),
        id: id.into(),
        attributes,
    }
}

/// Parses a tag target: a reference without digest, `:latest` by default.
pub fn parse_tag(target: &str) -> Result<String, BusError> {
    let r = Reference::parse(target)?;
    if r.digest.is_some() {
        return Err(BusError::invalid(
            "refusing to create a tag with a digest reference",
        ));
    }
    Ok(reference_key(&r))
}

fn ref_name(full: &str) -> String {
    Reference::parse(full)
        .map(|r| r.name())
        .unwrap_or_else(|_| full.to_string())
}

/// dockerd's `isImageIDPrefix`: the name given is (a prefix of) the ID, with or without
/// `sha256:`.
fn is_id_prefix_of(id: &str, name: &str) -> bool {
    id.starts_with(name)
        || id
            .strip_prefix("sha256:")
            .is_some_and(|h| h.starts_with(name))
}

/// dockerd's `isSingleReference`: one tag, possibly with digest references of the same
/// repository.
fn is_single_reference(refs: &[String]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let mut single: Option<&String> = None;
    let mut canonical = BTreeSet::new();
    for r in refs {
        if r.contains('@') {
            canonical.insert(ref_name(r));
        } else if single.is_none() {
            single = Some(r);
        } else {
            return false;
        }
    }
    let single = single.unwrap_or(&refs[0]);
    canonical.len() == 1 && canonical.contains(&ref_name(single))
}

fn reference_matches(patterns: &[filters::Glob], full: &str) -> bool {
    let Ok(r) = Reference::parse(full) else {
        return false;
    };
    let tag_only = match &r.tag {
        Some(_) => r.to_string(),
        None => r.clone().with_default_tag().to_string(),
    };
    let targets = [r.familiar(), r.familiar_name(), tag_only, r.name()];
    patterns
        .iter()
        .any(|p| targets.iter().any(|t| p.matches(t)))
}

fn blobs_of(rec: &ImageRecord) -> impl Iterator<Item = &str> {
    std::iter::once(rec.id.as_str())
        .chain(rec.layers.iter().map(|l| l.digest.as_str()))
        .chain(rec.manifest.iter().map(|m| m.digest.as_str()))
}

/// Parses a Docker/OCI image config; it must list the layers' diff IDs.
pub fn parse_config(raw: &[u8]) -> Result<serde_json::Value, BusError> {
    let config: serde_json::Value = serde_json::from_slice(raw)
        .map_err(|e| BusError::invalid(format!("invalid image config: {e}")))?;
    if !config.is_object() {
        return Err(BusError::invalid("invalid image config: not a JSON object"));
    }
    diff_ids(&config)?;
    Ok(config)
}

pub fn diff_ids(config: &serde_json::Value) -> Result<Vec<String>, BusError> {
    let ids = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .map(|d| d.as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    ids.into_iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| BusError::invalid("invalid image config: malformed rootfs.diff_ids"))
        })
        .collect()
}

fn check_diff_ids(config: &serde_json::Value, layers: &[LayerMeta]) -> Result<(), BusError> {
    let want = diff_ids(config)?;
    let have: Vec<&String> = layers.iter().map(|l| &l.info.diff_id).collect();
    if want.len() != have.len() || want.iter().zip(&have).any(|(a, b)| a != *b) {
        return Err(BusError::invalid(
            "layers from manifest don't match image configuration",
        ));
    }
    Ok(())
}

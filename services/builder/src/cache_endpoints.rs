//! The build cache endpoints, answered by any builder of the queue group: `cache.list` shows
//! the shared index as Docker's `BuildCache` records (`docker system df`), and `cache.prune`
//! removes entries (`docker builder prune`), then deletes the images only those entries kept:
//! the classic builder's cache *is* its intermediate images.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use wharf_bus::api;
use wharf_bus::build::{CachePrune, CachePruneReport, CacheRecord};
use wharf_bus::endpoint;
use wharf_bus::events::Event;
use wharf_bus::image::{BlobRef, DeleteItem, ImageDelete, ImageList, ImageRecord};
use wharf_bus::service::Running;
use wharf_bus::subjects::group;
use wharf_bus::{BusError, ErrorKind};

use crate::build::cache::{Cache, Entry};
use crate::dockerfile::instructions::parse_go_duration;

/// Serves `cache.list` and `cache.prune` under the builder's group.
pub async fn serve(
    running: &mut Running,
    client: async_nats::Client,
    cache: Cache,
) -> Result<(), BusError> {
    let listed = cache.clone();
    running
        .serve_endpoint::<api::CacheList, _, _>(group::BUILDER, move |_incoming| {
            let cache = listed.clone();
            async move { list(&cache).await }
        })
        .await?;
    running
        .serve_endpoint::<api::CachePruneUnused, _, _>(group::BUILDER, move |incoming| {
            let (client, cache) = (client.clone(), cache.clone());
            async move { prune(&client, &cache, &incoming.request).await }
        })
        .await
}

/// An index entry as Docker's `BuildCache` record. Nothing is ever in use or shared, and
/// builders do not count hits.
pub fn record(key: &str, entry: &Entry) -> CacheRecord {
    CacheRecord {
        id: key.to_string(),
        parent: entry.parent.clone(),
        kind: "regular".to_string(),
        description: entry.description.clone(),
        in_use: false,
        shared: false,
        size: entry.size,
        created_at: entry.created.clone(),
        last_used_at: None,
        usage_count: 0,
    }
}

/// An entry's creation time; an unreadable one counts as the oldest.
fn created(entry: &Entry) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&entry.created)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// The index's entries, oldest first.
async fn entries(cache: &Cache) -> Result<Vec<(String, Entry)>, BusError> {
    let mut entries = cache.entries().await?;
    entries.sort_by(|(ka, a), (kb, b)| (created(a), ka).cmp(&(created(b), kb)));
    Ok(entries)
}

/// `cache.list`: every entry, oldest first.
pub async fn list(cache: &Cache) -> Result<Vec<CacheRecord>, BusError> {
    Ok(entries(cache)
        .await?
        .iter()
        .map(|(key, entry)| record(key, entry))
        .collect())
}

/// The filters dockerd accepts on a build cache prune (`label` and `label!` are accepted and
/// ignored there too).
const FILTERS: &[&str] = &[
    "until",
    "unused-for",
    "label",
    "label!",
    "id",
    "parent",
    "type",
    "description",
    "inuse",
    "shared",
    "private",
];

/// Which entries a prune's filters select.
#[derive(Debug, Default)]
pub struct Selection {
    /// `until`: only entries created before this go.
    before: Option<DateTime<Utc>>,
    /// Field filters, one value each (`""` for a bare boolean field).
    fields: Vec<(String, String)>,
}

impl Selection {
    /// dockerd's checks and texts (`builder-next`'s `toBuildkitPruneInfo`).
    pub fn parse(
        filters: &BTreeMap<String, Vec<String>>,
        now: DateTime<Utc>,
    ) -> Result<Selection, BusError> {
        if let Some(key) = filters.keys().find(|k| !FILTERS.contains(&k.as_str())) {
            return Err(BusError::invalid(format!("invalid filter '{key}'")));
        }
        let values = |key: &str| filters.get(key).cloned().unwrap_or_default();
        let (until, unused_for) = (values("until"), values("unused-for"));
        if !until.is_empty() && !unused_for.is_empty() {
            return Err(BusError::invalid(
                "conflicting filters: \"until\" and \"unused-for\"",
            ));
        }
        let key = if unused_for.is_empty() {
            "until"
        } else {
            "unused-for"
        };
        let before = match until.iter().chain(&unused_for).collect::<Vec<_>>()[..] {
            [] => None,
            [value] => Some(parse_timestamp(value, now).ok_or_else(|| {
                BusError::invalid(format!(
                    "\"{key}\" filter expects a duration (e.g., '24h') or a timestamp: failed to parse value as time or duration: \"{value}\""
                ))
            })?),
            _ => return Err(BusError::invalid("filters expect only one value")),
        };
        let mut fields = Vec::new();
        for field in [
            "id",
            "parent",
            "type",
            "description",
            "inuse",
            "shared",
            "private",
        ] {
            match filters.get(field).map(Vec::as_slice) {
                None => {}
                Some([]) => fields.push((field.to_string(), String::new())),
                Some([value]) => fields.push((field.to_string(), value.clone())),
                Some(_) => return Err(BusError::invalid("filters expect only one value")),
            }
        }
        Ok(Selection { before, fields })
    }

    /// BuildKit's filter semantics: `id` matches a part of the key (BuildKit's `~=` is a
    /// regular expression match, the same for a plain value); the other fields must equal the
    /// value, and a bare boolean field must be true.
    pub fn matches(&self, key: &str, entry: &Entry) -> bool {
        if self.before.is_some_and(|before| created(entry) >= before) {
            return false;
        }
        self.fields.iter().all(|(field, value)| {
            let actual = match field.as_str() {
                "id" => return key.contains(value.as_str()),
                "parent" => entry.parent.as_str(),
                "type" => "regular",
                "description" => entry.description.as_str(),
                // Nothing in the index is in use or shared: every entry is private.
                "inuse" | "shared" => "false",
                "private" => "true",
                _ => return false,
            };
            if value.is_empty() {
                actual == "true"
            } else {
                actual == value
            }
        })
    }
}

/// Docker's timestamp filter values (`GetTimestamp`): a Go duration before `now` (`24h`),
/// Unix seconds (`1700000000`, `1700000000.5`), RFC 3339, or a date or date-time without zone
/// (UTC).
pub fn parse_timestamp(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(nanos) = parse_go_duration(value) {
        return Some(now - chrono::Duration::nanoseconds(i64::try_from(nanos).ok()?));
    }
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    if !secs.is_empty() && secs.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        let nanos: u32 = format!("{:0<9}", &frac[..frac.len().min(9)]).parse().ok()?;
        return Utc.timestamp_opt(secs.parse().ok()?, nanos).single();
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    let day = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    Some(Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?))
}

/// The entries a prune removes, from `entries` oldest first: those `selection` matches, oldest
/// first, and with `keep_storage` only while the whole index adds up to more than that (as
/// BuildKit keeps its newest records within the reserved space).
pub fn choose<'a>(
    entries: &'a [(String, Entry)],
    selection: &Selection,
    keep_storage: u64,
) -> Vec<&'a (String, Entry)> {
    let mut total: u64 = entries.iter().map(|(_, e)| e.size).sum();
    let mut out = Vec::new();
    for item in entries {
        if keep_storage > 0 && total <= keep_storage {
            break;
        }
        if selection.matches(&item.0, &item.1) {
            total = total.saturating_sub(item.1.size);
            out.push(item);
        }
    }
    out
}

/// Which of `wanted` (the removed entries' images) to delete, in order: images with no
/// references at all (never a tagged or digest-named one), not used by a container, and
/// without children once the images before them are gone. Children come first; an image with
/// a child that stays is left alone (image-store would refuse it anyway).
pub fn deletion_order(
    images: &[ImageRecord],
    wanted: &BTreeSet<String>,
    in_use: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut children: HashMap<&str, usize> = HashMap::new();
    for image in images {
        if let Some(parent) = &image.parent {
            *children.entry(parent.as_str()).or_default() += 1;
        }
    }
    let mut candidates: BTreeMap<&str, &ImageRecord> = images
        .iter()
        .filter(|i| wanted.contains(&i.id))
        .filter(|i| i.repo_tags.is_empty() && i.repo_digests.is_empty())
        .filter(|i| !in_use.contains_key(&i.id))
        .map(|i| (i.id.as_str(), i))
        .collect();
    let mut order = Vec::new();
    loop {
        let leaves: Vec<&str> = candidates
            .keys()
            .copied()
            .filter(|id| children.get(id).copied().unwrap_or(0) == 0)
            .collect();
        if leaves.is_empty() {
            break;
        }
        for id in leaves {
            if let Some(image) = candidates.remove(id) {
                if let Some(n) = image.parent.as_deref().and_then(|p| children.get_mut(p)) {
                    *n = n.saturating_sub(1);
                }
                order.push(id.to_string());
            }
        }
    }
    order
}

/// Blobs (config and layers) of the `deleted` images that no other image of `images`
/// references, with their sizes as the records give them.
pub fn exclusive_blobs(images: &[ImageRecord], deleted: &HashSet<String>) -> BTreeMap<String, u64> {
    let kept: HashSet<&str> = images
        .iter()
        .filter(|i| !deleted.contains(&i.id))
        .flat_map(|i| {
            std::iter::once(i.id.as_str())
                .chain(i.layers.iter().map(|l| l.digest.as_str()))
                .chain(i.manifest.iter().map(|m| m.digest.as_str()))
        })
        .collect();
    let mut out = BTreeMap::new();
    for image in images.iter().filter(|i| deleted.contains(&i.id)) {
        out.insert(image.id.clone(), image.config_size);
        for layer in &image.layers {
            out.insert(layer.digest.clone(), layer.size);
        }
    }
    out.retain(|digest, _| !kept.contains(digest.as_str()));
    out
}

/// `cache.prune`: removes the selected entries, then deletes their images that nothing else
/// needs (without `no_prune`'s parent walk: a parent that is a kept entry's image must stay).
///
/// Space reclaimed counts only what is gone: the removed entries themselves are a few hundred
/// bytes of key-value data, and a deleted image's blobs are freed by image-store's garbage
/// collection, which keeps blobs stored within its grace period (10 minutes) for a later
/// collection. So each blob only the deleted images referenced counts when image-store no
/// longer has it (`blob.locate`, which unlike `blob.stat` does not renew the blob's lease).
pub async fn prune(
    client: &async_nats::Client,
    cache: &Cache,
    req: &CachePrune,
) -> Result<CachePruneReport, BusError> {
    let selection = Selection::parse(&req.filters, Utc::now())?;
    let entries = entries(cache).await?;
    let chosen = choose(&entries, &selection, req.keep_storage);
    let mut report = CachePruneReport::default();
    if chosen.is_empty() {
        return Ok(report);
    }
    // The store's view before anything changes: what to delete, and what shares its blobs.
    let images = endpoint::call::<api::ImageListAll>(
        client,
        &ImageList {
            all: true,
            ..Default::default()
        },
    )
    .await?;
    let mut wanted = BTreeSet::new();
    for (key, entry) in chosen {
        cache.remove(key).await?;
        report.caches_deleted.push(key.clone());
        wanted.insert(entry.image.clone());
    }
    let mut deleted = HashSet::new();
    for id in deletion_order(&images, &wanted, &req.in_use) {
        let request = ImageDelete {
            name: id.clone(),
            force: false,
            no_prune: true,
            in_use: req.in_use.clone(),
        };
        match endpoint::call::<api::ImageDeleteName>(client, &request).await {
            Ok(items) => {
                for item in items {
                    if let DeleteItem::Deleted(id) = item {
                        report.images_deleted.push(id.clone());
                        deleted.insert(id);
                    }
                }
            }
            // Used or extended since the list, or already gone: it stays, as asked.
            Err(e) if matches!(e.kind, ErrorKind::Conflict | ErrorKind::NotFound) => {
                tracing::debug!("build cache prune keeps image {id}: {}", e.message)
            }
            Err(e) => tracing::warn!("build cache prune cannot delete image {id}: {}", e.message),
        }
    }
    for (digest, size) in exclusive_blobs(&images, &deleted) {
        let located = endpoint::call::<api::BlobLocate>(
            client,
            &BlobRef {
                digest: digest.clone(),
            },
        )
        .await;
        if matches!(&located, Err(e) if e.kind == ErrorKind::NotFound) {
            report.space_reclaimed += size;
        }
    }
    let mut attributes = BTreeMap::new();
    attributes.insert("reclaimed".to_string(), report.space_reclaimed.to_string());
    wharf_bus::events::publish(client, &Event::now("builder", "prune", "", attributes)).await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(image: &str, parent: &str, size: u64, created: &str) -> Entry {
        Entry {
            image: image.into(),
            parent: parent.into(),
            description: format!("/bin/sh -c step {image}"),
            size,
            created: created.into(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn filters(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut f: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            f.entry(k.to_string()).or_default().push(v.to_string());
        }
        f
    }

    fn image(id: &str, parent: Option<&str>, tags: &[&str]) -> ImageRecord {
        serde_json::from_value(json!({
            "id": id, "repo_tags": tags, "repo_digests": [], "layers": [],
            "config": {}, "config_size": 10, "size": 0, "stored_at": "2024-01-01T00:00:00Z",
            "parent": parent,
        }))
        .unwrap()
    }

    #[test]
    fn timestamps_read_as_docker_reads_them() {
        let n = now();
        assert_eq!(
            parse_timestamp("24h", n),
            Some(n - chrono::Duration::hours(24))
        );
        assert_eq!(
            parse_timestamp("1h30m", n),
            Some(n - chrono::Duration::minutes(90))
        );
        assert_eq!(
            parse_timestamp("1700000000.5", n),
            Utc.timestamp_opt(1_700_000_000, 500_000_000).single()
        );
        assert_eq!(
            parse_timestamp("2024-05-01", n),
            Some(Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            parse_timestamp("2024-05-01T10:00:00+02:00", n),
            Some(Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap())
        );
        assert_eq!(parse_timestamp("yesterday", n), None);
    }

    #[test]
    fn filters_are_checked_with_dockerds_texts() {
        let err = |f| Selection::parse(&f, now()).unwrap_err().message;
        assert_eq!(
            err(filters(&[("dangling", "true")])),
            "invalid filter 'dangling'"
        );
        assert_eq!(
            err(filters(&[("until", "1h"), ("unused-for", "2h")])),
            "conflicting filters: \"until\" and \"unused-for\""
        );
        assert_eq!(
            err(filters(&[("until", "1h"), ("until", "2h")])),
            "filters expect only one value"
        );
        assert_eq!(
            err(filters(&[("id", "a"), ("id", "b")])),
            "filters expect only one value"
        );
        assert!(
            err(filters(&[("until", "soon")])).starts_with("\"until\" filter expects a duration")
        );
        assert!(Selection::parse(&filters(&[("label", "a=b")]), now()).is_ok());
    }

    #[test]
    fn selection_matches_time_and_fields() {
        let old = entry("sha256:i1", "sha256:p", 5, "2024-05-01T00:00:00Z");
        let new = entry("sha256:i2", "sha256:q", 5, "2024-06-01T11:30:00Z");
        let until = Selection::parse(&filters(&[("until", "24h")]), now()).unwrap();
        assert!(until.matches("k1", &old));
        assert!(!until.matches("k2", &new));
        let unused = Selection::parse(&filters(&[("unused-for", "10m")]), now()).unwrap();
        assert!(unused.matches("k2", &new));

        let by_id = Selection::parse(&filters(&[("id", "bc")]), now()).unwrap();
        assert!(by_id.matches("abcd", &old));
        assert!(!by_id.matches("abd", &old));
        let by_parent = Selection::parse(&filters(&[("parent", "sha256:p")]), now()).unwrap();
        assert!(by_parent.matches("k1", &old) && !by_parent.matches("k2", &new));
        let regular = Selection::parse(&filters(&[("type", "regular")]), now()).unwrap();
        assert!(regular.matches("k1", &old));
        let in_use = Selection::parse(&filters(&[("inuse", "")]), now()).unwrap();
        assert!(!in_use.matches("k1", &old), "nothing is in use");
        let shared = Selection::parse(&filters(&[("shared", "true")]), now()).unwrap();
        assert!(!shared.matches("k1", &old), "nothing is shared");
        let private = Selection::parse(&filters(&[("private", "")]), now()).unwrap();
        assert!(private.matches("k1", &old), "everything is private");
    }

    #[test]
    fn keep_storage_removes_the_oldest_until_the_rest_fits() {
        let entries = vec![
            (
                "a".to_string(),
                entry("sha256:1", "", 100, "2024-01-01T00:00:00Z"),
            ),
            (
                "b".to_string(),
                entry("sha256:2", "", 0, "2024-01-02T00:00:00Z"),
            ),
            (
                "c".to_string(),
                entry("sha256:3", "", 100, "2024-01-03T00:00:00Z"),
            ),
            (
                "d".to_string(),
                entry("sha256:4", "", 100, "2024-01-04T00:00:00Z"),
            ),
        ];
        let all = Selection::default();
        let keys = |chosen: Vec<&(String, Entry)>| {
            chosen.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
        };
        assert_eq!(keys(choose(&entries, &all, 0)), ["a", "b", "c", "d"]);
        assert_eq!(keys(choose(&entries, &all, 150)), ["a", "b", "c"]);
        assert_eq!(keys(choose(&entries, &all, 200)), ["a"]);
        assert_eq!(keys(choose(&entries, &all, 300)), Vec::<String>::new());
        // Filters still apply: a kept entry's size counts toward the total.
        let only_c = Selection::parse(&filters(&[("id", "c")]), now()).unwrap();
        assert_eq!(keys(choose(&entries, &only_c, 250)), ["c"]);
    }

    #[test]
    fn images_go_children_first_and_only_when_nothing_else_needs_them() {
        let images = vec![
            image("sha256:base", None, &["docker.io/library/base:latest"]),
            image("sha256:s1", Some("sha256:base"), &[]),
            image("sha256:s2", Some("sha256:s1"), &[]),
            image("sha256:t1", Some("sha256:base"), &[]),
            image(
                "sha256:app",
                Some("sha256:t1"),
                &["docker.io/library/app:latest"],
            ),
            image("sha256:used", Some("sha256:base"), &[]),
        ];
        let wanted: BTreeSet<String> = [
            "sha256:s1",
            "sha256:s2",
            "sha256:t1",
            "sha256:used",
            "sha256:base",
            "sha256:gone",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let in_use = BTreeMap::from([("sha256:used".to_string(), "c1".to_string())]);
        // s2 before its parent s1; t1 keeps a tagged child; base is tagged; used is used.
        assert_eq!(
            deletion_order(&images, &wanted, &in_use),
            ["sha256:s2", "sha256:s1"]
        );
    }

    #[test]
    fn only_blobs_no_other_image_holds_are_counted() {
        let mut a = image("sha256:a", None, &[]);
        let mut b = image("sha256:b", Some("sha256:a"), &[]);
        let layer = |digest: &str, size: u64| wharf_bus::image::LayerInfo {
            digest: digest.into(),
            media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
            size,
            diff_id: format!("{digest}-diff"),
            unpacked_size: size * 3,
        };
        a.layers = vec![layer("sha256:l1", 1000)];
        b.layers = vec![layer("sha256:l1", 1000), layer("sha256:l2", 500)];
        let deleted = HashSet::from(["sha256:b".to_string()]);
        let blobs = exclusive_blobs(&[a, b], &deleted);
        assert_eq!(
            blobs,
            BTreeMap::from([("sha256:b".to_string(), 10), ("sha256:l2".to_string(), 500)])
        );
    }

    #[test]
    fn records_take_dockers_build_cache_shape() {
        let r = record(
            "k1",
            &entry("sha256:i", "sha256:p", 42, "2024-05-01T00:00:00Z"),
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({
                "ID": "k1", "Parent": "sha256:p", "Type": "regular",
                "Description": "/bin/sh -c step sha256:i", "InUse": false, "Shared": false,
                "Size": 42, "CreatedAt": "2024-05-01T00:00:00Z", "LastUsedAt": null,
                "UsageCount": 0,
            })
        );
    }
}

//! `docker load`: reads what `docker save` writes (dockerd 20.10's layout with
//! `<id>/layer.tar` and `<id>.json`, modern docker's OCI layout with `manifest.json`) and plain
//! OCI image layouts, optionally gzip/zstd compressed. The input is untrusted: paths must stay
//! inside the archive, JSON is size-capped and every digest is checked.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read};

use bytes::BytesMut;
use serde::Deserialize;
use wharf_bus::digest;
use wharf_bus::image::{BlobRefTyped, LoadReport};
use wharf_bus::reference::{self, Reference};
use wharf_bus::BusError;

use crate::blob_store::{BlobVersion, IngestSpec, Ingested, LayerMeta, ScanMode};
use crate::store::{parse_tag, Created, Events, ImageStore};
use wharf_bus::layer as compression;

/// Largest metadata file (`manifest.json`, `index.json`, configs) read into memory.
pub const MAX_JSON: u64 = 8 << 20;
/// Most metadata a load keeps in memory, all files together.
pub const MAX_METADATA: u64 = 32 << 20;
/// Most members an archive may have.
pub const MAX_MEMBERS: usize = 100_000;
const CHUNK: usize = 512 << 10;

enum Member {
    /// A metadata file kept in memory.
    Small(Vec<u8>),
    /// Content stored as a blob while reading.
    Blob(Ingested),
    /// A symlink or hard link to another member (archive-relative path).
    Alias(String),
}

fn invalid(msg: impl Into<String>) -> BusError {
    BusError::invalid(format!("invalid archive: {}", msg.into()))
}

/// Normalizes an archive path; refuses absolute paths and `..`.
fn clean_path(raw: &str) -> Result<String, BusError> {
    if raw.starts_with('/') {
        return Err(invalid(format!("absolute path {raw:?}")));
    }
    let mut parts = Vec::new();
    for p in raw.split('/') {
        match p {
            "" | "." => {}
            ".." => return Err(invalid(format!("path {raw:?} leaves the archive"))),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A link target relative to the link's directory, kept inside the archive.
fn resolve_link(link_path: &str, target: &str) -> Result<String, BusError> {
    if target.starts_with('/') {
        return Err(invalid(format!(
            "link {link_path:?} points outside the archive"
        )));
    }
    let mut parts: Vec<&str> = link_path.split('/').collect();
    parts.pop();
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(invalid(format!(
                        "link {link_path:?} points outside the archive"
                    )));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn is_metadata(path: &str) -> bool {
    !path.starts_with("blobs/")
        && (path.ends_with(".json")
            || path.ends_with("/json")
            || path.ends_with("VERSION")
            || matches!(path, "repositories" | "oci-layout"))
}

struct Staged {
    members: HashMap<String, Member>,
    /// Bytes of the metadata files kept in memory.
    metadata_size: u64,
    /// Blobs this load created (absent before), removed again unless an image uses them.
    created: BTreeMap<String, BlobVersion>,
}

impl Staged {
    fn lookup(&self, path: &str) -> Result<&Member, BusError> {
        let mut p = clean_path(path)?;
        for _ in 0..16 {
            match self.members.get(&p) {
                Some(Member::Alias(t)) => p = t.clone(),
                Some(m) => return Ok(m),
                None => return Err(invalid(format!("{path:?} is missing"))),
            }
        }
        Err(invalid(format!("too many links resolving {path:?}")))
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        store: &ImageStore,
        path: &str,
    ) -> Result<(T, Vec<u8>), BusError> {
        let raw = match self.lookup(path)? {
            Member::Small(b) => b.clone(),
            Member::Blob(i) => store.blobs.read_small(&i.blob.digest, MAX_JSON)?,
            Member::Alias(_) => unreachable!(),
        };
        let v =
            serde_json::from_slice(&raw).map_err(|e| invalid(format!("malformed {path}: {e}")))?;
        Ok((v, raw))
    }

    fn layer(&self, store: &ImageStore, path: &str) -> Result<LayerMeta, BusError> {
        match self.lookup(path)? {
            Member::Blob(Ingested {
                layer: Some(meta), ..
            }) => Ok(meta.clone()),
            Member::Blob(i) => store.blobs.layer(
                &i.blob.digest,
                compression::Compression::None.oci_layer_media_type(),
            ),
            _ => Err(invalid(format!("{path} is not a layer"))),
        }
    }
}

/// Reads the archive from `input` and records its images.
pub fn load<R: Read + Send>(
    store: &ImageStore,
    input: R,
    events: &mut Events,
) -> Result<LoadReport, BusError> {
    let (_, plain) = compression::decompress(BufReader::with_capacity(1 << 20, input))
        .map_err(|e| crate::bus_error_from_io(e, "invalid archive"))?;
    let mut staged = stage(store, plain)?;
    let mut created = std::mem::take(&mut staged.created);
    let result = record_images(store, &staged, &mut created, events);
    // Blobs the archive brought that no image took are dropped again (unless someone else
    // stored or found them meanwhile).
    if let Err(e) = store.drop_unused_blobs(&created) {
        tracing::warn!("cannot drop the blobs a load left unused: {}", e.message);
    }
    result
}

fn stage<R: Read>(store: &ImageStore, plain: R) -> Result<Staged, BusError> {
    // A read error is the archive's fault, unless the upload stream itself failed.
    let io_err = |e: std::io::Error| match crate::bus_error_from_io(e, "invalid archive") {
        e if e.kind == wharf_bus::ErrorKind::Internal => {
            BusError::invalid(if e.message.starts_with("invalid archive") {
                e.message
            } else {
                format!("invalid archive: {}", e.message)
            })
        }
        e => e,
    };
    let mut staged = Staged {
        members: HashMap::new(),
        metadata_size: 0,
        created: BTreeMap::new(),
    };
    let mut buf = BytesMut::new();
    let mut archive = tar::Archive::new(plain);
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        if staged.members.len() >= MAX_MEMBERS {
            return Err(invalid("too many files"));
        }
        let raw = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| invalid("a path is not UTF-8"))?;
        let path = clean_path(&raw)?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => continue,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let target = if kind == tar::EntryType::Link {
                    clean_path(&target)?
                } else {
                    resolve_link(&path, &target)?
                };
                staged.members.insert(path, Member::Alias(target));
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            _ => continue,
        }
        let size = entry.size();
        if is_metadata(&path) {
            if size > MAX_JSON {
                return Err(invalid(format!("{path} is larger than {MAX_JSON} bytes")));
            }
            staged.metadata_size += size;
            if staged.metadata_size > MAX_METADATA {
                return Err(invalid("metadata too large"));
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(io_err)?;
            staged.members.insert(path, Member::Small(data));
            continue;
        }
        let expected = path
            .strip_prefix("blobs/sha256/")
            .filter(|h| digest::is_hex64(h))
            .map(|h| format!("sha256:{h}"));
        if path.starts_with("blobs/") && expected.is_none() {
            // Other algorithms or stray files: not ours to trust.
            continue;
        }
        let mut ingest = store.blobs.ingest(IngestSpec {
            expected,
            size: Some(size),
            media_type: None,
            scan: ScanMode::Probe,
        })?;
        // Whole chunks: the first one decides whether the content is scanned as a layer.
        while let Some(chunk) =
            crate::chunks::read_chunk(&mut entry, &mut buf, CHUNK).map_err(io_err)?
        {
            ingest.write(chunk)?;
        }
        let done = ingest.commit().map_err(|e| {
            BusError::new(e.kind, format!("invalid archive: {path}: {}", e.message))
        })?;
        if let Some(version) = done.created {
            staged.created.insert(done.blob.digest.clone(), version);
        }
        staged.members.insert(path, Member::Blob(done));
    }
    Ok(staged)
}

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

fn record_images(
    store: &ImageStore,
    staged: &Staged,
    created: &mut BTreeMap<String, BlobVersion>,
    events: &mut Events,
) -> Result<LoadReport, BusError> {
    let mut report = LoadReport::default();
    if staged.members.contains_key("manifest.json") {
        let (entries, _): (Vec<ManifestEntry>, _) = staged.json(store, "manifest.json")?;
        for e in entries {
            let (_, config) = staged.json::<serde_json::Value>(store, &e.config)?;
            let stored = store.blobs.put(&config, None)?;
            if let Some(version) = stored.created {
                created.insert(stored.blob.digest.clone(), version);
            }
            let layers = e
                .layers
                .iter()
                .map(|p| staged.layer(store, p))
                .collect::<Result<Vec<_>, _>>()?;
            let tags = e.repo_tags.unwrap_or_default();
            let keys = tag_keys(&tags)?;
            let image =
                store.create(&stored.blob.digest, layers, None, &keys, &mut Events::new())?;
            finish_image(store, &image, &keys, &mut report, events);
        }
        return Ok(report);
    }
    if staged.members.contains_key("index.json") {
        let (index, _): (OciIndex, _) = staged.json(store, "index.json")?;
        for d in index.manifests {
            let tag = d
                .annotations
                .get("io.containerd.image.name")
                .or_else(|| d.annotations.get("org.opencontainers.image.ref.name"))
                .filter(|n| Reference::parse(n).is_ok_and(|r| r.tag.is_some()))
                .cloned();
            let tags: Vec<String> = tag.into_iter().collect();
            let keys = tag_keys(&tags)?;
            let image = load_oci(store, staged, &d, &keys, 0)?;
            finish_image(store, &image, &keys, &mut report, events);
        }
        return Ok(report);
    }
    Err(invalid("no manifest.json or index.json found"))
}

fn blob_path(d: &str) -> Result<String, BusError> {
    Ok(format!("blobs/sha256/{}", digest::sha256_hex(d)?))
}

/// One image of an OCI layout: a manifest, or the host's (else the first) entry of an index.
fn load_oci(
    store: &ImageStore,
    staged: &Staged,
    d: &Descriptor,
    tags: &[String],
    depth: usize,
) -> Result<Created, BusError> {
    if depth > 4 {
        return Err(invalid("index nesting too deep"));
    }
    let path = blob_path(&d.digest)?;
    let (value, raw): (serde_json::Value, _) = staged.json(store, &path)?;
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(&d.media_type)
        .to_string();
    if value.get("manifests").is_some() {
        let index: OciIndex =
            serde_json::from_value(value).map_err(|e| invalid(format!("malformed index: {e}")))?;
        let arch = wharf_bus::registry::Platform::host().architecture;
        let pick = index
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .or_else(|| index.manifests.first())
            .ok_or_else(|| invalid("empty image index"))?;
        return load_oci(store, staged, pick, tags, depth + 1);
    }
    let manifest: OciManifest =
        serde_json::from_slice(&raw).map_err(|e| invalid(format!("malformed manifest: {e}")))?;
    // The config must be in the archive under its digest (verified when staged).
    staged.lookup(&blob_path(&manifest.config.digest)?)?;
    let layers = manifest
        .layers
        .iter()
        .map(|l| staged.layer(store, &blob_path(&l.digest)?))
        .collect::<Result<Vec<_>, _>>()?;
    // dockerd tags loaded images without `tag` events.
    store.create(
        &manifest.config.digest,
        layers,
        Some(BlobRefTyped {
            digest: d.digest.clone(),
            media_type,
        }),
        tags,
        &mut Events::new(),
    )
}

/// The tag keys of `tags`, all checked before anything is recorded.
fn tag_keys(tags: &[String]) -> Result<Vec<String>, BusError> {
    tags.iter().map(|t| parse_tag(t)).collect()
}

/// Reports a recorded image as dockerd does.
fn finish_image(
    store: &ImageStore,
    created: &Created,
    keys: &[String],
    report: &mut LoadReport,
    events: &mut Events,
) {
    let id = &created.image.id;
    for (key, old) in keys.iter().zip(&created.retagged_from) {
        let familiar = reference::familiarize(key);
        if let Some(old) = old {
            report.lines.push(format!(
                "The image {familiar} already exists, renaming the old one with ID {old} to empty string"
            ));
        }
        report.lines.push(format!("Loaded image: {familiar}"));
    }
    if keys.is_empty() {
        report.lines.push(format!("Loaded image ID: {id}"));
    }
    events.push(store.event("load", id, id));
}

//! `docker save`: the images named, as the tar modern docker writes (an OCI image layout with
//! `index.json`, plus `manifest.json` and `repositories`), which docker 20.10 loads too.
//! Layers are written uncompressed, decompressed on the fly; nothing is buffered whole.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read, Write};

use serde_json::json;
use wharf_bus::image::ImageRecord;
use wharf_bus::reference::{self, Reference};
use wharf_bus::BusError;

use crate::store::{Events, ImageStore, MAX_CONFIG_SIZE};
use wharf_bus::digest;
use wharf_bus::layer as compression;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// The images to save, each with the tags it is saved under (full references).
pub struct ExportPlan {
    pub images: Vec<(ImageRecord, Vec<String>)>,
}

/// Resolves `names` as `docker save` does: a repository name alone saves all its tags, a tag
/// that tag, an ID or digest reference the image without tags.
pub fn plan(store: &ImageStore, names: &[String]) -> Result<ExportPlan, BusError> {
    if names.is_empty() {
        return Err(BusError::invalid("no images specified"));
    }
    let mut order: Vec<String> = Vec::new();
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |id: &str, tag: Option<String>| {
        if !tags.contains_key(id) {
            order.push(id.to_string());
        }
        let entry = tags.entry(id.to_string()).or_default();
        if let Some(t) = tag {
            entry.insert(t);
        }
    };
    for name in names {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if digest::is_hex64(hex) {
            add(&store.resolve(name)?.id, None);
            continue;
        }
        match Reference::parse(name) {
            Ok(r) if r.tag.is_none() && r.digest.is_none() => {
                let repo = r.name();
                let mut found = false;
                for rec in store.list(&Default::default())? {
                    for t in &rec.repo_tags {
                        if Reference::parse(t).map(|x| x.name()).as_deref() == Ok(repo.as_str()) {
                            add(&rec.id, Some(t.clone()));
                            found = true;
                        }
                    }
                }
                if !found {
                    add(&store.resolve(name)?.id, None);
                }
            }
            Ok(r) if r.digest.is_some() => add(&store.resolve(name)?.id, None),
            Ok(r) => {
                let rec = store.resolve(name)?;
                let key = crate::image_index::reference_key(&r);
                let tagged = rec.repo_tags.contains(&key);
                add(&rec.id, tagged.then_some(key));
            }
            Err(_) => add(&store.resolve(name)?.id, None),
        }
    }
    let images = order
        .into_iter()
        .map(|id| {
            let rec = store
                .get(&id)
                .ok_or_else(|| crate::image_index::no_such_image(&id))?;
            let t = tags.remove(&id).unwrap_or_default().into_iter().collect();
            Ok((rec, t))
        })
        .collect::<Result<_, BusError>>()?;
    Ok(ExportPlan { images })
}

fn header(size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_size(size);
    h.set_mtime(0);
    h
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut h = header(data.len() as u64, false);
    tar.append_data(&mut h, path, data)
}

/// Writes the archive of `plan` to `out`, reporting a `save` event per image.
pub fn write<W: Write>(
    store: &ImageStore,
    plan: &ExportPlan,
    out: W,
    events: &mut Events,
) -> Result<(), BusError> {
    let io_err = |e: io::Error| crate::bus_error_from_io(e, "cannot write the image archive");
    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(0, true);
        tar.append_data(&mut h, dir, io::empty()).map_err(io_err)?;
    }
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut manifest_json = Vec::new();
    let mut index_entries = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (rec, tags) in &plan.images {
        let mut layer_descriptors = Vec::new();
        let mut layer_paths = Vec::new();
        for layer in &rec.layers {
            let meta = store.blobs.layer(&layer.digest, &layer.media_type)?;
            let diff_hex = digest::sha256_hex(&meta.info.diff_id)?.to_string();
            let path = format!("blobs/sha256/{diff_hex}");
            if written.insert(diff_hex.clone()) {
                let file = store.blobs.open_blob(&layer.digest)?;
                let (_, plain) = compression::decompress(BufReader::with_capacity(1 << 20, file))
                    .map_err(io_err)?;
                let mut counted = Counted { inner: plain, n: 0 };
                let mut h = header(meta.tar_size, false);
                tar.append_data(&mut h, &path, (&mut counted).take(meta.tar_size))
                    .map_err(io_err)?;
                if counted.n != meta.tar_size {
                    return Err(BusError::internal(format!(
                        "layer {} is shorter than recorded",
                        layer.digest
                    )));
                }
            }
            layer_descriptors.push(json!({
                "mediaType": OCI_LAYER_TAR,
                "digest": meta.info.diff_id,
                "size": meta.tar_size,
            }));
            layer_paths.push(path);
        }
        let config_hex = digest::sha256_hex(&rec.id)?.to_string();
        let config = store.blobs.read_small(&rec.id, MAX_CONFIG_SIZE)?;
        if written.insert(config_hex.clone()) {
            add_bytes(&mut tar, &format!("blobs/sha256/{config_hex}"), &config).map_err(io_err)?;
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": rec.id, "size": config.len()},
            "layers": layer_descriptors,
        }))
        .map_err(|e| BusError::internal(e.to_string()))?;
        let manifest_digest = digest::sha256_of(&manifest);
        let manifest_hex = digest::sha256_hex(&manifest_digest)?.to_string();
        if written.insert(manifest_hex.clone()) {
            add_bytes(&mut tar, &format!("blobs/sha256/{manifest_hex}"), &manifest)
                .map_err(io_err)?;
        }
        let descriptor = |annotations: Option<serde_json::Value>| {
            let mut d = json!({
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": manifest.len(),
            });
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        if tags.is_empty() {
            index_entries.push(descriptor(None));
        }
        let mut familiar_tags = Vec::new();
        for t in tags {
            let r = Reference::parse(t)?;
            let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
            index_entries.push(descriptor(Some(json!({
                "io.containerd.image.name": t,
                "org.opencontainers.image.ref.name": tag,
            }))));
            familiar_tags.push(reference::familiarize(t));
            if let Some(top) = layer_paths.last() {
                repositories
                    .entry(r.familiar_name())
                    .or_default()
                    .insert(tag, top.trim_start_matches("blobs/sha256/").to_string());
            }
        }
        manifest_json.push(json!({
            "Config": format!("blobs/sha256/{config_hex}"),
            "RepoTags": if familiar_tags.is_empty() { serde_json::Value::Null } else { json!(familiar_tags) },
            "Layers": layer_paths,
        }));
        events.push(store.event("save", &rec.id, &rec.id));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index_entries,
    });
    let enc = |v: &serde_json::Value| serde_json::to_vec(v).unwrap_or_default();
    add_bytes(&mut tar, "index.json", &enc(&index)).map_err(io_err)?;
    add_bytes(&mut tar, "manifest.json", &enc(&json!(manifest_json))).map_err(io_err)?;
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err)?;
    if !repositories.is_empty() {
        add_bytes(&mut tar, "repositories", &enc(&json!(repositories))).map_err(io_err)?;
    }
    tar.into_inner().map_err(io_err)?.flush().map_err(io_err)?;
    Ok(())
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

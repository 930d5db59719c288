//! Helpers shared by the integration tests: layers, configs and images built in memory.
#![allow(dead_code)]

use std::io::Write;

use bytes::Bytes;
use serde_json::json;
use wharf_bus::digest;
use wharf_bus::image::{ImageCommit, ImageRecord, LayerRef};
use wharf_image_store::blob_store::IngestSpec;
use wharf_image_store::store::{Events, ImageStore};

pub const GZ: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A store whose garbage collection takes unreferenced blobs at once (no lease grace period).
pub fn open() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path())
        .unwrap()
        .with_gc_grace(std::time::Duration::ZERO);
    (dir, store)
}

/// Stores a gzip layer; returns (blob digest, diff ID).
pub fn put_layer(store: &ImageStore, tar: &[u8]) -> (String, String) {
    let gz = gzip(tar);
    let d = digest::sha256_of(&gz);
    let mut i = store
        .blobs
        .ingest(IngestSpec::for_blob(&d, Some(gz.len() as u64), Some(GZ)))
        .unwrap();
    i.write(Bytes::from(gz)).unwrap();
    let r = i.commit().unwrap();
    (d, r.layer.unwrap().info.diff_id)
}

pub fn config_json(diff_ids: &[String], created: &str, labels: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Cmd": ["sh"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// Builds and commits an image with one layer holding `content`; returns its record.
pub fn image(
    store: &ImageStore,
    content: &[u8],
    created: &str,
    tags: &[&str],
    events: &mut Events,
) -> ImageRecord {
    image_with_labels(store, content, created, tags, json!(null), events)
}

pub fn image_with_labels(
    store: &ImageStore,
    content: &[u8],
    created: &str,
    tags: &[&str],
    labels: serde_json::Value,
    events: &mut Events,
) -> ImageRecord {
    let (layer, diff_id) = put_layer(store, &tar_of(&[("file", content)]));
    let config = config_json(&[diff_id], created, labels);
    let c = store.blobs.put(&config, None).unwrap().blob.digest;
    store
        .commit(
            &ImageCommit {
                config: c,
                layers: vec![LayerRef {
                    digest: layer,
                    media_type: GZ.into(),
                }],
                manifest: None,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                repo_digests: vec![],
                parent: None,
            },
            events,
        )
        .unwrap()
}

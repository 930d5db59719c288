//! Test fixtures shared by the disk usage and build cache tests: image and build cache records
//! as the services send them.

use serde_json::{json, Value};
use wharf_bus::build::CacheRecord;
use wharf_bus::image::ImageRecord;

pub(crate) fn image(
    id: char,
    layers: &[(char, u64)],
    tags: &[&str],
    parent: Option<char>,
) -> ImageRecord {
    let hex = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, size)| {
            json!({"digest": hex(*d), "media_type": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                   "size": size / 2, "diff_id": format!("sha256:diff{d}"), "unpacked_size": size})
        })
        .collect();
    let size: u64 = layers
        .iter()
        .map(|l| l["unpacked_size"].as_u64().unwrap())
        .sum();
    serde_json::from_value(json!({
        "id": hex(id), "repo_tags": tags, "repo_digests": [], "layers": layers,
        "config": {"created": "2024-05-01T10:00:00Z"}, "config_size": 100, "size": size,
        "stored_at": "2024-05-01T10:00:00Z", "parent": parent.map(hex),
    }))
    .unwrap()
}

pub(crate) fn cache_record(id: &str, parent: &str, size: u64) -> CacheRecord {
    CacheRecord {
        id: id.into(),
        parent: parent.into(),
        kind: "regular".into(),
        description: "/bin/sh -c echo hi > /f".into(),
        in_use: false,
        shared: false,
        size,
        created_at: "2024-05-01T10:00:00.500+00:00".into(),
        last_used_at: None,
        usage_count: 0,
    }
}

//! `docker import`: a root filesystem tar (plain or compressed) becomes a one-layer image.

use std::io::Read;

use bytes::Bytes;
use serde_json::{json, Value};
use wharf_bus::image::{ImageImport, ImageRecord};
use wharf_bus::BusError;

use crate::blob_store::{IngestSpec, ScanMode};
use crate::changes;
use crate::store::{Events, ImageStore};

/// What import writes as `docker_version`.
pub const DOCKER_VERSION: &str = "28.0.0";

pub fn import<R: Read>(
    store: &ImageStore,
    mut input: R,
    req: &ImageImport,
    events: &mut Events,
) -> Result<ImageRecord, BusError> {
    let mut config = changes::empty_config();
    changes::apply(&req.changes, &mut config)?;
    let os = req.os.clone().unwrap_or_else(|| "linux".into());
    if os != "linux" {
        return Err(BusError::invalid(format!(
            "operating system is not supported: {os}"
        )));
    }
    let target = req
        .tag
        .as_deref()
        .map(crate::store::parse_tag)
        .transpose()?;

    let mut ingest = store.blobs.ingest(IngestSpec {
        expected: None,
        size: None,
        media_type: None,
        scan: ScanMode::Layer,
    })?;
    let mut buf = vec![0u8; 512 << 10];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| crate::bus_error_from_io(e, "cannot read the imported archive"))?;
        if n == 0 {
            break;
        }
        ingest.write(Bytes::copy_from_slice(&buf[..n]))?;
    }
    let layer = ingest
        .commit()?
        .layer
        .ok_or_else(|| BusError::internal("layer not scanned"))?;

    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let comment = req
        .message
        .clone()
        .unwrap_or_else(|| "Imported from -".into());
    let mut image = json!({
        "architecture": req.architecture.clone().unwrap_or_else(|| wharf_bus::registry::Platform::host().architecture),
        "comment": comment,
        "config": Value::Object(config),
        "created": created,
        "docker_version": DOCKER_VERSION,
        "history": [{"created": created, "comment": comment}],
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": [layer.info.diff_id]},
    });
    if let Some(v) = &req.variant {
        image["variant"] = json!(v);
    }
    let raw = serde_json::to_vec(&image).map_err(|e| BusError::internal(e.to_string()))?;
    let config_blob = store.blobs.put(&raw, None)?;
    let rec = store.create(&config_blob.blob.digest, vec![layer], None)?;
    if let Some(key) = target {
        store.tag_id(&rec.id, &key, events)?;
    }
    events.push(store.event("import", &rec.id, &rec.id));
    store
        .get(&rec.id)
        .ok_or_else(|| BusError::internal("imported image vanished"))
}

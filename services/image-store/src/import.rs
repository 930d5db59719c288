//! `docker import`: a root filesystem tar (plain or compressed) becomes a one-layer image.

use bytes::Bytes;
use serde_json::{json, Value};
use wharf_bus::image::{ImageImport, ImageRecord};
use wharf_bus::BusError;

use crate::blob_store::{IngestSpec, ScanMode};
use crate::store::{Events, ImageStore};
use wharf_bus::changes;

/// What import writes as `docker_version`.
pub const DOCKER_VERSION: &str = "28.0.0";

/// Imports the root filesystem tar `input` (plain or compressed).
pub fn import<R: std::io::Read>(
    store: &ImageStore,
    input: R,
    req: &ImageImport,
    events: &mut Events,
) -> Result<ImageRecord, BusError> {
    import_chunks(store, crate::chunks::chunks(input, 512 << 10), req, events)
}

/// Like [`import`], with the input as the chunks of an upload, taken as they arrive (an error
/// ends the import).
pub fn import_chunks(
    store: &ImageStore,
    chunks: impl IntoIterator<Item = std::io::Result<Bytes>>,
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
    for chunk in chunks {
        let chunk =
            chunk.map_err(|e| crate::bus_error_from_io(e, "cannot read the imported archive"))?;
        ingest.write(chunk)?;
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
    let tags: Vec<String> = target.into_iter().collect();
    let created = store.create(&config_blob.blob.digest, vec![layer], None, &tags, events)?;
    let rec = created.image;
    events.push(store.event("import", &rec.id, &rec.id));
    Ok(rec)
}

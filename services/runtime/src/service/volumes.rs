//! `docker volume create/ls/inspect/rm/prune` for this node's local volumes.

use std::sync::Arc;

use serde_json::{json, Value};
use wharf_bus::container::{
    VolumeCreateRequest, VolumeListRequest, VolumeListResponse, VolumePruneResponse,
    VolumeRemoveRequest,
};
use wharf_bus::BusError;

use crate::volume::{Volume, VolumeError, VolumeFilters, LOCAL_DRIVER};

use super::Node;

pub fn error(e: VolumeError) -> BusError {
    match e {
        VolumeError::InvalidParameter(m) => BusError::invalid(m),
        VolumeError::NotFound(_) => BusError::not_found(e.to_string()),
        VolumeError::InUse { .. } | VolumeError::Conflict(_) => BusError::conflict(e.to_string()),
        other => BusError::internal(other.to_string()),
    }
}

/// Docker's JSON of a volume.
pub fn to_json(v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": v.options,
        "Scope": v.scope,
    })
}

fn pairs(filters: &std::collections::BTreeMap<String, Vec<String>>) -> Vec<(&str, &str)> {
    filters
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.as_str(), v.as_str())))
        .collect()
}

pub async fn create(node: &Arc<Node>, req: VolumeCreateRequest) -> Result<Value, BusError> {
    if !req.driver.is_empty() && req.driver != LOCAL_DRIVER {
        return Err(BusError::not_found(format!(
            "error looking up volume plugin {}: plugin \"{}\" not found",
            req.driver, req.driver
        )));
    }
    let node2 = node.clone();
    let name = req.name.clone();
    let v = tokio::task::spawn_blocking(move || {
        node2.volumes.create(
            (!name.is_empty()).then_some(name.as_str()),
            req.labels,
            req.driver_opts,
        )
    })
    .await
    .map_err(|e| BusError::internal(e.to_string()))?
    .map_err(error)?;
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("driver".to_string(), v.driver.clone());
    let event = wharf_bus::events::Event::now("volume", "create", &v.name, attrs);
    wharf_bus::events::publish(&node.client, &event).await;
    Ok(to_json(&v))
}

pub async fn remove(node: &Arc<Node>, req: VolumeRemoveRequest) -> Result<(), BusError> {
    let node2 = node.clone();
    let name = req.name.clone();
    let existed = node.volumes.get(&name).is_ok();
    tokio::task::spawn_blocking(move || node2.volumes.remove(&name, req.force))
        .await
        .map_err(|e| BusError::internal(e.to_string()))?
        .map_err(error)?;
    if existed {
        let event =
            wharf_bus::events::Event::now("volume", "destroy", &req.name, Default::default());
        wharf_bus::events::publish(&node.client, &event).await;
    }
    Ok(())
}

pub fn list(node: &Node, req: &VolumeListRequest) -> Result<VolumeListResponse, BusError> {
    let filters = VolumeFilters::for_list(pairs(&req.filters)).map_err(error)?;
    Ok(VolumeListResponse {
        node: node.options.name.clone(),
        volumes: node.volumes.list(&filters).iter().map(to_json).collect(),
    })
}

pub async fn prune(
    node: &Arc<Node>,
    req: VolumeListRequest,
) -> Result<VolumePruneResponse, BusError> {
    let filters = VolumeFilters::for_prune(pairs(&req.filters)).map_err(error)?;
    let node2 = node.clone();
    let report = tokio::task::spawn_blocking(move || node2.volumes.prune(&filters))
        .await
        .map_err(|e| BusError::internal(e.to_string()))?
        .map_err(error)?;
    for name in &report.volumes_deleted {
        let event = wharf_bus::events::Event::now("volume", "destroy", name, Default::default());
        wharf_bus::events::publish(&node.client, &event).await;
    }
    Ok(VolumePruneResponse {
        volumes_deleted: report.volumes_deleted,
        space_reclaimed: report.space_reclaimed,
    })
}

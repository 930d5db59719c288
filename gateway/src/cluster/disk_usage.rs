//! What images, containers, volumes and the build cache take on disk (`docker system df`):
//! asked of image-store, every node and the builders at once, and accounted as dockerd does
//! (layers counted once, shared sizes, the containers using each image and volume).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use sha2::Digest;
use wharf_bus::build::CacheRecord;
use wharf_bus::container::{ContainerSummary, ListRequest};
use wharf_bus::endpoint::{self, Empty};
use wharf_bus::image::{ImageList, ImageRecord};
use wharf_bus::{api, ErrorKind};

use super::{containers, volumes};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The parts of the usage asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub containers: bool,
    pub images: bool,
    pub volumes: bool,
    pub build_cache: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        containers: true,
        images: true,
        volumes: true,
        build_cache: true,
    };
    pub const NONE: Parts = Parts {
        containers: false,
        images: false,
        volumes: false,
        build_cache: false,
    };
}

/// What the services answered; `None` for a part not asked for (or, for the build cache, when
/// no builder answers).
#[derive(Debug, Default)]
pub struct Usage {
    /// Every image, and those `docker images` shows.
    pub images: Option<(Vec<ImageRecord>, Vec<ImageRecord>)>,
    /// Every container (with sizes when the containers part is asked for).
    pub containers: Option<Vec<ContainerSummary>>,
    pub volumes: Option<Vec<Value>>,
    pub build_cache: Option<Vec<CacheRecord>>,
}

/// An image's layers as dockerd's layer store knows them: by chain ID (the layer with
/// everything under it), each with its unpacked size.
fn chain_ids(record: &ImageRecord) -> Vec<(String, u64)> {
    let mut chain = String::new();
    record
        .layers
        .iter()
        .map(|layer| {
            chain = if chain.is_empty() {
                layer.diff_id.clone()
            } else {
                let digest = sha2::Sha256::digest(format!("{chain} {}", layer.diff_id));
                format!("sha256:{}", hex::encode(digest))
            };
            (chain.clone(), layer.unpacked_size)
        })
        .collect()
}

/// dockerd's image accounting: `LayersSize` is the size of every distinct layer of every image
/// (intermediate ones too); an image `docker images` shows has its `SharedSize` (its layers
/// some other image also has) and its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    pub layers_size: u64,
    /// For each shown image, in order.
    pub images: Vec<ImageCounts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageCounts {
    pub shared_size: u64,
    /// Containers (in any state) made from the image.
    pub containers: usize,
}

/// The accounting of `all` images, for those in `shown`, given every container.
pub fn image_usage(
    all: &[ImageRecord],
    shown: &[ImageRecord],
    containers: &[ContainerSummary],
) -> ImageUsage {
    let mut layers: HashMap<String, (usize, u64)> = HashMap::new();
    for record in all {
        for (chain, size) in chain_ids(record) {
            layers.entry(chain).or_insert((0, size)).0 += 1;
        }
    }
    let layers_size = layers.values().map(|(_, size)| size).sum();
    let images = shown
        .iter()
        .map(|record| {
            let shared_size = chain_ids(record)
                .iter()
                .filter(|(chain, _)| layers.get(chain).is_some_and(|(refs, _)| *refs > 1))
                .map(|(_, size)| size)
                .sum();
            let containers = containers
                .iter()
                .filter(|c| c.image_id == record.id)
                .count();
            ImageCounts {
                shared_size,
                containers,
            }
        })
        .collect();
    ImageUsage {
        layers_size,
        images,
    }
}

/// Volumes with dockerd's `UsageData`: `RefCount` counts the containers (in any state) that
/// mount the volume; `Size` is the node's figure when it gives one, else -1 ("not available").
pub fn volume_usage(volumes: Vec<Value>, containers: &[ContainerSummary]) -> Vec<Value> {
    volumes
        .into_iter()
        .map(|mut volume| {
            let name = volume["Name"].as_str().unwrap_or("").to_string();
            let refs = containers
                .iter()
                .filter(|c| {
                    c.mounts
                        .iter()
                        .any(|m| m.kind == "volume" && m.name.as_deref() == Some(&name))
                })
                .count();
            let size = volume["UsageData"]["Size"].as_i64().unwrap_or(-1);
            volume["UsageData"] = json!({"Size": size, "RefCount": refs});
            volume
        })
        .collect()
}

async fn list_images(state: &AppState, all: bool) -> ApiResult<Vec<ImageRecord>> {
    let request = ImageList {
        all,
        ..Default::default()
    };
    Ok(endpoint::call::<api::ImageListAll>(&state.bus, &request).await?)
}

/// The build cache records; `None` when no builder answers (`docker system df` still works).
async fn build_cache(state: &AppState) -> ApiResult<Option<Vec<CacheRecord>>> {
    match endpoint::call::<api::CacheList>(&state.bus, &Empty).await {
        Ok(records) => Ok(Some(records)),
        Err(e) if e.kind == ErrorKind::Unavailable => {
            tracing::debug!("no build cache in df: {}", e.message);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The `parts` asked for: the same bus requests as `docker images`, `docker ps -as` and
/// `docker volume ls`, plus the builders' cache index, at once. The containers are listed for
/// the images and volumes parts too (they count their users).
pub async fn gather(state: &AppState, parts: Parts) -> ApiResult<Usage> {
    let containers = async {
        if !(parts.containers || parts.images || parts.volumes) {
            return Ok(None);
        }
        // Sizes cost a walk of each container's files: only when they are shown.
        let request = ListRequest {
            all: true,
            size: parts.containers,
            ..Default::default()
        };
        Ok::<_, ApiError>(Some(containers::list(state, &request).await?))
    };
    let images = async {
        if !parts.images {
            return Ok(None);
        }
        let (all, shown) = tokio::try_join!(list_images(state, true), list_images(state, false))?;
        Ok::<_, ApiError>(Some((all, shown)))
    };
    let volumes = async {
        if !parts.volumes {
            return Ok(None);
        }
        Ok::<_, ApiError>(Some(volumes::list(state, BTreeMap::new()).await?))
    };
    let cache = async {
        if !parts.build_cache {
            return Ok(None);
        }
        build_cache(state).await
    };
    let (containers, images, volumes, build_cache) =
        tokio::try_join!(containers, images, volumes, cache)?;
    Ok(Usage {
        images,
        containers,
        volumes,
        build_cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{four_images, FourImages};

    #[test]
    fn image_usage_counts_distinct_layers_shared_sizes_and_containers() {
        let FourImages {
            base,
            step,
            app,
            other,
        } = four_images();
        let all = vec![base.clone(), step, app.clone(), other.clone()];
        let shown = vec![app.clone(), base.clone(), other.clone()];
        let containers: Vec<ContainerSummary> = serde_json::from_value(json!([
            {"Id": "c1", "ImageID": app.id},
            {"Id": "c2", "ImageID": app.id},
            {"Id": "c3", "ImageID": base.id},
        ]))
        .unwrap();
        let usage = image_usage(&all, &shown, &containers);
        // a, a+b (one chain for step and app), c, c+b: b counts twice, under two chains.
        assert_eq!(usage.layers_size, 1000 + 200 + 50 + 200);
        let counts = |shared_size, containers| ImageCounts {
            shared_size,
            containers,
        };
        assert_eq!(
            usage.images,
            [counts(1200, 2), counts(1000, 1), counts(0, 0)]
        );
    }

    #[test]
    fn volume_usage_counts_the_containers_that_mount_each_volume() {
        let volumes = vec![
            json!({"Name": "data", "Driver": "local"}),
            json!({"Name": "idle", "Driver": "local", "UsageData": {"Size": 4096, "RefCount": 7}}),
        ];
        let containers: Vec<ContainerSummary> = serde_json::from_value(json!([
            {"Id": "c1", "Mounts": [{"Type": "volume", "Name": "data"}, {"Type": "bind", "Source": "/data"}]},
            {"Id": "c2", "Mounts": [{"Type": "volume", "Name": "data"}]},
            {"Id": "c3", "Mounts": [{"Type": "bind", "Name": "idle"}]},
        ]))
        .unwrap();
        let out = volume_usage(volumes, &containers);
        assert_eq!(out[0]["UsageData"], json!({"Size": -1, "RefCount": 2}));
        assert_eq!(out[0]["Driver"], "local");
        assert_eq!(out[1]["UsageData"], json!({"Size": 4096, "RefCount": 0}));
    }
}

//! `/system/df`: what images, containers, volumes and the build cache take on disk, asked of
//! the services at once and summed up as dockerd's `types.DiskUsage`.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::Extension;
use serde_json::{json, Map, Value};
use sha2::Digest;
use wharf_bus::build::CacheRecord;
use wharf_bus::endpoint::{self, Empty};
use wharf_bus::image::{ImageList, ImageRecord};
use wharf_bus::{api, ErrorKind};

use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::render;
use crate::state::AppState;
use crate::version::ApiVersion;

/// What `GET /system/df` reports: everything before API 1.42 or without `type`, otherwise
/// the types asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfParts {
    pub containers: bool,
    pub images: bool,
    pub volumes: bool,
    pub build_cache: bool,
}

pub fn df_parts(q: &Query, version: ApiVersion) -> ApiResult<DfParts> {
    let types = q.all("type");
    if !version.at_least(1, 42) || types.is_empty() {
        return Ok(DfParts {
            containers: true,
            images: true,
            volumes: true,
            build_cache: true,
        });
    }
    let mut parts = DfParts {
        containers: false,
        images: false,
        volumes: false,
        build_cache: false,
    };
    for t in types {
        match t.as_str() {
            "container" => parts.containers = true,
            "image" => parts.images = true,
            "volume" => parts.volumes = true,
            "build-cache" => parts.build_cache = true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown object type: {other}"
                )))
            }
        }
    }
    Ok(parts)
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

/// dockerd's image part of `/system/df`: `LayersSize` is the size of every distinct layer of
/// every image (`all`, intermediate ones too); each image `docker images` shows (`shown`) gets
/// its `SharedSize` (its layers some other image also has) and how many containers use it.
pub fn image_usage(
    all: &[ImageRecord],
    shown: &[ImageRecord],
    containers: &[Value],
    version: ApiVersion,
) -> (u64, Vec<Value>) {
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
            let shared: u64 = chain_ids(record)
                .iter()
                .filter(|(chain, _)| layers.get(chain).is_some_and(|(refs, _)| *refs > 1))
                .map(|(_, size)| size)
                .sum();
            let used = containers
                .iter()
                .filter(|c| c["ImageID"].as_str() == Some(record.id.as_str()))
                .count();
            let mut summary = render::summary(record, version);
            summary["SharedSize"] = json!(shared);
            summary["Containers"] = json!(used);
            summary
        })
        .collect();
    (layers_size, images)
}

/// Volumes with dockerd's `UsageData`: `RefCount` counts the containers (in any state) that
/// mount the volume; `Size` is the node's figure when it gives one, else -1 ("not available").
pub fn volume_usage(volumes: Vec<Value>, containers: &[Value]) -> Vec<Value> {
    volumes
        .into_iter()
        .map(|mut volume| {
            let name = volume["Name"].as_str().unwrap_or("").to_string();
            let refs = containers
                .iter()
                .filter(|c| {
                    c["Mounts"].as_array().is_some_and(|mounts| {
                        mounts
                            .iter()
                            .any(|m| m["Type"] == "volume" && m["Name"].as_str() == Some(&name))
                    })
                })
                .count();
            let size = volume["UsageData"]["Size"].as_i64().unwrap_or(-1);
            volume["UsageData"] = json!({"Size": size, "RefCount": refs});
            volume
        })
        .collect()
}

/// A build cache record as dockerd shows it: from API 1.42 the deprecated `Parent` gives way
/// to `Parents`; times in Go's format.
pub fn cache_record_json(record: &CacheRecord, version: ApiVersion) -> Value {
    let time = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| render::go_time(&t.with_timezone(&chrono::Utc)))
            .unwrap_or_else(|_| t.to_string())
    };
    let mut v = Map::new();
    v.insert("ID".into(), json!(record.id));
    if version.at_least(1, 42) {
        if !record.parent.is_empty() {
            v.insert("Parents".into(), json!([record.parent]));
        }
    } else {
        v.insert("Parent".into(), json!(record.parent));
    }
    v.insert("Type".into(), json!(record.kind));
    v.insert("Description".into(), json!(record.description));
    v.insert("InUse".into(), json!(record.in_use));
    v.insert("Shared".into(), json!(record.shared));
    v.insert("Size".into(), json!(record.size));
    v.insert("CreatedAt".into(), json!(time(&record.created_at)));
    v.insert(
        "LastUsedAt".into(),
        json!(record.last_used_at.as_deref().map(time)),
    );
    v.insert("UsageCount".into(), json!(record.usage_count));
    Value::Object(v)
}

/// What the services answered for `/system/df`; `None` for a part not asked for (or, for the
/// build cache, when no builder answers).
#[derive(Debug, Default)]
pub struct Usage {
    /// Every image, and those `docker images` shows.
    pub images: Option<(Vec<ImageRecord>, Vec<ImageRecord>)>,
    /// Every container (with sizes when the containers part is asked for).
    pub containers: Option<Vec<Value>>,
    pub volumes: Option<Vec<Value>>,
    pub build_cache: Option<Vec<CacheRecord>>,
}

/// dockerd's `GET /system/df` body (`types.DiskUsage`).
pub fn disk_usage_json(usage: Usage, parts: DfParts, version: ApiVersion) -> Value {
    let containers = usage.containers.unwrap_or_default();
    let (layers_size, images) = match &usage.images {
        Some((all, shown)) => {
            let (size, images) = image_usage(all, shown, &containers, version);
            (size, json!(images))
        }
        None => (0, Value::Null),
    };
    let volumes = usage
        .volumes
        .map(|v| json!(volume_usage(v, &containers)))
        .unwrap_or(Value::Null);
    let build_cache = usage.build_cache.as_ref().map(|records| {
        records
            .iter()
            .map(|r| cache_record_json(r, version))
            .collect::<Vec<_>>()
    });
    let mut out = json!({
        "LayersSize": layers_size,
        "Images": images,
        "Containers": if parts.containers { json!(containers) } else { Value::Null },
        "Volumes": volumes,
        "BuildCache": build_cache,
    });
    // Before API 1.42 dockerd also sums the build cache up.
    if !version.at_least(1, 42) {
        let size: u64 = usage.build_cache.iter().flatten().map(|r| r.size).sum();
        if size > 0 {
            out["BuilderSize"] = json!(size);
        }
    }
    out
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
    let listed = endpoint::call::<api::CacheList>(&state.bus, &Empty).await;
    match listed {
        Ok(records) => Ok(Some(records)),
        Err(e) if e.kind == ErrorKind::Unavailable => {
            tracing::debug!("no build cache in df: {}", e.message);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /system/df`: the same bus requests as `docker images`, `docker ps -as` and
/// `docker volume ls`, plus the builders' cache index, asked at once.
pub async fn disk_usage(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let parts = df_parts(&Query::parse(raw.as_deref()), version)?;
    let containers = async {
        if !(parts.containers || parts.images || parts.volumes) {
            return Ok(None);
        }
        // Sizes cost a walk of each container's files: only when they are shown.
        let query = if parts.containers {
            "all=1&size=1"
        } else {
            "all=1"
        };
        let listed = crate::routes::containers::list(
            State(state.clone()),
            RawQuery(Some(query.to_string())),
        )
        .await?;
        Ok::<_, ApiError>(Some(listed.0.as_array().cloned().unwrap_or_default()))
    };
    let images = async {
        if !parts.images {
            return Ok(None);
        }
        let (all, shown) = tokio::try_join!(list_images(&state, true), list_images(&state, false))?;
        Ok::<_, ApiError>(Some((all, shown)))
    };
    let volumes = async {
        if !parts.volumes {
            return Ok(None);
        }
        let listed = crate::routes::volumes::list(State(state.clone()), RawQuery(None)).await?;
        Ok::<_, ApiError>(Some(
            listed.0["Volumes"].as_array().cloned().unwrap_or_default(),
        ))
    };
    let cache = async {
        if !parts.build_cache {
            return Ok(None);
        }
        build_cache(&state).await
    };
    let (containers, images, volumes, build_cache) =
        tokio::try_join!(containers, images, volumes, cache)?;
    let usage = Usage {
        images,
        containers,
        volumes,
        build_cache,
    };
    Ok(axum::Json(disk_usage_json(usage, parts, version)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::system::testutil::{cache_record, image};
    use axum::http::StatusCode;

    #[test]
    fn df_types_are_read_from_api_1_42() {
        let all = DfParts {
            containers: true,
            images: true,
            volumes: true,
            build_cache: true,
        };
        let q = Query::parse(Some("type=image&type=build-cache"));
        assert_eq!(
            df_parts(&q, ApiVersion::CURRENT).unwrap(),
            DfParts {
                containers: false,
                images: true,
                volumes: false,
                build_cache: true,
            }
        );
        assert_eq!(df_parts(&q, ApiVersion(1, 41)).unwrap(), all);
        assert_eq!(
            df_parts(&Query::parse(None), ApiVersion::CURRENT).unwrap(),
            all
        );
        let err = df_parts(&Query::parse(Some("type=network")), ApiVersion::CURRENT).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "unknown object type: network");
    }

    #[test]
    fn image_usage_counts_distinct_layers_shared_sizes_and_containers() {
        // A base, a build step on it (hidden from `docker images`) and the tagged result with
        // the step's layers; another image whose layer has the same diff ID on another base.
        let base = image(
            '1',
            &[('a', 1000)],
            &["docker.io/library/base:latest"],
            None,
        );
        let step = image('2', &[('a', 1000), ('b', 200)], &[], Some('1'));
        let app = image(
            '3',
            &[('a', 1000), ('b', 200)],
            &["docker.io/library/app:v1"],
            Some('2'),
        );
        let other = image(
            '4',
            &[('c', 50), ('b', 200)],
            &["docker.io/library/other:v1"],
            None,
        );
        let all = vec![base.clone(), step, app.clone(), other.clone()];
        let shown = vec![app.clone(), base.clone(), other.clone()];
        let containers = vec![
            json!({"Id": "c1", "ImageID": app.id}),
            json!({"Id": "c2", "ImageID": app.id}),
            json!({"Id": "c3", "ImageID": base.id}),
        ];
        let (layers_size, images) = image_usage(&all, &shown, &containers, ApiVersion::CURRENT);
        // a, a+b (one chain for step and app), c, c+b: b counts twice, under two chains.
        assert_eq!(layers_size, 1000 + 200 + 50 + 200);
        assert_eq!(images.len(), 3);
        assert_eq!(images[0]["Id"], json!(app.id));
        assert_eq!(images[0]["RepoTags"], json!(["app:v1"]));
        assert_eq!(images[0]["Size"], 1200);
        assert_eq!(images[0]["SharedSize"], 1200);
        assert_eq!(images[0]["Containers"], 2);
        assert_eq!(images[1]["SharedSize"], 1000);
        assert_eq!(images[1]["Containers"], 1);
        assert_eq!(images[2]["SharedSize"], 0);
        assert_eq!(images[2]["Containers"], 0);
    }

    #[test]
    fn volume_usage_counts_the_containers_that_mount_each_volume() {
        let volumes = vec![
            json!({"Name": "data", "Driver": "local"}),
            json!({"Name": "idle", "Driver": "local", "UsageData": {"Size": 4096, "RefCount": 7}}),
        ];
        let containers = vec![
            json!({"Id": "c1", "Mounts": [{"Type": "volume", "Name": "data"}, {"Type": "bind", "Source": "/data"}]}),
            json!({"Id": "c2", "Mounts": [{"Type": "volume", "Name": "data"}]}),
            json!({"Id": "c3", "Mounts": [{"Type": "bind", "Name": "idle"}]}),
        ];
        let out = volume_usage(volumes, &containers);
        assert_eq!(out[0]["UsageData"], json!({"Size": -1, "RefCount": 2}));
        assert_eq!(out[0]["Driver"], "local");
        assert_eq!(out[1]["UsageData"], json!({"Size": 4096, "RefCount": 0}));
    }

    #[test]
    fn cache_records_follow_the_api_version() {
        let r = cache_record("k1", "sha256:p", 42);
        assert_eq!(
            cache_record_json(&r, ApiVersion::CURRENT),
            json!({
                "ID": "k1", "Parents": ["sha256:p"], "Type": "regular",
                "Description": "/bin/sh -c echo hi > /f", "InUse": false, "Shared": false,
                "Size": 42, "CreatedAt": "2024-05-01T10:00:00.5Z", "LastUsedAt": null,
                "UsageCount": 0,
            })
        );
        let old = cache_record_json(&r, ApiVersion(1, 41));
        assert_eq!(old["Parent"], "sha256:p");
        assert!(old.get("Parents").is_none());
        let root = cache_record_json(&cache_record("k0", "", 0), ApiVersion::CURRENT);
        assert!(root.get("Parents").is_none() && root.get("Parent").is_none());
    }

    #[test]
    fn df_leaves_out_what_was_not_asked_for() {
        let parts = DfParts {
            containers: false,
            images: false,
            volumes: false,
            build_cache: true,
        };
        let usage = Usage {
            build_cache: Some(vec![cache_record("k1", "", 10), cache_record("k2", "", 5)]),
            ..Default::default()
        };
        let v = disk_usage_json(usage, parts, ApiVersion::CURRENT);
        assert_eq!(
            v,
            json!({
                "LayersSize": 0, "Images": null, "Containers": null, "Volumes": null,
                "BuildCache": [
                    cache_record_json(&cache_record("k1", "", 10), ApiVersion::CURRENT),
                    cache_record_json(&cache_record("k2", "", 5), ApiVersion::CURRENT),
                ],
            })
        );
        let all = DfParts {
            containers: true,
            images: true,
            volumes: true,
            build_cache: true,
        };
        let usage = Usage {
            images: Some((vec![], vec![])),
            containers: Some(vec![]),
            volumes: Some(vec![]),
            build_cache: Some(vec![cache_record("k1", "", 10)]),
        };
        let v = disk_usage_json(usage, all, ApiVersion(1, 41));
        assert_eq!(v["Images"], json!([]));
        assert_eq!(v["Containers"], json!([]));
        assert_eq!(v["BuilderSize"], 10, "old clients get the sum");
    }
}

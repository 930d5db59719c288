//! `/system/df`: what images, containers, volumes and the build cache take on disk, gathered
//! and accounted by [`cluster::disk_usage`], rendered as dockerd's `types.DiskUsage`.

use axum::extract::{RawQuery, State};
use axum::Extension;
use serde_json::{json, Map, Value};
use wharf_bus::build::CacheRecord;

use crate::cluster;
use crate::cluster::disk_usage::{image_usage, volume_usage, Parts, Usage};
use crate::error::{ApiError, ApiResult};
use crate::query::Query;
use crate::render;
use crate::state::AppState;
use crate::version::ApiVersion;

/// What `GET /system/df` reports: everything before API 1.42 or without `type`, otherwise
/// the types asked for.
pub fn df_parts(q: &Query, version: ApiVersion) -> ApiResult<Parts> {
    let types = q.all("type");
    if !version.at_least(1, 42) || types.is_empty() {
        return Ok(Parts::ALL);
    }
    let mut parts = Parts::NONE;
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

/// dockerd's `GET /system/df` body (`types.DiskUsage`): each image as `docker images` shows it
/// with its `SharedSize` and `Containers`.
pub fn disk_usage_json(usage: Usage, parts: Parts, version: ApiVersion) -> Value {
    let containers = usage.containers.unwrap_or_default();
    let (layers_size, images) = match &usage.images {
        Some((all, shown)) => {
            let accounted = image_usage(all, shown, &containers);
            let images: Vec<Value> = shown
                .iter()
                .zip(accounted.images)
                .map(|(record, counts)| {
                    let mut summary = render::summary(record, version);
                    summary["SharedSize"] = json!(counts.shared_size);
                    summary["Containers"] = json!(counts.containers);
                    summary
                })
                .collect();
            (accounted.layers_size, json!(images))
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

/// `GET /system/df`.
pub async fn disk_usage(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let parts = df_parts(&Query::parse(raw.as_deref()), version)?;
    let usage = cluster::disk_usage::gather(&state, parts).await?;
    Ok(axum::Json(disk_usage_json(usage, parts, version)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{cache_record, four_images, FourImages};
    use axum::http::StatusCode;

    #[test]
    fn df_types_are_read_from_api_1_42() {
        let all = Parts::ALL;
        let q = Query::parse(Some("type=image&type=build-cache"));
        assert_eq!(
            df_parts(&q, ApiVersion::CURRENT).unwrap(),
            Parts {
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
    fn images_show_as_docker_images_does_with_their_usage() {
        let FourImages {
            base,
            step,
            app,
            other,
        } = four_images();
        let all = vec![base.clone(), step, app.clone(), other.clone()];
        let shown = vec![app.clone(), base.clone(), other.clone()];
        let containers = serde_json::from_value(json!([
            {"Id": "c1", "ImageID": app.id},
            {"Id": "c2", "ImageID": app.id},
            {"Id": "c3", "ImageID": base.id},
        ]))
        .unwrap();
        let usage = Usage {
            images: Some((all, shown)),
            containers: Some(containers),
            ..Default::default()
        };
        let parts = Parts {
            images: true,
            ..Parts::NONE
        };
        let v = disk_usage_json(usage, parts, ApiVersion::CURRENT);
        // a, a+b (one chain for step and app), c, c+b: b counts twice, under two chains.
        assert_eq!(v["LayersSize"], 1000 + 200 + 50 + 200);
        let images = v["Images"].as_array().unwrap();
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
        assert_eq!(v["Containers"], Value::Null, "not asked for");
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
        let parts = Parts {
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
        let all = Parts {
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

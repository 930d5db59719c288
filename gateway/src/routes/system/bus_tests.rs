//! `/system/df` and `/build/prune` against a real nats-server with a fake image-store, runtime
//! node and builder, then through the docker CLI.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Extension;
use serde_json::{json, Value};
use wharf_bus::build::{CachePrune, CachePruneReport};
use wharf_bus::image::{ImageList, ImageRecord};

use super::{build_prune, disk_usage};
use crate::state::AppState;
use crate::testutil::{cache_record, four_images, FourImages};
use crate::version::ApiVersion;

/// A fake image-store, runtime node and (optionally) builder on a real nats-server, and
/// the df and prune handlers against them.
#[tokio::test]
async fn df_and_build_prune_over_the_bus() {
    use std::sync::{Arc, Mutex};
    use wharf_bus::container::{op, ListRequest, ListResponse, NodeInfo, VolumeListResponse};
    use wharf_bus::service::Reply;
    use wharf_bus::subjects::{builder, group, image_store};

    let nats = wharf_bus::testkit::NatsServer::start();
    let client = nats.client().await;
    let FourImages {
        base, step, app, ..
    } = four_images();
    let images = Arc::new(vec![app.clone(), step.clone(), base.clone()]);
    let mut store =
        wharf_bus::service::start(&client, "wharf-image-store", "fake", group::IMAGE_STORE)
            .await
            .unwrap();
    store
        .serve(group::IMAGE_STORE, image_store::IMAGE_LIST, move |req| {
            let images = images.clone();
            async move {
                let r: ImageList = wharf_bus::rpc::decode(&req.message.payload)?;
                let shown: Vec<&ImageRecord> = images
                    .iter()
                    .filter(|i| r.all || !i.repo_tags.is_empty())
                    .collect();
                Reply::json(&shown)
            }
        })
        .await
        .unwrap();

    let all = "wharf.v1.runtime.all";
    let sizes_asked = Arc::new(Mutex::new(Vec::new()));
    let mut node = wharf_bus::service::start(&client, "fake-runtime", "test", all)
        .await
        .unwrap();
    node.serve(all, op::PING, |_| async move {
        Reply::json(&NodeInfo {
            name: "n1".into(),
            ..Default::default()
        })
    })
    .await
    .unwrap();
    let (asked, app_id) = (sizes_asked.clone(), app.id.clone());
    node.serve(all, op::LIST, move |req| {
        let (asked, app_id) = (asked.clone(), app_id.clone());
        async move {
            let r: ListRequest = wharf_bus::rpc::decode(&req.message.payload)?;
            asked.lock().unwrap().push((r.all, r.size));
            Reply::json(&ListResponse {
                node: "n1".into(),
                containers: vec![serde_json::from_value(json!({
                    "Id": "c1", "Names": ["/web"], "ImageID": app_id, "Created": 5,
                    "State": "exited", "SizeRw": 300, "SizeRootFs": 1500,
                    "Mounts": [{"Type": "volume", "Name": "data"}],
                }))
                .unwrap()],
            })
        }
    })
    .await
    .unwrap();
    node.serve(all, op::VOLUME_LIST, |_| async move {
        Reply::json(&VolumeListResponse {
            node: "n1".into(),
            volumes: vec![
                json!({"Name": "data", "Driver": "local"}),
                json!({"Name": "spare", "Driver": "local"}),
            ],
        })
    })
    .await
    .unwrap();

    let state = AppState::new(client.clone(), crate::Options::default()).await;
    let df = |query: Option<&str>| {
        let state = state.clone();
        let query = query.map(str::to_string);
        async move {
            disk_usage(
                State(state),
                Extension(ApiVersion::CURRENT),
                RawQuery(query),
            )
            .await
            .map(|j| j.0)
        }
    };

    // No builder yet: df still answers, without a build cache; prune is unavailable.
    let v = df(None).await.unwrap();
    assert_eq!(v["LayersSize"], 1200);
    let shown: Vec<&str> = v["Images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Id"].as_str().unwrap())
        .collect();
    assert_eq!(shown, [app.id.as_str(), base.id.as_str()]);
    assert_eq!(v["Images"][0]["Containers"], 1);
    assert_eq!(
        v["Images"][0]["SharedSize"], 1200,
        "the hidden step holds the same layers"
    );
    assert_eq!(v["Images"][1]["SharedSize"], 1000);
    assert_eq!(v["Containers"][0]["SizeRw"], 300);
    assert!(v["Containers"][0].get("_created_nanos").is_none());
    assert_eq!(
        v["Volumes"][0]["UsageData"],
        json!({"Size": -1, "RefCount": 1})
    );
    assert_eq!(
        v["Volumes"][1]["UsageData"],
        json!({"Size": -1, "RefCount": 0})
    );
    assert_eq!(v["BuildCache"], Value::Null);
    assert_eq!(sizes_asked.lock().unwrap().pop(), Some((true, true)));

    let err = build_prune(State(state.clone()), RawQuery(None))
        .await
        .unwrap_err();
    assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        err.message
            .starts_with("cannot prune the build cache: the builder service is not running"),
        "{}",
        err.message
    );

    let pruned = Arc::new(Mutex::new(None));
    let mut fake_builder =
        wharf_bus::service::start(&client, "wharf-builder", "fake", group::BUILDER)
            .await
            .unwrap();
    fake_builder
        .serve(group::BUILDER, builder::CACHE_LIST, |_| async move {
            Reply::json(&vec![cache_record("k1", "sha256:p", 200)])
        })
        .await
        .unwrap();
    let seen = pruned.clone();
    fake_builder
        .serve(group::BUILDER, builder::CACHE_PRUNE, move |req| {
            let seen = seen.clone();
            async move {
                let r: CachePrune = wharf_bus::rpc::decode(&req.message.payload)?;
                *seen.lock().unwrap() = Some(r);
                Reply::json(&CachePruneReport {
                    caches_deleted: vec!["k1".into()],
                    images_deleted: vec![],
                    space_reclaimed: 77,
                })
            }
        })
        .await
        .unwrap();

    let v = df(Some("type=build-cache&type=volume")).await.unwrap();
    assert_eq!(v["Images"], Value::Null);
    assert_eq!(v["Containers"], Value::Null);
    assert_eq!(v["Volumes"][0]["UsageData"]["RefCount"], 1);
    assert_eq!(v["BuildCache"][0]["ID"], "k1");
    assert_eq!(v["BuildCache"][0]["Size"], 200);
    assert_eq!(
        sizes_asked.lock().unwrap().pop(),
        Some((true, false)),
        "no sizes unless shown"
    );

    let query = "all=1&keep-storage=1000&filters=%7B%22until%22%3A%7B%2224h%22%3Atrue%7D%7D";
    let v = build_prune(State(state.clone()), RawQuery(Some(query.into())))
        .await
        .unwrap()
        .0;
    assert_eq!(v, json!({"CachesDeleted": ["k1"], "SpaceReclaimed": 77}));
    let req = pruned.lock().unwrap().take().unwrap();
    assert!(req.all);
    assert_eq!(req.keep_storage, 1000);
    assert_eq!(req.filters["until"], ["24h"]);
    assert_eq!(
        req.in_use,
        BTreeMap::from([(app.id.clone(), "c1".to_string())])
    );

    // The docker CLI reads both answers.
    let listener = crate::listen::bind("tcp://127.0.0.1:0", None, None)
        .await
        .unwrap();
    let host = listener.describe();
    tokio::spawn(crate::listen::serve(
        listener,
        crate::routes::router(state.clone()),
        tokio_util::sync::CancellationToken::new(),
        crate::limits::Limits::default(),
    ));
    let config = std::env::temp_dir().join(format!("wharf-df-cli-{}", std::process::id()));
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("config.json"), "{}").unwrap();
    let docker = |args: &'static [&'static str]| {
        let (host, config) = (host.clone(), config.clone());
        async move {
            let bin = ["/usr/local/bin/docker", "/usr/bin/docker"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .expect("the docker CLI is installed");
            let out = tokio::process::Command::new(bin)
                .args(args)
                .env("DOCKER_HOST", &host)
                .env("DOCKER_CONFIG", &config)
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(out.status.success(), "docker {args:?}: {text}{err}");
            text
        }
    };
    let summary = docker(&["system", "df"]).await;
    let rows: Vec<Vec<&str>> = summary
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // TYPE TOTAL ACTIVE SIZE RECLAIMABLE. The CLI counts an image in use as holding only
    // its unshared bytes: app shares all of its layers with the hidden step.
    assert_eq!(
        rows[1],
        ["Images", "2", "1", "1.2kB", "1.2kB", "(100%)"],
        "{summary}"
    );
    assert_eq!(
        rows[2],
        ["Containers", "1", "0", "300B", "300B", "(100%)"],
        "{summary}"
    );
    assert_eq!(rows[3][..4], ["Local", "Volumes", "2", "1"], "{summary}");
    assert_eq!(
        rows[4],
        ["Build", "Cache", "1", "0", "200B", "200B"],
        "{summary}"
    );
    let verbose = docker(&["system", "df", "-v"]).await;
    assert!(verbose.contains("Build cache usage: 200B"), "{verbose}");
    assert!(
        verbose
            .lines()
            .any(|l| l.starts_with("k1 ") && l.contains("regular")),
        "{verbose}"
    );
    assert!(
        verbose
            .lines()
            .any(|l| l.starts_with("app ") && l.contains("v1")),
        "{verbose}"
    );
    let pruned = docker(&["builder", "prune", "-f"]).await;
    assert!(
        pruned.contains("Deleted build cache objects:\nk1\n"),
        "{pruned}"
    );
    assert!(pruned.contains("Total reclaimed space: 77B"), "{pruned}");
    let _ = std::fs::remove_dir_all(&config);
}

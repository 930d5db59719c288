//! The build cache endpoints over a real nats-server with JetStream and a real image-store:
//! `cache.list` shows the shared index as Docker's `BuildCache` records, and `cache.prune`
//! removes entries and deletes the intermediate images only they kept, children first,
//! counting the blobs that are really gone.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use wharf_builder::build::cache::{Cache, Entry};
use wharf_builder::cache_endpoints;
use wharf_bus::build::{CachePrune, CachePruneReport, CacheRecord};
use wharf_bus::events::Event;
use wharf_bus::image::{ImageCommit, ImageRecord, ImageResolve, LayerRef};
use wharf_bus::subjects::{builder, group, image_store, service_name, subject};
use wharf_bus::testkit::NatsServer;
use wharf_bus::{BusError, ErrorKind};
use wharf_image_store::blob_store::IngestSpec;
use wharf_image_store::store::ImageStore;

const GZ: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A builder's cache endpoints on `nats`, and the cache they serve.
async fn builder(nats: &NatsServer) -> (wharf_bus::service::Running, Cache) {
    let client = nats.client().await;
    let mut running = wharf_bus::service::start(
        &client,
        service_name::BUILDER,
        "test builder",
        group::BUILDER,
    )
    .await
    .unwrap();
    let cache = Cache::open(&client).await;
    cache_endpoints::serve(&mut running, client, cache.clone())
        .await
        .unwrap();
    (running, cache)
}

/// An image-store with no garbage-collection grace period, so freed blobs go at once.
async fn image_store(
    nats: &NatsServer,
) -> (
    tempfile::TempDir,
    Arc<ImageStore>,
    wharf_bus::service::Running,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        ImageStore::open(dir.path())
            .unwrap()
            .with_gc_grace(std::time::Duration::ZERO),
    );
    let running = wharf_image_store::bus::serve(nats.client().await, store.clone())
        .await
        .unwrap();
    (dir, store, running)
}

/// Stores a gzip layer holding one file; returns its blob digest and diff ID.
fn layer(store: &ImageStore, content: &[u8]) -> (String, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "file", content).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    let gz = gz.finish().unwrap();
    let digest = wharf_bus::digest::sha256_of(&gz);
    let mut ingest = store
        .blobs
        .ingest(IngestSpec::for_blob(
            &digest,
            Some(gz.len() as u64),
            Some(GZ),
        ))
        .unwrap();
    ingest.write(bytes::Bytes::from(gz)).unwrap();
    let diff_id = ingest.commit().unwrap().layer.unwrap().info.diff_id;
    (digest, diff_id)
}

/// Commits, over the bus as a builder does, an image of `layers` whose config differs by `env`.
async fn commit(
    client: &async_nats::Client,
    store: &ImageStore,
    layers: &[&(String, String)],
    env: &str,
    parent: Option<&ImageRecord>,
    tags: &[&str],
) -> ImageRecord {
    let config = json!({
        "architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00Z",
        "config": {"Env": [env]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.1).collect::<Vec<_>>()},
    });
    let config = store
        .blobs
        .put(&serde_json::to_vec(&config).unwrap(), None)
        .unwrap()
        .blob
        .digest;
    wharf_bus::call(
        client,
        &subject(group::IMAGE_STORE, image_store::IMAGE_COMMIT),
        &ImageCommit {
            config,
            layers: layers
                .iter()
                .map(|l| LayerRef {
                    digest: l.0.clone(),
                    media_type: GZ.into(),
                })
                .collect(),
            manifest: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: vec![],
            parent: parent.map(|p| p.id.clone()),
        },
    )
    .await
    .unwrap()
}

fn entry(image: &ImageRecord, parent: &str, size: u64, created: &str) -> Entry {
    Entry {
        image: image.id.clone(),
        parent: parent.to_string(),
        description: format!("/bin/sh -c #(nop)  ENV {}", image.id),
        size,
        created: created.to_string(),
    }
}

async fn list(client: &async_nats::Client) -> Vec<CacheRecord> {
    wharf_bus::call(
        client,
        &subject(group::BUILDER, builder::CACHE_LIST),
        &json!({}),
    )
    .await
    .unwrap()
}

async fn prune(
    client: &async_nats::Client,
    req: &CachePrune,
) -> Result<CachePruneReport, BusError> {
    wharf_bus::call(client, &subject(group::BUILDER, builder::CACHE_PRUNE), req).await
}

async fn resolve(client: &async_nats::Client, id: &str) -> Result<ImageRecord, BusError> {
    wharf_bus::call(
        client,
        &subject(group::IMAGE_STORE, image_store::IMAGE_RESOLVE),
        &ImageResolve {
            name: id.to_string(),
        },
    )
    .await
}

fn until(value: &str) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([("until".to_string(), vec![value.to_string()])])
}

#[tokio::test]
async fn list_shows_every_entry_as_a_docker_build_cache_record_oldest_first() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let (_builder, cache) = builder(&nats).await;
    assert_eq!(list(&client).await, vec![], "an empty index lists nothing");

    let image = |id: char| -> ImageRecord {
        serde_json::from_value(json!({
            "id": format!("sha256:{}", id.to_string().repeat(64)), "repo_tags": [],
            "repo_digests": [], "layers": [], "config": {}, "config_size": 2, "size": 0,
            "stored_at": "2024-05-01T10:00:00Z",
        }))
        .unwrap()
    };
    let (a, b) = (image('a'), image('b'));
    let newer = entry(&b, &a.id, 0, "2024-05-02T10:00:00Z");
    let older = entry(&a, "sha256:base", 12345, "2024-05-01T10:00:00.5Z");
    cache.put("k-newer", &newer).await.unwrap();
    cache.put("k-older", &older).await.unwrap();

    let records = list(&client).await;
    assert_eq!(
        serde_json::to_value(&records).unwrap(),
        json!([
            {
                "ID": "k-older", "Parent": "sha256:base", "Type": "regular",
                "Description": older.description, "InUse": false, "Shared": false,
                "Size": 12345, "CreatedAt": "2024-05-01T10:00:00.5Z", "LastUsedAt": null,
                "UsageCount": 0,
            },
            {
                "ID": "k-newer", "Parent": a.id, "Type": "regular",
                "Description": newer.description, "InUse": false, "Shared": false,
                "Size": 0, "CreatedAt": "2024-05-02T10:00:00Z", "LastUsedAt": null,
                "UsageCount": 0,
            },
        ])
    );
}

#[tokio::test]
async fn prune_removes_entries_and_deletes_the_images_only_they_kept() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let (_builder, cache) = builder(&nats).await;
    let (_dir, store, _store_service) = image_store(&nats).await;

    // A tagged base; an old build (a RUN step and an ENV step on it) whose tag moved to a new
    // build; and a step image a container still uses.
    let a = layer(&store, b"base");
    let b = layer(&store, b"old run step output");
    let c = layer(&store, b"new run step output");
    let d = layer(&store, b"used step output");
    let base = commit(
        &client,
        &store,
        &[&a],
        "A=1",
        None,
        &["docker.io/library/base:latest"],
    )
    .await;
    let s1 = commit(&client, &store, &[&a, &b], "A=1", Some(&base), &[]).await;
    let s2 = commit(&client, &store, &[&a, &b], "B=2", Some(&s1), &[]).await;
    let t1 = commit(
        &client,
        &store,
        &[&a, &c],
        "A=1",
        Some(&base),
        &["docker.io/library/app:latest"],
    )
    .await;
    let u1 = commit(&client, &store, &[&a, &d], "A=1", Some(&base), &[]).await;
    let missing = format!("sha256:{}", "9".repeat(64));

    let recent = chrono::Utc::now().to_rfc3339();
    cache
        .put(
            "k-s1",
            &entry(&s1, &base.id, s1.layers[1].unpacked_size, &recent),
        )
        .await
        .unwrap();
    cache
        .put("k-s2", &entry(&s2, &s1.id, 0, &recent))
        .await
        .unwrap();
    cache
        .put("k-t1", &entry(&t1, &base.id, 10, &recent))
        .await
        .unwrap();
    cache
        .put("k-u1", &entry(&u1, &base.id, 10, &recent))
        .await
        .unwrap();
    let mut gone = entry(&s1, &base.id, 7, "2020-01-01T00:00:00Z");
    gone.image = missing.clone();
    cache.put("k-gone", &gone).await.unwrap();

    // `until` keeps what is newer: only the old entry goes, and its image no longer exists.
    let report = prune(
        &client,
        &CachePrune {
            filters: until("24h"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        report,
        CachePruneReport {
            caches_deleted: vec!["k-gone".into()],
            images_deleted: vec![],
            space_reclaimed: 0,
        }
    );
    assert_eq!(list(&client).await.len(), 4);

    let mut events = client
        .subscribe("wharf.v1.events.builder.prune")
        .await
        .unwrap();
    client.flush().await.unwrap();
    let report = prune(
        &client,
        &CachePrune {
            all: true,
            in_use: BTreeMap::from([(u1.id.clone(), "c0ffee".to_string())]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut keys = report.caches_deleted.clone();
    keys.sort();
    assert_eq!(keys, ["k-s1", "k-s2", "k-t1", "k-u1"]);
    assert_eq!(
        report.images_deleted,
        [s2.id.clone(), s1.id.clone()],
        "child first"
    );
    // Freed: the old build's own layer and both configs; layer A is the base's too.
    assert_eq!(
        report.space_reclaimed,
        b_size(&s1) + s1.config_size + s2.config_size
    );
    assert_eq!(list(&client).await, vec![]);

    for kept in [&base, &t1, &u1] {
        assert!(
            resolve(&client, &kept.id).await.is_ok(),
            "{} stays",
            kept.id
        );
    }
    for deleted in [&s1, &s2] {
        let err = resolve(&client, &deleted.id).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
    }
    assert!(
        !store.blobs.exists(&b.0),
        "the old step's layer blob is gone"
    );
    assert!(store.blobs.exists(&a.0), "the base layer stays");

    let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    let event: Event = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(
        (event.kind.as_str(), event.action.as_str()),
        ("builder", "prune")
    );
    assert_eq!(
        event.actor.attributes["reclaimed"],
        report.space_reclaimed.to_string()
    );
}

/// The compressed size of the old RUN step's own layer.
fn b_size(s1: &ImageRecord) -> u64 {
    s1.layers[1].size
}

#[tokio::test]
async fn prune_refuses_bad_filters_and_keeps_the_index_without_image_store() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let (_builder, cache) = builder(&nats).await;
    let image: ImageRecord = serde_json::from_value(json!({
        "id": format!("sha256:{}", "a".repeat(64)), "repo_tags": [], "repo_digests": [],
        "layers": [], "config": {}, "config_size": 2, "size": 0,
        "stored_at": "2024-05-01T10:00:00Z",
    }))
    .unwrap();
    cache
        .put("k1", &entry(&image, "", 1, "2024-05-01T10:00:00Z"))
        .await
        .unwrap();

    let err = prune(
        &client,
        &CachePrune {
            filters: BTreeMap::from([("dangling".to_string(), vec!["true".to_string()])]),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(err.message, "invalid filter 'dangling'");

    // Nothing selected: no need for image-store.
    let report = prune(
        &client,
        &CachePrune {
            filters: until("2000-01-01"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report, CachePruneReport::default());

    // Something selected but image-store is down: nothing is removed.
    let err = prune(&client, &CachePrune::default()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{}", err.message);
    assert_eq!(list(&client).await.len(), 1);
}

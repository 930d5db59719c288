//! Layers fetched over a real nats-server from the real image-store service.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::{compress, Compression, Layer};
use wharf_bus::digest::sha256_of;
use wharf_bus::image::{
    BlobIngest, BlobIngested, BlobRef, ImageCommit, ImageRecord, ImageResolve, LayerInfo, LayerRef,
};
use wharf_bus::stream::Sender;
use wharf_bus::subjects::{group, image_store as ep, subject};
use wharf_bus::testkit::NatsServer;
use wharf_bus::ErrorKind;
use wharf_runtime::snapshot::{BusBlobSource, SnapshotError, Snapshotter};

const GZ_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

async fn ingest(client: &async_nats::Client, blob: &[u8], media_type: &str) -> BlobIngested {
    let request = BlobIngest {
        digest: sha256_of(blob),
        size: Some(blob.len() as u64),
        media_type: Some(media_type.to_string()),
    };
    let (mut tx, _) = Sender::open(
        client,
        &subject(group::IMAGE_STORE, ep::BLOB_INGEST),
        serde_json::to_vec(&request).unwrap().into(),
    )
    .await
    .unwrap();
    tx.send(Bytes::copy_from_slice(blob)).await.unwrap();
    tx.finish_json().await.unwrap()
}

/// Waits until image-store answers on the bus.
async fn wait_for_store(client: &async_nats::Client) {
    let stat = subject(group::IMAGE_STORE, ep::BLOB_STAT);
    let missing = BlobRef {
        digest: format!("sha256:{}", "0".repeat(64)),
    };
    for _ in 0..200 {
        match wharf_bus::call::<_, serde_json::Value>(client, &stat, &missing).await {
            Err(e) if e.kind == ErrorKind::NotFound => return,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("image-store did not come up");
}

/// Incompressible bytes, so the blob spans several stream frames.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_are_fetched_over_the_bus_from_a_real_image_store() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let store = tokio::spawn(wharf_image_store::run(
        nats.client().await,
        wharf_image_store::Options {
            data_root: data.path().join("data"),
        },
    ));
    let client = nats.client().await;
    wait_for_store(&client).await;

    let big = noise(3 << 20);
    let mut base = Layer::new();
    base.dir("bin", 0o755).file("bin/big", &big, 0o755);
    let base_tar = base.tar();
    let mut top = Layer::new();
    top.file("bin/.wh.big", b"", 0o644)
        .file("etc/hostname", b"wharf\n", 0o644);
    let top_tar = top.tar();
    let mut layers = Vec::new();
    for tar in [&base_tar, &top_tar] {
        let blob = compress(tar, Compression::Gzip);
        let done = ingest(&client, &blob, GZ_LAYER).await;
        assert_eq!(done.layer.as_ref().unwrap().diff_id, sha256_of(tar));
        layers.push(LayerRef {
            digest: done.blob.digest,
            media_type: GZ_LAYER.into(),
        });
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_of(&base_tar), sha256_of(&top_tar)]},
    }))
    .unwrap();
    let config_digest = ingest(&client, &config, CONFIG).await.blob.digest;
    let _: ImageRecord = wharf_bus::call(
        &client,
        &subject(group::IMAGE_STORE, ep::IMAGE_COMMIT),
        &ImageCommit {
            config: config_digest,
            layers,
            manifest: None,
            tags: vec!["docker.io/library/snaptest:latest".into()],
            repo_digests: vec![],
            parent: None,
        },
    )
    .await
    .unwrap();
    let image: ImageRecord = wharf_bus::call(
        &client,
        &subject(group::IMAGE_STORE, ep::IMAGE_RESOLVE),
        &ImageResolve {
            name: "snaptest".into(),
        },
    )
    .await
    .unwrap();

    // Streamed over the bus (as on another host), then read from the store's files (the
    // same-host shortcut): the same snapshots either way.
    for (root, source) in [
        ("bus", BusBlobSource::bus_only(client.clone())),
        ("local", BusBlobSource::new(client.clone())),
    ] {
        let snapshots = Snapshotter::open(data.path().join(root)).unwrap();
        let lowers = snapshots.prepare_image(&image, &source).await.unwrap();
        assert_eq!(lowers.len(), 2);
        assert_eq!(std::fs::read(lowers[1].join("bin/big")).unwrap(), big);
        assert_eq!(
            std::fs::read(lowers[0].join("etc/hostname")).unwrap(),
            b"wharf\n"
        );
        assert_eq!(
            std::fs::symlink_metadata(lowers[0].join("bin/big"))
                .unwrap()
                .len(),
            0,
            "the whiteout is a device node"
        );
    }
    let snapshots = Snapshotter::open(data.path().join("data/runtime/snapshots")).unwrap();
    let source = BusBlobSource::new(client.clone());
    snapshots.prepare_image(&image, &source).await.unwrap();

    // A blob the store does not have: the store's not-found comes back as a fetch error.
    let missing = LayerInfo {
        digest: sha256_of(b"never stored"),
        media_type: GZ_LAYER.into(),
        size: 1,
        diff_id: sha256_of(b"never stored tar"),
        unpacked_size: 0,
    };
    let mut ghost = image.clone();
    ghost.layers = vec![missing];
    ghost.config = serde_json::json!({});
    let err = snapshots.prepare_image(&ghost, &source).await.unwrap_err();
    match err.cause() {
        SnapshotError::Fetch(e) => assert_eq!(e.kind, ErrorKind::NotFound, "{e}"),
        other => panic!("expected a fetch error, got {other}"),
    }
    assert_eq!(snapshots.list().await.unwrap().len(), 2);

    store.abort();
}

//! The bus adapter against a real nats-server: streaming a multi-MiB blob in and out, and typed
//! errors coming back.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use wharf_bus::digest;
use wharf_bus::image::{BlobInfo, BlobIngest, BlobIngested, BlobRead, BlobRef, ImageResolve};
use wharf_bus::stream::{Receiver, Sender};
use wharf_bus::subjects::{group, image_store as ep, subject};
use wharf_bus::ErrorKind;
use wharf_image_store::{bus, store::ImageStore};

use wharf_bus::testkit::NatsServer as Nats;

fn subj(endpoint: &str) -> String {
    subject(group::IMAGE_STORE, endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_stream_in_and_out_over_real_nats_and_errors_keep_their_kind() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(dir.path()).unwrap());
    let service_client = async_nats::connect(&nats.url).await.unwrap();
    let _running = bus::serve(service_client, store).await.unwrap();
    let client = async_nats::connect(&nats.url).await.unwrap();

    // A 6 MB layer of noise (as large gzipped: a dozen frames); a layer scan on the way in.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let data: Vec<u8> = (0..6_000_000u32)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let tar = common::tar_of(&[("big", &data)]);
    let layer = common::gzip(&tar);
    let d = digest::sha256_of(&layer);
    let req = BlobIngest {
        digest: d.clone(),
        size: Some(layer.len() as u64),
        media_type: Some(common::GZ.into()),
    };
    let (mut tx, _) = Sender::open(
        &client,
        &subj(ep::BLOB_INGEST),
        serde_json::to_vec(&req).unwrap().into(),
    )
    .await
    .unwrap();
    tx.send(Bytes::from(layer.clone())).await.unwrap();
    let done: BlobIngested = tx.finish_json().await.unwrap();
    assert_eq!(done.blob.size, layer.len() as u64);
    assert!(layer.len() > 5 << 20);
    let info = done.layer.unwrap();
    assert_eq!(info.diff_id, digest::sha256_of(&tar));
    assert_eq!(info.unpacked_size, 6_000_000);

    let stat: BlobInfo = wharf_bus::call(
        &client,
        &subj(ep::BLOB_STAT),
        &BlobRef { digest: d.clone() },
    )
    .await
    .unwrap();
    assert_eq!(stat.size, layer.len() as u64);

    let (mut rx, accept) = Receiver::open_json(
        &client,
        &subj(ep::BLOB_READ),
        &BlobRef { digest: d.clone() },
    )
    .await
    .unwrap();
    let accepted: BlobInfo = serde_json::from_slice(&accept).unwrap();
    assert_eq!(accepted, stat);
    assert_eq!(rx.collect().await.unwrap(), layer);

    // Reading from an offset.
    let (mut rx, _) = Receiver::open_json(
        &client,
        &subj(ep::BLOB_READ),
        &BlobRead {
            digest: d.clone(),
            offset: 3_000_000,
        },
    )
    .await
    .unwrap();
    assert_eq!(rx.collect().await.unwrap(), layer[3_000_000..]);

    // A sender that cannot know the digest beforehand (a build context) leaves it empty: the
    // store takes the digest of what arrives and says it.
    let context = common::tar_of(&[("Dockerfile", b"FROM scratch\n")]);
    let (mut tx, _) = Sender::open(
        &client,
        &subj(ep::BLOB_INGEST),
        serde_json::to_vec(&BlobIngest {
            digest: String::new(),
            size: None,
            media_type: None,
        })
        .unwrap()
        .into(),
    )
    .await
    .unwrap();
    tx.send(Bytes::from(context.clone())).await.unwrap();
    let done: BlobIngested = tx.finish_json().await.unwrap();
    assert_eq!(done.blob.digest, digest::sha256_of(&context));
    assert_eq!(done.blob.size, context.len() as u64);

    // Typed errors: a missing blob, a wrong digest, an unknown image.
    let missing = format!("sha256:{}", "0".repeat(64));
    let err = wharf_bus::call::<_, BlobInfo>(
        &client,
        &subj(ep::BLOB_STAT),
        &BlobRef {
            digest: missing.clone(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = Receiver::open_json(
        &client,
        &subj(ep::BLOB_READ),
        &BlobRef {
            digest: missing.clone(),
        },
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound);

    let wrong = BlobIngest {
        digest: missing.clone(),
        size: None,
        media_type: Some(common::GZ.into()),
    };
    let (mut tx, _) = Sender::open(
        &client,
        &subj(ep::BLOB_INGEST),
        serde_json::to_vec(&wrong).unwrap().into(),
    )
    .await
    .unwrap();
    tx.send(Bytes::from(layer.clone())).await.unwrap();
    let err = tx.finish().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(
        err.message,
        format!("filesystem layer verification failed for digest {missing}")
    );

    let err = wharf_bus::call::<_, serde_json::Value>(
        &client,
        &subj(ep::IMAGE_RESOLVE),
        &ImageResolve {
            name: "nope".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::NotFound, "No such image: nope:latest")
    );
    drop(nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_with_data_after_the_archive_answers_once_the_upload_ends() {
    // `cat a.tar b.tar | docker load`: the loader stops at the first end-of-archive marker; the
    // service must still take the rest of the upload before it answers.
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::open(dir.path()).unwrap());
    let mut events = wharf_image_store::store::Events::new();
    common::image(
        &store,
        b"first",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/first:1"],
        &mut events,
    );
    let plan = wharf_image_store::archive_export::plan(&store, &["first:1".to_string()]).unwrap();
    let mut archive = Vec::new();
    wharf_image_store::archive_export::write(&store, &plan, &mut archive, &mut events).unwrap();
    let mut trailing = archive.clone();
    trailing.extend(std::iter::repeat_n(0x5au8, 24 << 20));

    let other = tempfile::tempdir().unwrap();
    let target = Arc::new(ImageStore::open(other.path()).unwrap());
    let service_client = async_nats::connect(&nats.url).await.unwrap();
    let _running = bus::serve(service_client, target.clone()).await.unwrap();
    let client = async_nats::connect(&nats.url).await.unwrap();
    let (mut tx, _) = Sender::open(
        &client,
        &subj(ep::IMAGE_LOAD),
        serde_json::to_vec(&wharf_bus::image::ImageLoad::default())
            .unwrap()
            .into(),
    )
    .await
    .unwrap();
    for chunk in archive
        .iter()
        .chain(trailing.iter())
        .copied()
        .collect::<Vec<_>>()
        .chunks(512 << 10)
    {
        tx.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    let report: wharf_bus::image::LoadReport = tx.finish_json().await.unwrap();
    assert_eq!(report.lines, vec!["Loaded image: first:1"]);
    assert!(target.resolve("first:1").is_ok());
    drop(nats);
}

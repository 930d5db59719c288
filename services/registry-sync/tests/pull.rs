//! Pulls from a real distribution registry through a real nats-server into an image-store double
//! (the image-store service is written in parallel; the double speaks its bus endpoints).

mod support;

use support::*;
use wharf_bus::registry::{Platform, RegistryAuth};
use wharf_bus::ErrorKind;
use wharf_registry_sync::Options;

fn busybox_image(extra_layers: usize) -> ImageSpec {
    let mut tars = vec![busybox_tar()];
    for i in 0..extra_layers {
        tars.push(tar_of(&[(
            &format!("data/file{i}"),
            &noise(200_000 + i * 1000, i as u64),
        )]));
    }
    ImageSpec::gzip("amd64", tars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_schema2_multi_layer_pull_streams_dockerds_progress_and_commits_the_image() {
    let registry = Registry::start(None);
    let name = format!("{}/bb/one", registry.host());
    push_images(&name, "t", &[busybox_image(3)], &["--format", "v2s2"]);
    let bus = Bus::start(Options::default()).await;

    let messages = bus.pull_ok(&format!("{name}:t")).await;
    let s = statuses(&messages);
    assert_eq!(s[0], "t: Pulling from bb/one");
    let commits = bus.store.lock().unwrap().commits.clone();
    assert_eq!(commits.len(), 1);
    let commit = &commits[0];
    assert_eq!(commit.layers.len(), 4);
    assert!(commit
        .layers
        .iter()
        .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"));
    assert_eq!(commit.tags, [format!("{name}:t")]);
    let manifest = commit.manifest.clone().unwrap();
    assert_eq!(
        manifest.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(commit.repo_digests, [format!("{name}@{}", manifest.digest)]);
    for layer in &commit.layers {
        let id = wharf_bus::progress::short_id(&layer.digest);
        let mine: Vec<&str> = s
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{id}: ")))
            .filter(|l| *l != "Waiting")
            .collect();
        assert_eq!(
            mine,
            [
                "Pulling fs layer",
                "Verifying Checksum",
                "Download complete",
                "Pull complete"
            ],
            "{s:?}"
        );
        let downloading: Vec<_> = messages
            .iter()
            .filter(|m| {
                m.id.as_deref() == Some(id.as_str()) && m.status.as_deref() == Some("Downloading")
            })
            .collect();
        let last = downloading.last().unwrap().progress_detail.clone().unwrap();
        assert_eq!(last.current, last.total);
    }
    // The fourth layer waits for a download slot, as with dockerd's three.
    assert_eq!(s.iter().filter(|l| l.ends_with(": Waiting")).count(), 1);
    // Pull complete comes in layer order.
    let completes: Vec<&String> = s.iter().filter(|l| l.ends_with("Pull complete")).collect();
    for (layer, line) in commit.layers.iter().zip(completes) {
        assert!(line.starts_with(&wharf_bus::progress::short_id(&layer.digest)));
    }
    let n = s.len();
    assert_eq!(s[n - 2], format!("Digest: {}", manifest.digest));
    assert_eq!(
        s[n - 1],
        format!("Status: Downloaded newer image for {name}:t")
    );

    // Pulling again changes nothing: dockerd prints no layer lines then.
    let again = statuses(&bus.pull_ok(&format!("{name}:t")).await);
    assert_eq!(
        again,
        [
            "t: Pulling from bb/one".to_string(),
            format!("Digest: {}", manifest.digest),
            format!("Status: Image is up to date for {name}:t"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_the_store_has_are_reported_as_already_existing() {
    let registry = Registry::start(None);
    push_images(
        &format!("{}/x/base", registry.host()),
        "a",
        &[ImageSpec::gzip("amd64", vec![busybox_tar()])],
        &[],
    );
    let extra = tar_of(&[("etc/hello", b"hello")]);
    push_images(
        &format!("{}/x/child", registry.host()),
        "b",
        &[ImageSpec::gzip("amd64", vec![busybox_tar(), extra])],
        &[],
    );
    let bus = Bus::start(Options::default()).await;

    bus.pull_ok(&format!("{}/x/base:a", registry.host())).await;
    let s = statuses(&bus.pull_ok(&format!("{}/x/child:b", registry.host())).await);
    assert_eq!(
        s.iter().filter(|l| l.ends_with(": Already exists")).count(),
        1,
        "{s:?}"
    );
    assert_eq!(
        s.iter().filter(|l| l.ends_with(": Pull complete")).count(),
        1,
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_image_with_zstd_layers_pulls() {
    let registry = Registry::start(None);
    let name = format!("{}/bb/zstd", registry.host());
    push_images(
        &name,
        "z",
        &[ImageSpec::plain(
            "amd64",
            vec![busybox_tar(), tar_of(&[("a", b"a")])],
        )],
        &[
            "--format",
            "oci",
            "--dest-compress",
            "--dest-compress-format",
            "zstd",
        ],
    );
    let bus = Bus::start(Options::default()).await;
    let s = statuses(&bus.pull_ok(&format!("{name}:z")).await);
    assert_eq!(
        s.last().unwrap(),
        &format!("Status: Downloaded newer image for {name}:z")
    );
    let commit = bus.store.lock().unwrap().commits[0].clone();
    assert_eq!(
        commit.manifest.unwrap().media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(commit
        .layers
        .iter()
        .all(|l| l.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_list_pull_picks_linux_amd64_and_records_the_list_digest() {
    let registry = Registry::start(None);
    let name = format!("{}/bb/multi", registry.host());
    push_images(
        &name,
        "multi",
        &arm64_and_amd64(),
        &["--all", "--format", "v2s2"],
    );
    let list = reqwest::Client::new()
        .get(format!(
            "http://{}/v2/bb/multi/manifests/multi",
            registry.host()
        ))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        list.headers()["content-type"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let list_digest = sha256(&list.bytes().await.unwrap());
    let bus = Bus::start(Options::default()).await;

    let s = statuses(&bus.pull_ok(&format!("{name}:multi")).await);
    assert!(s.contains(&format!("Digest: {list_digest}")), "{s:?}");
    let commit = bus.store.lock().unwrap().commits[0].clone();
    assert_eq!(commit.repo_digests, [format!("{name}@{list_digest}")]);
    assert_ne!(commit.manifest.clone().unwrap().digest, list_digest);
    let record = bus.store.lock().unwrap().images[0].clone();
    assert_eq!(record.config["architecture"], "amd64");

    // Asking for a platform the list lacks fails as dockerd does.
    let mut req = request(&format!("{name}:multi"));
    req.platform = Platform::parse("linux/s390x");
    let (_, err) = bus.pull(req).await;
    let err = err.unwrap();
    assert_eq!(
        err.message,
        "no matching manifest for linux/s390x in the manifest list entries"
    );
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_the_image_is_not_for_fails_like_dockerd_and_commits_nothing() {
    let registry = Registry::start(None);
    let name = format!("{}/bb/amd", registry.host());
    push_images(&name, "t", &[busybox_image(0)], &["--format", "v2s2"]);
    let bus = Bus::start(Options::default()).await;

    let mut req = request(&format!("{name}:t"));
    req.platform = Platform::parse("linux/arm64");
    let (messages, err) = bus.pull(req).await;
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(
        err.message,
        format!(
            "image with reference {name}:t was found but does not match the specified platform: \
             wanted linux/arm64, actual: linux/amd64"
        )
    );
    // As with dockerd, the error ends a pull stream that had started.
    assert_eq!(statuses(&messages)[0], "t: Pulling from bb/amd");
    assert!(bus.store.lock().unwrap().commits.is_empty());

    // The platform the image is for pulls.
    let mut req = request(&format!("{name}:t"));
    req.platform = Platform::parse("linux/amd64");
    let (_, err) = bus.pull(req).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bus.store.lock().unwrap().commits.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_digest_verifies_the_manifest_and_does_not_tag() {
    let registry = Registry::start(None);
    let name = format!("{}/bb/dig", registry.host());
    push_images(&name, "t", &[busybox_image(0)], &["--format", "v2s2"]);
    let head = reqwest::Client::new()
        .head(format!("http://{}/v2/bb/dig/manifests/t", registry.host()))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    let digest = head.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let bus = Bus::start(Options::default()).await;

    let reference = format!("{name}@{digest}");
    let s = statuses(&bus.pull_ok(&reference).await);
    assert_eq!(s[0], format!("{reference}: Pulling from bb/dig"));
    assert_eq!(
        s.last().unwrap(),
        &format!("Status: Downloaded newer image for {reference}")
    );
    let commit = bus.store.lock().unwrap().commits[0].clone();
    assert!(commit.tags.is_empty());
    assert_eq!(commit.repo_digests, std::slice::from_ref(&reference));
    let again = statuses(&bus.pull_ok(&reference).await);
    assert_eq!(
        again.last().unwrap(),
        &format!("Status: Image is up to date for {reference}")
    );

    // A digest the registry does not have.
    let missing = format!("{name}@sha256:{}", "0".repeat(64));
    let (_, err) = bus.pull(request(&missing)).await;
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(
        err.message,
        format!("manifest for {missing} not found: manifest unknown: manifest unknown")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_registry_needs_credentials() {
    let registry = Registry::start(Some(("user", "pass")));
    let name = format!("{}/priv/img", registry.host());
    push_images(
        &name,
        "t",
        &[busybox_image(0)],
        &["--format", "v2s2", "--dest-creds", "user:pass"],
    );
    let bus = Bus::start(Options::default()).await;

    let (_, err) = bus.pull(request(&format!("{name}:t"))).await;
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(
        err.message,
        format!(
            "Get \"http://{}/v2/priv/img/manifests/t\": no basic auth credentials",
            registry.host()
        )
    );

    let mut wrong = request(&format!("{name}:t"));
    wrong.auth = Some(RegistryAuth {
        username: Some("user".into()),
        password: Some("nope".into()),
        ..Default::default()
    });
    let (_, err) = bus.pull(wrong).await;
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(err.message, "unauthorized: authentication required");

    use base64::Engine;
    let mut good = request(&format!("{name}:t"));
    good.auth = Some(RegistryAuth {
        auth: Some(base64::engine::general_purpose::STANDARD.encode("user:pass")),
        ..Default::default()
    });
    let (messages, err) = bus.pull(good).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        statuses(&messages).last().unwrap(),
        &format!("Status: Downloaded newer image for {name}:t")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tags_repositories_and_registries_fail_with_dockerds_text() {
    let registry = Registry::start(None);
    let name = format!("{}/bb/one", registry.host());
    push_images(&name, "t", &[busybox_image(0)], &[]);
    let bus = Bus::start(Options::default()).await;

    for reference in [
        format!("{name}:nope"),
        format!("{}/bb/nothere:t", registry.host()),
    ] {
        let (messages, err) = bus.pull(request(&reference)).await;
        assert!(messages.is_empty());
        let err = err.unwrap();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert_eq!(
            err.message,
            format!("manifest for {reference} not found: manifest unknown: manifest unknown")
        );
    }

    let port = free_port();
    let (_, err) = bus
        .pull(request(&format!("127.0.0.1:{port}/bb/one:t")))
        .await;
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(
        err.message,
        format!("Get \"http://127.0.0.1:{port}/v2/\": dial tcp 127.0.0.1:{port}: connect: connection refused")
    );
    assert!(bus.store.lock().unwrap().commits.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_blob_fails_verification_and_nothing_is_committed() {
    let registry = Registry::start(None);
    let image = busybox_image(1);
    let layer_digest = sha256(&image.layers[1]);
    let size = image.layers[1].len();
    let name = format!("{}/bb/bad", registry.host());
    // Plain OCI: skopeo keeps the layout's gzip blobs as they are.
    push_images(&name, "t", &[image], &["--format", "oci"]);
    std::fs::write(registry.blob_path(&layer_digest), noise(size, 99)).unwrap();
    let bus = Bus::start(Options::default()).await;

    let (messages, err) = bus.pull(request(&format!("{name}:t"))).await;
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(
        err.message,
        format!("filesystem layer verification failed for digest {layer_digest}")
    );
    assert!(statuses(&messages).contains(&format!(
        "{}: Verifying Checksum",
        wharf_bus::progress::short_id(&layer_digest)
    )));
    let store = bus.store.lock().unwrap();
    assert!(store.commits.is_empty());
    assert!(!store.blobs.contains_key(&layer_digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_store_going_away_mid_pull_fails_cleanly() {
    let registry = Registry::start(None);
    let name = format!("{}/bb/big", registry.host());
    push_images(
        &name,
        "t",
        &[ImageSpec::plain(
            "amd64",
            vec![tar_of(&[("big", &noise(8 << 20, 7))])],
        )],
        &["--format", "oci"],
    );
    let bus = Bus::start(Options::default()).await;
    bus.store.lock().unwrap().fail_after = Some(2 << 20);

    let (_, err) = bus.pull(request(&format!("{name}:t"))).await;
    let err = err.unwrap();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
    assert!(
        err.message
            .starts_with("image-store is unavailable, pull aborted: "),
        "{}",
        err.message
    );
    assert!(bus.store.lock().unwrap().commits.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reports_mirrors_and_insecure_registries() {
    let bus = Bus::start(Options {
        registry_mirrors: vec!["http://127.0.0.1:5999".into()],
        insecure_registries: vec!["myreg:5000".into()],
    })
    .await;
    let settings: wharf_bus::registry::RegistrySettings =
        wharf_bus::call(&bus.client, "wharf.v1.registry-sync.info", &())
            .await
            .unwrap();
    assert_eq!(settings.mirrors, ["http://127.0.0.1:5999/"]);
    assert!(settings
        .insecure_registries
        .contains(&"myreg:5000".to_string()));
    assert!(settings
        .insecure_registries
        .contains(&"127.0.0.0/8".to_string()));
}

/// 3 layers, 255 MB in all, from a loopback registry. dockerd takes ~6.5 s; the target is 2.1 s.
/// The same pull into the real image-store service: it verifies the blobs and records the image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_into_the_real_image_store() {
    let registry = Registry::start(None);
    let name = format!("{}/real/img", registry.host());
    push_images(&name, "t", &[busybox_image(2)], &["--format", "v2s2"]);
    let data = tempfile::tempdir().unwrap();
    let bus = Bus::start_with(Options::default(), Some(data.path().to_path_buf())).await;
    // Wait for image-store to answer.
    for _ in 0..100 {
        let health: Result<serde_json::Value, _> =
            wharf_bus::call(&bus.client, "wharf.v1.image-store.health", &()).await;
        if health.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let s = statuses(&bus.pull_ok(&format!("{name}:t")).await);
    assert_eq!(
        s.last().unwrap(),
        &format!("Status: Downloaded newer image for {name}:t")
    );
    let record: wharf_bus::image::ImageRecord = wharf_bus::call(
        &bus.client,
        "wharf.v1.image-store.image.resolve",
        &wharf_bus::image::ImageResolve {
            name: format!("{name}:t"),
        },
    )
    .await
    .unwrap();
    assert_eq!(record.layers.len(), 3);
    assert_eq!(record.repo_tags, [format!("{name}:t")]);
    let again = statuses(&bus.pull_ok(&format!("{name}:t")).await);
    assert_eq!(
        again.last().unwrap(),
        &format!("Status: Image is up to date for {name}:t")
    );
}

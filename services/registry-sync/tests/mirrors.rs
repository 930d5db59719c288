//! Docker Hub mirrors: a mirror that lacks the image or is down is passed over for the next one,
//! and Docker Hub itself comes last. Hub's endpoint is a closed loopback port here, so a test that
//! reached it would fail instead of leaving the machine.

mod support;

use support::*;
use wharf_bus::registry::PullRequest;
use wharf_bus::ErrorKind;
use wharf_registry_sync::client::Registries;
use wharf_registry_sync::pull::{self, Progress};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// A registry holding `library/busybox:latest`, as a Docker Hub mirror would.
fn mirror_with_busybox() -> Registry {
    let registry = Registry::start(None);
    let layout = tempfile::tempdir().unwrap();
    oci_layout(
        layout.path(),
        "latest",
        &[ImageSpec::gzip("amd64", vec![busybox_tar()])],
    );
    push(
        layout.path(),
        "latest",
        &format!("{}/library/busybox:latest", registry.host()),
        &["--format", "v2s2"],
    );
    registry
}

/// Mirrors in order, Docker Hub on a port nothing listens on.
fn registries(mirrors: &[String]) -> (Registries, String) {
    let hub = format!("http://127.0.0.1:{}", free_port());
    let registries = Registries::new(mirrors, &[])
        .unwrap()
        .with_hub_endpoint(&hub);
    (registries, hub)
}

fn busybox_request() -> PullRequest {
    PullRequest {
        reference: BUSYBOX.to_string(),
        platform: None,
        auth: None,
    }
}

async fn pull_from(registries: &Registries) -> (String, MemStore) {
    let plan = pull::resolve(registries, &busybox_request()).await.unwrap();
    let endpoint = plan.endpoint().base.clone();
    let store = MemStore::default();
    let (progress, _rx) = Progress::channel();
    let outcome = pull::fetch(plan, &store, progress).await.unwrap();
    assert_eq!(outcome.familiar, "busybox:latest");
    (endpoint, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_without_the_image_is_passed_over_for_the_next_mirror() {
    let empty = Registry::start(None);
    let full = mirror_with_busybox();
    let (registries, _hub) = registries(&[
        format!("http://{}", empty.host()),
        format!("http://{}", full.host()),
    ]);

    let (endpoint, store) = pull_from(&registries).await;
    assert_eq!(endpoint, format!("http://{}", full.host()));
    let commits = store.0.commits.lock().unwrap();
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].tags, [BUSYBOX]);
    assert_eq!(commits[0].layers.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_that_is_down_is_passed_over_for_the_next_mirror() {
    let down = format!("http://127.0.0.1:{}", free_port());
    let full = mirror_with_busybox();
    let (registries, _hub) = registries(&[down, format!("http://{}", full.host())]);

    let (endpoint, store) = pull_from(&registries).await;
    assert_eq!(endpoint, format!("http://{}", full.host()));
    assert_eq!(store.0.commits.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_is_tried_only_after_every_mirror_failed() {
    let empty = Registry::start(None);
    let down = format!("http://127.0.0.1:{}", free_port());
    let (registries, hub) = registries(&[format!("http://{}", empty.host()), down]);

    let err = pull::resolve(&registries, &busybox_request())
        .await
        .err()
        .unwrap();
    // The error is Docker Hub's, the last endpoint tried: here, a closed port.
    assert_eq!(err.kind, ErrorKind::Unavailable);
    let port = hub.rsplit(':').next().unwrap();
    assert_eq!(
        err.message,
        format!("Get \"{hub}/v2/\": dial tcp 127.0.0.1:{port}: connect: connection refused")
    );
}

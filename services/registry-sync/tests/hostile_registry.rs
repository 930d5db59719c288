//! A registry that floods or lies, played by an axum server: bodies are read in bounded chunks,
//! declared sizes hold, and a config must be for the platform pulled. The pull library runs
//! without NATS, into an in-memory store.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use support::{sha256, MemStore};
use wharf_bus::registry::{Platform, PullRequest};
use wharf_bus::{BusError, ErrorKind};
use wharf_registry_sync::client::Registries;
use wharf_registry_sync::pull::{self, Progress};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// What the fake answers: a function of the request path and headers.
type Answer = dyn Fn(&str, &HeaderMap) -> Response + Send + Sync;

/// Serves `answer` on a loopback port; returns `host:port`.
async fn serve(answer: Arc<Answer>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let answer = answer.clone();
        async move { answer(uri.path(), &headers) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    host
}

/// A body that never ends, counting the bytes the server produced.
fn endless(produced: Arc<AtomicUsize>) -> axum::body::Body {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    axum::body::Body::from_stream(futures::stream::repeat_with(move || {
        produced.fetch_add(chunk.len(), Ordering::Relaxed);
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

fn json(content_type: &str, body: &serde_json::Value) -> Response {
    (
        [("content-type", content_type.to_string())],
        serde_json::to_vec(body).unwrap(),
    )
        .into_response()
}

fn request(host: &str, platform: Option<&str>) -> PullRequest {
    PullRequest {
        reference: format!("{host}/evil/img:t"),
        platform: platform.and_then(Platform::parse),
        auth: None,
    }
}

/// resolve and fetch into a fresh store, under a deadline: a flood must not stall the pull.
async fn pull(registries: &Registries, request: PullRequest) -> (Result<(), BusError>, MemStore) {
    let store = MemStore::default();
    let work = async {
        let plan = pull::resolve(registries, &request).await?;
        let (progress, _rx) = Progress::channel();
        pull::fetch(plan, &store, progress).await.map(|_| ())
    };
    let result = tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("the pull must end, not read forever");
    (result, store)
}

/// An image config, and a manifest of it with one layer of `layer_size` bytes.
fn image(arch: &str, layer: &[u8], layer_size: i64, config_size: Option<i64>) -> (Bytes, Bytes) {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config_size.unwrap_or(config.len() as i64),
        },
        "layers": [{"mediaType": LAYER, "digest": sha256(layer), "size": layer_size}],
    }))
    .unwrap();
    (Bytes::from(config), Bytes::from(manifest))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_error_body_is_read_only_up_to_its_cap() {
    let produced = Arc::new(AtomicUsize::new(0));
    let p = produced.clone();
    let host = serve(Arc::new(move |path, _| {
        if path == "/v2/" {
            return StatusCode::OK.into_response();
        }
        (StatusCode::INTERNAL_SERVER_ERROR, endless(p.clone())).into_response()
    }))
    .await;
    let registries = Registries::new(&[], &[]).unwrap();

    let (result, _) = pull(&registries, request(&host, None)).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(
        err.message,
        "received unexpected HTTP status: 500 Internal Server Error"
    );
    // What the server got to write before the client hung up: the 64 KiB read plus what the
    // sockets buffer, nowhere near "all of it".
    assert!(
        produced.load(Ordering::Relaxed) < 64 << 20,
        "{}",
        produced.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_response_over_1_mib_is_refused() {
    let host_cell = Arc::new(std::sync::OnceLock::<String>::new());
    let h = host_cell.clone();
    let produced = Arc::new(AtomicUsize::new(0));
    let p = produced.clone();
    let host = serve(Arc::new(move |path, _| {
        if path == "/token" {
            return endless(p.clone()).into_response();
        }
        (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                format!(
                    r#"Bearer realm="http://{}/token",service="evil""#,
                    h.get().unwrap()
                ),
            )],
        )
            .into_response()
    }))
    .await;
    host_cell.set(host.clone()).unwrap();
    let registries = Registries::new(&[], &[]).unwrap();

    let (result, _) = pull(&registries, request(&host, None)).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(
        err.message,
        "token response too large: more than 1048576 bytes"
    );
    assert!(produced.load(Ordering::Relaxed) < 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_streaming_past_its_declared_size_fails_without_reading_on() {
    let layer = b"a small layer".to_vec();
    let (config, manifest) = image("amd64", &layer, layer.len() as i64, None);
    let (config_digest, layer_digest) = (sha256(&config), sha256(&layer));
    let produced = Arc::new(AtomicUsize::new(0));
    let p = produced.clone();
    let host = serve(Arc::new(move |path, _| {
        if path == "/v2/" {
            StatusCode::OK.into_response()
        } else if path.ends_with("/manifests/t") {
            ([("content-type", OCI_MANIFEST)], manifest.clone()).into_response()
        } else if path.ends_with(&config_digest) {
            config.clone().into_response()
        } else {
            // The layer: far more than the 13 bytes declared, with no length announced.
            endless(p.clone()).into_response()
        }
    }))
    .await;
    let registries = Registries::new(&[], &[]).unwrap();

    let (result, store) = pull(&registries, request(&host, None)).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(
        err.message,
        format!("filesystem layer verification failed for digest {layer_digest}")
    );
    assert!(store.0.commits.lock().unwrap().is_empty());
    assert!(produced.load(Ordering::Relaxed) < 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_declared_over_8_mib_is_refused_before_any_blob_is_requested() {
    let layer = b"layer".to_vec();
    let (_, manifest) = image("amd64", &layer, layer.len() as i64, Some(9 << 20));
    let blob_requests = Arc::new(AtomicUsize::new(0));
    let b = blob_requests.clone();
    let host = serve(Arc::new(move |path, _| {
        if path.contains("/blobs/") {
            b.fetch_add(1, Ordering::SeqCst);
            return StatusCode::NOT_FOUND.into_response();
        }
        if path.ends_with("/manifests/t") {
            return ([("content-type", OCI_MANIFEST)], manifest.clone()).into_response();
        }
        StatusCode::OK.into_response()
    }))
    .await;
    let registries = Registries::new(&[], &[]).unwrap();

    let (result, _) = pull(&registries, request(&host, None)).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(
        err.message,
        "invalid manifest: image config of 9437184 bytes is larger than the 8388608-byte limit"
    );
    assert_eq!(blob_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_entry_whose_config_is_for_another_platform_fails_like_dockerd() {
    // The index says arm64; the manifest it points at has an amd64 config.
    let layer = b"amd64 bits".to_vec();
    let (config, manifest) = image("amd64", &layer, layer.len() as i64, None);
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": sha256(&manifest), "size": manifest.len(),
            "platform": {"os": "linux", "architecture": "arm64"},
        }],
    });
    let manifest_path = format!("/manifests/{}", sha256(&manifest));
    let (config_digest, layer_digest) = (sha256(&config), sha256(&layer));
    let host = serve(Arc::new(move |path, _| {
        if path.ends_with("/manifests/t") {
            json(OCI_INDEX, &index)
        } else if path.ends_with(&manifest_path) {
            ([("content-type", OCI_MANIFEST)], manifest.clone()).into_response()
        } else if path.ends_with(&config_digest) {
            config.clone().into_response()
        } else if path.ends_with(&layer_digest) {
            layer.clone().into_response()
        } else {
            StatusCode::OK.into_response()
        }
    }))
    .await;
    let registries = Registries::new(&[], &[]).unwrap();

    let (result, store) = pull(&registries, request(&host, Some("linux/arm64"))).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(
        err.message,
        format!(
            "image with reference {host}/evil/img:t was found but does not match the specified \
             platform: wanted linux/arm64, actual: linux/amd64"
        )
    );
    assert!(store.0.commits.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_layer_size_is_a_malformed_manifest() {
    let layer = b"x".to_vec();
    let (_, manifest) = image("amd64", &layer, -1, None);
    let host = serve(Arc::new(move |path, _| {
        if path.ends_with("/manifests/t") {
            return ([("content-type", OCI_MANIFEST)], manifest.clone()).into_response();
        }
        StatusCode::OK.into_response()
    }))
    .await;
    let registries = Registries::new(&[], &[]).unwrap();

    let (result, _) = pull(&registries, request(&host, None)).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(
        err.message
            .starts_with("malformed manifest: negative descriptor size -1"),
        "{}",
        err.message
    );
}

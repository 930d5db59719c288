//! The Bearer token flow against an axum server playing registry and token server, and the pull
//! library used without NATS (an in-memory content store).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use support::{sha256, MemStore};
use wharf_bus::registry::{PullRequest, RegistryAuth};
use wharf_bus::ErrorKind;
use wharf_registry_sync::client::Registries;
use wharf_registry_sync::pull::{self, Progress};

struct Fake {
    base: String,
    blobs: HashMap<String, Bytes>,
    manifest: Bytes,
    token_requests: AtomicUsize,
    /// Break blob bodies after this many bytes, once (a dropped connection).
    cut_once: Mutex<Option<usize>>,
}

fn challenge(fake: &Fake) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            "WWW-Authenticate",
            format!(
                r#"Bearer realm="{}/token",service="fake-registry",scope="repository:sec/img:pull""#,
                fake.base
            ),
        )],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v == "Bearer good-token")
        .unwrap_or(false)
}

async fn token(
    State(fake): State<Arc<Fake>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    fake.token_requests.fetch_add(1, Ordering::SeqCst);
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:secret")
    );
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok());
    if q.get("scope").map(String::as_str) != Some("repository:sec/img:pull")
        || q.get("service").map(String::as_str) != Some("fake-registry")
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    if basic != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"details":"incorrect username or password"}"#,
        )
            .into_response();
    }
    axum::Json(serde_json::json!({"access_token": "good-token"})).into_response()
}

async fn manifest(
    State(fake): State<Arc<Fake>>,
    Path((_repo, _img, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return challenge(&fake);
    }
    if reference != "t" {
        return (
            StatusCode::NOT_FOUND,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
            .into_response();
    }
    (
        [("content-type", "application/vnd.oci.image.manifest.v1+json")],
        fake.manifest.clone(),
    )
        .into_response()
}

async fn blob(
    State(fake): State<Arc<Fake>>,
    Path((_repo, _img, digest)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return challenge(&fake);
    }
    let Some(data) = fake.blobs.get(&digest).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some(range) = headers.get("range").and_then(|v| v.to_str().ok()) {
        let start: usize = range
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
        return (
            StatusCode::PARTIAL_CONTENT,
            [(
                "content-range",
                format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
            )],
            data.slice(start..),
        )
            .into_response();
    }
    let cut = {
        let mut cut = fake.cut_once.lock().unwrap();
        match *cut {
            Some(n) if n < data.len() => cut.take(),
            _ => None,
        }
    };
    if let Some(cut) = cut {
        // Announce the full length, send part of it, then fail the body: a dropped connection.
        let head = data.slice(..cut);
        let stream = futures::stream::iter(vec![
            Ok::<Bytes, std::io::Error>(head),
            Err(std::io::Error::other("connection dropped")),
        ]);
        return (
            [("content-length", data.len().to_string())],
            axum::body::Body::from_stream(stream),
        )
            .into_response();
    }
    data.into_response()
}

async fn start_fake(layer: Vec<u8>) -> (Arc<Fake>, String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]}
    }))
    .unwrap();
    let manifest_body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let layer_digest = sha256(&layer);
    let mut blobs = HashMap::new();
    blobs.insert(sha256(&config), Bytes::from(config));
    blobs.insert(layer_digest.clone(), Bytes::from(layer));
    let fake = Arc::new(Fake {
        base: base.clone(),
        blobs,
        manifest: Bytes::from(manifest_body),
        token_requests: AtomicUsize::new(0),
        cut_once: Mutex::new(None),
    });
    let app = axum::Router::new()
        .route(
            "/v2/",
            get(|State(f): State<Arc<Fake>>| async move { challenge(&f) }),
        )
        .route("/token", get(token))
        .route("/v2/{repo}/{img}/manifests/{reference}", get(manifest))
        .route("/v2/{repo}/{img}/blobs/{digest}", get(blob))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let host = base.trim_start_matches("http://").to_string();
    (fake, host, layer_digest)
}

fn alice(password: &str) -> Option<RegistryAuth> {
    Some(RegistryAuth {
        username: Some("alice".into()),
        password: Some(password.into()),
        ..Default::default()
    })
}

#[tokio::test]
async fn bearer_token_is_fetched_once_with_basic_credentials_and_used_for_manifest_and_blobs() {
    let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (fake, host, layer_digest) = start_fake(layer.clone()).await;
    let registries = Registries::new(&[], &[]).unwrap();
    let request = PullRequest {
        reference: format!("{host}/sec/img:t"),
        platform: None,
        auth: alice("secret"),
    };
    let plan = pull::resolve(&registries, &request).await.unwrap();
    assert_eq!(plan.digest(), sha256(&fake.manifest));
    let store = MemStore::default();
    let (progress, mut rx) = Progress::channel();
    let outcome = pull::fetch(plan, &store, progress).await.unwrap();
    assert!(outcome.downloaded);
    assert_eq!(store.0.blobs.lock().unwrap()[&layer_digest], layer);
    // One token for the whole pull (ping, manifest, config and layer).
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    let mut last = None;
    while let Ok(m) = rx.try_recv() {
        last = m.status;
    }
    assert_eq!(
        last.unwrap(),
        format!("Status: Downloaded newer image for {host}/sec/img:t")
    );
}

#[tokio::test]
async fn refused_token_and_unknown_tags_read_like_dockerd() {
    let (_fake, host, _) = start_fake(vec![1, 2, 3]).await;
    let registries = Registries::new(&[], &[]).unwrap();
    let wrong = PullRequest {
        reference: format!("{host}/sec/img:t"),
        platform: None,
        auth: alice("wrong"),
    };
    let err = pull::resolve(&registries, &wrong).await.err().unwrap();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(err.message, "unauthorized: incorrect username or password");

    let missing = PullRequest {
        reference: format!("{host}/sec/img:nope"),
        platform: None,
        auth: alice("secret"),
    };
    let err = pull::resolve(&registries, &missing).await.err().unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(
        err.message,
        format!("manifest for {host}/sec/img:nope not found: manifest unknown: manifest unknown")
    );
}

#[tokio::test]
async fn a_dropped_blob_download_resumes_with_a_range_request() {
    let layer: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let (fake, host, layer_digest) = start_fake(layer.clone()).await;
    *fake.cut_once.lock().unwrap() = Some(700_000);
    let registries = Registries::new(&[], &[]).unwrap();
    let request = PullRequest {
        reference: format!("{host}/sec/img:t"),
        platform: None,
        auth: alice("secret"),
    };
    let plan = pull::resolve(&registries, &request).await.unwrap();
    let store = MemStore::default();
    let (progress, _rx) = Progress::channel();
    // The config blob is fetched too; whichever blob is cut first resumes.
    pull::fetch(plan, &store, progress).await.unwrap();
    assert!(fake.cut_once.lock().unwrap().is_none());
    assert_eq!(store.0.blobs.lock().unwrap()[&layer_digest], layer);
    assert_eq!(store.0.commits.lock().unwrap().len(), 1);
}

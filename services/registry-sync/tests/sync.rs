//! Registry to registry through the bus: real distribution registries (password-protected
//! too), a real nats-server, repositories pushed with skopeo; hostile sources are played by
//! corrupted registry storage and by an axum fake.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use support::*;
use wharf_bus::progress::{short_id, JsonMessage};
use wharf_bus::registry::{RegistryAuth, SyncRequest, SyncSummary};
use wharf_bus::{BusError, ErrorKind};
use wharf_registry_sync::client::Registries;
use wharf_registry_sync::pull::Progress;
use wharf_registry_sync::sync::Plan;
use wharf_registry_sync::{sync, Options};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Plain HTTP to a test registry, with a password when it wants one.
struct Http {
    host: String,
    login: Option<(String, String)>,
}

impl Http {
    fn new(registry: &Registry) -> Http {
        Http {
            host: registry.host(),
            login: None,
        }
    }

    fn with_login(registry: &Registry, user: &str, pass: &str) -> Http {
        Http {
            host: registry.host(),
            login: Some((user.into(), pass.into())),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .get(format!("http://{}/v2/{path}", self.host))
            .header("Accept", ACCEPT);
        if let Some((u, p)) = &self.login {
            req = req.basic_auth(u, Some(p));
        }
        req.send().await.unwrap()
    }

    /// The digest a tag (or digest) names, `None` when the registry has no such manifest.
    async fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        let response = self.get(&format!("{repo}/manifests/{reference}")).await;
        if response.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert!(response.status().is_success(), "{}", response.status());
        Some(sha256(&response.bytes().await.unwrap()))
    }

    /// Every manifest under a tag (the index and its children) and every blob, with sizes,
    /// each fetched and checked against its digest.
    async fn walk(&self, repo: &str, tag: &str) -> Content {
        let mut content = Content::default();
        let mut queue = vec![tag.to_string()];
        while let Some(reference) = queue.pop() {
            let response = self.get(&format!("{repo}/manifests/{reference}")).await;
            assert!(
                response.status().is_success(),
                "{repo}/manifests/{reference}: {}",
                response.status()
            );
            let body = response.bytes().await.unwrap();
            let digest = sha256(&body);
            if reference.starts_with("sha256:") {
                assert_eq!(digest, reference);
            }
            content.manifests.push(digest);
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if let Some(children) = value["manifests"].as_array() {
                for child in children {
                    queue.push(child["digest"].as_str().unwrap().to_string());
                }
                continue;
            }
            let blobs =
                std::iter::once(&value["config"]).chain(value["layers"].as_array().unwrap().iter());
            for blob in blobs {
                let digest = blob["digest"].as_str().unwrap().to_string();
                let response = self.get(&format!("{repo}/blobs/{digest}")).await;
                assert!(response.status().is_success(), "{digest}");
                let data = response.bytes().await.unwrap();
                assert_eq!(sha256(&data), digest);
                content.blobs.insert(digest, data.len() as u64);
            }
        }
        content.manifests.sort();
        content
    }
}

/// What a tag holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Content {
    manifests: Vec<String>,
    blobs: BTreeMap<String, u64>,
}

impl Content {
    fn merge(mut self, other: Content) -> Content {
        self.manifests.extend(other.manifests);
        self.manifests.sort();
        self.manifests.dedup();
        self.blobs.extend(other.blobs);
        self
    }
}

/// Pushes `multi` (an index of arm64 and amd64) and `plain` (one amd64 image, sharing the
/// busybox layer with the index's amd64 image) to `registry` as `repo`.
fn push_repository(registry: &Registry, repo: &str, creds: Option<&str>) {
    let dest = format!("{}/{repo}", registry.host());
    let mut extra = vec!["--format", "oci"];
    if let Some(creds) = creds {
        extra.extend(["--dest-creds", creds]);
    }
    let mut all = extra.clone();
    all.push("--all");
    push_images(&dest, "multi", &arm64_and_amd64(), &all);
    push_images(
        &dest,
        "plain",
        &[ImageSpec::gzip(
            "amd64",
            vec![busybox_tar(), tar_of(&[("data", &noise(300_000, 7))])],
        )],
        &extra,
    );
}

/// A source registry holding `team/app` (see `push_repository`) and an empty destination.
fn source_and_destination() -> (Registry, Registry) {
    let source = Registry::start(None);
    push_repository(&source, "team/app", None);
    (source, Registry::start(None))
}

/// A sync of `from` at `source` to `to` at `destination`.
fn between(source: &Registry, from: &str, destination: &Registry, to: &str) -> SyncRequest {
    request(
        format!("{}/{from}", source.host()),
        format!("{}/{to}", destination.host()),
    )
}

fn request(source: String, destination: String) -> SyncRequest {
    SyncRequest {
        source,
        destination,
        ..Default::default()
    }
}

/// `id: status` of the messages with an id, `status` of the others; progress bars left out.
fn lines(messages: &[JsonMessage]) -> Vec<String> {
    statuses(messages)
        .into_iter()
        .filter(|l| !l.ends_with(": Copying"))
        .collect()
}

/// A sync that must succeed: its messages and summary.
async fn synced(bus: &Bus, req: &SyncRequest) -> (Vec<JsonMessage>, SyncSummary) {
    let (messages, err) = bus.sync(req).await;
    assert!(err.is_none(), "{err:?}: {messages:?}");
    let summary = sync_summary(&messages);
    (messages, summary)
}

/// A sync that must fail after it started: the error and the summary it sent.
async fn failed(bus: &Bus, req: &SyncRequest) -> (BusError, SyncSummary) {
    let (messages, err) = bus.sync(req).await;
    let err = err.expect("the sync fails");
    (err, sync_summary(&messages))
}

/// A sync that must be refused with `kind` before any output: the error's message.
async fn refused(bus: &Bus, req: &SyncRequest, kind: ErrorKind) -> String {
    let (messages, err) = bus.sync(req).await;
    let err = err.expect("the sync is refused");
    assert_eq!(err.kind, kind, "{err:?}");
    assert!(messages.is_empty(), "{messages:?}");
    err.message
}

/// Every tag in `tags` holds the same at `to_repo` as at `from_repo`.
async fn assert_same_tags(to: &Http, to_repo: &str, from: &Http, from_repo: &str, tags: &[&str]) {
    for tag in tags {
        assert_eq!(
            to.walk(to_repo, tag).await,
            from.walk(from_repo, tag).await,
            "{tag}"
        );
    }
}

/// The plan a sync request resolves to, without the bus.
async fn plan(req: &SyncRequest) -> Plan {
    let registries = Registries::new(&[], &[]).unwrap();
    sync::resolve(&registries, req).await.unwrap()
}

/// Runs a plan without the bus: how it ended and every progress message it sent.
async fn run(plan: Plan) -> (Result<SyncSummary, BusError>, Vec<JsonMessage>) {
    let (progress, mut rx) = Progress::channel();
    let result = sync::run(plan, &progress).await;
    drop(progress);
    let mut messages = Vec::new();
    while let Some(m) = rx.recv().await {
        messages.push(m);
    }
    (result, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_syncs_every_tag_and_platform_once_and_a_second_run_copies_nothing() {
    let (source, destination) = source_and_destination();
    let from = Http::new(&source);
    let to = Http::new(&destination);
    let expected = from
        .walk("team/app", "multi")
        .await
        .merge(from.walk("team/app", "plain").await);
    assert_eq!(expected.manifests.len(), 4);
    // Two configs and layers per image, the busybox layer shared: counted once.
    assert_eq!(expected.blobs.len(), 6);
    let bus = Bus::start(Options::default()).await;

    let req = between(&source, "team/app", &destination, "mirror/app");
    let (messages, summary) = synced(&bus, &req).await;
    assert_eq!(
        summary,
        SyncSummary {
            source: format!("{}/team/app", source.host()),
            destination: format!("{}/mirror/app", destination.host()),
            copied: vec!["multi".into(), "plain".into()],
            skipped: vec![],
            failed: vec![],
            manifests: 4,
            blobs_copied: 6,
            blobs_mounted: 0,
            blobs_present: 0,
            bytes_copied: expected.blobs.values().sum(),
        }
    );
    for tag in ["multi", "plain"] {
        assert_eq!(
            to.manifest_digest("mirror/app", tag).await,
            from.manifest_digest("team/app", tag).await,
            "{tag}"
        );
    }
    assert_same_tags(&to, "mirror/app", &from, "team/app", &["multi", "plain"]).await;
    let l = lines(&messages);
    assert_eq!(
        l[0],
        format!(
            "Syncing {}/team/app to {}/mirror/app",
            source.host(),
            destination.host()
        )
    );
    for digest in expected.blobs.keys() {
        let id = short_id(digest);
        assert!(l.contains(&format!("{id}: Waiting")), "{id}: {l:?}");
        assert!(l.contains(&format!("{id}: Copied")), "{id}: {l:?}");
    }
    assert!(messages
        .iter()
        .any(|m| m.status.as_deref() == Some("Copying") && m.progress_detail.is_some()));
    let multi = from.manifest_digest("team/app", "multi").await.unwrap();
    assert!(l.contains(&format!("multi: digest: {multi}")), "{l:?}");
    assert!(l
        .iter()
        .any(|s| s.starts_with("linux/arm64: copying manifest ")));
    // The summary in words, then in the last message's aux.
    let said = &l[l.len() - 2];
    assert_eq!(said, &wharf_registry_sync::sync::describe(&summary));
    assert!(
        said.starts_with("Synced 2 tags (0 skipped, 0 failed): 6 blobs copied (")
            && said.ends_with(", 0 mounted, 0 already there, 4 manifests"),
        "{said}"
    );

    // The second run finds every tag as it is at the source.
    let (messages, again) = synced(&bus, &req).await;
    assert_eq!(again.copied, Vec::<String>::new());
    assert_eq!(again.skipped, ["multi", "plain"]);
    assert_eq!(
        (
            again.manifests,
            again.blobs_copied,
            again.blobs_mounted,
            again.blobs_present,
            again.bytes_copied
        ),
        (0, 0, 0, 0, 0)
    );
    assert!(lines(&messages).contains(&format!("multi: digest: {multi} (already up to date)")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_or_a_source_tag_copies_only_those_and_a_missing_tag_fails_alone() {
    let (source, destination) = source_and_destination();
    let to = Http::new(&destination);
    let bus = Bus::start(Options::default()).await;

    let mut req = between(&source, "team/app", &destination, "listed");
    req.tags = vec!["plain".into(), "nope".into()];
    let (err, summary) = failed(&bus, &req).await;
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(
        err.message.starts_with(&format!(
            "sync of {0}/team/app to {1}/listed failed for 1 of 2 tags (nope): source {0}/team/app: manifest for {0}/team/app:nope not found",
            source.host(),
            destination.host()
        )),
        "{}",
        err.message
    );
    assert_eq!(summary.copied, ["plain"]);
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].tag, "nope");
    assert_eq!(summary.manifests, 1);
    assert!(to.manifest_digest("listed", "plain").await.is_some());
    assert!(to.manifest_digest("listed", "multi").await.is_none());

    // A source tag copies that tag.
    let req = between(&source, "team/app:multi", &destination, "one");
    let (_, summary) = synced(&bus, &req).await;
    assert_eq!(summary.copied, ["multi"]);
    assert_eq!(summary.manifests, 3);
    assert!(to.manifest_digest("one", "multi").await.is_some());
    assert!(to.manifest_digest("one", "plain").await.is_none());

    // Requests that cannot be right are refused before any output.
    let bad = [
        (
            format!("{}/team/app:multi", source.host()),
            format!("{}/x", destination.host()),
            vec!["plain".to_string()],
            "names a tag and tags are listed too",
        ),
        (
            format!("{}/team/app", source.host()),
            format!("{}/x:latest", destination.host()),
            vec![],
            "must be a repository without tag or digest",
        ),
        (
            format!("{}/team/app@sha256:{}", source.host(), "a".repeat(64)),
            format!("{}/x", destination.host()),
            vec![],
            "names a digest: sync copies tags",
        ),
        (
            format!("{}/team/app", source.host()),
            format!("{}/team/app", source.host()),
            vec![],
            "source and destination are the same repository",
        ),
        (
            format!("{}/team/APP", source.host()),
            format!("{}/x", destination.host()),
            vec![],
            "source \"",
        ),
    ];
    for (source, destination, tags, text) in bad {
        let mut req = request(source, destination);
        req.tags = tags;
        let message = refused(&bus, &req, ErrorKind::Invalid).await;
        assert!(message.contains(text), "{message}");
    }

    // An unknown repository and an unreachable registry too.
    let message = refused(
        &bus,
        &between(&source, "no/such", &destination, "x"),
        ErrorKind::NotFound,
    )
    .await;
    assert!(
        message.starts_with(&format!(
            "source {0}/no/such: repository {0}/no/such not found",
            source.host()
        )),
        "{message}"
    );
    let port = free_port();
    let message = refused(
        &bus,
        &request(
            format!("{}/team/app", source.host()),
            format!("127.0.0.1:{port}/x"),
        ),
        ErrorKind::Unavailable,
    )
    .await;
    assert_eq!(
        message,
        format!("destination 127.0.0.1:{port}/x: Get \"http://127.0.0.1:{port}/v2/\": dial tcp 127.0.0.1:{port}: connect: connection refused")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_within_one_registry_mounts_the_blobs() {
    let registry = Registry::start(None);
    push_repository(&registry, "team/app", None);
    let http = Http::new(&registry);
    let bus = Bus::start(Options::default()).await;

    let (messages, summary) = synced(
        &bus,
        &between(&registry, "team/app", &registry, "team/copy"),
    )
    .await;
    assert_eq!(summary.copied, ["multi", "plain"]);
    assert_eq!(
        (
            summary.blobs_mounted,
            summary.blobs_copied,
            summary.bytes_copied
        ),
        (6, 0, 0)
    );
    assert_eq!(summary.manifests, 4);
    assert_same_tags(&http, "team/copy", &http, "team/app", &["multi", "plain"]).await;
    assert!(lines(&messages)
        .iter()
        .any(|l| l.ends_with(": Mounted from team/app")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_registries_take_their_credentials_and_refuse_before_output_without() {
    let source = Registry::start(Some(("alice", "src-pass")));
    let destination = Registry::start(Some(("bob", "dst-pass")));
    push_repository(&source, "team/app", Some("alice:src-pass"));
    let bus = Bus::start(Options::default()).await;
    let alice = RegistryAuth {
        username: Some("alice".into()),
        password: Some("src-pass".into()),
        ..Default::default()
    };
    let bob = RegistryAuth {
        username: Some("bob".into()),
        password: Some("dst-pass".into()),
        ..Default::default()
    };
    let base = between(&source, "team/app", &destination, "backup/app");

    let mut no_source_login = base.clone();
    no_source_login.destination_auth = Some(bob.clone());
    assert_eq!(
        refused(&bus, &no_source_login, ErrorKind::Unauthorized).await,
        format!(
            "source {0}/team/app: Get \"http://{0}/v2/team/app/tags/list?n=1000\": no basic auth credentials",
            source.host()
        )
    );

    let mut no_destination_login = base.clone();
    no_destination_login.source_auth = Some(alice.clone());
    let message = refused(&bus, &no_destination_login, ErrorKind::Unauthorized).await;
    assert!(
        message.starts_with(&format!("destination {}/backup/app: ", destination.host()))
            && message.ends_with("no basic auth credentials"),
        "{message}"
    );

    let mut wrong = base.clone();
    wrong.source_auth = Some(alice.clone());
    wrong.destination_auth = Some(alice.clone());
    assert_eq!(
        refused(&bus, &wrong, ErrorKind::Unauthorized).await,
        format!(
            "destination {}/backup/app: unauthorized: authentication required",
            destination.host()
        )
    );

    let mut good = base.clone();
    good.source_auth = Some(alice);
    good.destination_auth = Some(bob);
    let (_, summary) = synced(&bus, &good).await;
    assert_eq!(summary.copied, ["multi", "plain"]);
    assert_eq!(summary.blobs_copied, 6);
    let from = Http::with_login(&source, "alice", "src-pass");
    let to = Http::with_login(&destination, "bob", "dst-pass");
    assert_same_tags(&to, "backup/app", &from, "team/app", &["multi", "plain"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_blob_that_does_not_match_its_digest_fails_its_tag_and_the_tag_is_not_written() {
    let (source, destination) = source_and_destination();
    let from = Http::new(&source);
    // The layer only `plain` has, its bytes replaced in the registry's storage.
    let plain = from.walk("team/app", "plain").await;
    let multi = from.walk("team/app", "multi").await;
    let (bad, size) = plain
        .blobs
        .iter()
        .find(|(d, _)| !multi.blobs.contains_key(*d) && **d != smallest_blob(&plain))
        .map(|(d, s)| (d.clone(), *s))
        .unwrap();
    std::fs::write(source.blob_path(&bad), noise(size as usize, 42)).unwrap();
    let bus = Bus::start(Options::default()).await;

    let (err, summary) = failed(&bus, &between(&source, "team/app", &destination, "copy")).await;
    let reason = format!(
        "blob {bad} from {}/team/app does not match its digest",
        source.host()
    );
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(err.message.ends_with(&reason), "{}", err.message);
    assert!(
        err.message.contains("failed for 1 of 2 tags (plain)"),
        "{}",
        err.message
    );
    assert_eq!(summary.copied, ["multi"]);
    assert_eq!(
        summary.failed,
        [wharf_bus::registry::SyncFailure {
            tag: "plain".into(),
            error: reason
        }]
    );
    let to = Http::new(&destination);
    assert!(to.manifest_digest("copy", "plain").await.is_none());
    assert!(to.manifest_digest("copy", "multi").await.is_some());
    assert_eq!(
        to.get(&format!("copy/blobs/{bad}")).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// The smallest blob of a tag: its config (the layers here are tars of real files).
fn smallest_blob(content: &Content) -> String {
    content
        .blobs
        .iter()
        .min_by_key(|(_, s)| **s)
        .map(|(d, _)| d.clone())
        .unwrap()
}

/// What the fake answers: a function of the request path.
type Answer = dyn Fn(&str) -> Response + Send + Sync;

async fn serve(answer: Arc<Answer>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(move |uri: Uri, _headers: HeaderMap| {
        let answer = answer.clone();
        async move { answer(uri.path()) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    host
}

fn manifest_response(body: &[u8], media_type: &str, digest: &str) -> Response {
    (
        [
            ("content-type", media_type.to_string()),
            ("docker-content-digest", digest.to_string()),
        ],
        body.to_vec(),
    )
        .into_response()
}

/// A layerless amd64 image for the fakes: its config blob and its OCI manifest.
fn fake_image() -> (Vec<u8>, Vec<u8>) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let image = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()},
        "layers": [],
    }))
    .unwrap();
    (config.to_vec(), image)
}

/// A fake source registry holding `evil/img`: `tags` as its tag list, `config` as its one
/// blob, and for a manifest reference what `manifest` answers (not found for `None`).
async fn serve_evil_img(
    tags: &[&str],
    config: Vec<u8>,
    manifest: impl Fn(&str) -> Option<Response> + Send + Sync + 'static,
) -> String {
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let config_path = format!("/v2/evil/img/blobs/{}", sha256(&config));
    serve(Arc::new(move |path: &str| {
        if let Some(reference) = path.strip_prefix("/v2/evil/img/manifests/") {
            return manifest(reference).unwrap_or_else(|| StatusCode::NOT_FOUND.into_response());
        }
        match path {
            "/v2/" => StatusCode::OK.into_response(),
            "/v2/evil/img/tags/list" => {
                axum::Json(serde_json::json!({"name": "evil/img", "tags": tags})).into_response()
            }
            p if p == config_path => config.clone().into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }))
    .await
}

/// Syncs the fake's `evil/img` at `host` to `to_repo` of a fresh registry, which must fail: that
/// registry, the error and the summary.
async fn sync_from_evil_img(host: &str, to_repo: &str) -> (Registry, BusError, SyncSummary) {
    let destination = Registry::start(None);
    let bus = Bus::start(Options::default()).await;
    let (err, summary) = failed(
        &bus,
        &request(
            format!("{host}/evil/img"),
            format!("{}/{to_repo}", destination.host()),
        ),
    )
    .await;
    (destination, err, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_that_do_not_match_their_digests_fail_their_tags_and_nothing_is_tagged() {
    let (config, image) = fake_image();
    let image_digest = sha256(&image);
    // An index listing the image under a digest it does not have.
    let liar = format!("sha256:{}", "b".repeat(64));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": liar, "size": image.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }))
    .unwrap();
    let index_digest = sha256(&index);
    let wrong_header = format!("sha256:{}", "c".repeat(64));
    let (image2, index2) = (image.clone(), index.clone());
    let (liar2, wrong2) = (liar.clone(), wrong_header.clone());
    let host = serve_evil_img(&["header", "index"], config, move |reference| {
        Some(match reference {
            // Served under a Docker-Content-Digest its bytes do not have.
            "header" => manifest_response(&image2, OCI_MANIFEST, &wrong2),
            "index" => manifest_response(&index2, OCI_INDEX, &sha256(&index2)),
            r if r == liar2 => manifest_response(&image2, OCI_MANIFEST, &liar2),
            _ => return None,
        })
    })
    .await;
    let (destination, err, summary) = sync_from_evil_img(&host, "safe").await;
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(
        err.message
            .contains("failed for 2 of 2 tags (header, index)"),
        "{}",
        err.message
    );
    assert_eq!(summary.copied, Vec::<String>::new());
    assert_eq!(summary.manifests, 0);
    let failures: Vec<(String, String)> = summary
        .failed
        .iter()
        .map(|f| (f.tag.clone(), f.error.clone()))
        .collect();
    assert_eq!(
        failures,
        [
            (
                "header".to_string(),
                format!("manifest of {host}/evil/img:header does not match its digest {wrong_header} (its bytes are {image_digest})")
            ),
            (
                "index".to_string(),
                format!(
                    "manifest {liar} from {host}/evil/img does not match its digest (its {} bytes are {image_digest})",
                    image.len()
                )
            ),
        ]
    );
    let to = Http::new(&destination);
    assert!(to.manifest_digest("safe", "header").await.is_none());
    assert!(to.manifest_digest("safe", "index").await.is_none());
    assert!(to.manifest_digest("safe", &index_digest).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_registry_dying_mid_sync_fails_the_remaining_tags_and_writes_none() {
    let (source, destination) = source_and_destination();
    let plan = plan(&between(&source, "team/app", &destination, "copy")).await;
    assert_eq!(plan.tags(), ["multi", "plain"]);
    let host = source.host();
    drop(source);

    let (result, messages) = run(plan).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.starts_with(&format!(
            "sync of {host}/team/app to {}/copy failed for 2 of 2 tags (multi, plain): source {host}/team/app: Get \"http://{host}/v2/team/app/manifests/multi\": dial tcp {host}: connect: connection refused",
            destination.host()
        )),
        "{}",
        err.message
    );
    let summary = sync_summary(&messages);
    assert_eq!(summary.failed.len(), 2);
    let to = Http::new(&destination);
    assert!(to.manifest_digest("copy", "multi").await.is_none());
    assert!(to.manifest_digest("copy", "plain").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_larger_than_the_chunk_size_goes_up_in_chunks() {
    let source = Registry::start(None);
    let destination = Registry::start(None);
    let big = tar_of(&[("big", &noise(3 << 20, 5))]);
    push_images(
        &format!("{}/big/img", source.host()),
        "big",
        &[ImageSpec::plain("amd64", vec![big])],
        &["--format", "oci"],
    );
    // skopeo compresses the tar on its way: the layer is the largest blob at the source.
    let from = Http::new(&source);
    let (layer, size) = from
        .walk("big/img", "big")
        .await
        .blobs
        .into_iter()
        .max_by_key(|(_, s)| *s)
        .unwrap();
    assert!(size > 2 << 20);
    let plan = plan(&between(&source, "big/img:big", &destination, "big/copy"))
        .await
        .with_chunk_size(1 << 20);
    let (result, messages) = run(plan).await;
    let summary = result.unwrap();
    assert_eq!(summary.copied, ["big"]);
    assert_eq!(summary.blobs_copied, 2);
    let copying: Vec<_> = messages
        .into_iter()
        .filter(|m| {
            m.status.as_deref() == Some("Copying") && m.id.as_deref() == Some(&short_id(&layer))
        })
        .map(|m| m.progress_detail.unwrap().current.unwrap())
        .collect();
    assert_eq!(copying.first(), Some(&0));
    assert_eq!(copying.last(), Some(&size));
    let to = Http::new(&destination);
    assert_eq!(
        to.walk("big/copy", "big").await,
        from.walk("big/img", "big").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_the_source_lists_that_are_no_tags_fail_and_write_nowhere() {
    let (config, image) = fake_image();
    let image_digest = sha256(&image);
    // A source whose tag list holds a path that would climb out of the destination repository
    // and a query, and serves the same image under any name.
    let hostile = "../../victim/manifests/owned";
    let host = serve_evil_img(&["ok", hostile, "x?digest=1"], config, move |_| {
        Some(manifest_response(&image, OCI_MANIFEST, &sha256(&image)))
    })
    .await;
    let (destination, err, summary) = sync_from_evil_img(&host, "team/safe").await;
    assert!(
        err.message.contains("failed for 2 of 3 tags"),
        "{}",
        err.message
    );
    assert_eq!(summary.copied, ["ok"]);
    let mut failed: Vec<&str> = summary.failed.iter().map(|f| f.tag.as_str()).collect();
    failed.sort();
    assert_eq!(failed, [hostile, "x?digest=1"]);
    assert!(summary
        .failed
        .iter()
        .all(|f| f.error.contains("which is not a tag name")));
    let to = Http::new(&destination);
    assert_eq!(
        to.manifest_digest("team/safe", "ok").await.as_deref(),
        Some(image_digest.as_str())
    );
    assert!(to.manifest_digest("victim", "owned").await.is_none());
    assert!(to.manifest_digest("team/victim", "owned").await.is_none());
}

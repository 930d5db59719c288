//! Real parts for the pull tests: nats-server, a CNCF distribution registry, OCI layouts pushed
//! with skopeo, and a minimal image-store double speaking image-store's bus endpoints.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use wharf_bus::image::{
    BlobInfo, BlobIngest, BlobIngested, BlobRef, ImageCommit, ImageRecord, ImageResolve,
};
use wharf_bus::progress::JsonMessage;
use wharf_bus::registry::PullRequest;
use wharf_bus::rpc;
use wharf_bus::service::Reply;
use wharf_bus::stream::Receiver;
use wharf_bus::subjects::{self, group, image_store, registry_sync};
use wharf_bus::BusError;
use wharf_registry_sync::pull::{BlobWriter, ContentStore};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// A child process killed (by its own PID) when the test ends.
pub struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub use wharf_bus::digest::sha256_of as sha256;

/// A distribution registry on a free loopback port, its storage in a temp dir.
pub struct Registry {
    pub port: u16,
    pub dir: tempfile::TempDir,
    _process: Process,
}

impl Registry {
    pub fn start(basic_auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/storage\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().display()
        );
        if let Some((user, pass)) = basic_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .unwrap();
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_port(port);
        Registry {
            port,
            dir,
            _process: Process(child),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Path of a blob's data file in the registry's storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join(format!(
            "storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

/// A tar with the given regular files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Pseudo-random bytes (incompressible, deterministic per seed).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut counter = 0u64;
    while out.len() < len {
        let block = Sha256::digest([seed.to_le_bytes(), counter.to_le_bytes()].concat());
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    out
}

/// One image for an OCI layout: its layers as stored (already compressed as `layer_type` says).
pub struct ImageSpec {
    pub arch: &'static str,
    pub layers: Vec<Vec<u8>>,
    pub diff_ids: Vec<String>,
    pub layer_type: &'static str,
}

impl ImageSpec {
    /// Gzip layers made of the given tars.
    pub fn gzip(arch: &'static str, tars: Vec<Vec<u8>>) -> ImageSpec {
        ImageSpec {
            arch,
            diff_ids: tars.iter().map(|t| sha256(t)).collect(),
            layers: tars.iter().map(|t| gzip(t)).collect(),
            layer_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }
    /// Uncompressed tar layers.
    pub fn plain(arch: &'static str, tars: Vec<Vec<u8>>) -> ImageSpec {
        ImageSpec {
            arch,
            diff_ids: tars.iter().map(|t| sha256(t)).collect(),
            layers: tars,
            layer_type: "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

fn write_blob(dir: &Path, data: &[u8]) -> String {
    let digest = sha256(data);
    let path = dir
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    std::fs::write(path, data).unwrap();
    digest
}

/// Writes an OCI layout holding `images` under `tag` (an index when there are several).
pub fn oci_layout(dir: &Path, tag: &str, images: &[ImageSpec]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = Vec::new();
    for image in images {
        let config = serde_json::json!({
            "architecture": image.arch, "os": "linux",
            "config": {"Cmd": ["sh"], "Labels": {"test.label": "yes"}},
            "rootfs": {"type": "layers", "diff_ids": image.diff_ids},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = write_blob(dir, &config);
        let layers: Vec<serde_json::Value> = image
            .layers
            .iter()
            .map(|l| {
                serde_json::json!({"mediaType": image.layer_type, "digest": write_blob(dir, l), "size": l.len()})
            })
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": write_blob(dir, &manifest), "size": manifest.len(),
            "platform": {"os": "linux", "architecture": image.arch},
        }));
    }
    let top = if manifests.len() == 1 {
        let mut m = manifests.pop().unwrap();
        m.as_object_mut().unwrap().remove("platform");
        m
    } else {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap();
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": write_blob(dir, &index), "size": index.len(),
        })
    };
    let mut top = top;
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
}

/// `skopeo copy oci:DIR:tag docker://dest` with extra flags (`--format v2s2`, `--all`, ...).
pub fn push(layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--quiet"])
        .args(extra)
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `images` to a fresh OCI layout under `tag` and pushes it with skopeo to `repo:tag`,
/// with extra flags.
pub fn push_images(repo: &str, tag: &str, images: &[ImageSpec], extra: &[&str]) {
    let layout = tempfile::tempdir().unwrap();
    oci_layout(layout.path(), tag, images);
    push(layout.path(), tag, &format!("{repo}:{tag}"), extra);
}

/// Two images for an index: arm64 (one small layer) and amd64 (the busybox layer).
pub fn arm64_and_amd64() -> [ImageSpec; 2] {
    [
        ImageSpec::gzip("arm64", vec![tar_of(&[("arm", b"arm64 layer")])]),
        ImageSpec::gzip("amd64", vec![busybox_tar()]),
    ]
}

/// The busybox binary as one layer's tar.
pub fn busybox_tar() -> Vec<u8> {
    let bin = std::fs::read("/bin/busybox").unwrap();
    tar_of(&[("bin/busybox", &bin)])
}

/// What the image-store double holds, for assertions.
#[derive(Default)]
pub struct StoreState {
    pub blobs: HashMap<String, u64>,
    pub small: HashMap<String, Vec<u8>>,
    pub images: Vec<ImageRecord>,
    pub commits: Vec<ImageCommit>,
    pub ingests: Vec<String>,
    /// Cancel ingests with `unavailable` after this many bytes (an image-store going away).
    pub fail_after: Option<u64>,
}

/// A minimal image-store: `blob.stat`, `blob.ingest` (verifying digest and size), `image.commit`
/// and `image.resolve`. The real service is being written in parallel.
pub async fn start_store_double(client: &async_nats::Client) -> Arc<Mutex<StoreState>> {
    let state = Arc::new(Mutex::new(StoreState::default()));
    let mut running = wharf_bus::service::start(
        client,
        subjects::service_name::IMAGE_STORE,
        "test double",
        group::IMAGE_STORE,
    )
    .await
    .unwrap();
    let s = state.clone();
    running
        .serve(group::IMAGE_STORE, image_store::BLOB_STAT, move |req| {
            let s = s.clone();
            async move {
                let r: BlobRef = rpc::decode(&req.message.payload)?;
                let size = s.lock().unwrap().blobs.get(&r.digest).copied();
                match size {
                    Some(size) => Reply::json(&BlobInfo {
                        digest: r.digest,
                        size,
                    }),
                    None => Err(BusError::not_found("blob not found")),
                }
            }
        })
        .await
        .unwrap();
    let s = state.clone();
    let c = client.clone();
    running
        .serve(group::IMAGE_STORE, image_store::BLOB_INGEST, move |req| {
            let s = s.clone();
            let c = c.clone();
            async move {
                let ingest: BlobIngest = rpc::decode(&req.message.payload)?;
                let mut rx = Receiver::accept(&c, &req, Bytes::new()).await?;
                let fail_after = s.lock().unwrap().fail_after;
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let mut small = Vec::new();
                while let Some(chunk) = rx.next().await {
                    let chunk = chunk?;
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    if size <= 1 << 20 {
                        small.extend_from_slice(&chunk);
                    }
                    if fail_after.map(|n| size > n).unwrap_or(false) {
                        rx.cancel(&BusError::unavailable("image-store is shutting down"))
                            .await;
                        return Ok(Reply::Streamed);
                    }
                }
                let digest = wharf_bus::digest::finish(hasher);
                let result = if digest != ingest.digest {
                    Err(BusError::invalid(format!(
                        "digest mismatch: expected {}, got {digest}",
                        ingest.digest
                    )))
                } else if ingest.size.map(|n| n != size).unwrap_or(false) {
                    Err(BusError::invalid("size mismatch"))
                } else {
                    let mut st = s.lock().unwrap();
                    st.blobs.insert(digest.clone(), size);
                    st.ingests.push(digest.clone());
                    if size <= 1 << 20 {
                        st.small.insert(digest.clone(), small);
                    }
                    rpc::encode(&BlobIngested {
                        blob: BlobInfo { digest, size },
                        layer: None,
                    })
                };
                rx.respond(result).await?;
                Ok(Reply::Streamed)
            }
        })
        .await
        .unwrap();
    let s = state.clone();
    running
        .serve(group::IMAGE_STORE, image_store::IMAGE_COMMIT, move |req| {
            let s = s.clone();
            async move {
                let commit: ImageCommit = rpc::decode(&req.message.payload)?;
                let mut st = s.lock().unwrap();
                for d in
                    std::iter::once(&commit.config).chain(commit.layers.iter().map(|l| &l.digest))
                {
                    if !st.blobs.contains_key(d) {
                        return Err(BusError::invalid(format!("missing blob {d}")));
                    }
                }
                let config: serde_json::Value = st
                    .small
                    .get(&commit.config)
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                for image in st.images.iter_mut() {
                    image.repo_tags.retain(|t| !commit.tags.contains(t));
                }
                let record = ImageRecord {
                    id: commit.config.clone(),
                    repo_tags: commit.tags.clone(),
                    repo_digests: commit.repo_digests.clone(),
                    layers: vec![],
                    manifest: commit.manifest.clone(),
                    config,
                    config_size: 0,
                    size: 0,
                    stored_at: String::new(),
                    last_tag_time: None,
                    parent: None,
                };
                st.commits.push(commit);
                st.images.push(record.clone());
                Reply::json(&record)
            }
        })
        .await
        .unwrap();
    let s = state.clone();
    running
        .serve(group::IMAGE_STORE, image_store::IMAGE_RESOLVE, move |req| {
            let s = s.clone();
            async move {
                let r: ImageResolve = rpc::decode(&req.message.payload)?;
                let st = s.lock().unwrap();
                st.images
                    .iter()
                    .rev()
                    .find(|i| i.repo_tags.contains(&r.name) || i.repo_digests.contains(&r.name))
                    .map(Reply::json)
                    .unwrap_or_else(|| Err(BusError::not_found("No such image")))
            }
        })
        .await
        .unwrap();
    tokio::spawn(running.wait());
    state
}

/// NATS, the image-store double and a registry-sync worker, joined on one bus.
pub struct Bus {
    pub client: async_nats::Client,
    pub store: Arc<Mutex<StoreState>>,
    _nats: wharf_bus::testkit::NatsServer,
}

impl Bus {
    pub async fn start(options: wharf_registry_sync::Options) -> Bus {
        Bus::start_with(options, None).await
    }

    /// With the real image-store service (data under `data_root`) instead of the double.
    pub async fn start_with(
        options: wharf_registry_sync::Options,
        data_root: Option<PathBuf>,
    ) -> Bus {
        let nats = wharf_bus::testkit::NatsServer::start();
        let port = nats.port;
        let client = nats.client().await;
        let store = match data_root {
            None => start_store_double(&client).await,
            Some(data_root) => {
                let store_client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
                    .await
                    .unwrap();
                tokio::spawn(wharf_image_store::run(
                    store_client,
                    wharf_image_store::Options { data_root },
                ));
                Arc::new(Mutex::new(StoreState::default()))
            }
        };
        let worker = async_nats::connect(format!("nats://127.0.0.1:{port}"))
            .await
            .unwrap();
        tokio::spawn(wharf_registry_sync::run(worker, options));
        // Wait for the pull endpoint to answer.
        let health = subjects::subject(group::REGISTRY_SYNC, registry_sync::INFO);
        for _ in 0..100 {
            if rpc::call::<_, serde_json::Value>(&client, &health, &())
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Bus {
            client,
            store,
            _nats: nats,
        }
    }

    /// Pulls through the bus: the progress messages, and the error the pull ended with.
    pub async fn pull(&self, request: PullRequest) -> (Vec<JsonMessage>, Option<BusError>) {
        self.progress(registry_sync::PULL, &request).await
    }

    /// Opens a progress stream of registry-sync's `endpoint`: its messages, and the error it
    /// ended with.
    async fn progress<T: serde::Serialize>(
        &self,
        endpoint: &str,
        request: &T,
    ) -> (Vec<JsonMessage>, Option<BusError>) {
        let subject = subjects::subject(group::REGISTRY_SYNC, endpoint);
        let mut rx = match Receiver::open_json(&self.client, &subject, request).await {
            Ok((rx, _)) => rx,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut messages = Vec::new();
        while let Some(m) = rx.next_json::<JsonMessage>().await {
            match m {
                Ok(m) => messages.push(m),
                Err(e) => return (messages, Some(e)),
            }
        }
        (messages, None)
    }

    pub async fn pull_ok(&self, reference: &str) -> Vec<JsonMessage> {
        let (messages, err) = self.pull(request(reference)).await;
        if let Some(e) = err {
            panic!("pull {reference} failed: {e:?}; messages: {messages:?}");
        }
        messages
    }
}

pub fn request(reference: &str) -> PullRequest {
    PullRequest {
        reference: reference.to_string(),
        platform: None,
        auth: None,
    }
}

/// `status` texts, and `id: status` for messages with an id, Downloading lines left out.
pub fn statuses(messages: &[JsonMessage]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.status.as_deref() != Some("Downloading"))
        .map(|m| match &m.id {
            Some(id) => format!("{id}: {}", m.status.clone().unwrap_or_default()),
            None => m.status.clone().unwrap_or_default(),
        })
        .collect()
}

#[derive(Default)]
pub struct MemInner {
    pub blobs: Mutex<HashMap<String, Vec<u8>>>,
    pub commits: Mutex<Vec<ImageCommit>>,
}

/// An in-memory content store that checks digests like image-store does, for pulls without NATS.
#[derive(Default, Clone)]
pub struct MemStore(pub Arc<MemInner>);

pub struct MemWriter {
    store: MemStore,
    digest: String,
    data: Vec<u8>,
}

impl BlobWriter for MemWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BusError> {
        self.data.extend_from_slice(&data);
        Ok(())
    }
    async fn finish(self) -> Result<BlobIngested, BusError> {
        if sha256(&self.data) != self.digest {
            return Err(BusError::invalid("digest mismatch"));
        }
        let size = self.data.len() as u64;
        self.store
            .0
            .blobs
            .lock()
            .unwrap()
            .insert(self.digest.clone(), self.data);
        Ok(BlobIngested {
            blob: BlobInfo {
                digest: self.digest,
                size,
            },
            layer: None,
        })
    }
}

impl ContentStore for MemStore {
    type Writer = MemWriter;
    async fn has_blob(&self, digest: &str) -> Result<bool, BusError> {
        Ok(self.0.blobs.lock().unwrap().contains_key(digest))
    }
    async fn ingest(&self, ingest: BlobIngest) -> Result<MemWriter, BusError> {
        Ok(MemWriter {
            store: self.clone(),
            digest: ingest.digest,
            data: Vec::new(),
        })
    }
    async fn image_id(&self, _reference: &str) -> Result<Option<String>, BusError> {
        Ok(None)
    }
    async fn commit(&self, commit: ImageCommit) -> Result<ImageRecord, BusError> {
        self.0.commits.lock().unwrap().push(commit.clone());
        Ok(ImageRecord {
            id: commit.config,
            repo_tags: commit.tags,
            repo_digests: commit.repo_digests,
            layers: vec![],
            manifest: commit.manifest,
            config: serde_json::Value::Null,
            config_size: 0,
            size: 0,
            stored_at: String::new(),
            last_tag_time: None,
            parent: None,
        })
    }
}

impl Bus {
    /// Syncs through the bus: the progress messages, and the error the sync ended with.
    pub async fn sync(
        &self,
        request: &wharf_bus::registry::SyncRequest,
    ) -> (Vec<JsonMessage>, Option<BusError>) {
        self.progress(registry_sync::SYNC, request).await
    }
}

/// The summary a sync's last message carries.
pub fn sync_summary(messages: &[JsonMessage]) -> wharf_bus::registry::SyncSummary {
    let last = messages.last().expect("a sync sends messages");
    serde_json::from_value(
        last.aux.as_ref().expect("the last message is the summary")["Summary"].clone(),
    )
    .unwrap()
}

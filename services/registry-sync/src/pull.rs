//! The pull flow: resolve a reference to an image manifest (before the caller's stream is
//! accepted, so "not found" is a plain typed error), then move the missing blobs into the content
//! store, reporting progress in dockerd's words, and commit the image once every blob is in.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use wharf_bus::digest::{sha256_of, short_id};
use wharf_bus::image::{
    BlobIngest, BlobIngested, BlobRefTyped, ImageCommit, ImageRecord, LayerRef,
};
use wharf_bus::progress::{JsonMessage, ProgressDetail};
use wharf_bus::reference::Reference;
use wharf_bus::registry::{Platform, PullRequest};
use wharf_bus::stream::CHUNK_SIZE;
use wharf_bus::{BusError, ErrorKind};

use crate::auth::Credentials;
use crate::client::{read_capped, Endpoint, Registries, RegistryError, Session};
use crate::manifest::{self, Descriptor, ImageManifest, Manifest, ManifestError};

/// Layers downloaded at once; the rest wait, as with dockerd's `max-concurrent-downloads`.
pub const MAX_CONCURRENT_DOWNLOADS: usize = 3;
/// Times a dropped blob download is resumed before the pull fails.
const MAX_RESUMES: u32 = 5;
/// Shortest gap between two `Downloading` messages of one layer.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Where pulled content goes. image-store over the bus in production; test doubles in tests.
pub trait ContentStore: Send + Sync {
    type Writer: BlobWriter;
    /// Whether the store already holds `digest`.
    fn has_blob(&self, digest: &str) -> impl Future<Output = Result<bool, BusError>> + Send;
    /// Starts writing a blob the store will verify against `ingest.digest`.
    fn ingest(
        &self,
        ingest: BlobIngest,
    ) -> impl Future<Output = Result<Self::Writer, BusError>> + Send;
    /// The image ID `reference` points at now, if any.
    fn image_id(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, BusError>> + Send;
    /// Makes the image visible.
    fn commit(
        &self,
        commit: ImageCommit,
    ) -> impl Future<Output = Result<ImageRecord, BusError>> + Send;
}

/// One blob on its way into the store; dropping it without `finish` abandons the blob.
pub trait BlobWriter: Send {
    fn write(&mut self, data: Bytes) -> impl Future<Output = Result<(), BusError>> + Send;
    fn finish(self) -> impl Future<Output = Result<BlobIngested, BusError>> + Send;
}

/// How often a blob's progress bar moves.
const BAR_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Where progress messages go: the bus adapter forwards them to the caller's stream.
#[derive(Clone)]
pub struct Progress {
    tx: mpsc::UnboundedSender<JsonMessage>,
}

impl Progress {
    pub fn channel() -> (Progress, mpsc::UnboundedReceiver<JsonMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Progress { tx }, rx)
    }

    pub(crate) fn send(&self, message: JsonMessage) {
        let _ = self.tx.send(message);
    }

    fn message(&self, status: String, id: Option<&str>) {
        self.send(JsonMessage::status(status, id));
    }

    /// A progress bar for one blob going up (`Pushing`, `Copying`): hears the bytes sent so
    /// far, and moves at most every [`BAR_INTERVAL`] (dockerd's rate), and once at the end.
    pub(crate) fn bar(&self, action: &str, id: &str, total: u64) -> crate::client::ProgressFn {
        let (progress, action, id) = (self.clone(), action.to_string(), id.to_string());
        let last: std::sync::Mutex<(Option<std::time::Instant>, u64)> =
            std::sync::Mutex::new((None, 0));
        std::sync::Arc::new(move |sent| {
            let mut last = last.lock().unwrap();
            let due = if sent == total {
                last.1 != total
            } else {
                last.0.is_none_or(|t| t.elapsed() >= BAR_INTERVAL)
            };
            if due {
                *last = (Some(std::time::Instant::now()), sent);
                progress.send(JsonMessage::progress(&action, &id, sent, Some(total)));
            }
        })
    }

    /// A layer status line; dockerd sends an empty `progressDetail` with them.
    pub(crate) fn layer(&self, id: &str, status: &str) {
        self.send(JsonMessage {
            status: Some(status.to_string()),
            id: Some(id.to_string()),
            progress_detail: Some(ProgressDetail::default()),
            ..Default::default()
        });
    }
}

/// What `resolve` found: the image manifest to pull and where it came from.
pub struct Plan {
    reference: Reference,
    session: Session,
    /// What the reference pointed at (an index for multi-platform images): the RepoDigest.
    top_digest: String,
    manifest_digest: String,
    manifest_bytes: Bytes,
    manifest: ImageManifest,
    /// The platform the config must name: the one asked for, or the one picked from an index.
    /// `None` for a single image pulled without `--platform`, which dockerd takes as it is.
    platform: Option<Platform>,
}

impl Plan {
    pub fn reference(&self) -> &Reference {
        &self.reference
    }
    pub fn digest(&self) -> &str {
        &self.top_digest
    }
    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }
    /// Where the manifest was found (a mirror, or the registry itself).
    pub fn endpoint(&self) -> &Endpoint {
        &self.session.endpoint
    }
}

/// A finished pull.
pub struct Outcome {
    pub record: ImageRecord,
    /// Whether the reference moved to a new image (dockerd's "Downloaded newer image").
    pub downloaded: bool,
    /// The familiar reference (`busybox:latest`), the event's actor ID.
    pub familiar: String,
    /// The familiar name (`busybox`), the event's `name` attribute.
    pub familiar_name: String,
}

/// Puts a registry failure in dockerd's terms for `reference`.
pub fn translate(err: RegistryError, reference: &Reference) -> BusError {
    let text = err.to_string();
    match &err {
        RegistryError::Code { code, .. } => match code.as_str() {
            "DENIED" => BusError::not_found(format!(
                "pull access denied for {}, repository does not exist or may require 'docker login': {text}",
                reference.familiar_name()
            )),
            "MANIFEST_UNKNOWN" => BusError::not_found(format!(
                "manifest for {} not found: {text}",
                reference.familiar()
            )),
            "NAME_UNKNOWN" => BusError::not_found(format!(
                "repository {} not found: {text}",
                reference.familiar_name()
            )),
            "UNAUTHORIZED" => BusError::unauthorized(text),
            "TOOMANYREQUESTS" | "UNAVAILABLE" => BusError::unavailable(text),
            _ => BusError::internal(text),
        },
        RegistryError::Transport { .. } => BusError::unavailable(text),
        RegistryError::Status { status } if status.starts_with('5') => {
            BusError::unavailable(text)
        }
        RegistryError::Status { .. } => BusError::internal(text),
        RegistryError::NoBasicCredentials { .. } => BusError::unauthorized(text),
        RegistryError::Token(_) => BusError::unauthorized(text),
        RegistryError::Invalid(_) => BusError::invalid(text),
    }
}

fn manifest_error(err: ManifestError) -> BusError {
    match err {
        ManifestError::NoMatch(m) => BusError::not_found(m),
        // dockerd files a platform mismatch under "not found" too.
        e @ ManifestError::PlatformMismatch { .. } => BusError::not_found(e.to_string()),
        other => BusError::invalid(other.to_string()),
    }
}

/// A failure talking to the content store, said so the user knows which side failed.
fn store_error(err: BusError) -> BusError {
    match err.kind {
        ErrorKind::Unavailable | ErrorKind::Cancelled => BusError::unavailable(format!(
            "image-store is unavailable, pull aborted: {}",
            err.message
        )),
        _ => err,
    }
}

/// Finds the image manifest `request` names: the first endpoint that answers wins (mirrors move
/// on after any error, others only after transport errors), digests are checked, and an index
/// is narrowed to one platform.
pub async fn resolve(registries: &Registries, request: &PullRequest) -> Result<Plan, BusError> {
    let reference = Reference::parse(&request.reference)?.with_default_tag();
    let tag_or_digest = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_default();
    let creds = Credentials::from_auth(request.auth.as_ref());
    let answered = registries
        .first_answer(&reference.domain, &reference.path, &creds, |session| {
            let tag_or_digest = tag_or_digest.clone();
            Box::pin(async move { session.manifest(&tag_or_digest).await })
        })
        .await;
    match answered {
        Ok((session, fetched)) => plan(reference, session, fetched, request).await,
        Err(e) => Err(translate(e, &reference)),
    }
}

/// A manifest's bytes must be the digest they were asked or announced by.
pub(crate) fn verify_manifest_digest(body: &[u8], expected: &str) -> Result<(), BusError> {
    if sha256_of(body) != expected {
        return Err(BusError::invalid(format!(
            "manifest verification failed for digest {expected}"
        )));
    }
    Ok(())
}

async fn plan(
    reference: Reference,
    session: Session,
    fetched: crate::client::FetchedManifest,
    request: &PullRequest,
) -> Result<Plan, BusError> {
    let top_digest = match (&reference.digest, &fetched.docker_content_digest) {
        (Some(d), _) => {
            verify_manifest_digest(&fetched.body, d)?;
            d.clone()
        }
        (None, Some(header)) if header.starts_with("sha256:") => {
            verify_manifest_digest(&fetched.body, header)?;
            header.clone()
        }
        (None, _) => sha256_of(&fetched.body),
    };
    let name = reference.to_string();
    let parsed =
        manifest::parse(&fetched.body, &fetched.content_type, &name).map_err(manifest_error)?;
    let (manifest, manifest_digest, manifest_bytes, platform) = match parsed {
        Manifest::Image(m) => (
            m,
            top_digest.clone(),
            fetched.body,
            request.platform.clone(),
        ),
        Manifest::Index(index) => {
            let platform = request.platform.clone().unwrap_or_else(Platform::host);
            let entry = manifest::select_platform(&index, &platform).map_err(manifest_error)?;
            let inner = session
                .manifest(&entry.digest)
                .await
                .map_err(|e| translate(e, &reference))?;
            verify_manifest_digest(&inner.body, &entry.digest)?;
            match manifest::parse(&inner.body, &inner.content_type, &name)
                .map_err(manifest_error)?
            {
                Manifest::Image(m) => (m, entry.digest.clone(), inner.body, Some(platform)),
                Manifest::Index(_) => {
                    return Err(BusError::invalid("unsupported manifest format"));
                }
            }
        }
    };
    manifest.validate().map_err(manifest_error)?;
    Ok(Plan {
        reference,
        session,
        top_digest,
        manifest_digest,
        manifest_bytes,
        manifest,
        platform,
    })
}

/// Which layers are through, so `Pull complete` comes in layer order as with dockerd.
struct CompletionOrder {
    ids: Vec<String>,
    done: Vec<bool>,
    next: usize,
}

impl CompletionOrder {
    fn complete(&mut self, index: usize, progress: &Progress) {
        self.done[index] = true;
        self.advance(progress);
    }

    fn advance(&mut self, progress: &Progress) {
        while self.next < self.done.len() && self.done[self.next] {
            if !self.ids[self.next].is_empty() {
                progress.layer(&self.ids[self.next], "Pull complete");
            }
            self.next += 1;
        }
    }
}

/// Moves what the store lacks from the registry into it, then commits the image.
pub async fn fetch<S: ContentStore>(
    plan: Plan,
    store: &S,
    progress: Progress,
) -> Result<Outcome, BusError> {
    let reference = &plan.reference;
    let progress_id = match (&reference.digest, &reference.tag) {
        (Some(_), _) => reference.familiar(),
        (None, Some(tag)) => tag.clone(),
        (None, None) => String::new(),
    };
    progress.message(
        format!("Pulling from {}", reference.path),
        Some(&progress_id),
    );

    let config = &plan.manifest.config;
    // Unique layers in manifest order: a layer listed twice is downloaded once.
    let mut layers: Vec<&Descriptor> = Vec::new();
    for l in &plan.manifest.layers {
        if !layers.iter().any(|x| x.digest == l.digest) {
            layers.push(l);
        }
    }
    let old_id = async { store.image_id(&reference.to_string()).await.unwrap_or(None) };
    let stats = futures::future::try_join3(
        store.has_blob(config.digest.as_str()),
        store.has_blob(&plan.manifest_digest),
        futures::future::try_join_all(layers.iter().map(|l| store.has_blob(&l.digest))),
    );
    let (old_id, stats) = futures::future::join(old_id, stats).await;
    let (have_config, have_manifest, have_layers) = stats.map_err(store_error)?;

    let everything_present = have_config && have_layers.iter().all(|h| *h);
    let mut order = CompletionOrder {
        ids: Vec::new(),
        done: Vec::new(),
        next: 0,
    };
    let mut jobs = Vec::new();
    if !everything_present {
        for (i, (layer, have)) in layers.iter().zip(&have_layers).enumerate() {
            let id = short_id(&layer.digest);
            if *have {
                progress.layer(&id, "Already exists");
                order.ids.push(String::new());
                order.done.push(true);
            } else {
                progress.layer(&id, "Pulling fs layer");
                order.ids.push(id.clone());
                order.done.push(false);
                jobs.push((i, *layer, id));
            }
        }
        for (_, _, id) in jobs.iter().skip(MAX_CONCURRENT_DOWNLOADS) {
            progress.layer(id, "Waiting");
        }
        order.advance(&progress);
    }
    let order = Mutex::new(order);

    let session = &plan.session;
    let config_download = async {
        // The config is read even when the store has it: it is small (validate() caps it), and
        // only its content says which platform the image is for. A mismatch fails the pull
        // before anything is committed, and drops the layer downloads under way.
        if !have_config || plan.platform.is_some() {
            let bytes = fetch_config(session, reference, config).await?;
            if let Some(wanted) = &plan.platform {
                manifest::check_config_platform(&bytes, wanted, &reference.to_string())
                    .map_err(manifest_error)?;
            }
            if !have_config {
                store_bytes(store, &config.digest, &config.media_type, bytes).await?;
            }
        }
        if !have_manifest {
            store_bytes(
                store,
                &plan.manifest_digest,
                &plan.manifest.media_type,
                plan.manifest_bytes.clone(),
            )
            .await?;
        }
        Ok::<_, BusError>(())
    };
    // Collected first: a closure inside the stream's type trips up the `Send` check.
    let mut layer_futures = Vec::with_capacity(jobs.len());
    for (i, layer, id) in &jobs {
        let (order, progress, i, layer) = (&order, &progress, *i, *layer);
        layer_futures.push(async move {
            download(session, reference, store, layer, progress, id).await?;
            order.lock().unwrap().complete(i, progress);
            Ok::<_, BusError>(())
        });
    }
    let layer_downloads = futures::stream::iter(layer_futures)
        .buffer_unordered(MAX_CONCURRENT_DOWNLOADS)
        .try_collect::<Vec<()>>();
    futures::future::try_join(config_download, layer_downloads).await?;

    let mut commit = ImageCommit {
        config: config.digest.clone(),
        layers: plan
            .manifest
            .layers
            .iter()
            .map(|l| LayerRef {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
            })
            .collect(),
        manifest: Some(BlobRefTyped {
            digest: plan.manifest_digest.clone(),
            media_type: plan.manifest.media_type.clone(),
        }),
        tags: Vec::new(),
        repo_digests: vec![format!("{}@{}", reference.name(), plan.top_digest)],
        parent: None,
    };
    if reference.digest.is_none() && reference.tag.is_some() {
        commit.tags.push(reference.to_string());
    }
    let record = store.commit(commit).await.map_err(store_error)?;
    progress.message(format!("Digest: {}", plan.top_digest), None);
    let downloaded = old_id.as_deref() != Some(config.digest.as_str());
    let familiar = reference.familiar();
    progress.message(
        if downloaded {
            format!("Status: Downloaded newer image for {familiar}")
        } else {
            format!("Status: Image is up to date for {familiar}")
        },
        None,
    );
    Ok(Outcome {
        record,
        downloaded,
        familiar,
        familiar_name: reference.familiar_name(),
    })
}

/// Puts a blob already in memory (a manifest or config) into the store.
async fn store_bytes<S: ContentStore>(
    store: &S,
    digest: &str,
    media_type: &str,
    bytes: Bytes,
) -> Result<(), BusError> {
    let mut w = store
        .ingest(BlobIngest {
            digest: digest.to_string(),
            size: Some(bytes.len() as u64),
            media_type: Some(media_type.to_string()),
        })
        .await
        .map_err(store_error)?;
    w.write(bytes).await.map_err(store_error)?;
    w.finish().await.map_err(store_error)?;
    Ok(())
}

/// Reads the image config into memory (it is at most [`manifest::MAX_CONFIG_SIZE`] bytes, the
/// manifest was validated) and checks its digest; dropped connections start over.
pub(crate) async fn fetch_config(
    session: &Session,
    reference: &Reference,
    config: &Descriptor,
) -> Result<Bytes, BusError> {
    let digest = config.digest.as_str();
    let verification = || {
        BusError::invalid(format!(
            "image config verification failed for digest {digest}"
        ))
    };
    let mut attempts = 0u32;
    loop {
        let (mut response, _) = match session.blob(digest, 0).await {
            Ok(r) => r,
            Err(e) if e.is_transport() && attempts < MAX_RESUMES => {
                attempts += 1;
                tracing::warn!(%digest, "config request failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200 * attempts as u64)).await;
                continue;
            }
            Err(e) => return Err(translate(e, reference)),
        };
        if response.content_length().unwrap_or(0) > config.size {
            return Err(verification());
        }
        match read_capped(&mut response, config.size as usize).await {
            // More bytes than the descriptor declares is a verification failure, not a reason
            // to keep reading.
            Ok((_, true)) => return Err(verification()),
            Ok((bytes, false)) => {
                let check = bytes.clone();
                let actual = tokio::task::spawn_blocking(move || sha256_of(&check))
                    .await
                    .map_err(|e| BusError::internal(format!("hashing the config: {e}")))?;
                if actual != digest {
                    return Err(verification());
                }
                return Ok(bytes);
            }
            Err(e) if attempts < MAX_RESUMES => {
                attempts += 1;
                tracing::warn!(%digest, "config download dropped, retrying: {e}");
            }
            Err(e) => {
                return Err(BusError::unavailable(format!(
                    "Get \"{}\": {}",
                    session.blob_url(digest),
                    crate::client::describe_http_error(&e)
                )))
            }
        }
    }
}

/// Streams one blob from the registry into the store, resuming dropped connections with Range
/// requests. Bytes go out in frames of [`CHUNK_SIZE`]; the store checks the digest at the end.
async fn download<S: ContentStore>(
    session: &Session,
    reference: &Reference,
    store: &S,
    blob: &Descriptor,
    progress: &Progress,
    id: &str,
) -> Result<BlobIngested, BusError> {
    let digest = blob.digest.as_str();
    let size = blob.size;
    let verification = || {
        BusError::invalid(format!(
            "filesystem layer verification failed for digest {digest}"
        ))
    };
    let mut writer = store
        .ingest(BlobIngest {
            digest: digest.to_string(),
            size: Some(size),
            media_type: Some(blob.media_type.clone()),
        })
        .await
        .map_err(store_error)?;
    let mut offset = 0u64;
    let mut resumes = 0u32;
    let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
    let mut last_report: Option<Instant> = None;
    'attempt: loop {
        let (mut response, start) = match session.blob(digest, offset).await {
            Ok(r) => r,
            Err(e) if e.is_transport() && resumes < MAX_RESUMES => {
                resumes += 1;
                tracing::warn!(%digest, offset, "blob request failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200 * resumes as u64)).await;
                continue;
            }
            Err(e) => return Err(translate(e, reference)),
        };
        // A body announced longer than the descriptor says is refused before it is read.
        if start.saturating_add(response.content_length().unwrap_or(0)) > size {
            return Err(verification());
        }
        // A registry that ignored the Range header sends it all again: skip what we have.
        let mut skip = offset - start;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break 'attempt,
                Err(e) if resumes < MAX_RESUMES => {
                    resumes += 1;
                    tracing::warn!(%digest, offset, "blob download dropped, resuming: {e}");
                    continue 'attempt;
                }
                Err(e) => {
                    return Err(BusError::unavailable(format!(
                        "Get \"{}\": {}",
                        session.blob_url(digest),
                        crate::client::describe_http_error(&e)
                    )))
                }
            };
            let mut chunk = chunk;
            if skip > 0 {
                let n = (skip as usize).min(chunk.len());
                chunk.advance(n);
                skip -= n as u64;
            }
            if chunk.is_empty() {
                continue;
            }
            if offset + chunk.len() as u64 > size {
                return Err(verification());
            }
            offset += chunk.len() as u64;
            buf.extend_from_slice(&chunk);
            if buf.len() >= CHUNK_SIZE {
                let full = std::mem::replace(&mut buf, BytesMut::with_capacity(CHUNK_SIZE));
                writer.write(full.freeze()).await.map_err(store_error)?;
            }
            let due = last_report
                .map(|t| t.elapsed() >= PROGRESS_INTERVAL)
                .unwrap_or(true);
            if due || offset == size {
                last_report = Some(Instant::now());
                progress.send(JsonMessage::progress("Downloading", id, offset, Some(size)));
            }
        }
    }
    if !buf.is_empty() {
        writer.write(buf.freeze()).await.map_err(store_error)?;
    }
    if offset != size {
        return Err(verification());
    }
    progress.layer(id, "Verifying Checksum");
    let ingested = writer.finish().await.map_err(|e| match e.kind {
        ErrorKind::Invalid => verification(),
        _ => store_error(e),
    })?;
    progress.layer(id, "Download complete");
    Ok(ingested)
}

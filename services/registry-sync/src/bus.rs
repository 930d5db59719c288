//! The bus adapter: `pull`, `push`, `sync`, `login`, `manifest.inspect` and `info` endpoints,
//! and image-store reached over the bus as the pull's [`ContentStore`]. It translates; the
//! decisions are in [`crate::pull`] and the other library modules.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wharf_bus::api;
use wharf_bus::endpoint::{self, accept_download, Empty, Incoming};
use wharf_bus::events::{self, Event};
use wharf_bus::image::{
    BlobAdopt, BlobIngest, BlobIngested, BlobRef, ImageCommit, ImageRecord, ImageResolve,
    StagingArea,
};
use wharf_bus::service::Running;
use wharf_bus::stream::Sender;
use wharf_bus::subjects::group;
use wharf_bus::{BusError, ErrorKind};

use crate::client::Registries;
use crate::pull::{self, BlobWriter, ContentStore, Progress};

/// Deadline of `image.commit`: the store may still be settling layer metadata.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// image-store, reached over the bus.
pub struct BusStore {
    client: async_nats::Client,
    /// The store's staging area when it is on this host (asked once, on the first blob).
    staging: tokio::sync::OnceCell<Option<StagingArea>>,
}

impl BusStore {
    pub fn new(client: async_nats::Client) -> BusStore {
        BusStore {
            client,
            staging: tokio::sync::OnceCell::new(),
        }
    }

    /// The store's staging area if it is on this host and the directory is the one it named.
    async fn staging(&self) -> Option<&StagingArea> {
        self.staging
            .get_or_init(|| async {
                let area = endpoint::call::<api::BlobStaging>(&self.client, &Empty)
                    .await
                    .ok()?;
                let same = wharf_bus::image::host_id().as_deref() == Some(area.host.as_str())
                    && same_inode(&area.dir, area.dev, area.ino);
                same.then_some(area)
            })
            .await
            .as_ref()
    }
}

fn same_inode(path: &Path, dev: u64, ino: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// A blob on its way to image-store: streamed over the bus (`blob.ingest`), or, with the store
/// on this host, written to its staging area and handed over (`blob.adopt`), which spares the
/// bus the bytes.
pub enum BusBlobWriter {
    Stream(Sender),
    Staged(StagedBlob),
}

impl BlobWriter for BusBlobWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BusError> {
        match self {
            BusBlobWriter::Stream(sender) => sender.send(data).await,
            BusBlobWriter::Staged(staged) => staged.write(data).await,
        }
    }
    async fn finish(self) -> Result<BlobIngested, BusError> {
        match self {
            BusBlobWriter::Stream(sender) => sender.finish_json().await,
            BusBlobWriter::Staged(staged) => staged.finish().await,
        }
    }
}

static STAGED_SEQ: AtomicU64 = AtomicU64::new(0);

/// A blob file in the store's staging area, removed unless the store took it.
pub struct StagedBlob {
    client: async_nats::Client,
    ingest: BlobIngest,
    name: String,
    path: PathBuf,
    /// Taken while a write runs on the blocking pool.
    file: Option<std::fs::File>,
    written: u64,
    /// Written back up to here (writeback is started as we go, so the store's sync is short).
    flushed: u64,
}

impl StagedBlob {
    fn create(client: &async_nats::Client, area: &StagingArea, ingest: BlobIngest) -> Option<Self> {
        let name = format!(
            "pull-{}-{}",
            std::process::id(),
            STAGED_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = area.dir.join(&name);
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| tracing::debug!("cannot stage in {}: {e}", area.dir.display()))
            .ok()?;
        Some(StagedBlob {
            client: client.clone(),
            ingest,
            name,
            path,
            file: Some(file),
            written: 0,
            flushed: 0,
        })
    }

    async fn write(&mut self, data: Bytes) -> Result<(), BusError> {
        let mut file = self.file.take().ok_or_else(|| {
            BusError::internal("staged blob: an earlier write failed".to_string())
        })?;
        let from = self.flushed;
        let to = self.written + data.len() as u64;
        let flush = to - from >= WRITEBACK_STEP;
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            use std::io::Write;
            file.write_all(&data)?;
            if flush {
                use std::os::fd::AsRawFd;
                // SAFETY: a plain syscall on a descriptor we own; failure only loses the hint.
                unsafe {
                    libc::sync_file_range(
                        file.as_raw_fd(),
                        from as i64,
                        (to - from) as i64,
                        libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
            }
            Ok(file)
        })
        .await
        .map_err(|e| BusError::internal(format!("staged blob write: {e}")))?
        .map_err(|e| BusError::internal(format!("cannot write {}: {e}", self.path.display())))?;
        self.file = Some(file);
        self.written = to;
        if flush {
            self.flushed = to;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<BlobIngested, BusError> {
        drop(self.file.take());
        let adopt = BlobAdopt {
            ingest: self.ingest.clone(),
            name: self.name.clone(),
        };
        // The store takes the file (or removes it) once it has the request; our Drop removes
        // it if the request never got there. It reads the file once (hash, inflate) and syncs
        // it: the deadline grows with the size, so a store that died does not hold the pull
        // for long.
        let deadline = ADOPT_BASE + Duration::from_secs(self.written / ADOPT_RATE);
        endpoint::call_with_timeout::<api::BlobAdoptFile>(&self.client, &adopt, deadline).await
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        drop(self.file.take());
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Deadline of `blob.adopt`: this, plus a second per `ADOPT_RATE` bytes of the blob.
const ADOPT_BASE: Duration = Duration::from_secs(20);
const ADOPT_RATE: u64 = 16 << 20;

/// Writeback is started every this many bytes of a staged blob.
const WRITEBACK_STEP: u64 = 16 << 20;

impl ContentStore for BusStore {
    type Writer = BusBlobWriter;

    async fn has_blob(&self, digest: &str) -> Result<bool, BusError> {
        let request = BlobRef {
            digest: digest.to_string(),
        };
        match endpoint::call::<api::BlobStat>(&self.client, &request).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn ingest(&self, ingest: BlobIngest) -> Result<BusBlobWriter, BusError> {
        if let Some(area) = self.staging().await {
            if let Some(staged) = StagedBlob::create(&self.client, area, ingest.clone()) {
                return Ok(BusBlobWriter::Staged(staged));
            }
        }
        let (sender, Empty) =
            endpoint::upload::<api::BlobIngestStream>(&self.client, &ingest).await?;
        Ok(BusBlobWriter::Stream(sender))
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>, BusError> {
        let request = ImageResolve {
            name: reference.to_string(),
        };
        match endpoint::call::<api::ImageResolveName>(&self.client, &request).await {
            Ok(record) => Ok(Some(record.id)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn commit(&self, commit: ImageCommit) -> Result<ImageRecord, BusError> {
        endpoint::call_with_timeout::<api::ImageCommitRecord>(&self.client, &commit, COMMIT_TIMEOUT)
            .await
    }
}

/// Adds the `pull`, `push`, `sync`, `login`, `manifest.inspect` and `info` endpoints to a
/// started service.
pub async fn serve(
    running: &mut Running,
    client: async_nats::Client,
    registries: Arc<Registries>,
) -> Result<(), BusError> {
    let settings = registries.settings();
    running
        .serve_endpoint::<api::RegistryInfo, _, _>(group::REGISTRY_SYNC, move |_incoming| {
            let settings = settings.clone();
            async move { Ok(settings) }
        })
        .await?;
    let login_registries = registries.clone();
    running
        .serve_endpoint::<api::Login, _, _>(group::REGISTRY_SYNC, move |incoming| {
            let registries = login_registries.clone();
            async move { crate::login::login(&registries, &incoming.request).await }
        })
        .await?;
    let inspect_registries = registries.clone();
    running
        .serve_endpoint::<api::ManifestInspect, _, _>(group::REGISTRY_SYNC, move |incoming| {
            let registries = inspect_registries.clone();
            async move { crate::distribution::inspect(&registries, &incoming.request).await }
        })
        .await?;
    let push_client = client.clone();
    let push_registries = registries.clone();
    running
        .serve_stream::<api::Push, _, _>(group::REGISTRY_SYNC, move |incoming| {
            let client = push_client.clone();
            let registries = push_registries.clone();
            async move { handle_push(client, registries, incoming).await }
        })
        .await?;
    let sync_client = client.clone();
    let sync_registries = registries.clone();
    running
        .serve_stream::<api::RegistrySync, _, _>(group::REGISTRY_SYNC, move |incoming| {
            let client = sync_client.clone();
            let registries = sync_registries.clone();
            async move { handle_sync(client, registries, incoming).await }
        })
        .await?;
    running
        .serve_stream::<api::Pull, _, _>(group::REGISTRY_SYNC, move |incoming| {
            let client = client.clone();
            let registries = registries.clone();
            async move { handle_pull(client, registries, incoming).await }
        })
        .await
}

async fn handle_pull(
    client: async_nats::Client,
    registries: Arc<Registries>,
    incoming: Incoming<api::Pull>,
) -> Result<(), BusError> {
    let pull_request = &incoming.request;
    // Errors up to here (unknown tag, no access, unreachable registry) are plain error replies,
    // as dockerd answers them before it writes any progress.
    let plan = pull::resolve(&registries, pull_request).await?;
    let mut sender = accept_download(&client, &incoming, &Empty).await?;
    let store = BusStore::new(client.clone());
    let (progress, messages) = Progress::channel();
    // The caller going away drops the pull: its uploads are cancelled, nothing is committed.
    let Some(result) = relay(
        &mut sender,
        messages,
        pull::fetch(plan, &store, progress),
        "pull",
    )
    .await
    else {
        return Ok(());
    };
    match result {
        Ok(outcome) => {
            let mut attributes = events::image_attributes(&outcome.familiar_name);
            if let Some(labels) = outcome.record.config["config"]["Labels"].as_object() {
                for (k, v) in labels {
                    if let Some(v) = v.as_str() {
                        attributes.entry(k.clone()).or_insert_with(|| v.to_string());
                    }
                }
            }
            let event = Event::now("image", "pull", &outcome.familiar, attributes);
            events::publish(&client, &event).await;
            let _ = sender.finish().await;
        }
        Err(err) => {
            tracing::info!("pull of {} failed: {err}", pull_request.reference);
            sender.fail(&err).await;
        }
    }
    Ok(())
}

/// image-store as the source of a push.
pub struct BusImageSource {
    client: async_nats::Client,
}

impl crate::push::ImageSource for BusImageSource {
    async fn resolve(&self, reference: &str) -> Result<ImageRecord, BusError> {
        let request = ImageResolve {
            name: reference.to_string(),
        };
        endpoint::call::<api::ImageResolveName>(&self.client, &request).await
    }

    async fn references(&self, name: &str) -> Result<Vec<String>, BusError> {
        let list = wharf_bus::image::ImageList {
            all: true,
            ..Default::default()
        };
        let records = endpoint::call::<api::ImageListAll>(&self.client, &list).await?;
        let (tagged, digested) = (format!("{name}:"), format!("{name}@"));
        Ok(records
            .into_iter()
            .flat_map(|r| r.repo_tags.into_iter().chain(r.repo_digests))
            .filter(|t| t.starts_with(&tagged) || t.starts_with(&digested))
            .collect())
    }

    async fn open(
        &self,
        digest: &str,
        offset: u64,
    ) -> Result<wharf_bus::blob::BlobStream, BusError> {
        wharf_bus::blob::open_at(&self.client, digest, offset, true).await
    }

    async fn read(&self, digest: &str) -> Result<Bytes, BusError> {
        use futures::TryStreamExt;
        let stream = wharf_bus::blob::open(&self.client, digest, true).await?;
        let chunks: Vec<Bytes> = stream.try_collect().await?;
        Ok(Bytes::from(chunks.concat()))
    }

    async fn add_repo_digest(
        &self,
        record: &ImageRecord,
        repo_digest: &str,
    ) -> Result<(), BusError> {
        // Committing the same config and layers again only adds the reference.
        let commit = ImageCommit {
            config: record.id.clone(),
            layers: record.layer_refs(),
            manifest: None,
            tags: vec![],
            repo_digests: vec![repo_digest.to_string()],
            parent: None,
        };
        endpoint::call_with_timeout::<api::ImageCommitRecord>(
            &self.client,
            &commit,
            COMMIT_TIMEOUT,
        )
        .await?;
        Ok(())
    }
}

async fn handle_push(
    client: async_nats::Client,
    registries: Arc<Registries>,
    incoming: Incoming<api::Push>,
) -> Result<(), BusError> {
    let push_request = &incoming.request;
    let source = BusImageSource {
        client: client.clone(),
    };
    // An image that does not exist is a plain error reply, as dockerd answers it before output.
    let plan = crate::push::resolve(&registries, &source, push_request).await?;
    let mut sender = accept_download(&client, &incoming, &Empty).await?;
    let (progress, messages) = Progress::channel();
    let Some(result) = relay(
        &mut sender,
        messages,
        crate::push::push(plan, &source, &progress),
        "push",
    )
    .await
    else {
        return Ok(());
    };
    match result {
        Ok(pushed) => {
            tracing::debug!("pushed {:?} to {}", pushed.tags, pushed.name);
            let event = Event::now(
                "image",
                "push",
                &pushed.name,
                events::image_attributes(&pushed.name),
            );
            events::publish(&client, &event).await;
            let _ = sender.finish().await;
        }
        Err(err) => {
            tracing::info!("push of {} failed: {err}", push_request.reference);
            sender.fail(&err).await;
        }
    }
    Ok(())
}

async fn handle_sync(
    client: async_nats::Client,
    registries: Arc<Registries>,
    incoming: Incoming<api::RegistrySync>,
) -> Result<(), BusError> {
    let sync_request = &incoming.request;
    // A bad reference, an unreachable registry, refused credentials: plain error replies.
    let plan = crate::sync::resolve(&registries, sync_request).await?;
    let mut sender = accept_download(&client, &incoming, &Empty).await?;
    let (progress, messages) = Progress::channel();
    // The caller going away drops the sync: uploads under way are abandoned, no tag is put.
    let Some(result) = relay(
        &mut sender,
        messages,
        crate::sync::run(plan, &progress),
        "sync",
    )
    .await
    else {
        return Ok(());
    };
    match result {
        Ok(_) => {
            let _ = sender.finish().await;
        }
        Err(err) => {
            tracing::info!(
                "sync of {} to {} failed: {err}",
                sync_request.source,
                sync_request.destination
            );
            sender.fail(&err).await;
        }
    }
    Ok(())
}

/// Runs `work` while passing its progress messages to the caller, in order; `None` when the
/// caller went away (the work is dropped, which cancels it).
async fn relay<T>(
    sender: &mut Sender,
    mut messages: tokio::sync::mpsc::UnboundedReceiver<wharf_bus::progress::JsonMessage>,
    work: impl std::future::Future<Output = T>,
    what: &str,
) -> Option<T> {
    tokio::pin!(work);
    let mut open = true;
    let result = loop {
        tokio::select! {
            message = messages.recv(), if open => match message {
                Some(message) => {
                    if let Err(e) = sender.send_json(&message).await {
                        tracing::info!("{what} abandoned by its caller: {e}");
                        return None;
                    }
                }
                None => open = false,
            },
            result = &mut work => break result,
        }
    };
    while let Ok(message) = messages.try_recv() {
        if sender.send_json(&message).await.is_err() {
            return None;
        }
    }
    Some(result)
}

//! The bus adapter: `pull` and `info` endpoints, and image-store reached over the bus as the
//! pull's [`ContentStore`]. It translates; the decisions are in [`crate::pull`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wharf_bus::events::{self, Event};
use wharf_bus::image::{
    BlobInfo, BlobIngest, BlobIngested, BlobRef, ImageCommit, ImageRecord, ImageResolve,
};
use wharf_bus::registry::PullRequest;
use wharf_bus::rpc;
use wharf_bus::service::{Reply, Running};
use wharf_bus::stream::Sender;
use wharf_bus::subjects::{self, group, image_store, registry_sync};
use wharf_bus::{BusError, ErrorKind};

use crate::client::Registries;
use crate::pull::{self, BlobWriter, ContentStore, Progress};

/// Deadline of `image.commit`: the store may still be settling layer metadata.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// image-store, reached over the bus.
pub struct BusStore {
    client: async_nats::Client,
}

impl BusStore {
    pub fn new(client: async_nats::Client) -> BusStore {
        BusStore { client }
    }
}

fn store_subject(endpoint: &str) -> String {
    subjects::subject(group::IMAGE_STORE, endpoint)
}

/// A blob upload to image-store (`blob.ingest`).
pub struct BusBlobWriter(Sender);

impl BlobWriter for BusBlobWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BusError> {
        self.0.send(data).await
    }
    async fn finish(self) -> Result<BlobIngested, BusError> {
        self.0.finish_json().await
    }
}

impl ContentStore for BusStore {
    type Writer = BusBlobWriter;

    async fn has_blob(&self, digest: &str) -> Result<bool, BusError> {
        let request = BlobRef {
            digest: digest.to_string(),
        };
        match rpc::call::<_, BlobInfo>(
            &self.client,
            &store_subject(image_store::BLOB_STAT),
            &request,
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn ingest(&self, ingest: BlobIngest) -> Result<BusBlobWriter, BusError> {
        let (sender, _) = Sender::open(
            &self.client,
            &store_subject(image_store::BLOB_INGEST),
            rpc::encode(&ingest)?,
        )
        .await?;
        Ok(BusBlobWriter(sender))
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>, BusError> {
        let request = ImageResolve {
            name: reference.to_string(),
        };
        match rpc::call::<_, ImageRecord>(
            &self.client,
            &store_subject(image_store::IMAGE_RESOLVE),
            &request,
        )
        .await
        {
            Ok(record) => Ok(Some(record.id)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn commit(&self, commit: ImageCommit) -> Result<ImageRecord, BusError> {
        rpc::call_with_timeout(
            &self.client,
            &store_subject(image_store::IMAGE_COMMIT),
            &commit,
            COMMIT_TIMEOUT,
        )
        .await
    }
}

/// Adds the `pull` and `info` endpoints to a started service.
pub async fn serve(
    running: &mut Running,
    client: async_nats::Client,
    registries: Arc<Registries>,
) -> Result<(), BusError> {
    let settings = registries.settings();
    running
        .serve(group::REGISTRY_SYNC, registry_sync::INFO, move |_req| {
            let settings = settings.clone();
            async move { Reply::json(&settings) }
        })
        .await?;
    running
        .serve(group::REGISTRY_SYNC, registry_sync::PULL, move |request| {
            let client = client.clone();
            let registries = registries.clone();
            async move { handle_pull(client, registries, request).await }
        })
        .await
}

async fn handle_pull(
    client: async_nats::Client,
    registries: Arc<Registries>,
    request: Arc<async_nats::service::Request>,
) -> Result<Reply, BusError> {
    let pull_request: PullRequest = rpc::decode(&request.message.payload)?;
    // Errors up to here (unknown tag, no access, unreachable registry) are plain error replies,
    // as dockerd answers them before it writes any progress.
    let plan = pull::resolve(&registries, &pull_request).await?;
    let mut sender = Sender::accept(&client, &request, Bytes::new()).await?;
    let store = BusStore::new(client.clone());
    let (progress, mut messages) = Progress::channel();
    let work = pull::fetch(plan, &store, progress);
    tokio::pin!(work);
    let mut open = true;
    let result = loop {
        tokio::select! {
            message = messages.recv(), if open => match message {
                Some(message) => {
                    if let Err(e) = sender.send_json(&message).await {
                        // The caller went away: dropping the pull cancels its uploads, and
                        // nothing is committed.
                        tracing::info!("pull abandoned by its caller: {e}");
                        return Ok(Reply::Streamed);
                    }
                }
                None => open = false,
            },
            result = &mut work => break result,
        }
    };
    while let Ok(message) = messages.try_recv() {
        if sender.send_json(&message).await.is_err() {
            return Ok(Reply::Streamed);
        }
    }
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
    Ok(Reply::Streamed)
}

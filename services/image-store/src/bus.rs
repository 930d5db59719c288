//! The bus adapter: decodes requests, runs the store's blocking work off the async runtime,
//! publishes the events it reports and streams bulk data. It translates; it does not decide.

use std::io::{self, Seek, SeekFrom, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, Semaphore};
use wharf_bus::api;
use wharf_bus::endpoint::{accept_download, accept_upload, Empty, Endpoint, Incoming};
use wharf_bus::image::BlobIngested;
use wharf_bus::service::Running;
use wharf_bus::stream::{Receiver, Sender, CHUNK_SIZE};
use wharf_bus::subjects::{group, service_name};
use wharf_bus::{events, rpc, BusError};

use crate::blob_store::IngestSpec;
use crate::store::{Events, ImageStore};

/// Uploads (blob ingests, loads, imports) served at once: each holds a blocking thread for its
/// whole length, so many pulls must not take the whole blocking pool. More wait their turn.
pub const MAX_UPLOADS: usize = 32;

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BusError::internal(format!("image store task failed: {e}")))?
}

async fn publish(client: &async_nats::Client, events: Events) {
    for e in events {
        let event = events::Event::now("image", &e.action, &e.id, e.attributes);
        events::publish(client, &event).await;
    }
}

/// Registers the service and serves every image-store endpoint.
pub async fn serve(client: async_nats::Client, store: Arc<ImageStore>) -> anyhow::Result<Running> {
    let mut running = wharf_bus::service::start(
        &client,
        service_name::IMAGE_STORE,
        "Wharf image store: blobs, manifests, configs, tags",
        group::IMAGE_STORE,
    )
    .await?;

    // Small request/reply calls: decoded by their declaration, run blocking, events
    // published, the declared reply answered.
    macro_rules! call {
        ($endpoint:ty, |$store:ident, $r:ident, $events:ident| $body:expr) => {{
            let store = store.clone();
            let client = client.clone();
            running
                .serve_endpoint::<$endpoint, _, _>(group::IMAGE_STORE, move |incoming| {
                    let store = store.clone();
                    let client = client.clone();
                    async move {
                        let $r = incoming.request;
                        let (value, evs) = blocking(move || {
                            let $store = &*store;
                            let mut $events = Events::new();
                            let v: <$endpoint as Endpoint>::Reply = $body?;
                            Ok((v, $events))
                        })
                        .await?;
                        publish(&client, evs).await;
                        Ok(value)
                    }
                })
                .await?;
        }};
    }

    // A pull that finds a blob ("Already exists") commits it later: the stat renews its lease.
    call!(api::BlobStat, |s, r, _e| s.blobs.touch(&r.digest));
    call!(api::BlobLocate, |s, r, _e| s.blobs.locate(&r.digest));
    call!(api::BlobStaging, |s, _r, _e| s.blobs.staging_area());
    call!(api::BlobAdoptFile, |s, r, _e| {
        if !r.ingest.digest.is_empty() {
            wharf_bus::digest::sha256_hex(&r.ingest.digest)?;
        }
        let spec = IngestSpec::for_blob(
            &r.ingest.digest,
            r.ingest.size,
            r.ingest.media_type.as_deref(),
        );
        s.blobs.adopt(spec, &r.name).map(|done| BlobIngested {
            blob: done.blob,
            layer: done.layer.map(|l| l.info),
        })
    });
    call!(api::ImageCommitRecord, |s, r, e| s.commit(&r, &mut e));
    call!(api::ImageResolveName, |s, r, _e| s.resolve(&r.name));
    call!(api::ImageListAll, |s, r, _e| s.list(&r));
    call!(api::ImageTagName, |s, r, e| s
        .tag(&r, &mut e)
        .map(|()| Empty));
    call!(api::ImageDeleteName, |s, r, e| s.delete(&r, &mut e));
    call!(api::ImagePruneUnused, |s, r, e| s.prune(&r, &mut e));

    let (s, c) = (store.clone(), client.clone());
    running
        .serve_stream::<api::BlobReadStream, _, _>(group::IMAGE_STORE, move |req| {
            blob_read(s.clone(), c.clone(), req)
        })
        .await?;
    let uploads = Arc::new(Semaphore::new(MAX_UPLOADS));
    let (s, c, u) = (store.clone(), client.clone(), uploads.clone());
    running
        .serve_stream::<api::BlobIngestStream, _, _>(group::IMAGE_STORE, move |req| {
            blob_ingest(s.clone(), c.clone(), u.clone(), req)
        })
        .await?;
    let (s, c) = (store.clone(), client.clone());
    running
        .serve_stream::<api::ImageExportTar, _, _>(group::IMAGE_STORE, move |req| {
            image_export(s.clone(), c.clone(), req)
        })
        .await?;
    let (s, c, u) = (store.clone(), client.clone(), uploads.clone());
    running
        .serve_stream::<api::ImageLoadTar, _, _>(group::IMAGE_STORE, move |req| {
            image_load(s.clone(), c.clone(), u.clone(), req)
        })
        .await?;
    let (s, c, u) = (store.clone(), client.clone(), uploads);
    running
        .serve_stream::<api::ImageImportTar, _, _>(group::IMAGE_STORE, move |req| {
            image_import(s.clone(), c.clone(), u.clone(), req)
        })
        .await?;
    Ok(running)
}

/// Streams what a blocking producer sends through `rx` to the requester, then ends the stream
/// with the producer's outcome.
async fn stream_out(
    mut sender: Sender,
    mut rx: mpsc::Receiver<Bytes>,
    producer: tokio::task::JoinHandle<Result<(), BusError>>,
) {
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = sender.send(chunk).await {
            // The reader went away: stop the producer (its sends now fail) and give up.
            tracing::debug!("download stream ended early: {e}");
            drop(rx);
            let _ = producer.await;
            return;
        }
    }
    match producer.await {
        Ok(Ok(())) => {
            if let Err(e) = sender.finish().await {
                tracing::debug!("cannot finish download stream: {e}");
            }
        }
        Ok(Err(e)) => sender.fail(&e).await,
        Err(e) => sender.fail(&BusError::internal(e.to_string())).await,
    }
}

async fn blob_read(
    store: Arc<ImageStore>,
    client: async_nats::Client,
    incoming: Incoming<api::BlobReadStream>,
) -> Result<(), BusError> {
    let r = &incoming.request;
    let (info, file) = blocking({
        let store = store.clone();
        let digest = r.digest.clone();
        move || {
            let info = store.blobs.stat(&digest)?;
            let file = store.blobs.open_blob(&digest)?;
            Ok((info, file))
        }
    })
    .await?;
    if r.offset > info.size {
        return Err(BusError::invalid(format!(
            "offset {} is beyond the end of blob {} ({} bytes)",
            r.offset, info.digest, info.size
        )));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let offset = r.offset;
    let sender = accept_download(&client, &incoming, &info).await?;
    let producer = tokio::task::spawn_blocking(move || {
        let mut file = file;
        let read_error = |e: io::Error| BusError::internal(format!("cannot read blob: {e}"));
        file.seek(SeekFrom::Start(offset)).map_err(read_error)?;
        let mut buf = BytesMut::new();
        while let Some(chunk) =
            crate::chunks::read_chunk(&mut file, &mut buf, CHUNK_SIZE).map_err(read_error)?
        {
            if tx.blocking_send(chunk).is_err() {
                break;
            }
        }
        Ok(())
    });
    stream_out(sender, rx, producer).await;
    Ok(())
}

/// What the async side hands the blocking worker of an upload.
enum Upload {
    Chunk(Bytes),
    /// The sender ended the stream successfully; anything else is an abort.
    End,
}

/// Feeds an upload stream to a blocking worker; answers the uploader with its result.
///
/// A worker that succeeds before the stream ends (a loader stops at the tar's end marker) is
/// answered only once the uploader has sent everything: the rest is read and dropped, so the
/// answer never races the uploader's last frames. A failure is answered at once.
async fn stream_in<T: serde::Serialize + Send + 'static>(
    receiver: Receiver,
    client: &async_nats::Client,
    uploads: Arc<Semaphore>,
    worker: impl FnOnce(UploadReader) -> Result<(T, Events), BusError> + Send + 'static,
) {
    let mut receiver = receiver;
    let permit = uploads
        .acquire_owned()
        .await
        .expect("the upload semaphore is never closed");
    let (tx, rx) = mpsc::channel::<Upload>(16);
    let mut handle = Some(tokio::task::spawn_blocking(move || {
        let _permit = permit;
        worker(UploadReader::new(rx))
    }));
    let mut upload = Some(tx);
    let mut early = None;
    let stream_error = loop {
        match receiver.next().await {
            Some(Ok(chunk)) => {
                let Some(tx) = &upload else {
                    continue; // the worker is done: drain what the uploader still sends
                };
                if tx.send(Upload::Chunk(chunk)).await.is_err() {
                    upload = None;
                    let outcome = join(handle.take()).await;
                    let failed = outcome.is_err();
                    early = Some(outcome);
                    if failed {
                        break None;
                    }
                }
            }
            Some(Err(e)) => break Some(e),
            None => {
                if let Some(tx) = upload.take() {
                    let _ = tx.send(Upload::End).await;
                }
                break None;
            }
        }
    };
    drop(upload);
    let outcome = match early {
        Some(outcome) => outcome,
        None => join(handle.take()).await,
    };
    let answer = match outcome {
        Ok((value, evs)) => {
            // What the worker committed stays committed, whatever became of the stream.
            publish(client, evs).await;
            rpc::encode(&value)
        }
        Err(e) => Err(e),
    };
    // An uploader that failed or went away hears its own error, if it listens at all.
    let answer = match stream_error {
        Some(e) => Err(e),
        None => answer,
    };
    if let Err(e) = receiver.respond(answer).await {
        tracing::debug!("cannot answer upload: {e}");
    }
}

async fn join<T>(
    handle: Option<tokio::task::JoinHandle<Result<T, BusError>>>,
) -> Result<T, BusError> {
    match handle {
        Some(h) => h
            .await
            .map_err(|e| BusError::internal(format!("image store task failed: {e}")))?,
        None => Err(BusError::internal("image store task joined twice")),
    }
}

/// A blocking `Read` over an upload: ends at `End`, fails if the stream stops without it.
pub struct UploadReader {
    rx: mpsc::Receiver<Upload>,
    current: Bytes,
    ended: bool,
}

impl UploadReader {
    fn new(rx: mpsc::Receiver<Upload>) -> Self {
        UploadReader {
            rx,
            current: Bytes::new(),
            ended: false,
        }
    }

    /// The upload's chunks as they arrive, without copies; an error ends them.
    fn into_chunks(mut self) -> impl Iterator<Item = io::Result<Bytes>> {
        std::iter::from_fn(move || self.next_chunk().transpose())
    }

    /// The next chunk; `Ok(None)` at a proper end.
    fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        if self.ended {
            return Ok(None);
        }
        match self.rx.blocking_recv() {
            Some(Upload::Chunk(c)) => Ok(Some(c)),
            Some(Upload::End) => {
                self.ended = true;
                Ok(None)
            }
            None => Err(io::Error::other(BusError::cancelled(
                "the upload stream ended before it was complete",
            ))),
        }
    }
}

impl io::Read for UploadReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_empty() {
                match self.next_chunk()? {
                    Some(c) => self.current = c,
                    None => return Ok(0),
                }
            }
            if self.current.is_empty() {
                continue;
            }
            let n = buf.len().min(self.current.len());
            buf[..n].copy_from_slice(&self.current[..n]);
            bytes::Buf::advance(&mut self.current, n);
            return Ok(n);
        }
    }
}

async fn blob_ingest(
    store: Arc<ImageStore>,
    client: async_nats::Client,
    uploads: Arc<Semaphore>,
    incoming: Incoming<api::BlobIngestStream>,
) -> Result<(), BusError> {
    let r = &incoming.request;
    if !r.digest.is_empty() {
        wharf_bus::digest::sha256_hex(&r.digest)?;
    }
    let spec = IngestSpec::for_blob(&r.digest, r.size, r.media_type.as_deref());
    let receiver = accept_upload(&client, &incoming, &Empty).await?;
    stream_in(receiver, &client, uploads, move |mut upload| {
        let mut ingest = store.blobs.ingest(spec)?;
        while let Some(chunk) = upload
            .next_chunk()
            .map_err(|e| crate::bus_error_from_io(e, "upload failed"))?
        {
            ingest.write(chunk)?;
        }
        let done = ingest.commit()?;
        Ok((
            BlobIngested {
                blob: done.blob,
                layer: done.layer.map(|l| l.info),
            },
            Events::new(),
        ))
    })
    .await;
    Ok(())
}

async fn image_load(
    store: Arc<ImageStore>,
    client: async_nats::Client,
    uploads: Arc<Semaphore>,
    incoming: Incoming<api::ImageLoadTar>,
) -> Result<(), BusError> {
    let receiver = accept_upload(&client, &incoming, &Empty).await?;
    stream_in(receiver, &client, uploads, move |upload| {
        let mut events = Events::new();
        let report = crate::archive_load::load(&store, upload, &mut events)?;
        Ok((report, events))
    })
    .await;
    Ok(())
}

async fn image_import(
    store: Arc<ImageStore>,
    client: async_nats::Client,
    uploads: Arc<Semaphore>,
    incoming: Incoming<api::ImageImportTar>,
) -> Result<(), BusError> {
    let receiver = accept_upload(&client, &incoming, &Empty).await?;
    let r = incoming.request;
    stream_in(receiver, &client, uploads, move |upload| {
        let mut events = Events::new();
        let rec = crate::import::import_chunks(&store, upload.into_chunks(), &r, &mut events)?;
        Ok((rec, events))
    })
    .await;
    Ok(())
}

async fn image_export(
    store: Arc<ImageStore>,
    client: async_nats::Client,
    incoming: Incoming<api::ImageExportTar>,
) -> Result<(), BusError> {
    let names = incoming.request.names.clone();
    let plan = blocking({
        let store = store.clone();
        move || crate::archive_export::plan(&store, &names)
    })
    .await?;
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let sender = accept_download(&client, &incoming, &Empty).await?;
    let (events_tx, events_rx) = tokio::sync::oneshot::channel();
    let producer = tokio::task::spawn_blocking(move || {
        let mut events = Events::new();
        let out = ChannelWriter::new(tx);
        crate::archive_export::write(&store, &plan, out, &mut events)?;
        let _ = events_tx.send(events);
        Ok(())
    });
    stream_out(sender, rx, producer).await;
    if let Ok(evs) = events_rx.await {
        publish(&client, evs).await;
    }
    Ok(())
}

/// A blocking `Write` that hands full chunks to the async side.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK_SIZE),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK_SIZE);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_SIZE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

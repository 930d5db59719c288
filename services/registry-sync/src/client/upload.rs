//! Blob uploads for pushes: cross-repository mounts, monolithic `PUT`s for small blobs, `PATCH`
//! chunks for large ones, resumed from what the registry received when a chunk fails.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;

use super::error::error_of;
use super::{RegistryError, Session};

impl Session {
    /// Tries to mount `digest` from repository `from` of the same registry. `Ok(false)` when the
    /// registry started an upload instead (the blob is then uploaded as usual).
    pub async fn mount_blob(&self, digest: &str, from: &str) -> Result<bool, RegistryError> {
        let response = self
            .post_uploads(&format!("?mount={digest}&from={from}"))
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            s if s.is_success() => Ok(false),
            _ => Err(error_of(response).await),
        }
    }

    /// Uploads a blob held in memory (configs, manifests' small companions).
    pub async fn upload_blob(&self, digest: &str, data: Bytes) -> Result<(), RegistryError> {
        self.upload(
            digest,
            &MemorySource(data),
            &(std::sync::Arc::new(|_| {}) as ProgressFn),
        )
        .await
    }

    /// Uploads a blob from `source`, reporting the bytes sent so far to `progress`.
    ///
    /// Blobs up to the chunk size go up in one `PUT` (monolithic); larger ones as `PATCH`
    /// chunks of that size (never below the registry's `OCI-Chunk-Min-Length`), then a closing
    /// `PUT ?digest=`. A chunk that fails (connection lost, 5xx, an expired token) is resumed
    /// from what the registry says it received (`GET` of the upload's `Range`), a few times;
    /// an upload the registry forgot starts over. The registry checks the digest at the end:
    /// bytes that do not match are refused there.
    pub async fn upload(
        &self,
        digest: &str,
        source: &dyn UploadSource,
        progress: &ProgressFn,
    ) -> Result<(), RegistryError> {
        let size = source.size();
        let mut failures = 0;
        'start: loop {
            let (mut location, min_chunk) = self.start_upload().await?;
            let chunk = self.chunk_size.max(min_chunk);
            if size <= chunk {
                match self
                    .put_chunk(&location, digest, source, size, progress)
                    .await
                {
                    Ok(()) => {
                        progress(size);
                        return Ok(());
                    }
                    Err(e) if retryable(&e) && failures < UPLOAD_RETRIES => {
                        failures += 1;
                        tracing::info!("upload of {digest} failed, starting over: {e}");
                        tokio::time::sleep(backoff(failures)).await;
                        continue 'start;
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut offset = 0;
            let mut reader = None;
            while offset < size {
                let end = (offset + chunk).min(size);
                let result = match reader.take() {
                    Some(r) => Ok(r),
                    None => source.open(offset).await.map(SharedReader::new),
                };
                let result = match result {
                    Ok(r) => {
                        let sent = self.patch_chunk(&location, &r, offset, end, progress).await;
                        sent.map(|next| (next, r))
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok((next, r)) => {
                        location = next;
                        offset = end;
                        reader = Some(r);
                    }
                    Err(e) if retryable(&e) && failures < UPLOAD_RETRIES => {
                        failures += 1;
                        tokio::time::sleep(backoff(failures)).await;
                        match self.upload_status(&location).await {
                            Ok((at, received)) if received <= size => {
                                tracing::info!(
                                    "upload of {digest} failed at {offset}, resuming at {received}: {e}"
                                );
                                location = at;
                                offset = received;
                                progress(offset);
                            }
                            _ => {
                                tracing::info!("upload of {digest} failed, starting over: {e}");
                                continue 'start;
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            loop {
                let put = with_digest(&location, digest);
                let err = match self
                    .send(
                        reqwest::Method::PUT,
                        &put,
                        HeaderMap::new(),
                        Some(Bytes::new()),
                    )
                    .await
                {
                    Ok(response) if response.status().is_success() => return Ok(()),
                    Ok(response) => error_of(response).await,
                    Err(e) => e,
                };
                if !retryable(&err) || failures >= UPLOAD_RETRIES {
                    return Err(err);
                }
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
                // The PUT may have gone through with only its answer lost.
                if self.has_blob(digest).await.unwrap_or(false) {
                    return Ok(());
                }
                match self.upload_status(&location).await {
                    Ok((at, received)) if received == size => location = at,
                    _ => {
                        tracing::info!("closing upload of {digest} failed, starting over: {err}");
                        continue 'start;
                    }
                }
            }
        }
    }

    /// An empty `POST /v2/<repo>/blobs/uploads/<query>`: starts an upload, or mounts.
    async fn post_uploads(&self, query: &str) -> Result<reqwest::Response, RegistryError> {
        let url = self.url(&format!("{}/blobs/uploads/{query}", self.path));
        self.send(
            reqwest::Method::POST,
            &url,
            HeaderMap::new(),
            Some(Bytes::new()),
        )
        .await
    }

    /// `POST uploads/`: the upload's absolute location, and the registry's minimum chunk.
    async fn start_upload(&self) -> Result<(String, u64), RegistryError> {
        let response = self.post_uploads("").await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        let min_chunk = response
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((self.location_of(&response)?, min_chunk))
    }

    /// A response's `Location`, made absolute.
    fn location_of(&self, response: &reqwest::Response) -> Result<String, RegistryError> {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Invalid("upload answered without a Location".into()))?;
        Ok(if location.starts_with('/') {
            format!("{}{location}", self.endpoint.base)
        } else {
            location.to_string()
        })
    }

    /// The whole blob in the closing `PUT ?digest=` (monolithic upload).
    async fn put_chunk(
        &self,
        location: &str,
        digest: &str,
        source: &dyn UploadSource,
        size: u64,
        progress: &ProgressFn,
    ) -> Result<(), RegistryError> {
        let put = with_digest(location, digest);
        let reader = SharedReader::new(source.open(0).await?);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/octet-stream".parse().unwrap());
        headers.insert(CONTENT_LENGTH, size.into());
        let response = self
            .streamed(
                reqwest::Method::PUT,
                &put,
                headers,
                reader.take(size, 0, progress),
            )
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(error_of(response).await)
    }

    /// One `PATCH` of bytes `[from, to)`; returns the location of the rest of the upload.
    async fn patch_chunk(
        &self,
        location: &str,
        reader: &SharedReader,
        from: u64,
        to: u64,
        progress: &ProgressFn,
    ) -> Result<String, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/octet-stream".parse().unwrap());
        headers.insert(CONTENT_LENGTH, (to - from).into());
        headers.insert(
            reqwest::header::CONTENT_RANGE,
            format!("{from}-{}", to - 1).parse().unwrap(),
        );
        let body = reader.take(to - from, from, progress);
        let response = self
            .streamed(reqwest::Method::PATCH, location, headers, body)
            .await?;
        if response.status().is_success() {
            return self.location_of(&response);
        }
        Err(error_of(response).await)
    }

    /// `GET` of an upload in progress: its location and how many bytes the registry holds.
    async fn upload_status(&self, location: &str) -> Result<(String, u64), RegistryError> {
        let response = self
            .send(reqwest::Method::GET, location, HeaderMap::new(), None)
            .await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        // `Range: 0-<last byte>`; an upload with nothing yet says `0-0` (or nothing).
        let received = response
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start_matches("bytes=").split_once('-'))
            .and_then(|(_, last)| last.parse::<u64>().ok())
            .map_or(0, |last| if last == 0 { 0 } else { last.saturating_add(1) });
        let at = if response.headers().contains_key(reqwest::header::LOCATION) {
            self.location_of(&response)?
        } else {
            location.to_string()
        };
        Ok((at, received))
    }
}

/// Uploads of blobs up to this size are monolithic; larger blobs go in chunks of this size.
pub const UPLOAD_CHUNK: u64 = 64 << 20;

/// Failed chunks (or uploads) retried per blob before the upload fails.
const UPLOAD_RETRIES: u32 = 4;

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(200 << failures.min(5))
}

/// Failures worth another try: the connection, the registry's own trouble, a renewed token.
fn retryable(err: &RegistryError) -> bool {
    match err {
        RegistryError::Transport { .. } => true,
        RegistryError::Status { status } => {
            status.starts_with('5') || status.starts_with("401") || status.starts_with("429")
        }
        RegistryError::Code { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// `location` with `digest=` added to its query.
fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// Hears how many bytes of a blob the registry was sent so far.
pub type ProgressFn = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Bytes in order; an `Err` item ends them.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A blob to upload: its size, and its bytes from any offset (a failed chunk resumes there).
pub trait UploadSource: Send + Sync {
    fn size(&self) -> u64;
    fn open(
        &self,
        offset: u64,
    ) -> futures::future::BoxFuture<'_, Result<ByteStream, RegistryError>>;
}

/// A blob held in memory.
pub struct MemorySource(pub Bytes);

impl UploadSource for MemorySource {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn open(
        &self,
        offset: u64,
    ) -> futures::future::BoxFuture<'_, Result<ByteStream, RegistryError>> {
        let rest = self.0.slice((offset as usize).min(self.0.len())..);
        Box::pin(async move {
            Ok(Box::pin(futures::stream::once(async move { Ok(rest) })) as ByteStream)
        })
    }
}

/// One open source read across several chunk bodies: each body takes its share and leaves the
/// rest (of a piece it split) for the next.
struct SharedReader(std::sync::Arc<tokio::sync::Mutex<ReaderState>>);

struct ReaderState {
    stream: ByteStream,
    pending: Bytes,
}

impl SharedReader {
    fn new(stream: ByteStream) -> SharedReader {
        SharedReader(std::sync::Arc::new(tokio::sync::Mutex::new(ReaderState {
            stream,
            pending: Bytes::new(),
        })))
    }

    /// A body of the next `len` bytes; `progress` hears `base` plus what was sent so far. A
    /// source that ends early fails the body (and so the request).
    fn take(&self, len: u64, base: u64, progress: &ProgressFn) -> reqwest::Body {
        use futures::StreamExt;
        let state = self.0.clone();
        let progress = progress.clone();
        let body = futures::stream::unfold(len, move |left| {
            let state = state.clone();
            let progress = progress.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let mut state = state.lock().await;
                if state.pending.is_empty() {
                    match state.stream.next().await {
                        Some(Ok(piece)) => state.pending = piece,
                        Some(Err(e)) => return Some((Err(e), 0)),
                        None => {
                            let early = std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the blob ended before its size",
                            );
                            return Some((Err(early), 0));
                        }
                    }
                }
                let n = (state.pending.len() as u64).min(left);
                let piece = state.pending.split_to(n as usize);
                progress(base + len - left + n);
                Some((Ok(piece), left - n))
            }
        });
        reqwest::Body::wrap_stream(body)
    }
}

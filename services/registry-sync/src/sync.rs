//! Registry to registry: copies a repository's tags from one registry to another without
//! passing through image-store. Every platform of an index goes along (attestations too);
//! manifests are put byte for byte, so every digest stays what it was at the source.
//!
//! [`resolve`] checks the request and reaches both registries (its errors are plain replies,
//! before any output); [`run`] copies tag after tag, each failure recorded against its tag
//! while the others still go, and ends with a [`SyncSummary`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sha2::Digest as _;
use wharf_bus::digest::{sha256_of, short_id};
use wharf_bus::progress::{human_size, JsonMessage, ProgressDetail};
use wharf_bus::reference::Reference;
use wharf_bus::registry::{SyncFailure, SyncRequest, SyncSummary};
use wharf_bus::{BusError, ErrorKind};

use crate::auth::Credentials;
use crate::client::{ByteStream, Registries, RegistryError, Session, UploadSource};
use crate::manifest::{self, Descriptor, ImageManifest, Manifest, ManifestError};
use crate::pull::{translate, Progress};

/// Blobs of one manifest copied at once.
pub const MAX_CONCURRENT_COPIES: usize = 3;
/// Indexes nested deeper than this are refused: an index listing itself must not recurse forever.
const MAX_INDEX_DEPTH: usize = 4;

/// A sync whose request was checked and whose registries answered.
pub struct Plan {
    /// The source repository (its tag, if the request named one, is in `tags`).
    source: Reference,
    destination: Reference,
    tags: Vec<String>,
    /// Names the source listed that are no tag names: each fails, nothing is asked about it.
    refused: Vec<String>,
    from: Session,
    to: Session,
    /// Source and destination are one registry: blobs are mounted rather than copied.
    same_registry: bool,
}

impl Plan {
    /// The tags the sync will copy, in order.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Uploads of blobs larger than `size` go in chunks of `size` bytes (64 MiB by default).
    pub fn with_chunk_size(self, size: u64) -> Plan {
        Plan {
            to: self.to.with_chunk_size(size),
            ..self
        }
    }
}

/// Resolves and runs a sync: errors before any output come back as they are, as from
/// [`resolve`]; then as from [`run`].
pub async fn sync(
    registries: &Registries,
    request: &SyncRequest,
    progress: &Progress,
) -> Result<SyncSummary, BusError> {
    run(resolve(registries, request).await?, progress).await
}

/// Checks the request, reaches both registries and finds the tags to copy. Errors here (a bad
/// reference, an unreachable registry, an unknown source repository, refused credentials) come
/// before any output, as a pull's do.
pub async fn resolve(registries: &Registries, request: &SyncRequest) -> Result<Plan, BusError> {
    let parse = |side: &str, input: &str| {
        Reference::parse(input.trim())
            .map_err(|e| BusError::invalid(format!("{side} {input:?}: {}", e.message)))
    };
    let mut source = parse("source", &request.source)?;
    let destination = parse("destination", &request.destination)?;
    if source.digest.is_some() {
        return Err(BusError::invalid(format!(
            "source {:?} names a digest: sync copies tags, name a tag or the repository",
            request.source
        )));
    }
    if destination.tag.is_some() || destination.digest.is_some() {
        return Err(BusError::invalid(format!(
            "destination {:?} must be a repository without tag or digest: tags keep their names",
            request.destination
        )));
    }
    if source.tag.is_some() && !request.tags.is_empty() {
        return Err(BusError::invalid(format!(
            "source {:?} names a tag and tags are listed too: give either the tag in the source or the list of tags",
            request.source
        )));
    }
    if source.name() == destination.name() {
        return Err(BusError::invalid(format!(
            "source and destination are the same repository {}",
            source.name()
        )));
    }
    let named_tag = source.tag.take();
    let mut tags: Vec<String> = Vec::new();
    for tag in named_tag.iter().chain(&request.tags) {
        if !valid_tag(tag) {
            return Err(BusError::invalid(format!("invalid tag {tag:?}")));
        }
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }

    let from_creds = Credentials::from_auth(request.source_auth.as_ref());
    let from = registries
        .reach(&source.domain, |endpoint| {
            registries.session(endpoint, &source.path, from_creds.clone())
        })
        .await
        .map_err(|e| source_error(e, &source))?;
    let same_registry = source.domain == destination.domain;
    let mount_sources = if same_registry {
        vec![source.path.clone()]
    } else {
        Vec::new()
    };
    let to = registries
        .push_endpoint(
            &destination.domain,
            &destination.path,
            Credentials::from_auth(request.destination_auth.as_ref()),
            &mount_sources,
        )
        .await
        .map_err(|e| destination_error(e, &destination))?;

    // Asking the source something checks its credentials and that the repository exists.
    let mut refused = Vec::new();
    if tags.is_empty() {
        // A listed name goes into the destination's URLs: only tag names do (a hostile source
        // could otherwise name `../../other/manifests/x`).
        (tags, refused) = from
            .tags()
            .await
            .map_err(|e| source_error(e, &source))?
            .into_iter()
            .partition(|t| valid_tag(t));
        if tags.is_empty() && refused.is_empty() {
            return Err(BusError::not_found(format!(
                "repository {} has no tags to sync",
                source.name()
            )));
        }
    } else {
        from.manifest_digest(&tags[0])
            .await
            .map_err(|e| source_error(e, &source))?;
    }
    // And the destination: a push session asks for push access on its first request.
    to.manifest_digest(tags.first().map_or("latest", String::as_str))
        .await
        .map_err(|e| destination_error(e, &destination))?;
    Ok(Plan {
        source,
        destination,
        tags,
        refused,
        from,
        to,
        same_registry,
    })
}

/// Layers a registry does not hold (Windows base layers, OCI non-distributable layers).
fn foreign(media_type: &str) -> bool {
    media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
}

/// A tag name as the distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    tag.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Copies the planned tags. A tag that fails is recorded in the summary and the others still
/// go; the summary is the stream's last message (`aux: {"Summary": ...}`), and when a tag
/// failed the call then fails too, naming the failed tags.
pub async fn run(plan: Plan, progress: &Progress) -> Result<SyncSummary, BusError> {
    let source = plan.source.name();
    let destination = plan.destination.name();
    progress.send(JsonMessage::status(
        format!("Syncing {source} to {destination}"),
        None,
    ));
    let copier = Copier {
        plan: &plan,
        progress,
        tally: Mutex::new(Tally::default()),
    };
    let mut summary = SyncSummary {
        source: source.clone(),
        destination: destination.clone(),
        ..Default::default()
    };
    let mut first_error: Option<BusError> = None;
    for name in &plan.refused {
        let e = BusError::invalid(format!(
            "the source lists {name:?}, which is not a tag name: not copied"
        ));
        progress.send(JsonMessage::status(
            format!("{name}: failed: {}", e.message),
            None,
        ));
        summary.failed.push(SyncFailure {
            tag: name.clone(),
            error: e.message.clone(),
        });
        first_error.get_or_insert(e);
    }
    for tag in &plan.tags {
        match copier.tag(tag).await {
            Ok(Copied::New(digest)) => {
                progress.send(JsonMessage::status(
                    format!("{tag}: digest: {digest}"),
                    None,
                ));
                summary.copied.push(tag.clone());
            }
            Ok(Copied::UpToDate(digest)) => {
                progress.send(JsonMessage::status(
                    format!("{tag}: digest: {digest} (already up to date)"),
                    None,
                ));
                summary.skipped.push(tag.clone());
            }
            Err(e) => {
                tracing::info!("sync of {source}:{tag} to {destination} failed: {e}");
                progress.send(JsonMessage::status(
                    format!("{tag}: failed: {}", e.message),
                    None,
                ));
                summary.failed.push(SyncFailure {
                    tag: tag.clone(),
                    error: e.message.clone(),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    let tally = copier.tally.into_inner().unwrap();
    summary.manifests = tally.manifests;
    summary.blobs_copied = tally.copied;
    summary.blobs_mounted = tally.mounted;
    summary.blobs_present = tally.present;
    summary.bytes_copied = tally.bytes;
    progress.send(JsonMessage::status(describe(&summary), None));
    progress.send(JsonMessage {
        progress_detail: Some(ProgressDetail::default()),
        aux: Some(json!({ "Summary": summary })),
        ..Default::default()
    });
    match first_error {
        None => Ok(summary),
        Some(first) => {
            let failed: Vec<&str> = summary.failed.iter().map(|f| f.tag.as_str()).collect();
            Err(BusError::new(
                first.kind,
                format!(
                    "sync of {source} to {destination} failed for {} of {} tags ({}): {}",
                    failed.len(),
                    plan.tags.len() + plan.refused.len(),
                    failed.join(", "),
                    first.message
                ),
            ))
        }
    }
}

/// The summary in a line: `Synced 2 tags (1 skipped, 0 failed): 5 blobs copied (1.2MB), ...`.
pub fn describe(summary: &SyncSummary) -> String {
    format!(
        "Synced {} ({} skipped, {} failed): {} copied ({}), {} mounted, {} already there, {}",
        counted(summary.copied.len() as u64, "tag"),
        summary.skipped.len(),
        summary.failed.len(),
        counted(summary.blobs_copied, "blob"),
        human_size(summary.bytes_copied),
        summary.blobs_mounted,
        summary.blobs_present,
        counted(summary.manifests, "manifest"),
    )
}

/// `1 tag`, `2 tags`.
fn counted(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// What became of a tag.
enum Copied {
    New(String),
    UpToDate(String),
}

/// What a sync did so far; blobs and manifests are counted once per sync.
#[derive(Default)]
struct Tally {
    /// Blobs the destination is known to have now.
    blobs: HashSet<String>,
    /// Manifests put by digest (an index's children).
    manifests_put: HashSet<String>,
    manifests: u64,
    copied: u64,
    mounted: u64,
    present: u64,
    bytes: u64,
}

/// How a blob got to the destination.
enum Arrival {
    Present,
    Mounted,
    Copied(u64),
}

struct Copier<'a> {
    plan: &'a Plan,
    progress: &'a Progress,
    tally: Mutex<Tally>,
}

impl Copier<'_> {
    /// Copies one tag unless the destination serves the same digest for it already.
    async fn tag(&self, tag: &str) -> Result<Copied, BusError> {
        let plan = self.plan;
        let at_source = plan.source.tagged(tag);
        let current = plan
            .to
            .manifest_digest(tag)
            .await
            .map_err(|e| destination_error(e, &plan.destination))?;
        // HEADs first: a tag that is up to date costs no manifest GET at the source (Docker
        // Hub counts those against its pull limit).
        if let Some(current) = &current {
            let listed = plan
                .from
                .manifest_digest(tag)
                .await
                .map_err(|e| source_error(e, &at_source))?;
            if listed.as_deref() == Some(current.as_str()) {
                return Ok(Copied::UpToDate(current.clone()));
            }
        }
        let fetched = plan
            .from
            .manifest(tag)
            .await
            .map_err(|e| source_error(e, &at_source))?;
        let digest = hash(fetched.body.clone()).await?;
        if let Some(header) = &fetched.docker_content_digest {
            if header.starts_with("sha256:") && *header != digest {
                return Err(BusError::invalid(format!(
                    "manifest of {at_source} does not match its digest {header} (its bytes are {digest})"
                )));
            }
        }
        if current.as_deref() == Some(digest.as_str()) {
            return Ok(Copied::UpToDate(digest));
        }
        self.progress.send(JsonMessage::status(
            format!("Copying {tag} ({digest})"),
            None,
        ));
        self.manifest(
            &plan.source,
            &digest,
            fetched.body,
            &fetched.content_type,
            tag,
            0,
        )
        .await?;
        Ok(Copied::New(digest))
    }

    /// Copies what a manifest refers to (an index's manifests, an image's blobs), then puts it
    /// as `put_as` (a tag, or its digest for an index's children).
    fn manifest<'a>(
        &'a self,
        name: &'a Reference,
        digest: &'a str,
        body: Bytes,
        content_type: &'a str,
        put_as: &'a str,
        depth: usize,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let at = name.digested(digest);
            let parsed = manifest::parse(&body, content_type, &at.to_string())
                .map_err(|e| BusError::invalid(format!("{at}: {e}")))?;
            let media_type = match &parsed {
                Manifest::Image(image) => {
                    self.blobs(name, image).await?;
                    image.media_type.clone()
                }
                Manifest::Index(index) => {
                    if depth >= MAX_INDEX_DEPTH {
                        return Err(BusError::invalid(format!(
                            "{at}: indexes nested more than {MAX_INDEX_DEPTH} deep"
                        )));
                    }
                    for child in &index.manifests {
                        self.child(name, child, depth).await?;
                    }
                    index.media_type.clone()
                }
            };
            self.put(put_as, digest, &media_type, body).await
        })
    }

    /// Copies a manifest an index lists (one platform, an attestation, ...), by digest.
    async fn child(
        &self,
        name: &Reference,
        child: &Descriptor,
        depth: usize,
    ) -> Result<(), BusError> {
        let plan = self.plan;
        let digest = child.digest.as_str();
        let at = name.digested(digest);
        if child.size > manifest::MAX_MANIFEST_SIZE as u64 {
            return Err(BusError::invalid(format!(
                "{at}: manifest of {} bytes is larger than the {}-byte limit",
                child.size,
                manifest::MAX_MANIFEST_SIZE
            )));
        }
        if self.tally.lock().unwrap().manifests_put.contains(digest) {
            return Ok(());
        }
        let platform = child
            .platform
            .as_ref()
            .map(|p| {
                let mut s = format!("{}/{}", p.os, p.architecture);
                if let Some(v) = p.variant.as_deref().filter(|v| !v.is_empty()) {
                    s = format!("{s}/{v}");
                }
                s
            })
            .unwrap_or_else(|| "no platform".into());
        let present = plan
            .to
            .manifest_digest(digest)
            .await
            .map_err(|e| destination_error(e, &plan.destination))?;
        if present.as_deref() == Some(digest) {
            self.progress.send(JsonMessage::status(
                format!("{platform}: manifest {digest} already exists"),
                None,
            ));
            return Ok(());
        }
        self.progress.send(JsonMessage::status(
            format!("{platform}: copying manifest {digest}"),
            None,
        ));
        let fetched = plan
            .from
            .manifest(digest)
            .await
            .map_err(|e| source_error(e, &at))?;
        let actual = hash(fetched.body.clone()).await?;
        if actual != digest || fetched.body.len() as u64 != child.size {
            return Err(BusError::invalid(format!(
                "manifest {digest} from {} does not match its digest (its {} bytes are {actual})",
                name.name(),
                fetched.body.len()
            )));
        }
        // The descriptor's media type says what the parent listed; the body's own wins.
        let content_type = if fetched.content_type.is_empty() {
            child.media_type.clone()
        } else {
            fetched.content_type
        };
        self.manifest(name, digest, fetched.body, &content_type, digest, depth + 1)
            .await
    }

    /// Makes sure the destination has an image's config and layers, a few at a time.
    async fn blobs(&self, name: &Reference, image: &ImageManifest) -> Result<(), BusError> {
        let config = &image.config;
        let image_config = [manifest::DOCKER_CONFIG, manifest::OCI_CONFIG];
        if image_config.contains(&config.media_type.as_str())
            && config.size > manifest::MAX_CONFIG_SIZE
        {
            return Err(BusError::invalid(format!(
                "{}: {}",
                name.name(),
                ManifestError::ConfigTooLarge(config.size)
            )));
        }
        let mut blobs: Vec<&Descriptor> = Vec::new();
        {
            let tally = self.tally.lock().unwrap();
            // Foreign and non-distributable layers are fetched from their own URLs, never
            // from a registry: the manifest refers to them without the registry holding them.
            let layers = image.layers.iter().filter(|l| !foreign(&l.media_type));
            for blob in std::iter::once(config).chain(layers) {
                if !tally.blobs.contains(&blob.digest)
                    && !blobs.iter().any(|b| b.digest == blob.digest)
                {
                    blobs.push(blob);
                }
            }
        }
        for blob in &blobs {
            self.progress.layer(&short_id(&blob.digest), "Waiting");
        }
        let copies: Vec<_> = blobs.iter().map(|blob| self.blob(name, blob)).collect();
        futures::stream::iter(copies)
            .buffer_unordered(MAX_CONCURRENT_COPIES)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// One blob: found at the destination, mounted from the source repository (same registry),
    /// or streamed from the source into an upload.
    async fn blob(&self, name: &Reference, blob: &Descriptor) -> Result<(), BusError> {
        let plan = self.plan;
        let digest = blob.digest.as_str();
        let id = short_id(digest);
        let to_destination = |e| destination_error(e, &plan.destination);
        let arrival = if plan.to.has_blob(digest).await.map_err(to_destination)? {
            self.progress.layer(&id, "Already exists");
            Arrival::Present
        } else if plan.same_registry && self.mount(digest).await {
            self.progress
                .layer(&id, &format!("Mounted from {}", plan.source.path));
            Arrival::Mounted
        } else {
            self.copy(name, blob, &id).await?;
            self.progress.layer(&id, "Copied");
            Arrival::Copied(blob.size)
        };
        let mut tally = self.tally.lock().unwrap();
        if tally.blobs.insert(digest.to_string()) {
            match arrival {
                Arrival::Present => tally.present += 1,
                Arrival::Mounted => tally.mounted += 1,
                Arrival::Copied(size) => {
                    tally.copied += 1;
                    tally.bytes += size;
                }
            }
        }
        Ok(())
    }

    /// Mounts a blob from the source repository; false when the registry would not.
    async fn mount(&self, digest: &str) -> bool {
        match self
            .plan
            .to
            .mount_blob(digest, &self.plan.source.path)
            .await
        {
            Ok(mounted) => mounted,
            Err(e) => {
                tracing::debug!("cannot mount {digest} from {}: {e}", self.plan.source.path);
                false
            }
        }
    }

    /// Streams a blob from the source into an upload to the destination. Bytes that do not
    /// hash to the digest are the source's fault, and said so.
    async fn copy(&self, name: &Reference, blob: &Descriptor, id: &str) -> Result<(), BusError> {
        let plan = self.plan;
        let digest = blob.digest.as_str();
        let size = blob.size;
        self.progress
            .send(JsonMessage::progress("Copying", id, 0, Some(size)));
        let source = SourceBlob {
            session: &plan.from,
            digest: digest.to_string(),
            size,
            state: Arc::new(Mutex::new(ReadState::default())),
        };
        let result = plan
            .to
            .upload(digest, &source, &self.progress.bar("Copying", id, size))
            .await;
        let mismatch = || {
            BusError::invalid(format!(
                "blob {digest} from {} does not match its digest",
                name.name()
            ))
        };
        let state = source.state.lock().unwrap();
        if state.mismatch(digest, size) {
            return Err(mismatch());
        }
        match result {
            Ok(()) => Ok(()),
            Err(RegistryError::Code { code, .. }) if code == "DIGEST_INVALID" => Err(mismatch()),
            Err(e) => match &state.failure {
                // The upload failed because the source did.
                Some(failure) => Err(BusError::new(
                    source_error(e, name).kind,
                    format!("source {}: {failure}", name.name()),
                )),
                None => Err(destination_error(e, &plan.destination)),
            },
        }
    }

    /// Puts a manifest byte for byte, and checks the destination took it as `digest`.
    async fn put(
        &self,
        put_as: &str,
        digest: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<(), BusError> {
        let plan = self.plan;
        let stored = plan
            .to
            .put_manifest(put_as, media_type, body)
            .await
            .map_err(|e| destination_error(e, &plan.destination))?;
        if let Some(stored) = stored.filter(|s| s != digest) {
            return Err(BusError::internal(format!(
                "destination {} stored manifest {digest} as {stored}",
                plan.destination.name()
            )));
        }
        let mut tally = self.tally.lock().unwrap();
        tally.manifests += 1;
        if put_as == digest {
            tally.manifests_put.insert(digest.to_string());
        }
        Ok(())
    }
}

/// `sha256:` of a manifest, off the async threads.
async fn hash(body: Bytes) -> Result<String, BusError> {
    tokio::task::spawn_blocking(move || sha256_of(&body))
        .await
        .map_err(|e| BusError::internal(format!("hashing a manifest: {e}")))
}

/// A blob of the source registry as an upload's source: each `open` is a (Range) GET. What
/// passes is hashed once, however often the upload resumes, to tell a source serving the
/// wrong bytes from a destination failing.
struct SourceBlob<'a> {
    session: &'a Session,
    digest: String,
    size: u64,
    state: Arc<Mutex<ReadState>>,
}

/// What the source sent so far.
struct ReadState {
    hasher: sha2::Sha256,
    /// Bytes hashed: the blob's prefix up to here.
    hashed: u64,
    /// A resume skipped bytes never hashed: no conclusion about the digest.
    gap: bool,
    /// The last thing that went wrong reading from the source.
    failure: Option<String>,
}

impl Default for ReadState {
    fn default() -> Self {
        ReadState {
            hasher: sha2::Sha256::new(),
            hashed: 0,
            gap: false,
            failure: None,
        }
    }
}

impl ReadState {
    /// Hashes the part of `chunk` (which starts at `at` in the blob) not hashed yet.
    fn hash(&mut self, at: u64, chunk: &[u8]) {
        if self.gap {
            return;
        }
        if at > self.hashed {
            self.gap = true;
            return;
        }
        let end = at + chunk.len() as u64;
        if end > self.hashed {
            self.hasher.update(&chunk[(self.hashed - at) as usize..]);
            self.hashed = end;
        }
    }

    /// Whether all `size` bytes went by and they are not `digest`.
    fn mismatch(&self, digest: &str, size: u64) -> bool {
        !self.gap && self.hashed == size && wharf_bus::digest::finish(self.hasher.clone()) != digest
    }
}

impl UploadSource for SourceBlob<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn open(&self, offset: u64) -> BoxFuture<'_, Result<ByteStream, RegistryError>> {
        Box::pin(async move {
            let fail = |e: RegistryError| {
                self.state.lock().unwrap().failure = Some(e.to_string());
                e
            };
            let (response, start) = self
                .session
                .blob(&self.digest, offset)
                .await
                .map_err(fail)?;
            let size = self.size;
            // A body announced longer than the descriptor says is refused before it is read.
            if let Some(length) = response.content_length() {
                if start.saturating_add(length) > size {
                    return Err(fail(RegistryError::Invalid(format!(
                        "blob {} is served with {} bytes, more than the {size} its descriptor declares",
                        self.digest,
                        start.saturating_add(length)
                    ))));
                }
            }
            let state = self.state.clone();
            let url = self.session.blob_url(&self.digest);
            // (response, position of its next byte in the blob, bytes to skip: a registry
            // that ignored the Range header sends the blob from its start).
            let reading = Some((response, start, offset - start));
            let stream = futures::stream::unfold(reading, move |reading| {
                let state = state.clone();
                let url = url.clone();
                async move {
                    let (mut response, at, skip) = reading?;
                    match next_piece(&mut response, at, skip, size, &state).await {
                        Ok(None) => None,
                        Ok(Some((piece, at))) => Some((Ok(piece), Some((response, at, 0)))),
                        Err((kind, message)) => {
                            let message = format!("Get \"{url}\": {message}");
                            state.lock().unwrap().failure = Some(message.clone());
                            Some((Err(std::io::Error::new(kind, message)), None))
                        }
                    }
                }
            });
            Ok(Box::pin(stream) as ByteStream)
        })
    }
}

/// The next bytes of a source blob's body (which is at `at` in the blob, `skip` bytes before
/// where the upload wants it), hashed, and where the body is after them; `None` at its end.
/// A body that ends early or runs past `size` is an error.
async fn next_piece(
    response: &mut reqwest::Response,
    mut at: u64,
    mut skip: u64,
    size: u64,
    state: &Mutex<ReadState>,
) -> Result<Option<(Bytes, u64)>, (std::io::ErrorKind, String)> {
    use std::io::ErrorKind;
    loop {
        let mut piece = match response.chunk().await {
            Ok(Some(piece)) => piece,
            Ok(None) if at < size => {
                let message = format!("the blob ended after {at} of its {size} bytes");
                return Err((ErrorKind::UnexpectedEof, message));
            }
            Ok(None) => return Ok(None),
            Err(e) => {
                let message = crate::client::describe_http_error(&e);
                return Err((ErrorKind::Other, message));
            }
        };
        if skip > 0 {
            let n = (skip as usize).min(piece.len());
            piece.advance(n);
            skip -= n as u64;
            at += n as u64;
        }
        if piece.is_empty() {
            continue;
        }
        if at + piece.len() as u64 > size {
            let message =
                format!("the blob is longer than the {size} bytes its descriptor declares");
            return Err((ErrorKind::InvalidData, message));
        }
        state.lock().unwrap().hash(at, &piece);
        let end = at + piece.len() as u64;
        return Ok(Some((piece, end)));
    }
}

/// A failure at the source, naming it.
fn source_error(err: RegistryError, reference: &Reference) -> BusError {
    let translated = translate(err, reference);
    BusError::new(
        translated.kind,
        format!("source {}: {}", reference.name(), translated.message),
    )
}

/// A failure at the destination, naming it. `translate` speaks of pulls; these are pushes.
fn destination_error(err: RegistryError, reference: &Reference) -> BusError {
    let kind = match &err {
        RegistryError::Code { code, status, .. } => match code.as_str() {
            "UNAUTHORIZED" => ErrorKind::Unauthorized,
            "DENIED" => ErrorKind::Forbidden,
            "NAME_UNKNOWN" | "BLOB_UNKNOWN" | "MANIFEST_BLOB_UNKNOWN" => ErrorKind::NotFound,
            "TOOMANYREQUESTS" | "UNAVAILABLE" => ErrorKind::Unavailable,
            _ if *status >= 500 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        },
        RegistryError::Transport { .. } => ErrorKind::Unavailable,
        RegistryError::Status { status } if status.starts_with('5') => ErrorKind::Unavailable,
        RegistryError::Status { .. } => ErrorKind::Internal,
        RegistryError::NoBasicCredentials { .. } | RegistryError::Token(_) => {
            ErrorKind::Unauthorized
        }
        RegistryError::Invalid(_) => ErrorKind::Invalid,
    };
    BusError::new(kind, format!("destination {}: {err}", reference.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tag_names_are_tags() {
        for ok in ["latest", "v1.2.3", "_x", "a-b_c.d", &"a".repeat(128)] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in [
            "",
            "../../victim/manifests/latest",
            "a/b",
            "x?digest=1",
            "x#y",
            "%2e%2e",
            ".hidden",
            "-dash",
            &"a".repeat(129),
        ] {
            assert!(!valid_tag(bad), "{bad}");
        }
        assert!(foreign(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        ));
        assert!(foreign(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        ));
        assert!(!foreign("application/vnd.oci.image.layer.v1.tar+gzip"));
    }

    #[test]
    fn read_state_hashes_each_byte_once_across_resumes() {
        let data = b"0123456789abcdef";
        let mut state = ReadState::default();
        state.hash(0, &data[..6]);
        // A resume from an earlier offset overlaps what was hashed.
        state.hash(4, &data[4..10]);
        state.hash(10, &data[10..]);
        assert!(!state.mismatch(&sha256_of(data), data.len() as u64));
        assert!(state.mismatch(&sha256_of(b"other"), data.len() as u64));
    }

    #[test]
    fn read_state_draws_no_conclusion_after_a_gap() {
        let mut state = ReadState::default();
        state.hash(0, b"abc");
        state.hash(5, b"fgh");
        assert!(!state.mismatch(&sha256_of(b"x"), 8));
    }

    #[test]
    fn the_summary_line_counts_everything() {
        let summary = SyncSummary {
            copied: vec!["a".into(), "b".into()],
            skipped: vec!["c".into()],
            failed: vec![],
            manifests: 4,
            blobs_copied: 5,
            blobs_mounted: 1,
            blobs_present: 2,
            bytes_copied: 1_500_000,
            ..Default::default()
        };
        assert_eq!(
            describe(&summary),
            "Synced 2 tags (1 skipped, 0 failed): 5 blobs copied (1.5MB), 1 mounted, 2 already there, 4 manifests"
        );
    }
}

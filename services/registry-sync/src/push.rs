//! `docker push`: sends a stored image to a registry as a Docker schema2 manifest. Layers stored
//! uncompressed are gzip-compressed on the way, as dockerd does; blobs the repository already
//! has are skipped, blobs another repository of the registry has are mounted.

use std::future::Future;

use bytes::Bytes;
use serde_json::json;
use wharf_bus::digest::{sha256_of, short_id};
use wharf_bus::image::{ImageRecord, LayerInfo};
use wharf_bus::progress::{JsonMessage, ProgressDetail};
use wharf_bus::reference::Reference;
use wharf_bus::registry::PushRequest;
use wharf_bus::{BusError, ErrorKind};

use crate::auth::Credentials;
use futures::future::BoxFuture;
use wharf_bus::blob::BlobStream;

use crate::client::{ByteStream, Registries, RegistryError, Session, UploadSource};
use crate::pull::{translate, Progress};

pub const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const CONFIG_V1: &str = "application/vnd.docker.container.image.v1+json";
pub const LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What a push needs from image-store.
pub trait ImageSource: Send + Sync {
    /// The image a normalized reference names; `NotFound` when there is none.
    fn resolve(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<ImageRecord, BusError>> + Send;
    /// The references (normalized `name:tag` and `name@digest`) of repository `name`, in any
    /// order.
    fn references(&self, name: &str) -> impl Future<Output = Result<Vec<String>, BusError>> + Send;
    /// A blob's bytes (small blobs: configs).
    fn read(&self, digest: &str) -> impl Future<Output = Result<Bytes, BusError>> + Send;
    /// A blob's bytes from `offset` on, as a stream.
    fn open(
        &self,
        digest: &str,
        offset: u64,
    ) -> impl Future<Output = Result<BlobStream, BusError>> + Send;
    /// Records that `record` is known in a registry as `repo_digest` (`name@sha256:...`).
    fn add_repo_digest(
        &self,
        record: &ImageRecord,
        repo_digest: &str,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// A push whose images and registry are known: what is left can only fail in the stream.
pub struct Plan {
    reference: Reference,
    /// The tags to push, each with its image, in dockerd's order.
    images: Vec<(String, ImageRecord)>,
    /// The registry; or why nothing can be pushed, said once the repository is named.
    session: Result<Session, BusError>,
    /// Other repositories of the registry the images are known in (cross-repository mounts).
    mount_from: Vec<String>,
}

/// Finds the images and the registry endpoint. Errors here are dockerd's answers before output.
///
/// A reference with a tag pushes that tag; a bare repository name (`docker push --all-tags`)
/// pushes every tag of the repository, sorted, as dockerd does.
pub async fn resolve<S: ImageSource>(
    registries: &Registries,
    store: &S,
    request: &PushRequest,
) -> Result<Plan, BusError> {
    let reference = Reference::parse(&request.reference)?;
    if reference.digest.is_some() {
        return Err(BusError::invalid("cannot push a digest reference"));
    }
    // Tags and digests of the repository, as image-store holds them.
    let named: Vec<Reference> = store
        .references(&reference.name())
        .await?
        .iter()
        .filter_map(|r| Reference::parse(r).ok())
        .filter(|r| r.name() == reference.name())
        .collect();
    let tags: Vec<String> = match &reference.tag {
        Some(tag) => vec![tag.clone()],
        None => {
            let mut tags: Vec<String> = named.iter().filter_map(|r| r.tag.clone()).collect();
            tags.sort();
            tags.dedup();
            tags
        }
    };
    // dockerd says which repository the push refers to before it looks for the images: what
    // is missing is the stream's error, not the request's.
    let refusal = if named.is_empty() {
        Some(BusError::not_found(format!(
            "An image does not exist locally with the tag: {}",
            reference.familiar_name()
        )))
    } else if tags.is_empty() {
        Some(BusError::not_found(format!(
            "no tags to push for {}",
            reference.familiar_name()
        )))
    } else {
        None
    };
    let mut images = Vec::with_capacity(tags.len());
    let mut refusal = refusal;
    if refusal.is_none() {
        for tag in tags {
            match store.resolve(&reference.tagged(&tag).to_string()).await {
                Ok(record) => images.push((tag, record)),
                Err(e) if e.kind == ErrorKind::NotFound => {
                    refusal = Some(BusError::not_found(format!(
                        "tag does not exist: {}",
                        reference.tagged(&tag).familiar()
                    )));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut mount_from: Vec<String> = images
        .iter()
        .flat_map(|(_, record)| record.repo_digests.iter())
        .filter_map(|r| Reference::parse(r).ok())
        .filter(|r| r.domain == reference.domain && r.path != reference.path)
        .map(|r| r.path)
        .collect();
    mount_from.sort();
    mount_from.dedup();
    let session = match refusal {
        Some(refusal) => Err(refusal),
        None => {
            let creds = Credentials::from_auth(request.auth.as_ref());
            let session = registries
                .push_endpoint(&reference.domain, &reference.path, creds, &mount_from)
                .await
                .map_err(|e| push_error(e, &reference))?;
            Ok(session)
        }
    };
    Ok(Plan {
        reference,
        images,
        session,
        mount_from,
    })
}

/// A layer as it goes to the registry.
struct Blob {
    media_type: String,
    digest: String,
    size: u64,
}

/// The result of a push: the repository, and each tag's manifest digest and size.
pub struct Pushed {
    pub name: String,
    pub tags: Vec<(String, String, usize)>,
}

/// Pushes the planned images, reporting progress as dockerd does.
pub async fn push<S: ImageSource>(
    plan: Plan,
    store: &S,
    progress: &Progress,
) -> Result<Pushed, BusError> {
    let Plan {
        reference,
        images,
        session,
        mount_from,
    } = plan;
    progress.send(JsonMessage::status(
        format!("The push refers to repository [{}]", reference.name()),
        None,
    ));
    let session = session?;
    let mut pushed = Pushed {
        name: reference.name(),
        tags: Vec::with_capacity(images.len()),
    };
    for (tag, record) in &images {
        let (digest, size) = push_tag(
            &reference,
            tag,
            record,
            &session,
            &mount_from,
            store,
            progress,
        )
        .await?;
        pushed.tags.push((tag.clone(), digest, size));
    }
    Ok(pushed)
}

/// Pushes one tag: its layers, config and manifest.
async fn push_tag<S: ImageSource>(
    reference: &Reference,
    tag: &str,
    record: &ImageRecord,
    session: &Session,
    mount_from: &[String],
    store: &S,
    progress: &Progress,
) -> Result<(String, usize), BusError> {
    let fail = |e| push_error(e, reference);
    // dockerd lists layers top first.
    let layers: Vec<&LayerInfo> = record.layers.iter().rev().collect();
    for layer in &layers {
        progress.layer(&short_id(&layer.diff_id), "Preparing");
    }
    for layer in &layers {
        progress.layer(&short_id(&layer.diff_id), "Waiting");
    }
    // What the registry already has, asked at once for the config and every layer known
    // without reading it.
    let (config_present, present) = futures::future::try_join(
        session.has_blob(&record.id),
        futures::future::try_join_all(layers.iter().map(|layer| async move {
            match known_blob(layer) {
                Some(blob) => session.has_blob(&blob.digest).await.map(Some),
                None => Ok(None),
            }
        })),
    )
    .await
    .map_err(fail)?;
    let mut pushed = Vec::with_capacity(layers.len());
    for (layer, present) in layers.iter().zip(present) {
        let id = short_id(&layer.diff_id);
        // A layer stored uncompressed is known by its compressed digest once compressed here
        // (the gzip is deterministic); until then it is compressed before anything else.
        let mut spool = None;
        let blob = match known_blob(layer) {
            Some(blob) => blob,
            None => {
                let (blob, file) = compress(store, layer).await?;
                spool = Some(file);
                blob
            }
        };
        let present = match present {
            Some(present) => present,
            None => session.has_blob(&blob.digest).await.map_err(fail)?,
        };
        if present {
            progress.layer(&id, "Layer already exists");
        } else if let Some(from) = mount(session, &blob.digest, mount_from).await {
            progress.layer(&id, &format!("Mounted from {from}"));
        } else {
            if spool.is_none() && stored_uncompressed(layer) {
                // Known by its compressed digest from an earlier push, but the bytes that go
                // up must be compressed again (the same way, so to the same digest).
                let (again, file) = compress(store, layer).await?;
                if again.digest != blob.digest {
                    return Err(BusError::internal(format!(
                        "layer {} compressed to {} this time, not {}",
                        layer.digest, again.digest, blob.digest
                    )));
                }
                spool = Some(file);
            }
            let total = blob.size;
            progress.send(JsonMessage::progress("Pushing", &id, 0, Some(total)));
            let report = progress.bar("Pushing", &id, total);
            let result = match &spool {
                Some(file) => {
                    let source = FileSource::new(file, total);
                    session.upload(&blob.digest, &source, &report).await
                }
                None => {
                    let source = StoreSource {
                        store,
                        digest: &layer.digest,
                        size: total,
                    };
                    session.upload(&blob.digest, &source, &report).await
                }
            };
            result.map_err(fail)?;
            progress.send(JsonMessage::progress("Pushing", &id, total, Some(total)));
            progress.layer(&id, "Pushed");
        }
        pushed.push(blob);
    }
    pushed.reverse();
    if !config_present {
        let config = store.read(&record.id).await?;
        session
            .upload_blob(&record.id, config)
            .await
            .map_err(fail)?;
    }
    let manifest = manifest_bytes(&record.id, record.config_size as usize, &pushed);
    let digest = sha256_of(&manifest);
    let size = manifest.len();
    let served = session
        .put_manifest(tag, MANIFEST_V2, manifest)
        .await
        .map_err(fail)?;
    if let Some(served) = served.filter(|d| *d != digest) {
        return Err(BusError::internal(format!(
            "the registry stored the manifest of {tag} as {served}, not {digest}"
        )));
    }
    // `docker images --digests` shows the pushed digest; the push stands even if this fails.
    let repo_digest = format!("{}@{digest}", reference.name());
    if !record.repo_digests.contains(&repo_digest) {
        if let Err(e) = store.add_repo_digest(record, &repo_digest).await {
            tracing::warn!("cannot record {repo_digest} on {}: {e}", record.id);
        }
    }
    progress.send(JsonMessage::status(
        format!("{tag}: digest: {digest} size: {size}"),
        None,
    ));
    progress.send(JsonMessage {
        progress_detail: Some(ProgressDetail::default()),
        aux: Some(json!({"Tag": tag, "Digest": digest, "Size": size})),
        ..Default::default()
    });
    Ok((digest, size))
}

/// A registry failure in dockerd's words for a push: its retry logic unwraps the URL from
/// a missing-credentials error, so the CLI prints only `no basic auth credentials`.
fn push_error(err: RegistryError, reference: &Reference) -> BusError {
    match err {
        RegistryError::NoBasicCredentials { .. } => {
            BusError::unauthorized("no basic auth credentials")
        }
        other => translate(other, reference),
    }
}

/// Tries each repository in turn; the first that mounts names it.
async fn mount(session: &Session, digest: &str, from: &[String]) -> Option<String> {
    for repo in from {
        match session.mount_blob(digest, repo).await {
            Ok(true) => return Some(repo.clone()),
            Ok(false) => {}
            Err(e) => tracing::debug!("cannot mount {digest} from {repo}: {e}"),
        }
    }
    None
}

/// Compressed digests of layers stored uncompressed, by stored digest: a second push of a
/// layer asks the registry before compressing again. Bounded; forgetting only costs time.
static COMPRESSED: std::sync::Mutex<Option<std::collections::HashMap<String, (String, u64)>>> =
    std::sync::Mutex::new(None);
const COMPRESSED_REMEMBERED: usize = 4096;

/// A layer the store holds as a plain tar: it goes up gzip-compressed.
fn stored_uncompressed(layer: &LayerInfo) -> bool {
    matches!(layer.media_type.as_str(), LAYER_TAR | OCI_LAYER_TAR)
}

/// A layer as pushed, if known without reading it: compressed layers as stored, uncompressed
/// ones once compressed before.
fn known_blob(layer: &LayerInfo) -> Option<Blob> {
    match layer.media_type.as_str() {
        LAYER_TAR | OCI_LAYER_TAR => {
            let known = COMPRESSED.lock().unwrap();
            let (digest, size) = known.as_ref()?.get(&layer.digest)?.clone();
            Some(Blob {
                media_type: LAYER_GZIP.into(),
                digest,
                size,
            })
        }
        OCI_LAYER_GZIP => Some(Blob {
            media_type: LAYER_GZIP.into(),
            digest: layer.digest.clone(),
            size: layer.size,
        }),
        other => Some(Blob {
            media_type: other.to_string(),
            digest: layer.digest.clone(),
            size: layer.size,
        }),
    }
}

/// gzip-compresses an uncompressed layer into an unnamed temporary file as it streams from
/// the store, hashing the result: the file is the upload's source, gone when dropped.
async fn compress<S: ImageSource>(
    store: &S,
    layer: &LayerInfo,
) -> Result<(Blob, std::fs::File), BusError> {
    use futures::StreamExt;
    let failed = |e: &dyn std::fmt::Display| {
        BusError::internal(format!("compressing layer {}: {e}", layer.digest))
    };
    let file = tokio::task::spawn_blocking(tempfile::tempfile)
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))?;
    let mut encoder = Some(gzip_encoder(HashingWriter::new(file)));
    let mut stream = store.open(&layer.digest, 0).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let mut e = encoder
            .take()
            .expect("the encoder is put back after each write");
        e = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            e.write_all(&chunk).map(|()| e)
        })
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))?;
        encoder = Some(e);
    }
    let e = encoder
        .take()
        .expect("the encoder is put back after each write");
    let (file, digest, size) = tokio::task::spawn_blocking(move || e.finish()?.finish())
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))?;
    let mut known = COMPRESSED.lock().unwrap();
    let known = known.get_or_insert_with(Default::default);
    if known.len() >= COMPRESSED_REMEMBERED {
        known.clear();
    }
    known.insert(layer.digest.clone(), (digest.clone(), size));
    let blob = Blob {
        media_type: LAYER_GZIP.into(),
        digest,
        size,
    };
    Ok((blob, file))
}

/// gzip with a fixed header (no name, no time), so the same layer always compresses to the
/// same digest and a second push finds it.
fn gzip_encoder<W: std::io::Write>(w: W) -> flate2::write::GzEncoder<W> {
    flate2::write::GzEncoder::new(w, flate2::Compression::default())
}

/// A file writer that hashes and counts what it writes.
struct HashingWriter {
    file: std::fs::File,
    hasher: sha2::Sha256,
    written: u64,
}

impl HashingWriter {
    fn new(file: std::fs::File) -> HashingWriter {
        use sha2::Digest;
        HashingWriter {
            file,
            hasher: sha2::Sha256::new(),
            written: 0,
        }
    }

    /// The file, the `sha256:` digest and the size of what was written.
    fn finish(self) -> std::io::Result<(std::fs::File, String, u64)> {
        use std::io::Write;
        let mut file = self.file;
        file.flush()?;
        let digest = wharf_bus::digest::finish(self.hasher);
        Ok((file, digest, self.written))
    }
}

impl std::io::Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A blob of the store as an upload source.
struct StoreSource<'a, S> {
    store: &'a S,
    digest: &'a str,
    size: u64,
}

impl<S: ImageSource> UploadSource for StoreSource<'_, S> {
    fn size(&self) -> u64 {
        self.size
    }
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<ByteStream, RegistryError>> {
        Box::pin(async move {
            use futures::TryStreamExt;
            let stream = self
                .store
                .open(self.digest, offset)
                .await
                .map_err(|e| RegistryError::Invalid(format!("reading {}: {e}", self.digest)))?;
            Ok(Box::pin(stream.map_err(std::io::Error::other)) as ByteStream)
        })
    }
}

/// A compressed layer's temporary file as an upload source.
struct FileSource<'a> {
    file: &'a std::fs::File,
    size: u64,
}

impl<'a> FileSource<'a> {
    fn new(file: &'a std::fs::File, size: u64) -> FileSource<'a> {
        FileSource { file, size }
    }
}

impl UploadSource for FileSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<ByteStream, RegistryError>> {
        let opened = self.file.try_clone();
        Box::pin(async move {
            let failed = |e: std::io::Error| {
                RegistryError::Invalid(format!("reading a compressed layer: {e}"))
            };
            // A clone shares the offset: reading through positioned reads keeps clones apart.
            let file = opened.map_err(failed)?;
            let stream = futures::stream::unfold(Some((file, offset)), |state| async move {
                let (file, at) = state?;
                let read = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0; FILE_CHUNK];
                    let n = file.read_at(&mut buf, at)?;
                    buf.truncate(n);
                    Ok::<_, std::io::Error>((file, buf))
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
                match read {
                    Ok((_, buf)) if buf.is_empty() => None,
                    Ok((file, buf)) => {
                        let next = at + buf.len() as u64;
                        Some((Ok(Bytes::from(buf)), Some((file, next))))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            });
            Ok(Box::pin(stream) as ByteStream)
        })
    }
}

/// How much of a temporary file one chunk of an upload reads.
const FILE_CHUNK: usize = 1 << 20;

/// The schema2 manifest of a config and its layers, base first, in dockerd's layout (Go's
/// `json.MarshalIndent` with three spaces), so the same image pushes to the same digest.
fn manifest_bytes(config_digest: &str, config_size: usize, layers: &[Blob]) -> Bytes {
    use serde::Serialize;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_V2,
        "config": {"mediaType": CONFIG_V1, "size": config_size, "digest": config_digest},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "size": l.size,
            "digest": l.digest,
        })).collect::<Vec<_>>(),
    });
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    manifest
        .serialize(&mut serializer)
        .expect("a manifest serializes");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = gzip_encoder(Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_is_deterministic_so_a_second_push_finds_the_layer() {
        let data = b"a layer tar, more or less".repeat(1000);
        let first = gzip(&data);
        assert_eq!(first, gzip(&data));
        let mut back = Vec::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(&first[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn hashing_writer_digests_what_lands_in_the_file() {
        use std::io::{Read, Seek, Write};
        let mut w = HashingWriter::new(tempfile::tempfile().unwrap());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (mut file, digest, size) = w.finish().unwrap();
        assert_eq!(size, 11);
        assert_eq!(digest, sha256_of(b"hello world"));
        let mut back = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut back).unwrap();
        assert_eq!(back, "hello world");
    }

    #[test]
    fn manifest_is_schema2_with_the_layers_as_pushed() {
        let layer = Blob {
            media_type: LAYER_GZIP.into(),
            digest: "sha256:ab".into(),
            size: 5,
        };
        let bytes = manifest_bytes("sha256:cd", 42, &[layer]);
        // dockerd's layout, byte for byte (Go's MarshalIndent with three spaces).
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with("{\n   \"schemaVersion\": 2,\n   \"mediaType\": "),
            "{text}"
        );
        assert!(text.contains("\n      \"mediaType\": "), "{text}");
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], MANIFEST_V2);
        assert_eq!(
            m["config"],
            json!({"mediaType": CONFIG_V1, "size": 42, "digest": "sha256:cd"})
        );
        assert_eq!(
            m["layers"],
            json!([{"mediaType": LAYER_GZIP, "size": 5, "digest": "sha256:ab"}])
        );
    }
}

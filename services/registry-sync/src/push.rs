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
use crate::client::{Registries, RegistryError, Session};
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
    /// A blob's bytes.
    fn read(&self, digest: &str) -> impl Future<Output = Result<Bytes, BusError>> + Send;
    /// Records that `record` is known in a registry as `repo_digest` (`name@sha256:...`).
    fn add_repo_digest(
        &self,
        record: &ImageRecord,
        repo_digest: &str,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// A push whose image and registry are known: what is left can only fail in the stream.
pub struct Plan {
    reference: Reference,
    tag: String,
    record: ImageRecord,
    session: Session,
}

/// Finds the image and the registry endpoint. Errors here are dockerd's answers before output.
pub async fn resolve<S: ImageSource>(
    registries: &Registries,
    store: &S,
    request: &PushRequest,
) -> Result<Plan, BusError> {
    let reference = Reference::parse(&request.reference)?.with_default_tag();
    let tag = reference.tag.clone().unwrap_or_else(|| "latest".into());
    let record = match store.resolve(&reference.tagged(&tag).to_string()).await {
        Ok(record) => record,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(BusError::not_found(format!(
                "An image does not exist locally with the tag: {}",
                reference.familiar_name()
            )))
        }
        Err(e) => return Err(e),
    };
    // The first endpoint that answers (https before http for insecure registries), as pull.
    let creds = Credentials::from_auth(request.auth.as_ref());
    let mut last = None;
    let mut session = None;
    for endpoint in registries.endpoints(&reference.domain) {
        if endpoint.mirror {
            continue;
        }
        let candidate = registries.push_session(endpoint, &reference.path, creds.clone());
        match candidate.ping().await {
            Ok(()) => {
                session = Some(candidate);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let session = match session {
        Some(session) => session,
        None => {
            return Err(push_error(
                last.unwrap_or(RegistryError::Invalid("no endpoint for registry".into())),
                &reference,
            ))
        }
    };
    Ok(Plan {
        reference,
        tag,
        record,
        session,
    })
}

/// A blob as it goes to the registry.
struct Blob {
    media_type: String,
    digest: String,
    data: Bytes,
}

/// The result of a push: the manifest digest and size.
pub struct Pushed {
    pub digest: String,
    pub size: usize,
    pub name: String,
}

/// Pushes the planned image, reporting progress as dockerd does.
pub async fn push<S: ImageSource>(
    plan: Plan,
    store: &S,
    progress: &Progress,
) -> Result<Pushed, BusError> {
    let Plan {
        reference,
        tag,
        record,
        session,
    } = plan;
    let fail = |e| push_error(e, &reference);
    progress.send(JsonMessage::status(
        format!("The push refers to repository [{}]", reference.name()),
        None,
    ));
    // dockerd lists layers top first.
    let layers: Vec<&LayerInfo> = record.layers.iter().rev().collect();
    for layer in &layers {
        progress.layer(&short_id(&layer.diff_id), "Preparing");
    }
    for layer in &layers {
        progress.layer(&short_id(&layer.diff_id), "Waiting");
    }
    // Repositories of the same registry the image is known in, for cross-repository mounts.
    let mount_from: Vec<String> = record
        .repo_digests
        .iter()
        .filter_map(|r| Reference::parse(r).ok())
        .filter(|r| r.domain == reference.domain && r.path != reference.path)
        .map(|r| r.path)
        .collect();
    let mut pushed = Vec::with_capacity(layers.len());
    for layer in &layers {
        let id = short_id(&layer.diff_id);
        let blob = layer_blob(store, layer).await?;
        if session.has_blob(&blob.digest).await.map_err(fail)? {
            progress.layer(&id, "Layer already exists");
        } else if let Some(from) = mount(&session, &blob.digest, &mount_from).await {
            progress.layer(&id, &format!("Mounted from {from}"));
        } else {
            let total = blob.data.len() as u64;
            progress.send(JsonMessage::progress("Pushing", &id, 0, Some(total)));
            session
                .upload_blob(&blob.digest, blob.data.clone())
                .await
                .map_err(fail)?;
            progress.send(JsonMessage::progress("Pushing", &id, total, Some(total)));
            progress.layer(&id, "Pushed");
        }
        pushed.push(blob);
    }
    pushed.reverse();
    let config = store.read(&record.id).await?;
    if !session.has_blob(&record.id).await.map_err(fail)? {
        session
            .upload_blob(&record.id, config.clone())
            .await
            .map_err(fail)?;
    }
    let manifest = manifest_bytes(&record.id, config.len(), &pushed);
    let digest = sha256_of(&manifest);
    let size = manifest.len();
    session
        .put_manifest(&tag, MANIFEST_V2, manifest)
        .await
        .map_err(fail)?;
    // `docker images --digests` shows the pushed digest; the push stands even if this fails.
    let repo_digest = format!("{}@{digest}", reference.name());
    if let Err(e) = store.add_repo_digest(&record, &repo_digest).await {
        tracing::warn!("cannot record {repo_digest} on {}: {e}", record.id);
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
    Ok(Pushed {
        digest,
        size,
        name: reference.name(),
    })
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

/// A layer as pushed: compressed layers as stored, uncompressed ones gzip-compressed.
async fn layer_blob<S: ImageSource>(store: &S, layer: &LayerInfo) -> Result<Blob, BusError> {
    let data = store.read(&layer.digest).await?;
    match layer.media_type.as_str() {
        LAYER_TAR | OCI_LAYER_TAR => {
            let (data, digest) = tokio::task::spawn_blocking(move || {
                let compressed = gzip(&data)?;
                let digest = sha256_of(&compressed);
                Ok::<_, std::io::Error>((Bytes::from(compressed), digest))
            })
            .await
            .map_err(|e| BusError::internal(format!("compressing a layer: {e}")))?
            .map_err(|e| BusError::internal(format!("compressing a layer: {e}")))?;
            Ok(Blob {
                media_type: LAYER_GZIP.into(),
                digest,
                data,
            })
        }
        OCI_LAYER_GZIP => Ok(Blob {
            media_type: LAYER_GZIP.into(),
            digest: layer.digest.clone(),
            data,
        }),
        other => Ok(Blob {
            media_type: other.to_string(),
            digest: layer.digest.clone(),
            data,
        }),
    }
}

/// gzip with a fixed header (no name, no time), so the same layer always compresses to the
/// same digest and a second push finds it.
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}

/// The schema2 manifest of a config and its layers, base first.
fn manifest_bytes(config_digest: &str, config_size: usize, layers: &[Blob]) -> Bytes {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_V2,
        "config": {"mediaType": CONFIG_V1, "size": config_size, "digest": config_digest},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "size": l.data.len(),
            "digest": l.digest,
        })).collect::<Vec<_>>(),
    });
    Bytes::from(serde_json::to_vec_pretty(&manifest).expect("a manifest serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_deterministic_so_a_second_push_finds_the_layer() {
        let data = b"a layer tar, more or less".repeat(1000);
        let first = gzip(&data).unwrap();
        assert_eq!(first, gzip(&data).unwrap());
        let mut back = Vec::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(&first[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn manifest_is_schema2_with_the_layers_as_pushed() {
        let layer = Blob {
            media_type: LAYER_GZIP.into(),
            digest: "sha256:ab".into(),
            data: Bytes::from_static(b"12345"),
        };
        let bytes = manifest_bytes("sha256:cd", 42, &[layer]);
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

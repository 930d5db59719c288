//! `manifest.inspect`, behind `GET /distribution/{name}/json`: what a registry serves for a
//! reference, read without pulling it, as dockerd's distribution router answers (moby's
//! `api/server/router/distribution`).
//!
//! The descriptor is the manifest or index the reference names: its media type as the body says
//! it, its digest (checked against the body) and its size. The platforms are every entry's of an
//! index (attestation entries' `unknown/unknown` too), or the os and architecture in the config
//! of a Docker schema 2 image manifest. dockerd names none for an OCI image manifest (its switch
//! has no case for one) and none when the config cannot be read; neither does this.
//! Registry failures keep the registry's words and kind (`manifest unknown: manifest unknown` is
//! a 404), as dockerd passes its distribution client's errors through.

use serde::{Deserialize, Deserializer};
use wharf_bus::digest::{is_sha256, sha256_of};
use wharf_bus::reference::Reference;
use wharf_bus::registry::{
    DistributionInspect, DistributionRequest, ManifestDescriptor, OciPlatform,
};
use wharf_bus::BusError;

use crate::auth::Credentials;
use crate::client::{FetchedManifest, Registries, RegistryError, Session};
use crate::manifest::{self, Descriptor, Manifest};
use crate::pull::{fetch_config, verify_manifest_digest};

/// Asks the registry of `request.reference` for its manifest: the first endpoint that answers
/// wins (mirrors move on after any error, others only after transport errors, as for a pull).
pub async fn inspect(
    registries: &Registries,
    request: &DistributionRequest,
) -> Result<DistributionInspect, BusError> {
    let reference = Reference::parse(&request.reference)?.with_default_tag();
    let creds = Credentials::from_auth(request.auth.as_ref());
    let answered = registries
        .first_answer(&reference.domain, &reference.path, &creds, |session| {
            let reference = reference.clone();
            Box::pin(async move { fetch(session, &reference).await })
        })
        .await;
    match answered {
        Ok((session, fetched)) => describe(&session, &reference, fetched).await,
        Err(e) => Err(registry_error(e)),
    }
}

/// A fetched manifest, and the digest it was asked for by, if any.
type Fetched = (FetchedManifest, Option<String>);

/// The manifest, asked for as dockerd's distribution client asks: a digest with a `GET` of it;
/// a tag with a `HEAD` for its digest first, then a `GET` of that digest, or of the tag when the
/// `HEAD` did not tell it (the `GET`'s error is then the one reported).
async fn fetch(session: &Session, reference: &Reference) -> Result<Fetched, RegistryError> {
    let tag = match (&reference.digest, &reference.tag) {
        (Some(digest), _) => return Ok((session.manifest(digest).await?, Some(digest.clone()))),
        (None, Some(tag)) => tag.as_str(),
        (None, None) => wharf_bus::reference::DEFAULT_TAG,
    };
    match session.manifest_digest(tag).await {
        Ok(Some(digest)) if is_sha256(&digest) => {
            Ok((session.manifest(&digest).await?, Some(digest)))
        }
        // Failures of the exchange itself end it there, as in dockerd's client.
        Err(e @ (RegistryError::Transport { .. } | RegistryError::NoBasicCredentials { .. })) => {
            Err(e)
        }
        _ => Ok((session.manifest(tag).await?, None)),
    }
}

/// dockerd's answer for a fetched manifest; its bytes must be the digest they were asked or
/// announced by.
async fn describe(
    session: &Session,
    reference: &Reference,
    (fetched, asked): Fetched,
) -> Result<DistributionInspect, BusError> {
    let announced = fetched
        .docker_content_digest
        .clone()
        .filter(|d| d.starts_with("sha256:"));
    let digest = match asked.or(announced) {
        Some(d) => {
            verify_manifest_digest(&fetched.body, &d)?;
            d
        }
        None => sha256_of(&fetched.body),
    };
    let parsed = manifest::parse(&fetched.body, &fetched.content_type, &reference.to_string())
        .map_err(|e| BusError::internal(e.to_string()))?;
    let (media_type, platforms) = match parsed {
        Manifest::Index(index) => (index.media_type, index_platforms(&fetched.body)),
        Manifest::Image(image) if image.media_type == manifest::DOCKER_MANIFEST => {
            let platform = config_platform(session, reference, &image.config).await;
            (image.media_type, platform.map(|p| vec![p]))
        }
        Manifest::Image(image) => (image.media_type, None),
    };
    Ok(DistributionInspect {
        descriptor: ManifestDescriptor {
            media_type,
            digest,
            size: fetched.body.len() as u64,
        },
        platforms,
    })
}

/// A platform as Go's `json.Unmarshal` reads one into image-spec's `Platform`: missing and
/// `null` fields are empty.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPlatform {
    #[serde(deserialize_with = "null_is_empty")]
    architecture: String,
    #[serde(deserialize_with = "null_is_empty")]
    os: String,
    #[serde(rename = "os.version", deserialize_with = "null_is_empty")]
    os_version: String,
    #[serde(rename = "os.features", deserialize_with = "null_is_empty")]
    os_features: Vec<String>,
    #[serde(deserialize_with = "null_is_empty")]
    variant: String,
}

fn null_is_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl From<RawPlatform> for OciPlatform {
    fn from(p: RawPlatform) -> OciPlatform {
        OciPlatform {
            architecture: p.architecture,
            os: p.os,
            os_version: p.os_version,
            os_features: p.os_features,
            variant: p.variant,
        }
    }
}

/// The platform of each entry of an index, in the index's order; an entry without one counts
/// as an empty platform, as in dockerd. `None` for an index without entries.
fn index_platforms(body: &[u8]) -> Option<Vec<OciPlatform>> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Entries {
        #[serde(deserialize_with = "null_is_empty")]
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Entry {
        #[serde(deserialize_with = "null_is_empty")]
        platform: RawPlatform,
    }
    let entries: Entries = serde_json::from_slice(body).ok()?;
    let platforms: Vec<OciPlatform> = entries
        .manifests
        .into_iter()
        .map(|e| e.platform.into())
        .collect();
    (!platforms.is_empty()).then_some(platforms)
}

/// The os and architecture (and version, features, variant) a Docker image's config names;
/// `None` when the config cannot be read or names neither, as dockerd leaves it out then.
async fn config_platform(
    session: &Session,
    reference: &Reference,
    config: &Descriptor,
) -> Option<OciPlatform> {
    if config.size > manifest::MAX_CONFIG_SIZE {
        return None;
    }
    let bytes = fetch_config(session, reference, config)
        .await
        .map_err(|e| tracing::debug!("no platform from the config of {reference}: {e}"))
        .ok()?;
    let platform: RawPlatform = serde_json::from_slice(&bytes).ok()?;
    (!platform.os.is_empty() || !platform.architecture.is_empty()).then(|| platform.into())
}

/// A registry failure as dockerd's distribution endpoint answers it: the registry's words, with
/// the status its error code stands for.
fn registry_error(err: RegistryError) -> BusError {
    let text = err.to_string();
    match &err {
        RegistryError::Code { code, .. } => match code.as_str() {
            "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN" => BusError::not_found(text),
            "UNAUTHORIZED" => BusError::unauthorized(text),
            "DENIED" => BusError::forbidden(text),
            "NAME_INVALID" | "TAG_INVALID" | "MANIFEST_INVALID" | "DIGEST_INVALID" => {
                BusError::invalid(text)
            }
            "TOOMANYREQUESTS" | "UNAVAILABLE" => BusError::unavailable(text),
            _ => BusError::internal(text),
        },
        // Only a tag's `HEAD` meets the challenge without credentials (a digest's is a `GET`).
        RegistryError::NoBasicCredentials { url } if !url.contains("/manifests/sha256:") => {
            BusError::internal(format!("Head \"{url}\": no basic auth credentials"))
        }
        RegistryError::Invalid(_) => BusError::invalid(text),
        _ => BusError::internal(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_names_every_entrys_platform_in_order() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_INDEX,
            "manifests": [
                {"mediaType": manifest::OCI_MANIFEST, "digest": "sha256:1", "size": 1,
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": manifest::OCI_MANIFEST, "digest": "sha256:2", "size": 1,
                 "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
                {"mediaType": manifest::OCI_MANIFEST, "digest": "sha256:3", "size": 1,
                 "platform": {"architecture": "amd64", "os": "windows",
                              "os.version": "10.0.17763.1", "os.features": null}},
                {"mediaType": manifest::OCI_MANIFEST, "digest": "sha256:4", "size": 1}
            ]
        });
        let platforms = index_platforms(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            serde_json::to_value(&platforms).unwrap(),
            serde_json::json!([
                {"architecture": "amd64", "os": "linux"},
                {"architecture": "arm64", "os": "linux", "variant": "v8"},
                {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1"},
                {"architecture": "", "os": ""}
            ])
        );
        let empty = serde_json::json!({"schemaVersion": 2, "manifests": []});
        assert_eq!(index_platforms(empty.to_string().as_bytes()), None);
    }

    #[test]
    fn registry_errors_keep_their_words_and_status() {
        let code = |code: &str, message: &str, status: u16| RegistryError::Code {
            status,
            code: code.into(),
            message: message.into(),
        };
        let err = registry_error(code("MANIFEST_UNKNOWN", "manifest unknown", 404));
        assert_eq!(err.kind, wharf_bus::ErrorKind::NotFound);
        assert_eq!(err.message, "manifest unknown: manifest unknown");
        let err = registry_error(code(
            "NAME_UNKNOWN",
            "repository name not known to registry",
            404,
        ));
        assert_eq!(
            err.message,
            "name unknown: repository name not known to registry"
        );
        let err = registry_error(code("UNAUTHORIZED", "authentication required", 401));
        assert_eq!(err.kind, wharf_bus::ErrorKind::Unauthorized);
        let err = registry_error(RegistryError::Transport {
            url: "http://127.0.0.1:1/v2/".into(),
            message: "dial tcp 127.0.0.1:1: connect: connection refused".into(),
        });
        assert_eq!(err.kind, wharf_bus::ErrorKind::Internal);
    }
}

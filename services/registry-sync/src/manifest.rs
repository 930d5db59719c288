//! Manifests and indexes as registries serve them: parsing, media type checks and platform
//! selection. Only Docker schema 2 and OCI formats are accepted; schema 1 is long gone from dockerd.

use serde::{Deserialize, Deserializer};
use wharf_bus::digest::is_sha256;
use wharf_bus::registry::Platform;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Layer media types image-store can unpack: gzip, zstd and plain tars, Docker or OCI spelling.
pub const LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
];

/// What the `Accept` header of a manifest request lists, most wanted first.
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json";

/// Largest manifest accepted: registries cap theirs at 4 MiB too.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Largest image config accepted: image-store refuses bigger ones at commit, so a manifest
/// declaring one is refused before anything is downloaded.
pub const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("unsupported manifest format")]
    Format,
    #[error("Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. Suggest the author of {0} to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/")]
    Schema1(String),
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("Encountered remote \"{0}\"(unknown) when fetching")]
    NotAnImage(String),
    #[error("unsupported media type {0}")]
    LayerType(String),
    #[error("{0}")]
    NoMatch(String),
    #[error("invalid descriptor digest {0}")]
    Digest(String),
    #[error("invalid manifest: image config of {0} bytes is larger than the {MAX_CONFIG_SIZE}-byte limit")]
    ConfigTooLarge(u64),
    /// dockerd's words (20.10 and later) when the config names another platform.
    #[error("image with reference {reference} was found but does not match the specified platform: wanted {wanted}, actual: {actual}")]
    PlatformMismatch {
        reference: String,
        wanted: String,
        actual: String,
    },
}

/// A content descriptor (`mediaType`, `digest`, `size`, optional platform).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    /// OCI sizes are int64: negative ones are refused as malformed, never wrapped around.
    #[serde(deserialize_with = "descriptor_size")]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<DescriptorPlatform>,
}

fn descriptor_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let size = i64::deserialize(deserializer)?;
    u64::try_from(size)
        .map_err(|_| serde::de::Error::custom(format!("negative descriptor size {size}")))
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DescriptorPlatform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image manifest (Docker schema 2 or OCI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest list or OCI index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(Index),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// Parses a manifest body. `content_type` is the response's `Content-Type`; the body's own
/// `mediaType` wins when present, and an OCI body without one is told apart by its fields.
/// `name` is the reference, for dockerd's schema 1 message.
pub fn parse(body: &[u8], content_type: &str, name: &str) -> Result<Manifest, ManifestError> {
    let content_type = content_type.split(';').next().unwrap_or("").trim();
    if content_type == DOCKER_SCHEMA1 || content_type == DOCKER_SCHEMA1_SIGNED {
        return Err(ManifestError::Schema1(name.to_string()));
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    if raw.schema_version == Some(1) {
        return Err(ManifestError::Schema1(name.to_string()));
    }
    if raw.schema_version != Some(2) {
        return Err(ManifestError::Format);
    }
    let media_type = match raw.media_type.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None if [
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
            OCI_MANIFEST,
            OCI_INDEX,
        ]
        .contains(&content_type) =>
        {
            content_type.to_string()
        }
        // OCI allows omitting mediaType: an index has `manifests`, a manifest `config`.
        None if raw.manifests.is_some() => OCI_INDEX.to_string(),
        None if raw.config.is_some() => OCI_MANIFEST.to_string(),
        None => return Err(ManifestError::Format),
    };
    let check = |d: &Descriptor| {
        if is_sha256(&d.digest) {
            Ok(())
        } else {
            Err(ManifestError::Digest(d.digest.clone()))
        }
    };
    match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let config = raw
                .config
                .ok_or_else(|| ManifestError::Malformed("manifest has no config".into()))?;
            let layers = raw.layers.unwrap_or_default();
            check(&config)?;
            for l in &layers {
                check(l)?;
            }
            Ok(Manifest::Image(ImageManifest {
                media_type,
                config,
                layers,
            }))
        }
        DOCKER_MANIFEST_LIST | OCI_INDEX => {
            let manifests = raw.manifests.unwrap_or_default();
            for m in &manifests {
                check(m)?;
            }
            Ok(Manifest::Index(Index {
                media_type,
                manifests,
            }))
        }
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(ManifestError::Schema1(name.to_string())),
        _ => Err(ManifestError::Format),
    }
}

impl ImageManifest {
    /// Refuses what dockerd refuses: configs that are not container images (Helm charts, AI
    /// models, ...) and layers it cannot unpack (foreign/non-distributable or unknown types).
    pub fn validate(&self) -> Result<(), ManifestError> {
        let config_type = self.config.media_type.as_str();
        if !config_type.is_empty() && config_type != DOCKER_CONFIG && config_type != OCI_CONFIG {
            return Err(ManifestError::NotAnImage(config_type.to_string()));
        }
        if self.config.size > MAX_CONFIG_SIZE {
            return Err(ManifestError::ConfigTooLarge(self.config.size));
        }
        for layer in &self.layers {
            if !LAYER_TYPES.contains(&layer.media_type.as_str()) {
                return Err(ManifestError::LayerType(layer.media_type.clone()));
            }
        }
        Ok(())
    }
}

/// The platform fields of an image config.
#[derive(Deserialize)]
struct ConfigPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// Checks that the image config `config` is for `wanted` (os and architecture; variants are
/// left to index selection, where an arm/v7 host may take a v6 image). `reference` names the
/// image in dockerd's message.
pub fn check_config_platform(
    config: &[u8],
    wanted: &Platform,
    reference: &str,
) -> Result<(), ManifestError> {
    let have: ConfigPlatform = serde_json::from_slice(config)
        .map_err(|e| ManifestError::Malformed(format!("image config: {e}")))?;
    // The shared parser spells architectures as Go does (`x86_64` is `amd64`).
    let actual = Platform::parse(&format!("{}/{}", have.os, have.architecture));
    let matches = actual
        .as_ref()
        .map(|a| a.os.eq_ignore_ascii_case(&wanted.os) && a.architecture == wanted.architecture)
        .unwrap_or(false);
    if matches {
        return Ok(());
    }
    let mut shown = format!("{}/{}", have.os, have.architecture);
    if let Some(v) = have.variant.filter(|v| !v.is_empty()) {
        shown = format!("{shown}/{v}");
    }
    Err(ManifestError::PlatformMismatch {
        reference: reference.to_string(),
        wanted: wanted.to_string(),
        actual: shown,
    })
}

/// dockerd's text when no entry of an index fits `platform`.
pub fn no_match_message(platform: &Platform) -> String {
    format!("no matching manifest for {platform} in the manifest list entries")
}

/// Variants an entry may have and still run on `want` (containerd's matcher, simplified):
/// arm64 treats a missing variant as v8, arm v7 hosts run v6 and v5 images too.
fn variant_rank(want: &Platform, have: Option<&str>) -> Option<u32> {
    let want_v = want.variant.as_deref();
    let norm = |v: Option<&str>| -> Option<String> {
        match (want.architecture.as_str(), v) {
            ("arm64", None) => Some("v8".into()),
            ("arm", None) => Some("v7".into()),
            (_, v) => v.map(str::to_string),
        }
    };
    let (want_v, have_v) = (norm(want_v), norm(have));
    if want_v == have_v {
        return Some(0);
    }
    match (want_v.as_deref(), have_v.as_deref()) {
        // No variant asked for and none implied: any variant will do, exact absence first.
        (None, _) => Some(1),
        (Some(w), Some(h)) if want.architecture == "arm" => {
            let num = |s: &str| s.trim_start_matches('v').parse::<u32>().ok();
            match (num(w), num(h)) {
                (Some(w), Some(h)) if h < w => Some(w - h),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Picks the entry of `index` for `platform`, the best variant match first and in index order
/// among equals (dockerd keeps the registry's order).
pub fn select_platform<'a>(
    index: &'a Index,
    platform: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let mut best: Option<(u32, &Descriptor)> = None;
    for entry in &index.manifests {
        if entry.media_type != DOCKER_MANIFEST
            && entry.media_type != OCI_MANIFEST
            && !entry.media_type.is_empty()
        {
            continue;
        }
        let Some(p) = &entry.platform else { continue };
        if !p.os.eq_ignore_ascii_case(&platform.os) || p.architecture != platform.architecture {
            continue;
        }
        if let Some(rank) = variant_rank(platform, p.variant.as_deref()) {
            if best.map(|(r, _)| rank < r).unwrap_or(true) {
                best = Some((rank, entry));
            }
        }
    }
    best.map(|(_, d)| d)
        .ok_or_else(|| ManifestError::NoMatch(no_match_message(platform)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn index(entries: &[(&str, &str, Option<&str>, char)]) -> Index {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(os, arch, variant, c)| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({"mediaType": DOCKER_MANIFEST, "digest": digest(*c), "size": 10, "platform": p})
            })
            .collect();
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": manifests});
        match parse(&serde_json::to_vec(&body).unwrap(), "", "x").unwrap() {
            Manifest::Index(i) => i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_schema2_manifest_parses_config_and_layers_in_order() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": digest('c'), "size": 5},
            "layers": [
                {"mediaType": LAYER_TYPES[0], "digest": digest('1'), "size": 100},
                {"mediaType": LAYER_TYPES[0], "digest": digest('2'), "size": 200}
            ]
        });
        let Manifest::Image(m) = parse(body.to_string().as_bytes(), DOCKER_MANIFEST, "x").unwrap()
        else {
            panic!()
        };
        assert_eq!(m.config.digest, digest('c'));
        assert_eq!(
            m.layers.iter().map(|l| l.size).collect::<Vec<_>>(),
            [100, 200]
        );
        m.validate().unwrap();
    }

    #[test]
    fn oci_manifest_without_media_type_is_recognised_by_its_fields() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": OCI_CONFIG, "digest": digest('c'), "size": 5},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": digest('1'), "size": 1}]
        });
        let Manifest::Image(m) = parse(body.to_string().as_bytes(), "", "x").unwrap() else {
            panic!()
        };
        assert_eq!(m.media_type, OCI_MANIFEST);
        m.validate().unwrap();
        let idx = serde_json::json!({"schemaVersion": 2, "manifests": []});
        assert!(matches!(
            parse(idx.to_string().as_bytes(), "", "x").unwrap(),
            Manifest::Index(_)
        ));
    }

    #[test]
    fn schema1_and_unknown_formats_are_refused_like_dockerd() {
        let s1 = serde_json::json!({"schemaVersion": 1, "name": "x"});
        let err = parse(
            s1.to_string().as_bytes(),
            DOCKER_SCHEMA1_SIGNED,
            "docker.io/a/b:1",
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("schema 1 support has been removed"));
        assert!(err.to_string().contains("docker.io/a/b:1"));
        let odd = serde_json::json!({"schemaVersion": 2, "mediaType": "text/plain"});
        assert_eq!(
            parse(odd.to_string().as_bytes(), "", "x").unwrap_err(),
            ManifestError::Format
        );
        assert!(matches!(
            parse(b"{not json", "", "x").unwrap_err(),
            ManifestError::Malformed(_)
        ));
    }

    #[test]
    fn bad_descriptor_digests_are_rejected() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": "sha256:../../etc", "size": 5},
            "layers": []
        });
        assert!(matches!(
            parse(body.to_string().as_bytes(), "", "x").unwrap_err(),
            ManifestError::Digest(_)
        ));
    }

    #[test]
    fn foreign_and_unknown_layers_and_non_image_configs_are_refused() {
        let mk = |config: &str, layer: &str| ImageManifest {
            media_type: DOCKER_MANIFEST.into(),
            config: Descriptor {
                media_type: config.into(),
                digest: digest('c'),
                size: 1,
                platform: None,
            },
            layers: vec![Descriptor {
                media_type: layer.into(),
                digest: digest('1'),
                size: 1,
                platform: None,
            }],
        };
        let foreign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
        assert_eq!(
            mk(DOCKER_CONFIG, foreign)
                .validate()
                .unwrap_err()
                .to_string(),
            format!("unsupported media type {foreign}")
        );
        assert_eq!(
            mk("application/vnd.cncf.helm.config.v1+json", LAYER_TYPES[0])
                .validate()
                .unwrap_err()
                .to_string(),
            "Encountered remote \"application/vnd.cncf.helm.config.v1+json\"(unknown) when fetching"
        );
    }

    #[test]
    fn negative_descriptor_sizes_are_malformed() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest('c'), "size": 5},
            "layers": [{"mediaType": LAYER_TYPES[0], "digest": digest('1'), "size": -1}]
        });
        let err = parse(body.to_string().as_bytes(), "", "x").unwrap_err();
        assert!(
            matches!(&err, ManifestError::Malformed(m) if m.contains("negative descriptor size -1")),
            "{err}"
        );
    }

    #[test]
    fn a_config_over_8_mib_is_an_invalid_manifest() {
        let mk = |size: u64| ImageManifest {
            media_type: OCI_MANIFEST.into(),
            config: Descriptor {
                media_type: OCI_CONFIG.into(),
                digest: digest('c'),
                size,
                platform: None,
            },
            layers: vec![],
        };
        mk(MAX_CONFIG_SIZE).validate().unwrap();
        let err = mk(MAX_CONFIG_SIZE + 1).validate().unwrap_err();
        assert_eq!(err, ManifestError::ConfigTooLarge(MAX_CONFIG_SIZE + 1));
        assert_eq!(
            err.to_string(),
            "invalid manifest: image config of 8388609 bytes is larger than the 8388608-byte limit"
        );
    }

    #[test]
    fn a_config_for_another_platform_fails_with_dockerds_message() {
        let amd64 = br#"{"os":"linux","architecture":"amd64","rootfs":{}}"#;
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let err =
            check_config_platform(amd64, &arm64, "docker.io/library/busybox:latest").unwrap_err();
        assert_eq!(
            err.to_string(),
            "image with reference docker.io/library/busybox:latest was found but does not match \
             the specified platform: wanted linux/arm64, actual: linux/amd64"
        );
        check_config_platform(amd64, &Platform::parse("linux/amd64").unwrap(), "x").unwrap();
        // Variants are the index's business: an arm64 config without one is still arm64/v8.
        let arm64_config = br#"{"os":"linux","architecture":"arm64"}"#;
        check_config_platform(
            arm64_config,
            &Platform::parse("linux/arm64/v8").unwrap(),
            "x",
        )
        .unwrap();
        let v7 = br#"{"os":"linux","architecture":"arm","variant":"v7"}"#;
        assert!(check_config_platform(v7, &arm64, "x")
            .unwrap_err()
            .to_string()
            .ends_with("actual: linux/arm/v7"));
    }

    #[test]
    fn host_platform_is_chosen_from_a_manifest_list() {
        let i = index(&[
            ("linux", "arm64", Some("v8"), 'a'),
            ("linux", "amd64", None, 'b'),
        ]);
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert_eq!(select_platform(&i, &amd64).unwrap().digest, digest('b'));
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert_eq!(select_platform(&i, &arm64).unwrap().digest, digest('a'));
    }

    #[test]
    fn variants_match_like_containerd() {
        let i = index(&[
            ("linux", "arm", Some("v6"), '6'),
            ("linux", "arm", Some("v7"), '7'),
            ("linux", "arm64", None, '8'),
        ]);
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(select_platform(&i, &v7).unwrap().digest, digest('7'));
        let v6 = Platform::parse("linux/arm/v6").unwrap();
        assert_eq!(select_platform(&i, &v6).unwrap().digest, digest('6'));
        let arm64v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(select_platform(&i, &arm64v8).unwrap().digest, digest('8'));
        let v5 = Platform::parse("linux/arm/v5").unwrap();
        assert!(select_platform(&i, &v5).is_err());
    }

    #[test]
    fn a_missing_platform_gives_dockerds_message() {
        let i = index(&[("linux", "arm64", Some("v8"), 'a')]);
        let err = select_platform(&i, &Platform::parse("linux/amd64").unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no matching manifest for linux/amd64 in the manifest list entries"
        );
    }
}

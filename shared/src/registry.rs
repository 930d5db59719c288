//! registry-sync messages: pull, push, sync and manifest inspection, with the registry
//! credentials a client sent.

use serde::{Deserialize, Serialize};

/// Docker's AuthConfig, as the CLI sends it base64-encoded in `X-Registry-Auth`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// base64 of `user:password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "serveraddress"
    )]
    pub server_address: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "identitytoken"
    )]
    pub identity_token: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "registrytoken"
    )]
    pub registry_token: Option<String>,
}

/// Shows who, never the secrets.
impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("auth", &hidden(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &hidden(&self.identity_token))
            .field("registry_token", &hidden(&self.registry_token))
            .finish()
    }
}

impl RegistryAuth {
    /// Decodes the `X-Registry-Auth` header (base64url or standard base64 of JSON).
    pub fn from_header(value: &str) -> Option<RegistryAuth> {
        use base64::Engine;
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let engines = [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ];
        let json = engines.iter().find_map(|e| e.decode(value).ok())?;
        let auth: RegistryAuth = serde_json::from_slice(&json).ok()?;
        if auth == RegistryAuth::default() {
            None
        } else {
            Some(auth)
        }
    }

    /// Username and password, from the fields or from `auth`.
    pub fn basic(&self) -> Option<(String, String)> {
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            if !u.is_empty() {
                return Some((u.clone(), p.clone()));
            }
        }
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_ref()?)
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }
}

/// Credentials per registry, as Docker keys them (`X-Registry-Config`, the `auths` of the
/// CLI's config.json): `host[:port]`, a URL, or `https://index.docker.io/v1/` for Docker Hub.
pub type AuthConfigs = std::collections::BTreeMap<String, RegistryAuth>;

/// Decodes `X-Registry-Config` (base64url or standard base64 of JSON); nothing usable is empty.
pub fn auth_configs_from_header(value: &str) -> AuthConfigs {
    use base64::Engine;
    let value = value.trim();
    [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ]
    .iter()
    .find_map(|e| e.decode(value).ok())
    .and_then(|raw| serde_json::from_slice(&raw).ok())
    .unwrap_or_default()
}

/// The host a credentials key names: `https://host:5000/v1/` -> `host:5000`, Docker Hub's
/// names -> `docker.io`.
pub fn auth_key_domain(key: &str) -> &str {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    }
}

/// The credentials in `configs` for registry `domain` (a normalized reference's domain).
pub fn auth_for_domain(configs: &AuthConfigs, domain: &str) -> Option<RegistryAuth> {
    configs
        .iter()
        .find(|(key, _)| auth_key_domain(key) == domain)
        .map(|(_, auth)| auth.clone())
}

/// A platform as `--platform os/arch[/variant]` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `linux/amd64`, `linux/arm64/v8`, `amd64`.
    pub fn parse(s: &str) -> Option<Platform> {
        let parts: Vec<&str> = s.split('/').filter(|p| !p.is_empty()).collect();
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(variant.to_string())),
            _ => return None,
        };
        let arch = match arch {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        Some(Platform {
            os: os.to_lowercase(),
            architecture: arch.to_string(),
            variant,
        })
    }

    /// The platform of this host, as Go names it.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        let variant = if architecture == "arm64" {
            Some("v8".to_string())
        } else {
            None
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `pull` (a download stream of [`crate::progress::JsonMessage`]s).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullRequest {
    /// Normalized reference, with a tag or a digest.
    pub reference: String,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub auth: Option<RegistryAuth>,
}

/// `push` (a download stream of progress).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushRequest {
    /// Normalized reference with a tag; a bare repository name pushes every tag of it.
    pub reference: String,
    #[serde(default)]
    pub auth: Option<RegistryAuth>,
}

/// `sync` (a download stream of progress): copies a repository's images from one registry to
/// another, registry to registry, never through image-store. Manifests go byte for byte, so
/// every digest stays what it was at the source. The stream's last message carries the
/// [`SyncSummary`] in its `aux` (`{"Summary": ...}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The source repository, a normalized reference (`registry/path`), with a tag to copy
    /// that tag alone.
    pub source: String,
    /// The destination repository, a normalized reference without tag or digest: tags keep
    /// their names.
    pub destination: String,
    /// The tags to copy; empty means the source's tag, or every tag of the source repository.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub source_auth: Option<RegistryAuth>,
    #[serde(default)]
    pub destination_auth: Option<RegistryAuth>,
}

/// What a sync did. A tag is skipped when the destination already serves the source's digest
/// for it; blobs are counted once per sync, whichever manifests share them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub source: String,
    pub destination: String,
    /// Tags copied, and tags the destination already had as at the source.
    pub copied: Vec<String>,
    pub skipped: Vec<String>,
    /// Tags that could not be copied, each with why; the other tags still were.
    #[serde(default)]
    pub failed: Vec<SyncFailure>,
    /// Manifests put to the destination: indexes and the platforms' image manifests.
    pub manifests: u64,
    /// Blobs uploaded, mounted from the source repository (same registry), or found there.
    pub blobs_copied: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    /// Bytes uploaded.
    pub bytes_copied: u64,
}

/// A tag a sync could not copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFailure {
    pub tag: String,
    pub error: String,
}

/// `manifest.inspect`: what a registry serves for a reference, read without pulling anything
/// (dockerd's `GET /distribution/{name}/json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistributionRequest {
    /// Normalized reference, with a tag or a digest.
    pub reference: String,
    #[serde(default)]
    pub auth: Option<RegistryAuth>,
}

/// The answer to [`DistributionRequest`], in Docker's `registry.DistributionInspect` shape, so
/// the gateway passes it on as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributionInspect {
    /// The manifest or index the reference names.
    #[serde(rename = "Descriptor")]
    pub descriptor: ManifestDescriptor,
    /// `null` where dockerd names none (an OCI image manifest, a config without os and
    /// architecture, an empty index).
    #[serde(rename = "Platforms")]
    pub platforms: Option<Vec<OciPlatform>>,
}

/// An OCI content descriptor: media type, digest and size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDescriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A platform as the OCI image spec spells it (`os.version` and the rest left out when empty,
/// as Go's `omitempty` leaves them out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// `info`: how registry-sync reaches registries (shown by `docker info`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegistrySettings {
    pub mirrors: Vec<String>,
    pub insecure_registries: Vec<String>,
}

/// `login`: the registry accepted the credentials. `status` is dockerd's `Login Succeeded`;
/// `identity_token` is the token server's refresh token, empty when it gave none.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginReply {
    pub status: String,
    #[serde(default)]
    pub identity_token: String,
}

/// The identity token is a credential: `Debug` says whether there is one, never what it is.
impl std::fmt::Debug for LoginReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = (!self.identity_token.is_empty()).then_some("<redacted>");
        f.debug_struct("LoginReply")
            .field("status", &self.status)
            .field("identity_token", &token)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_found_by_the_registry_their_key_names() {
        use base64::Engine;
        let json = r#"{"https://index.docker.io/v1/":{"username":"hub"},"127.0.0.1:5000":{"username":"local"},"https://reg.example:443/v2/":{"username":"tls"}}"#;
        let header = base64::engine::general_purpose::URL_SAFE.encode(json);
        let configs = auth_configs_from_header(&header);
        let user = |d: &str| auth_for_domain(&configs, d).and_then(|a| a.username);
        assert_eq!(user("docker.io").as_deref(), Some("hub"));
        assert_eq!(user("127.0.0.1:5000").as_deref(), Some("local"));
        assert_eq!(user("reg.example:443").as_deref(), Some("tls"));
        assert_eq!(user("127.0.0.1:5001"), None);
        assert!(auth_configs_from_header("!!not base64").is_empty());
    }

    #[test]
    fn registry_auth_header_decodes_docker_cli_encoding() {
        use base64::Engine;
        let json = r#"{"username":"u","password":"p","serveraddress":"localhost:5000"}"#;
        let header = base64::engine::general_purpose::URL_SAFE.encode(json);
        let auth = RegistryAuth::from_header(&header).unwrap();
        assert_eq!(auth.basic(), Some(("u".to_string(), "p".to_string())));
        assert_eq!(auth.server_address.as_deref(), Some("localhost:5000"));
        assert!(
            RegistryAuth::from_header(&base64::engine::general_purpose::URL_SAFE.encode("{}"))
                .is_none()
        );
    }

    #[test]
    fn distribution_inspect_is_dockers_json() {
        let inspect = DistributionInspect {
            descriptor: ManifestDescriptor {
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                size: 100,
            },
            platforms: Some(vec![OciPlatform {
                architecture: "arm64".into(),
                os: "linux".into(),
                variant: "v8".into(),
                ..Default::default()
            }]),
        };
        assert_eq!(
            serde_json::to_value(&inspect).unwrap(),
            serde_json::json!({
                "Descriptor": {
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": format!("sha256:{}", "a".repeat(64)),
                    "size": 100
                },
                "Platforms": [{"architecture": "arm64", "os": "linux", "variant": "v8"}]
            })
        );
        let none = DistributionInspect::default();
        assert_eq!(
            serde_json::to_value(&none).unwrap()["Platforms"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn platforms_parse_in_cli_spelling() {
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8")
                .unwrap()
                .variant
                .as_deref(),
            Some("v8")
        );
        assert!(Platform::parse("a/b/c/d").is_none());
    }
}

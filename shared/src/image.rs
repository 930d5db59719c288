//! image-store messages: blobs, image records, tags.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `blob.stat` request and `blob.read` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: String,
}

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    pub digest: String,
    pub size: u64,
}

/// The identity of this boot of this machine (`/proc/sys/kernel/random/boot_id`): two
/// services that read the same value share a kernel, so a path one names can be opened by the
/// other (subject to the device and inode check every shortcut makes as well). `None` turns
/// the same-host shortcuts off; so does `WHARF_SAME_HOST_SHORTCUTS=0` in the environment.
pub fn host_id() -> Option<String> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        if std::env::var_os("WHARF_SAME_HOST_SHORTCUTS").is_some_and(|v| v == "0") {
            return None;
        }
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .clone()
}

/// Answer to `blob.locate` (a [`BlobRef`]): the stored file of a blob, for a reader on the same
/// host, which opens `path` and uses it only when its device and inode are these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobLocation {
    pub host: String,
    pub path: std::path::PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

/// Answer to `blob.staging`: a directory of the store where a writer on the same host (same
/// `host`, and the directory's device and inode as given) may create a blob file to hand over
/// with `blob.adopt` instead of streaming it over the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingArea {
    pub host: String,
    pub dir: std::path::PathBuf,
    pub dev: u64,
    pub ino: u64,
}

/// `blob.adopt`: ingest the file `name` of the staging area as `ingest` describes it (checked
/// exactly as a streamed ingest is). The store takes the file over; the answer is a
/// [`BlobIngested`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobAdopt {
    #[serde(flatten)]
    pub ingest: BlobIngest,
    /// A plain file name in the staging directory (no path).
    pub name: String,
}

/// `blob.ingest` (an upload stream): the content that follows must hash to `digest`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobIngest {
    /// Empty when the sender cannot know it before sending (a build context): the store then
    /// takes the digest of what arrives, and says it in the answer.
    pub digest: String,
    /// Expected size, when the caller knows it (a manifest says so): more or fewer bytes fail.
    #[serde(default)]
    pub size: Option<u64>,
    /// Media type; for layer types the store also computes the diff ID and unpacked size.
    #[serde(default)]
    pub media_type: Option<String>,
}

/// What the store knows of a layer blob after ingesting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Digest of the blob as stored (compressed or not).
    pub digest: String,
    pub media_type: String,
    /// Stored (compressed) size.
    pub size: u64,
    /// Digest of the uncompressed tar (what the image config lists in `rootfs.diff_ids`).
    pub diff_id: String,
    /// Size of the layer's files once unpacked, as dockerd counts it.
    pub unpacked_size: u64,
}

impl LayerInfo {
    /// The layer as an `image.commit` names it.
    pub fn layer_ref(&self) -> LayerRef {
        LayerRef {
            digest: self.digest.clone(),
            media_type: self.media_type.clone(),
        }
    }
}

/// Result of `blob.ingest`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobIngested {
    pub blob: BlobInfo,
    #[serde(default)]
    pub layer: Option<LayerInfo>,
}

/// `image.commit`: make an image visible from blobs already in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageCommit {
    /// Config blob digest (the image ID).
    pub config: String,
    /// Layer blob digests, base first, with their media types.
    pub layers: Vec<LayerRef>,
    /// The platform manifest's digest and media type, when the image came from a registry.
    #[serde(default)]
    pub manifest: Option<BlobRefTyped>,
    /// Normalized references to point at the image (`docker.io/library/busybox:latest`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Normalized `name@digest` references the image is known by in registries.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// The image this one was committed on top of (`sha256:...`), as dockerd records it for
    /// `docker commit` and each step of the classic builder. The store refuses an unknown one.
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub digest: String,
    pub media_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRefTyped {
    pub digest: String,
    pub media_type: String,
}

/// An image as the store records it. The gateway renders Docker's views from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<config digest>`.
    pub id: String,
    /// Normalized tag references, sorted.
    pub repo_tags: Vec<String>,
    /// Normalized digest references, sorted.
    pub repo_digests: Vec<String>,
    pub layers: Vec<LayerInfo>,
    #[serde(default)]
    pub manifest: Option<BlobRefTyped>,
    /// The image config as stored (Docker/OCI image config JSON).
    pub config: serde_json::Value,
    /// Size of the config blob.
    pub config_size: u64,
    /// Sum of the layers' unpacked sizes.
    pub size: u64,
    /// When the image was first stored (RFC 3339).
    pub stored_at: String,
    /// When a tag last moved to this image (RFC 3339).
    #[serde(default)]
    pub last_tag_time: Option<String>,
    /// The parent image's ID (`sha256:...`), when it was committed with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// `image.resolve`: a name, a normalized reference, a digest reference, an ID or an ID prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageResolve {
    pub name: String,
}

impl ImageRecord {
    /// The image's layers as an `image.commit` names them, base first.
    pub fn layer_refs(&self) -> Vec<LayerRef> {
        self.layers.iter().map(LayerInfo::layer_ref).collect()
    }
}

/// `image.list`: Docker's `filters` (already decoded) and `all`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageList {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub filters: BTreeMap<String, Vec<String>>,
}

/// `image.tag`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageTag {
    /// What to tag (any form `image.resolve` takes).
    pub source: String,
    /// Normalized reference of the new tag.
    pub target: String,
}

/// `image.delete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageDelete {
    pub name: String,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub no_prune: bool,
    /// Images that containers use: the gateway asks the runtime nodes and passes them on, so the
    /// store can refuse as dockerd does.
    #[serde(default)]
    pub in_use: BTreeMap<String, String>,
}

/// One row of dockerd's delete response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteItem {
    /// Familiar reference that was removed.
    Untagged(String),
    /// Image ID that was deleted.
    Deleted(String),
}

/// `image.prune`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImagePrune {
    #[serde(default)]
    pub filters: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub in_use: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneReport {
    pub deleted: Vec<DeleteItem>,
    pub space_reclaimed: u64,
}

/// `image.export` (a download stream of a `docker save` tar).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageExport {
    pub names: Vec<String>,
}

/// `image.load` (an upload stream of a `docker save` or OCI layout tar). Result: [`LoadReport`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageLoad {
    #[serde(default)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// Lines as dockerd prints them: `Loaded image: busybox:latest`, `Loaded image ID: sha256:...`.
    pub lines: Vec<String>,
}

/// `image.import` (an upload stream of a root filesystem tar, plain or compressed). Result: the
/// new [`ImageRecord`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageImport {
    /// Normalized reference to tag, if any.
    #[serde(default)]
    pub tag: Option<String>,
    /// Dockerfile-style changes (`CMD ["sh"]`, `ENV A=b`, ...).
    #[serde(default)]
    pub changes: Vec<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
}

/// `blob.read` request: a [`BlobRef`] with an optional starting offset (a plain `BlobRef`
/// decodes as offset 0). The accept reply carries the whole blob's [`BlobInfo`]; the stream
/// carries the bytes from `offset` on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlobRead {
    pub digest: String,
    #[serde(default)]
    pub offset: u64,
}

/// What image configs made by Wharf (commits, builds) name as `docker_version`.
pub const DOCKER_VERSION: &str = "28.0.0";

/// An image made on top of another (dockerd's `NewChildImage`): `docker commit` and every build
/// step.
pub struct ChildImage<'a> {
    /// The parent's config document (`{}` for none: `FROM scratch`).
    pub parent: &'a serde_json::Value,
    /// The new layer's diff ID; `None` for an empty layer (a config-only step).
    pub diff_id: Option<&'a str>,
    /// RFC 3339, for the config and its history row.
    pub created: &'a str,
    pub author: &'a str,
    pub comment: &'a str,
    /// The history row's `created_by`: the container's command, joined with spaces.
    pub created_by: &'a str,
    /// The image's `config` (Docker's container config).
    pub config: serde_json::Value,
    /// The container it was committed from (empty for none).
    pub container: &'a str,
    pub container_config: serde_json::Value,
}

impl ChildImage<'_> {
    /// The config document, keys sorted as dockerd writes them: the parent's platform,
    /// history with one more row, diff IDs with the new layer.
    pub fn document(self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let p = self.parent;
        let mut row = Map::new();
        row.insert("created".into(), json!(self.created));
        if !self.author.is_empty() {
            row.insert("author".into(), json!(self.author));
        }
        row.insert("created_by".into(), json!(self.created_by));
        if !self.comment.is_empty() {
            row.insert("comment".into(), json!(self.comment));
        }
        if self.diff_id.is_none() {
            row.insert("empty_layer".into(), json!(true));
        }
        let mut history = p["history"].as_array().cloned().unwrap_or_default();
        history.push(Value::Object(row));
        let mut diff_ids = p["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(d) = self.diff_id {
            diff_ids.push(json!(d));
        }
        let string_or = |key: &str, default: String| {
            p.get(key)
                .filter(|v| v.is_string())
                .cloned()
                .unwrap_or(json!(default))
        };
        let mut image = Map::new();
        image.insert(
            "architecture".into(),
            string_or(
                "architecture",
                crate::registry::Platform::host().architecture,
            ),
        );
        if !self.author.is_empty() {
            image.insert("author".into(), json!(self.author));
        }
        if !self.comment.is_empty() {
            image.insert("comment".into(), json!(self.comment));
        }
        image.insert("config".into(), self.config);
        if !self.container.is_empty() {
            image.insert("container".into(), json!(self.container));
        }
        image.insert("container_config".into(), self.container_config);
        image.insert("created".into(), json!(self.created));
        image.insert("docker_version".into(), json!(DOCKER_VERSION));
        image.insert("history".into(), Value::Array(history));
        image.insert("os".into(), string_or("os", "linux".to_string()));
        for key in ["os.features", "os.version"] {
            if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
                image.insert(key.into(), v.clone());
            }
        }
        image.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        if let Some(v) = p.get("variant").filter(|v| !v.is_null()) {
            image.insert("variant".into(), v.clone());
        }
        Value::Object(image)
    }
}

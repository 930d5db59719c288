//! Builds: the gateway's request to a builder, and the two steps a builder asks of a
//! runtime node (run a command in a container and diff it; copy files into an image's root).
//!
//! Flow: the gateway opens a download stream on `wharf.v1.builder.build` with a [`BuildRequest`]
//! naming a one-off subject where it serves the `POST /build` body; the builder that takes the
//! request pulls the body from there as it arrives. That builder streams
//! [`crate::progress::JsonMessage`] lines (dockerd's classic builder output), and commits every
//! step's image to image-store. RUN steps go to a runtime node as [`StepRun`] (a download stream
//! of [`StepEvent`]); COPY and ADD as [`StepCopy`] (an upload stream of a tar, result
//! [`StepDone`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::container::{ContainerConfig, HostConfig};
use crate::image::LayerInfo;
use crate::registry::RegistryAuth;

/// `wharf.v1.builder.build`: build the context blob `context`. A download stream of
/// `JsonMessage`s; the last `aux` message carries `{"ID": "sha256:..."}` on success.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildRequest {
    /// Where the context comes from: a subject on which the requester (the gateway) accepts one
    /// download stream of the `POST /build` body (a tar, plain or compressed, or a bare
    /// Dockerfile), piped as it arrives.
    pub context_source: String,
    /// `dockerfile` query parameter: the Dockerfile's path in the context ("" = `Dockerfile`).
    #[serde(default)]
    pub dockerfile: String,
    /// Normalized references to tag the result with (`-t`, repeatable).
    #[serde(default)]
    pub tags: Vec<String>,
    /// `--build-arg`: a `None` value means "take it from the environment", which the CLI has
    /// already done, so it stays unset.
    #[serde(default)]
    pub build_args: BTreeMap<String, Option<String>>,
    /// `--target`: the stage to stop at.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub no_cache: bool,
    /// `--pull`: pull the base images even when present.
    #[serde(default)]
    pub pull: bool,
    /// `--label`s for the result image.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--cache-from`: images whose history may stand in for steps the cache has no image for.
    #[serde(default)]
    pub cache_from: Vec<String>,
    /// `--network` for RUN steps ("" = default bridge).
    #[serde(default)]
    pub network_mode: String,
    /// `-q`: print only the image ID.
    #[serde(default)]
    pub quiet: bool,
    /// `--rm` (default true): remove intermediate containers after a successful step.
    #[serde(default)]
    pub rm: bool,
    /// `--force-rm`: remove them even after a failed step.
    #[serde(default)]
    pub force_rm: bool,
    /// `--platform`, if given.
    #[serde(default)]
    pub platform: Option<String>,
    /// `X-Registry-Config`: credentials per registry host, for pulling base images.
    #[serde(default)]
    pub auth: BTreeMap<String, RegistryAuth>,
    /// `--add-host`, `--shm-size`, `--memory`, ... for RUN containers, as Docker's HostConfig.
    #[serde(default)]
    pub host_config: HostConfig,
}

/// The builder's request on a `BuildRequest::context_source` (the opening payload of its
/// download stream). On the gateway's host the builder offers a FIFO it made in its build
/// directory: the gateway then writes the body into it instead of sending it over the bus
/// (decision 17's same-host rule: same boot ID, and the FIFO's device and inode checked after
/// opening it), and ends the stream once the body is written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContextPull {
    #[serde(default)]
    pub fifo: Option<FifoOffer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FifoOffer {
    pub host: String,
    pub path: std::path::PathBuf,
    pub dev: u64,
    pub ino: u64,
}

/// The gateway's accept payload on a context stream: `fifo` when the body goes through the
/// offered FIFO (the stream then carries no data, only its end or an error).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContextAccept {
    #[serde(default)]
    pub fifo: bool,
}

/// The JetStream key-value bucket holding the build cache index every builder shares.
pub const CACHE_BUCKET: &str = "wharf_build_cache";

/// `wharf.v1.runtime.node.<node>.build.run`: a download stream of [`StepEvent`] JSON messages.
/// The node creates a container from `image` with `config` (the command is `config.cmd`
/// exactly; an entrypoint of `[""]` or none means none), starts it, streams its stdout and
/// stderr as they come, waits for it, and on exit code 0 diffs its upper directory into a
/// layer stored in image-store. The container is removed after success when `remove` is set,
/// and after failure when `force_remove` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepRun {
    /// Parent image ID (`sha256:...`); empty for `FROM scratch`.
    pub image: String,
    pub config: ContainerConfig,
    /// Only what `docker build` itself can set ([`STEP_HOST_CONFIG_FIELDS`]): `NetworkMode`
    /// (default, bridge, host, none or a user network), `ExtraHosts`, `ShmSize`, `Memory`,
    /// `MemorySwap`, `CpuShares`, `CpuPeriod`, `CpuQuota`, `CpusetCpus` and `Ulimits`. The node
    /// refuses (`forbidden`) a step asking for anything else: privileges, capabilities, binds
    /// and mounts, host namespaces, devices, security options...
    #[serde(default)]
    pub host_config: HostConfig,
    #[serde(default)]
    pub remove: bool,
    #[serde(default)]
    pub force_remove: bool,
}

/// One message of a `build.run` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum StepEvent {
    /// The container exists (dockerd prints ` ---> Running in <short id>`).
    Started { id: String },
    /// Output of the command as it came, as UTF-8 text; `stderr` for what it wrote to its
    /// standard error (dockerd's build output shows that part in red).
    Output {
        text: String,
        #[serde(default)]
        stderr: bool,
    },
    /// The command ended; `layer` is its diff when it exited 0 and changed something.
    Done(StepDone),
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDone {
    /// The step's container (already removed when the request asked for it).
    pub id: String,
    pub exit_code: i64,
    #[serde(default)]
    pub layer: Option<LayerInfo>,
    /// Whether the container was removed.
    #[serde(default)]
    pub removed: bool,
}

/// `wharf.v1.runtime.node.<node>.build.copy`: an upload stream of a tar whose entries are named
/// relative to the destination directory; the result is a [`StepDone`] (exit code 0).
///
/// The node creates a container (never started) from `image`, resolves `dest` in its root
/// (relative to `working_dir`; symlinks followed, never out of the root), creates the missing
/// directories of the destination (mode 0755, owned by the `chown` identity or root), extracts
/// the entries under it and diffs the result into a layer. Entries keep the modes, owners and
/// times the tar gives them, except that `chown` (when set) owns them all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepCopy {
    /// Parent image ID (`sha256:...`); empty for `FROM scratch`.
    pub image: String,
    /// The stage's config (WorkingDir, User, Env...) the container is created with.
    pub config: ContainerConfig,
    /// The destination as the instruction gives it, expanded; relative to `working_dir`.
    pub dest: String,
    /// The stage's WORKDIR (absolute, or empty for `/`).
    #[serde(default)]
    pub working_dir: String,
    /// Set when the tar holds a single file (named `file_name`) and `dest` does not end in `/`:
    /// if `dest` is an existing directory in the root the file goes into it, otherwise the
    /// file becomes `dest` itself.
    #[serde(default)]
    pub file_name: Option<String>,
    /// `--chown=user[:group]` (names looked up in the root's /etc/passwd and /etc/group).
    #[serde(default)]
    pub chown: String,
    /// Remove the container once the layer is stored.
    #[serde(default)]
    pub remove: bool,
}

/// The `HostConfig` fields (Docker's names) a [`StepRun`] may set: those `docker build` has
/// options for (`--network`, `--add-host`, `--shm-size`, `--memory`, `--memory-swap`,
/// `--cpu-shares`, `--cpu-period`, `--cpu-quota`, `--cpuset-cpus`, `--ulimit`).
pub const STEP_HOST_CONFIG_FIELDS: &[&str] = &[
    "NetworkMode",
    "ExtraHosts",
    "ShmSize",
    "Memory",
    "MemorySwap",
    "CpuShares",
    "CpuPeriod",
    "CpuQuota",
    "CpusetCpus",
    "Ulimits",
];

/// `wharf.v1.runtime.node.<node>.build.export`: a download stream of `path` in `image`'s file
/// system: first the path's `PathStat` as one JSON message, then a tar of it as `docker cp` of
/// a created container gives it (a missing path fails the stream with `not_found`). For
/// `COPY --from`: the node creates a container from the image (never started, no host config)
/// and removes it once the tar is sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepExport {
    /// The image ID (`sha256:...`).
    pub image: String,
    /// An absolute path in the image.
    pub path: String,
}

/// One entry of the shared build cache index (`wharf.v1.builder.cache.list` answers a list of
/// them), in Docker's `BuildCache` shape. The classic builder's cache is its intermediate
/// images: `ID` is the step's cache key, `Parent` the image the step ran on, `Size` the
/// unpacked size of the layer the step added (0 for a config-only step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Parent", default)]
    pub parent: String,
    /// Always `regular`: a step's result.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Description", default)]
    pub description: String,
    #[serde(rename = "InUse", default)]
    pub in_use: bool,
    #[serde(rename = "Shared", default)]
    pub shared: bool,
    #[serde(rename = "Size", default)]
    pub size: u64,
    /// RFC 3339.
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    /// Not tracked: builders do not record cache hits.
    #[serde(rename = "LastUsedAt", default)]
    pub last_used_at: Option<String>,
    #[serde(rename = "UsageCount", default)]
    pub usage_count: u64,
}

/// `wharf.v1.builder.cache.prune`: `docker builder prune`. The gateway passes the images that
/// containers use, so the builder never deletes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CachePrune {
    /// `--all`. Nothing in the index is ever in use or shared, so it prunes what a plain
    /// prune does.
    #[serde(default)]
    pub all: bool,
    /// Docker's build cache filters: `until` (or `unused-for`), `id`, `parent`, `type`,
    /// `description`, `inuse`, `shared`, `private`; `label` and `label!` are accepted and
    /// ignored, as by dockerd.
    #[serde(default)]
    pub filters: BTreeMap<String, Vec<String>>,
    /// `--keep-storage` (bytes, 0 = none): the oldest matching entries go only while the
    /// index's entries add up to more than this.
    #[serde(default)]
    pub keep_storage: u64,
    /// Image ID -> a container using it.
    #[serde(default)]
    pub in_use: BTreeMap<String, String>,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachePruneReport {
    /// Keys of the removed index entries.
    pub caches_deleted: Vec<String>,
    /// Images deleted with them (untagged, childless and unused ones), children first.
    #[serde(default)]
    pub images_deleted: Vec<String>,
    /// Bytes of image-store blobs the deletions freed (blobs a garbage-collection grace period
    /// still keeps are not counted).
    pub space_reclaimed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_events_are_tagged_json() {
        let e = StepEvent::Output {
            text: "hi\n".into(),
            stderr: false,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"output","text":"hi\n","stderr":false}"#
        );
        let d = StepEvent::Done(StepDone {
            id: "abc".into(),
            exit_code: 1,
            layer: None,
            removed: false,
        });
        let back: StepEvent = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}

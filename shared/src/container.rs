//! Containers on the bus: the messages between the gateway and runtime nodes.
//!
//! Requests about one container go to the node holding it, on
//! `wharf.v1.runtime.node.<node>.<op>` ([`node_subject`]). Requests about every container
//! (`docker ps`, resolving a name or ID prefix) go to all nodes at once on
//! `wharf.v1.runtime.all.<op>` ([`all_subject`]); every node answers and the gateway merges
//! (see [`crate::nodes`]). The create body is Docker's own (`ContainerConfig` + `HostConfig` +
//! `NetworkingConfig`), so the types below use Docker's field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::subjects::PREFIX;

mod views;
pub use views::*;

/// Operations a node answers on its own subject (`wharf.v1.runtime.node.<node>.<op>`).
pub mod op {
    pub const CREATE: &str = "container.create";
    pub const START: &str = "container.start";
    pub const STOP: &str = "container.stop";
    pub const RESTART: &str = "container.restart";
    pub const KILL: &str = "container.kill";
    pub const WAIT: &str = "container.wait";
    pub const REMOVE: &str = "container.remove";
    pub const INSPECT: &str = "container.inspect";
    /// Stream: the container's log, as `docker logs` frames it.
    pub const LOGS: &str = "container.logs";
    /// Stream: the container's live output (`docker attach`, `docker run` without `-d`).
    pub const ATTACH: &str = "container.attach";
    /// Upload: bytes for the container's stdin, paired with an attach by `attach_id`.
    pub const STDIN: &str = "container.stdin";
    pub const RESIZE: &str = "container.resize";
    pub const PAUSE: &str = "container.pause";
    pub const UNPAUSE: &str = "container.unpause";
    pub const RENAME: &str = "container.rename";
    /// Broadcast: every node lists its containers.
    pub const LIST: &str = "container.list";
    /// Broadcast: every node names its containers matching a name or ID prefix.
    pub const RESOLVE: &str = "container.resolve";
    /// Broadcast: every node says who it is ([`super::NodeInfo`]).
    pub const PING: &str = "node.ping";
    /// Node: create a volume ([`super::VolumeCreateRequest`]); answers Docker's volume JSON.
    pub const VOLUME_CREATE: &str = "volume.create";
    /// Node: remove a volume ([`super::VolumeRemoveRequest`]).
    pub const VOLUME_REMOVE: &str = "volume.remove";
    /// Broadcast: every node lists its volumes ([`super::VolumeListRequest`]).
    pub const VOLUME_LIST: &str = "volume.list";
    /// Broadcast: every node prunes its volumes ([`super::VolumeListRequest`]).
    pub const VOLUME_PRUNE: &str = "volume.prune";
    /// Node: `POST /containers/{id}/exec` ([`super::ExecCreateRequest`] -> [`super::ExecCreated`]).
    pub const EXEC_CREATE: &str = "exec.create";
    /// Node, stream: run an exec attached ([`super::ExecStartRequest`]); frames as for attach,
    /// stdin through [`STDIN`] with the same `attach_id` and `id` = the exec ID.
    pub const EXEC_START: &str = "exec.start";
    /// Node: run an exec detached ([`super::ExecStartRequest`]) -> `{}` once it runs.
    pub const EXEC_START_DETACHED: &str = "exec.start-detached";
    /// Node: `GET /exec/{id}/json` ([`super::ExecRef`]) -> Docker's exec inspect JSON.
    pub const EXEC_INSPECT: &str = "exec.inspect";
    /// Node: TTY size of an exec ([`super::ExecResizeRequest`]).
    pub const EXEC_RESIZE: &str = "exec.resize";
    /// Broadcast: which node holds exec `id` ([`super::ExecRef`] -> [`super::ExecLocation`]).
    pub const EXEC_LOCATE: &str = "exec.locate";
    /// Node, stream: `docker stats` ([`super::StatsRequest`]); each frame one JSON object.
    pub const STATS: &str = "container.stats";
    /// Node: `docker top` ([`super::TopRequest`]) -> `{"Titles":[..],"Processes":[[..]]}`.
    pub const TOP: &str = "container.top";
    /// Node: `docker update` ([`super::UpdateRequest`]) -> `{"Warnings":[..]}`.
    pub const UPDATE: &str = "container.update";
    /// Broadcast: `docker container prune` ([`super::ListRequest`] filters) ->
    /// [`super::ContainerPruneResponse`].
    pub const PRUNE: &str = "container.prune";
    /// Node: `docker network create` ([`super::NetworkCreateRequest`]) -> `{"Id","Warning"}`.
    pub const NETWORK_CREATE: &str = "network.create";
    /// Node: `docker network rm` ([`super::NetworkRef`]).
    pub const NETWORK_REMOVE: &str = "network.remove";
    /// Node: `docker network connect` ([`super::NetworkConnectRequest`]).
    pub const NETWORK_CONNECT: &str = "network.connect";
    /// Node: `docker network disconnect` ([`super::NetworkConnectRequest`]).
    pub const NETWORK_DISCONNECT: &str = "network.disconnect";
    /// Broadcast: every node lists its networks ([`super::VolumeListRequest`] filters) ->
    /// [`super::NetworkListResponse`]. The predefined `bridge`, `host` and `none` come from
    /// every node; the gateway shows each name once.
    pub const NETWORK_LIST: &str = "network.list";
    /// Broadcast: `docker network prune` -> [`super::NetworkPruneResponse`].
    pub const NETWORK_PRUNE: &str = "network.prune";
    /// Node: stat a path in a container ([`super::ArchiveRequest`]) -> [`super::PathStat`].
    pub const ARCHIVE_STAT: &str = "container.archive.stat";
    /// Node, stream: a tar of a path in a container ([`super::ArchiveRequest`]); accept payload
    /// [`super::PathStat`].
    pub const ARCHIVE_GET: &str = "container.archive.get";
    /// Node, upload: a tar to extract at a directory in a container ([`super::ArchiveRequest`]);
    /// result `{}`.
    pub const ARCHIVE_PUT: &str = "container.archive.put";
    /// Node, stream: `docker export` ([`super::ById`]): a tar of the container's file system.
    pub const EXPORT: &str = "container.export";
    /// Node: `docker diff` ([`super::ById`]) -> `[{"Path","Kind"}]` (0 modified, 1 added, 2 deleted).
    pub const CHANGES: &str = "container.changes";
    /// Node: `docker commit` ([`super::CommitRequest`]) -> `{"Id": "sha256:..."}`.
    pub const COMMIT: &str = "container.commit";
    /// Node: a build's RUN step ([`crate::build::StepRun`]), a download stream of
    /// [`crate::build::StepEvent`].
    pub const BUILD_RUN: &str = "build.run";
    /// Node: a build's COPY/ADD step ([`crate::build::StepCopy`]), an upload stream of a tar;
    /// result [`crate::build::StepDone`].
    pub const BUILD_COPY: &str = "build.copy";
    /// Node: a build's `COPY --from` source ([`crate::build::StepExport`]), a download stream:
    /// one JSON [`super::PathStat`] message, then a tar of one path of an image. The node makes
    /// (and removes) the never-started container itself, so a builder needs no container
    /// endpoint.
    pub const BUILD_EXPORT: &str = "build.export";
    /// Every operation above.
    pub const ALL: &[&str] = &[
        CREATE,
        START,
        STOP,
        RESTART,
        KILL,
        WAIT,
        REMOVE,
        INSPECT,
        LOGS,
        ATTACH,
        STDIN,
        RESIZE,
        PAUSE,
        UNPAUSE,
        RENAME,
        LIST,
        RESOLVE,
        PING,
        VOLUME_CREATE,
        VOLUME_REMOVE,
        VOLUME_LIST,
        VOLUME_PRUNE,
        EXEC_CREATE,
        EXEC_START,
        EXEC_START_DETACHED,
        EXEC_INSPECT,
        EXEC_RESIZE,
        EXEC_LOCATE,
        STATS,
        TOP,
        UPDATE,
        PRUNE,
        NETWORK_CREATE,
        NETWORK_REMOVE,
        NETWORK_CONNECT,
        NETWORK_DISCONNECT,
        NETWORK_LIST,
        NETWORK_PRUNE,
        ARCHIVE_STAT,
        ARCHIVE_GET,
        ARCHIVE_PUT,
        EXPORT,
        CHANGES,
        COMMIT,
        BUILD_RUN,
        BUILD_COPY,
        BUILD_EXPORT,
    ];
}

/// Subject of `op` on node `node`.
pub fn node_subject(node: &str, op: &str) -> String {
    format!("{PREFIX}.runtime.node.{node}.{op}")
}

/// Subject of broadcast `op` (every node answers).
pub fn all_subject(op: &str) -> String {
    format!("{PREFIX}.runtime.all.{op}")
}

/// The JetStream key-value bucket holding every container name in use on any node (key: the
/// name without its slash; value: [`NameHolder`]). A node reserves a name with a create of its
/// key, which only one node can win, so two creates of one name on two nodes give one
/// container and one conflict.
pub const NAMES_BUCKET: &str = "wharf_container_names";

/// Who holds a container name, as [`NAMES_BUCKET`] records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameHolder {
    pub id: String,
    pub node: String,
}

/// Subject nodes announce themselves on, every [`ANNOUNCE_INTERVAL_SECS`] seconds.
pub const ANNOUNCE_SUBJECT: &str = "wharf.v1.runtime.announce";
pub const ANNOUNCE_INTERVAL_SECS: u64 = 2;

/// Whether `name` can be a node name (one NATS subject token).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A runtime node as it announces itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// Labels a create can ask for (`--label wharf.node.<key>=<value>`... see docs/runtime.md).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub containers: u64,
    pub running: u64,
    pub paused: u64,
    pub stopped: u64,
    /// Kernel, OS and cgroup facts for `docker info`.
    #[serde(default)]
    pub cgroup_version: String,
    #[serde(default)]
    pub cgroup_driver: String,
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub subnet: String,
    /// What the node enforces, as `docker info`'s SecurityOptions say it
    /// (`name=seccomp,profile=builtin`, `name=userns`).
    #[serde(default)]
    pub security_options: Vec<String>,
}

/// Docker's `HealthConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub retries: i32,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// Docker's container `Config` (what `docker inspect` shows under `Config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub domainname: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub attach_stdin: bool,
    #[serde(default)]
    pub attach_stdout: bool,
    #[serde(default)]
    pub attach_stderr: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub open_stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default, deserialize_with = "null_vec")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "string_or_vec")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default, deserialize_with = "string_or_vec")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub on_build: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

/// One published port binding (`HostIp`, `HostPort`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    #[serde(default)]
    pub host_ip: String,
    #[serde(default)]
    pub host_port: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(default)]
    pub r#type: String,
    #[serde(default, deserialize_with = "null_map")]
    pub config: BTreeMap<String, String>,
}

/// `--device /dev/host[:/dev/ctr[:rwm]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    #[serde(default)]
    pub path_on_host: String,
    #[serde(default)]
    pub path_in_container: String,
    #[serde(default)]
    pub cgroup_permissions: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ulimit {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Hard")]
    pub hard: i64,
    #[serde(rename = "Soft")]
    pub soft: i64,
}

/// Docker's `Mount` (`--mount`, and what `Mounts` in inspect is made from).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountSpec {
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub r#type: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<Value>,
}

/// `BlkioWeightDevice`: a device's block IO weight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WeightDevice {
    pub path: String,
    pub weight: u16,
}

/// `BlkioDeviceReadBps` and its kin: a device's IO rate limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ThrottleDevice {
    pub path: String,
    pub rate: u64,
}

/// `--gpus`: devices a device driver is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceRequest {
    pub driver: String,
    pub count: i64,
    #[serde(rename = "DeviceIDs")]
    pub device_ids: Option<Vec<String>>,
    pub capabilities: Option<Vec<Vec<String>>>,
    pub options: Option<BTreeMap<String, String>>,
}

/// Docker's `HostConfig`, every field of it in dockerd's order, kept as the client sent it:
/// a list or map the client left out or sent as `null` stays `null` (`None`), an empty one
/// stays `[]`, as dockerd shows them; the fields Go omits when empty are left out when empty.
/// What dockerd fills in at create (`ShmSize`, `IpcMode`, `Runtime`, `CgroupnsMode`,
/// `OomKillDisable`, the masked and read-only paths) the node fills in when it renders inspect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    #[serde(rename = "ContainerIDFile", alias = "ContainerIdFile")]
    pub container_id_file: String,
    pub log_config: LogConfig,
    pub network_mode: String,
    pub port_bindings: Option<BTreeMap<String, Vec<PortBinding>>>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub volume_driver: String,
    pub volumes_from: Option<Vec<String>>,
    #[serde(
        deserialize_with = "null_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    /// `host` or `private`; empty: the node's default.
    pub cgroupns_mode: String,
    pub dns: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub group_add: Option<Vec<String>>,
    pub ipc_mode: String,
    pub cgroup: String,
    pub links: Option<Vec<String>>,
    pub oom_score_adj: i64,
    pub pid_mode: String,
    pub privileged: bool,
    pub publish_all_ports: bool,
    pub readonly_rootfs: bool,
    pub security_opt: Option<Vec<String>>,
    #[serde(
        deserialize_with = "null_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub storage_opt: BTreeMap<String, String>,
    #[serde(
        deserialize_with = "null_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tmpfs: BTreeMap<String, String>,
    #[serde(rename = "UTSMode")]
    pub uts_mode: String,
    pub userns_mode: String,
    pub shm_size: i64,
    #[serde(
        deserialize_with = "null_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub sysctls: BTreeMap<String, String>,
    pub runtime: String,
    /// `[height, width]`; inspect shows `[0, 0]` when none was given.
    pub console_size: Option<[u32; 2]>,
    pub isolation: String,
    // dockerd's `Resources`, which `docker update` changes.
    pub cpu_shares: i64,
    pub memory: i64,
    pub nano_cpus: i64,
    pub cgroup_parent: String,
    pub blkio_weight: u16,
    pub blkio_weight_device: Option<Vec<WeightDevice>>,
    pub blkio_device_read_bps: Option<Vec<ThrottleDevice>>,
    pub blkio_device_write_bps: Option<Vec<ThrottleDevice>>,
    #[serde(rename = "BlkioDeviceReadIOps")]
    pub blkio_device_read_iops: Option<Vec<ThrottleDevice>>,
    #[serde(rename = "BlkioDeviceWriteIOps")]
    pub blkio_device_write_iops: Option<Vec<ThrottleDevice>>,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_realtime_period: i64,
    pub cpu_realtime_runtime: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// `--device`: host device nodes the container gets, with their cgroup permissions.
    pub devices: Option<Vec<DeviceMapping>>,
    /// `--device-cgroup-rule`: more devices the container may use (`c 13:* rwm`).
    pub device_cgroup_rules: Option<Vec<String>>,
    pub device_requests: Option<Vec<DeviceRequest>>,
    pub kernel_memory: i64,
    #[serde(rename = "KernelMemoryTCP")]
    pub kernel_memory_tcp: i64,
    pub memory_reservation: i64,
    pub memory_swap: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub pids_limit: Option<i64>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub cpu_count: i64,
    pub cpu_percent: i64,
    #[serde(rename = "IOMaximumIOps")]
    pub io_maximum_iops: u64,
    #[serde(rename = "IOMaximumBandwidth")]
    pub io_maximum_bandwidth: u64,
    #[serde(deserialize_with = "null_vec", skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
}

/// Per-network settings of a create (`NetworkingConfig.EndpointsConfig.<net>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(default, deserialize_with = "null_vec")]
    pub aliases: Vec<String>,
    #[serde(default, deserialize_with = "null_vec")]
    pub links: Vec<String>,
    /// `--ip` / `--ip6`.
    #[serde(default, rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    /// `--mac-address` (API 1.44 and later send it here).
    #[serde(default)]
    pub mac_address: String,
    /// API 1.48: the endpoint with the highest priority gives the default route.
    #[serde(default)]
    pub gw_priority: i64,
}

/// The addresses a create or connect asks for on one network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointIpamConfig {
    #[serde(
        default,
        rename = "IPv4Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_address: String,
    #[serde(
        default,
        rename = "IPv6Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkingConfig {
    #[serde(default, deserialize_with = "null_map")]
    pub endpoints_config: BTreeMap<String, EndpointSettings>,
}

/// The body of `POST /containers/create`: `Config` with `HostConfig` and `NetworkingConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig", default)]
    pub host_config: HostConfig,
    #[serde(rename = "NetworkingConfig", default)]
    pub networking_config: NetworkingConfig,
}

/// `container.create`: the gateway has checked the name is free on every node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    /// `/name` or empty for a generated name.
    pub name: String,
    pub body: CreateBody,
    /// `--platform`, if given.
    #[serde(default)]
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateResponse {
    pub id: String,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A request about one container, by full ID (the gateway resolved it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ById {
    pub id: String,
}

/// `container.stop` and `container.restart`: `signal` and `timeout` as `docker stop -s/-t` give
/// them (`None`: the container's StopSignal/StopTimeout, else SIGTERM and 10 s).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StopRequest {
    pub id: String,
    #[serde(default)]
    pub signal: Option<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// `container.start`/`container.stop` answer: `changed: false` is dockerd's 304 (already
/// started / already stopped).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Changed {
    pub changed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillRequest {
    pub id: String,
    /// Signal name or number as the client gave it; empty: SIGKILL.
    #[serde(default)]
    pub signal: String,
}

/// `container.wait`: `condition` is `not-running` (default), `next-exit` or `removed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitRequest {
    pub id: String,
    #[serde(default)]
    pub condition: String,
}

/// Docker's wait answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitResponse {
    pub status_code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WaitError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitError {
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub id: String,
    #[serde(default)]
    pub force: bool,
    /// `-v`: remove the container's anonymous volumes too.
    #[serde(default)]
    pub volumes: bool,
    /// `docker rm --link /PARENT/ALIAS`: remove the legacy link ALIAS of the container `id`
    /// (the parent) instead of a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectRequest {
    pub id: String,
    /// `--size`: compute SizeRw and SizeRootFs.
    #[serde(default)]
    pub size: bool,
}

/// `container.list`, answered by every node with its matching containers in Docker's
/// `/containers/json` shape; the gateway sorts (newest first) and cuts to `limit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListRequest {
    #[serde(default)]
    pub all: bool,
    /// `-n`/`--last`: the newest N (any state); the node returns at most this many.
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub size: bool,
    /// Docker's filters: name -> values.
    #[serde(default)]
    pub filters: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListResponse {
    pub node: String,
    /// `/containers/json` entries; the gateway sorts them by `Created` and, within one second,
    /// by [`ContainerSummary::created_nanos`] (which crosses the bus beside each entry).
    #[serde(with = "listed")]
    pub containers: Vec<ContainerSummary>,
}

/// [`ListResponse::containers`] on the bus: each entry with its creation time in nanoseconds,
/// which Docker's JSON of the entry leaves out.
mod listed {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ContainerSummary;

    #[derive(Serialize)]
    struct Out<'a> {
        created_nanos: i64,
        summary: &'a ContainerSummary,
    }

    #[derive(Deserialize)]
    struct In {
        #[serde(default)]
        created_nanos: i64,
        summary: ContainerSummary,
    }

    pub fn serialize<S: Serializer>(v: &[ContainerSummary], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|summary| Out {
            created_nanos: summary.created_nanos,
            summary,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ContainerSummary>, D::Error> {
        Ok(Vec::<In>::deserialize(d)?
            .into_iter()
            .map(|entry| ContainerSummary {
                created_nanos: entry.created_nanos,
                ..entry.summary
            })
            .collect())
    }
}

/// `container.resolve`: which containers an ID, ID prefix or name may mean.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolveRequest {
    pub name_or_id: String,
}

/// One candidate; `exact` when it matched the whole ID or the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveMatch {
    pub id: String,
    pub name: String,
    pub node: String,
    /// `id` (full ID), `name` or `prefix`.
    pub how: MatchKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    Id,
    Name,
    Prefix,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResolveResponse {
    pub node: String,
    pub matches: Vec<ResolveMatch>,
}

/// `container.logs` (a stream of frames, each already framed for the HTTP body: 8-byte
/// multiplex headers unless the container has a TTY).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogsRequest {
    pub id: String,
    #[serde(default)]
    pub follow: bool,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub stderr: bool,
    /// Unix seconds (with fraction), 0 for none.
    #[serde(default)]
    pub since: f64,
    #[serde(default)]
    pub until: f64,
    #[serde(default)]
    pub timestamps: bool,
    /// `all` or a number.
    #[serde(default)]
    pub tail: String,
}

/// Accept payload of `container.logs` and `container.attach`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The container has a TTY: frames are raw, not multiplexed.
    pub tty: bool,
}

/// `container.attach`: a stream of the container's output from now on (frames framed as for
/// logs), ending when the container's output ends. When `stdin` is set, the gateway opens a
/// `container.stdin` upload with the same `attach_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachRequest {
    pub id: String,
    /// Chosen by the gateway; pairs the stdin upload with this attach.
    pub attach_id: String,
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub stderr: bool,
    /// Replay the log first (`logs=1`).
    #[serde(default)]
    pub logs: bool,
    /// Docker's detach keys (`ctrl-p,ctrl-q` when empty).
    #[serde(default)]
    pub detach_keys: String,
}

/// Opening payload of `container.stdin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StdinRequest {
    pub id: String,
    pub attach_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResizeRequest {
    pub id: String,
    pub height: u16,
    pub width: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenameRequest {
    pub id: String,
    /// New name without the leading slash; the gateway checked it is free on every node.
    pub name: String,
}

/// Docker's `ExecConfig` (the body of `POST /containers/{id}/exec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    #[serde(default)]
    pub attach_stdin: bool,
    #[serde(default)]
    pub attach_stdout: bool,
    #[serde(default)]
    pub attach_stderr: bool,
    #[serde(default)]
    pub detach_keys: String,
    #[serde(default)]
    pub tty: bool,
    #[serde(default, deserialize_with = "null_vec")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_vec")]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u32; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecCreateRequest {
    /// The container's full ID.
    pub id: String,
    pub config: ExecConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecCreated {
    pub id: String,
}

/// An exec by its ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRef {
    pub exec_id: String,
}

/// Which node holds an exec (`found: false` from the others).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecLocation {
    pub node: String,
    pub found: bool,
}

/// Why an exec cannot start in a container whose state is `status` (`running`, `paused`, ...),
/// in dockerd's words; `None` when it can. The node refuses with it at the start, and the
/// gateway before it hijacks the client's connection, as dockerd answers these with an HTTP
/// error rather than in the stream.
pub fn exec_refusal(container_id: &str, status: &str) -> Option<crate::BusError> {
    let message = match status {
        "running" => return None,
        "paused" => {
            format!("Container {container_id} is paused, unpause the container before exec")
        }
        "restarting" => {
            format!("Container {container_id} is restarting, wait until the container is running")
        }
        _ => format!("Container {container_id} is not running"),
    };
    Some(crate::BusError::conflict(message))
}

/// `POST /exec/{id}/start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecStartRequest {
    pub exec_id: String,
    /// Pairs the stdin upload with this start (attached starts only).
    #[serde(default)]
    pub attach_id: String,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub console_size: Option<[u32; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecResizeRequest {
    pub exec_id: String,
    pub height: u16,
    pub width: u16,
}

/// `GET /containers/{id}/stats`: `stream` false gives one frame (two samples apart, as dockerd
/// does unless `one_shot`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsRequest {
    pub id: String,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub one_shot: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopRequest {
    pub id: String,
    /// `ps` options (`-ef` by default).
    #[serde(default)]
    pub ps_args: String,
}

/// `POST /containers/{id}/update`: the resources part of a HostConfig and a restart policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRequest {
    pub id: String,
    pub body: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerPruneResponse {
    #[serde(default)]
    pub containers_deleted: Vec<String>,
    pub space_reclaimed: u64,
}

/// `POST /networks/create` (Docker's body).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreateRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default, rename = "IPAM")]
    pub ipam: Option<Value>,
    #[serde(default, deserialize_with = "null_map")]
    pub options: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    /// API 1.48.
    #[serde(default, rename = "EnableIPv4")]
    pub enable_ipv4: Option<bool>,
}

/// A network by its full ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRef {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkConnectRequest {
    /// The network's full ID.
    pub network: String,
    /// The container's full ID.
    pub container: String,
    /// A connect's `EndpointConfig`: aliases, links, `--ip`.
    #[serde(default)]
    pub endpoint: EndpointSettings,
    #[serde(default)]
    pub force: bool,
}

/// One node's networks in Docker's shape (`Name`, `Id`, `Driver`, `IPAM`, `Containers`, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkListResponse {
    pub node: String,
    pub networks: Vec<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkPruneResponse {
    #[serde(default)]
    pub networks_deleted: Vec<String>,
}

/// A path in a container (`docker cp`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArchiveRequest {
    pub id: String,
    pub path: String,
    /// PUT: refuse to replace a directory with a non-directory or the reverse.
    #[serde(default)]
    pub no_overwrite_dir_non_dir: bool,
    /// PUT: keep the archive's owners (`docker cp -a`); else files belong to the container's
    /// root... as dockerd does.
    #[serde(default)]
    pub copy_uid_gid: bool,
}

/// Docker's `X-Docker-Container-Path-Stat` (base64 JSON in the header).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits (type bits in Go's layout: dir 1<<31, symlink 1<<27, ...).
    pub mode: u32,
    /// RFC 3339.
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// `POST /commit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommitRequest {
    pub id: String,
    /// `repo[:tag]` to tag the new image with (empty: untagged).
    #[serde(default)]
    pub reference: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub author: String,
    /// Pause the container while committing (default true in dockerd).
    #[serde(default)]
    pub pause: bool,
    /// Dockerfile instructions (`--change`).
    #[serde(default)]
    pub changes: Vec<String>,
    /// A config to merge over the container's (the request body).
    #[serde(default)]
    pub config: Option<Value>,
}

/// `docker volume create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeCreateRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default, deserialize_with = "null_map")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_map")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeRemoveRequest {
    pub name: String,
    #[serde(default)]
    pub force: bool,
}

/// `volume.list` and `volume.prune`: Docker's filters (prune applies only to the node's own).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeListRequest {
    #[serde(default)]
    pub filters: BTreeMap<String, Vec<String>>,
}

/// One node's volumes in Docker's shape (`Name`, `Driver`, `Mountpoint`, ...); with `size`
/// each carries `UsageData`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeListResponse {
    pub node: String,
    pub volumes: Vec<Value>,
}

/// One node's prune result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumePruneResponse {
    #[serde(default)]
    pub volumes_deleted: Vec<String>,
    pub space_reclaimed: u64,
}

fn null_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn null_map<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    Ok(Option::<BTreeMap<K, V>>::deserialize(d)?.unwrap_or_default())
}

/// Docker accepts `Cmd`/`Entrypoint` as a string too (old clients); a string is one argument.
/// Docker's `strslice.StrSlice`.
fn string_or_vec<'de, D>(d: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct StrSlice;

    impl<'de> serde::de::Visitor<'de> for StrSlice {
        type Value = Option<Vec<String>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(vec![s.to_string()]))
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            Ok(Some(items))
        }
    }

    d.deserialize_option(StrSlice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_starts_only_in_a_running_container_refused_in_dockerds_words() {
        assert!(exec_refusal("c1", "running").is_none());
        let refused = |status| exec_refusal("c1", status).unwrap();
        assert_eq!(
            refused("paused").message,
            "Container c1 is paused, unpause the container before exec"
        );
        assert_eq!(
            refused("restarting").message,
            "Container c1 is restarting, wait until the container is running"
        );
        for status in ["exited", "created", "dead", "removing"] {
            let e = refused(status);
            assert_eq!(e.message, "Container c1 is not running");
            assert_eq!(e.kind, crate::ErrorKind::Conflict);
        }
    }

    #[test]
    fn a_docker_cli_create_body_parses_with_nulls_and_strings() {
        let body: CreateBody = serde_json::from_str(
            r#"{"Hostname":"","Env":null,"Cmd":["sh","-c","exit 7"],"Image":"busybox",
                "Entrypoint":"echo","Labels":null,"Volumes":{"/data":{}},
                "HostConfig":{"Binds":null,"PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},
                  "RestartPolicy":{"Name":"no"},"AutoRemove":true,"Mounts":null,"Tmpfs":null,
                  "Ulimits":[{"Name":"nofile","Soft":1024,"Hard":2048}],"UTSMode":""},
                "NetworkingConfig":{"EndpointsConfig":{"net1":{"Aliases":["db"]}}}}"#,
        )
        .unwrap();
        assert_eq!(body.config.cmd.as_deref().unwrap(), ["sh", "-c", "exit 7"]);
        assert_eq!(body.config.entrypoint.as_deref().unwrap(), ["echo"]);
        assert!(body.config.env.is_empty());
        assert!(body.host_config.auto_remove);
        assert_eq!(
            body.host_config.port_bindings.as_ref().unwrap()["80/tcp"][0].host_port,
            "8080"
        );
        assert_eq!(body.host_config.ulimits.as_ref().unwrap()[0].hard, 2048);
        // A list sent as null stays null, as dockerd shows it.
        assert_eq!(body.host_config.binds, None);
        assert_eq!(
            body.networking_config.endpoints_config["net1"].aliases,
            ["db"]
        );
    }

    #[test]
    fn subjects_address_one_node_or_all() {
        assert_eq!(
            node_subject("n1", op::START),
            "wharf.v1.runtime.node.n1.container.start"
        );
        assert_eq!(all_subject(op::LIST), "wharf.v1.runtime.all.container.list");
        assert!(valid_node_name("node-1_a"));
        assert!(!valid_node_name("a.b"));
        assert!(!valid_node_name(""));
    }
}

//! What the node remembers of a container, on disk as `<containers>/<id>/container.json`
//! (written whole and renamed over, so a crash leaves the old record or the new one).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wharf_bus::container::{ContainerConfig, HostConfig, NetworkingConfig};

/// File name of the record in the container's directory.
pub const RECORD_FILE: &str = "container.json";

/// Docker's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Whether an init process exists (running or paused).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// Docker's `State`, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i64,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds; Go's zero time when never.
    pub started_at: String,
    pub finished_at: String,
    /// Set by `docker stop`/`kill`/`restart` so the restart policy leaves the exit alone.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// The health check's verdicts, when the container has one.
    #[serde(default)]
    pub health: Option<Health>,
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// Go's zero time as Docker prints it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A published port as attached: `container_port/proto` to `host_ip:host_port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// The container's place on the bridge network while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// The user network's ID; empty for the default bridge.
    #[serde(default)]
    pub network_id: String,
    #[serde(default)]
    pub network_name: String,
    /// The veth end on the host (empty: the default bridge's naming).
    #[serde(default)]
    pub host_interface: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub address: String,
    pub prefix: u8,
    pub gateway: String,
    pub mac: String,
    pub ports: Vec<PublishedPort>,
}

/// One mount as `docker inspect` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// Volume name (volumes only).
    #[serde(default)]
    pub name: String,
    pub source: String,
    pub destination: String,
    #[serde(default)]
    pub mode: String,
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
    /// Anonymous volume made for this container (removed with `rm -v`).
    #[serde(default)]
    pub anonymous: bool,
    /// Options for a tmpfs mount (`--tmpfs /x:size=1m`).
    #[serde(default)]
    pub options: String,
}

/// Everything the node keeps about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// With the leading slash, as Docker stores it.
    pub name: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    pub created_nanos: i64,
    /// The command: `path` and `args` as Docker splits them.
    pub path: String,
    pub args: Vec<String>,
    /// The effective config (image defaults merged in), as `docker inspect` shows it.
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub networking_config: NetworkingConfig,
    /// `sha256:<hex>` of the image.
    pub image_id: String,
    /// The image as the user named it (`docker ps` IMAGE column).
    pub image_name: String,
    /// Chain IDs of the image's layers, base first.
    pub chain_ids: Vec<String>,
    pub state: State,
    pub restart_count: i64,
    #[serde(default)]
    pub network: Option<NetworkState>,
    /// Further networks the container is attached to while it runs (eth1, eth2, ...).
    #[serde(default)]
    pub connected: Vec<NetworkState>,
    /// The container was disconnected from its `NetworkMode` network: as in dockerd it keeps
    /// the mode, but joins that network again only once connected to it again (docker compose
    /// creates a container on a network, disconnects it and connects it with its aliases).
    #[serde(default)]
    pub primary_detached: bool,
    /// Legacy links on the default bridge (`--link`), by the linked container's ID.
    #[serde(default)]
    pub links: Vec<super::links::Link>,
    #[serde(default)]
    pub mounts: Vec<MountPoint>,
    /// Resolved `-u`: uid, gid and supplementary gids.
    #[serde(default)]
    pub has_been_started: bool,
    #[serde(default)]
    pub platform: String,
}

impl ContainerRecord {
    /// Writes the record into `dir` atomically.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        wharf_bus::files::write_atomic(
            &dir.join(RECORD_FILE),
            &json,
            wharf_bus::files::Durability::Unsynced,
        )
    }

    /// Reads the record in `dir`.
    pub fn load(dir: &Path) -> std::io::Result<ContainerRecord> {
        let bytes = std::fs::read(dir.join(RECORD_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    /// Every network the container is attached to (first its own, then connected ones).
    pub fn networks(&self) -> Vec<NetworkState> {
        self.network
            .iter()
            .chain(self.connected.iter())
            .cloned()
            .collect()
    }

    /// The container's cgroup, relative to each hierarchy's root: `wharf/<id>`, or
    /// `<parent>/<id>` with `--cgroup-parent` (checked at create: no `.` or `..` in it).
    pub fn cgroup_path(&self) -> String {
        match self.host_config.cgroup_parent.trim_matches('/') {
            "" => format!("wharf/{}", self.id),
            parent => format!("{parent}/{}", self.id),
        }
    }

    /// The name without its slash.
    pub fn short_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }
}

/// The files of one container: `<containers>/<id>/...`.
#[derive(Debug, Clone)]
pub struct ContainerPaths {
    pub dir: PathBuf,
}

impl ContainerPaths {
    pub fn new(root: &Path, id: &str) -> ContainerPaths {
        ContainerPaths { dir: root.join(id) }
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}-json.log"))
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub fn netns(&self) -> PathBuf {
        self.dir.join("netns")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join(crate::shim::STATE_FILE)
    }
}

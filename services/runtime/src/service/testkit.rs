//! Doubles for the service's unit tests: [`RecordingHost`], a [`Host`] that records every call
//! the lifecycle makes, in order, and can be told to fail some of them; and [`node`], a node on
//! it in a temporary directory, without root and without a bus server.
//!
//! The double plays the shims too: a container it starts runs until it is signalled (its exit
//! code is then 128 + the signal) or, when the test said so ([`RecordingHost::exit_codes`]),
//! exits on its own at once with the next scripted code.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use wharf_bus::container::{ContainerConfig, HostConfig};

use crate::cgroups::{self, Cgroup, CgroupError, GroupPath, Layout, Resources, Stats};
use crate::network::{self, Attachment, BridgeNetwork, NetworkConfig, NetworkError, PortMapping};
use crate::shim::{self, ShimError, ShimLaunch, ShimState};
use crate::snapshot::{BusBlobSource, Snapshotter};
use crate::volume::VolumeStore;

use super::host::Remap;
use super::kernel::{Host, PendingShim};
use super::record::{ContainerPaths, ContainerRecord, State, ZERO_TIME};
use super::{exec, names, networks, streams, Container, Node, NodeOptions};

/// The bridge of the test node's default network (never made: attachments are recorded).
pub(crate) const BRIDGE: &str = "wharf-test";

/// A [`Host`] that does nothing but record. Each call is one line, `op arg` (see
/// [`RecordingHost::calls`]); the methods of the cgroups it hands out are recorded as
/// `cgroup.<method> wharf/<id>`.
pub(crate) struct RecordingHost {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<Recorded>,
    /// Bumped at every change of a container process, for the waiters.
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct Recorded {
    calls: Vec<String>,
    failing: HashSet<String>,
    exits: VecDeque<i64>,
    ignored_signals: HashSet<i32>,
    /// Container processes by bundle.
    processes: HashMap<PathBuf, Process>,
    /// Groups that exist (created, or left by an earlier runtime).
    groups: HashSet<String>,
    next_pid: i32,
    next_address: u32,
}

struct Process {
    pid: i32,
    exit: Option<i64>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `op arg`; the injected failure's message when `op` was told to fail.
    fn record(&self, op: &str, arg: impl AsRef<str>) -> Result<(), String> {
        let line = format!("{op} {}", arg.as_ref());
        let mut state = self.lock();
        state.calls.push(line.clone());
        if state.failing.contains(op) {
            return Err(format!("injected failure of {line}"));
        }
        Ok(())
    }

    fn changed(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

impl RecordingHost {
    pub(crate) fn new() -> Arc<RecordingHost> {
        Arc::new(RecordingHost {
            shared: Arc::new(Shared {
                state: Mutex::new(Recorded {
                    next_pid: 4000,
                    ..Default::default()
                }),
                changed: tokio::sync::watch::channel(0).0,
            }),
        })
    }

    /// Every call so far, in order: `mount_rootfs web/rootfs`, `attach wharf-test web eth0`,
    /// `cgroup.kill_all wharf/web SIGKILL`, `shim_kill web 15`... Paths are shown by their
    /// last two components, shims by their container's ID.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.shared.lock().calls.clone()
    }

    /// The calls made after the first `from`.
    pub(crate) fn calls_since(&self, from: usize) -> Vec<String> {
        self.calls().split_off(from)
    }

    /// How many calls of `op` were made.
    pub(crate) fn count(&self, op: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.split(' ').next() == Some(op))
            .count()
    }

    /// Every later call of `op` (`create_netns`, `cgroup.apply`, `shim_launch`...) fails, after
    /// it is recorded.
    pub(crate) fn fail(&self, op: &str) {
        self.shared.lock().failing.insert(op.to_string());
    }

    /// The next containers started exit on their own at once, one code each.
    pub(crate) fn exit_codes(&self, codes: &[i64]) {
        self.shared.lock().exits.extend(codes);
    }

    /// Containers survive `signal` (as a process that handles SIGTERM and goes on).
    pub(crate) fn ignore_signal(&self, signal: i32) {
        self.shared.lock().ignored_signals.insert(signal);
    }

    /// The container of `bundle` runs already (started by an earlier runtime).
    pub(crate) fn running(&self, bundle: &Path) {
        let mut state = self.shared.lock();
        state.next_pid += 1;
        let process = Process {
            pid: state.next_pid,
            exit: None,
        };
        state.processes.insert(bundle.to_path_buf(), process);
    }

    /// The group `path` exists already (left by an earlier runtime).
    pub(crate) fn existing_cgroup(&self, path: &str) {
        self.shared.lock().groups.insert(path.to_string());
    }

    fn cgroup(&self, path: &str) -> cgroups::Result<Box<dyn Cgroup>> {
        Ok(Box::new(RecordingCgroup {
            path: GroupPath::new(path)?,
            shared: self.shared.clone(),
        }))
    }

    fn state_of(&self, bundle: &Path) -> shim::Result<ShimState> {
        let state = self.shared.lock();
        let process = state.processes.get(bundle).ok_or_else(|| gone(bundle))?;
        Ok(ShimState {
            pid: process.pid,
            status: match process.exit {
                None => shim::Status::Running,
                Some(_) => shim::Status::Exited,
            },
            started_at: "2024-01-01T00:00:00Z".into(),
            exit_code: process.exit.map(|c| c as i32),
            finished_at: process.exit.map(|_| "2024-01-01T00:00:01Z".into()),
            oom_killed: Some(false),
        })
    }
}

/// `<parent>/<name>` of a path under a container's directory.
fn short(path: &Path) -> String {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    format!("{}/{}", name(path.parent()), name(Some(path)))
}

/// A bundle's container ID.
fn bundle_id(bundle: &Path) -> String {
    bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn gone(bundle: &Path) -> ShimError {
    ShimError::Gone {
        bundle: bundle.to_path_buf(),
    }
}

impl Host for RecordingHost {
    fn mount_rootfs(
        &self,
        _lower: &[PathBuf],
        _empty: &Path,
        _upper: &Path,
        _work: &Path,
        target: &Path,
        _remap: Remap,
    ) -> std::io::Result<()> {
        self.shared
            .record("mount_rootfs", short(target))
            .map_err(std::io::Error::other)
    }

    fn unmount_rootfs(&self, target: &Path, _layers: &Path) -> std::io::Result<()> {
        self.shared
            .record("unmount_rootfs", short(target))
            .map_err(std::io::Error::other)
    }

    fn create_netns(&self, path: &Path) -> std::io::Result<()> {
        self.shared
            .record("create_netns", short(path))
            .map_err(std::io::Error::other)
    }

    fn dns_listen(&self, netns: &Path) -> std::io::Result<crate::dns::Listeners> {
        self.shared
            .record("dns_listen", short(netns))
            .map_err(std::io::Error::other)?;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no DNS server in the test double",
        ))
    }

    fn remove_netns(&self, path: &Path) -> std::io::Result<()> {
        self.shared
            .record("remove_netns", short(path))
            .map_err(std::io::Error::other)
    }

    fn write_file(&self, path: &Path, _contents: &[u8]) -> std::io::Result<()> {
        self.shared
            .record("write_file", short(path))
            .map_err(std::io::Error::other)
    }

    fn attach(
        &self,
        bridge: &BridgeNetwork,
        container: &str,
        _netns: &Path,
        ports: &[PortMapping],
        host_interface: &str,
        interface: &str,
        want: &network::Requested,
    ) -> network::Result<Attachment> {
        let config = bridge.config();
        self.shared
            .record(
                "attach",
                format!("{} {container} {interface}", config.bridge),
            )
            .map_err(network_error)?;
        let n = {
            let mut state = self.shared.lock();
            state.next_address += 1;
            state.next_address
        };
        let gateway = config.subnet.gateway();
        let address = want
            .address
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(gateway) + n));
        Ok(Attachment {
            address,
            prefix: config.subnet.prefix(),
            gateway,
            mac: want.mac.unwrap_or_else(|| network::mac_for(address)),
            host_interface: host_interface.to_string(),
            interface: interface.to_string(),
            ports: ports.to_vec(),
        })
    }

    fn release(&self, bridge: &BridgeNetwork, container: &str) -> network::Result<()> {
        let what = format!("{} {container}", bridge.config().bridge);
        self.shared.record("release", what).map_err(network_error)
    }

    fn detach(&self, bridge: &BridgeNetwork, container: &str) -> network::Result<()> {
        let what = format!("{} {container}", bridge.config().bridge);
        self.shared.record("detach", what).map_err(network_error)
    }

    fn detach_as(
        &self,
        bridge: &BridgeNetwork,
        container: &str,
        host_interface: &str,
    ) -> network::Result<()> {
        let what = format!("{} {container} {host_interface}", bridge.config().bridge);
        self.shared.record("detach_as", what).map_err(network_error)
    }

    fn cgroup_create(&self, _layout: &Layout, path: &str) -> cgroups::Result<Box<dyn Cgroup>> {
        self.shared
            .record("cgroup_create", path)
            .map_err(|m| cgroup_error(path, m))?;
        self.shared.lock().groups.insert(path.to_string());
        self.cgroup(path)
    }

    fn cgroup_open(&self, _layout: &Layout, path: &str) -> cgroups::Result<Box<dyn Cgroup>> {
        self.shared
            .record("cgroup_open", path)
            .map_err(|m| cgroup_error(path, m))?;
        if !self.shared.lock().groups.contains(path) {
            return Err(CgroupError::NotFound(PathBuf::from(path)));
        }
        self.cgroup(path)
    }

    fn shim_spawn(&self, _binary: &Path, bundle: &Path) -> shim::Result<PendingShim> {
        self.shared
            .record("shim_spawn", bundle_id(bundle))
            .map_err(ShimError::Refused)?;
        Ok(PendingShim::none())
    }

    fn shim_launch<'a>(
        &'a self,
        _shim: PendingShim,
        launch: &'a ShimLaunch,
    ) -> BoxFuture<'a, shim::Result<()>> {
        let recorded = self.shared.record("shim_launch", &launch.id);
        Box::pin(async move { recorded.map_err(ShimError::Refused) })
    }

    fn shim_start<'a>(&'a self, bundle: &'a Path) -> BoxFuture<'a, shim::Result<ShimState>> {
        Box::pin(async move {
            self.shared
                .record("shim_start", bundle_id(bundle))
                .map_err(ShimError::Refused)?;
            {
                let mut state = self.shared.lock();
                state.next_pid += 1;
                let process = Process {
                    pid: state.next_pid,
                    exit: state.exits.pop_front(),
                };
                state.processes.insert(bundle.to_path_buf(), process);
            }
            self.shared.changed();
            let mut started = self.state_of(bundle)?;
            // The shim answers the start before its child's exit is known.
            started.status = shim::Status::Running;
            started.exit_code = None;
            started.finished_at = None;
            Ok(started)
        })
    }

    fn shim_kill<'a>(&'a self, bundle: &'a Path, signal: i32) -> BoxFuture<'a, shim::Result<()>> {
        Box::pin(async move {
            self.shared
                .record("shim_kill", format!("{} {signal}", bundle_id(bundle)))
                .map_err(ShimError::Refused)?;
            {
                let mut state = self.shared.lock();
                let ignored = state.ignored_signals.contains(&signal);
                let process = state
                    .processes
                    .get_mut(bundle)
                    .ok_or_else(|| gone(bundle))?;
                if process.exit.is_none() && !ignored {
                    process.exit = Some(128 + signal as i64);
                }
            }
            self.shared.changed();
            Ok(())
        })
    }

    fn shim_wait<'a>(&'a self, bundle: &'a Path) -> BoxFuture<'a, shim::Result<ShimState>> {
        Box::pin(async move {
            self.shared
                .record("shim_wait", bundle_id(bundle))
                .map_err(ShimError::Refused)?;
            let mut changes = self.shared.changed.subscribe();
            loop {
                changes.borrow_and_update();
                let state = self.state_of(bundle)?;
                if state.exit_code.is_some() {
                    return Ok(state);
                }
                if changes.changed().await.is_err() {
                    return Err(gone(bundle));
                }
            }
        })
    }

    fn shim_state<'a>(&'a self, bundle: &'a Path) -> BoxFuture<'a, shim::Result<ShimState>> {
        Box::pin(async move {
            self.shared
                .record("shim_state", bundle_id(bundle))
                .map_err(ShimError::Refused)?;
            self.state_of(bundle)
        })
    }
}

fn network_error(message: String) -> NetworkError {
    NetworkError::Command {
        command: "recording host".into(),
        stderr: message,
    }
}

fn cgroup_error(path: &str, message: String) -> CgroupError {
    CgroupError::Dir {
        op: "recorded",
        dir: PathBuf::from(path),
        source: std::io::Error::other(message),
    }
}

/// A group handed out by [`RecordingHost`]: its methods are recorded too.
struct RecordingCgroup {
    path: GroupPath,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RecordingCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordingCgroup({})", self.path)
    }
}

impl RecordingCgroup {
    fn record(&self, method: &str, extra: &str) -> cgroups::Result<()> {
        let path = self.path.to_string();
        let what = if extra.is_empty() {
            path.clone()
        } else {
            format!("{path} {extra}")
        };
        self.shared
            .record(&format!("cgroup.{method}"), what)
            .map_err(|m| cgroup_error(&path, m))
    }
}

impl Cgroup for RecordingCgroup {
    fn path(&self) -> &GroupPath {
        &self.path
    }

    fn dirs(&self) -> Vec<PathBuf> {
        vec![Path::new("/sys/fs/cgroup").join(self.path.to_string())]
    }

    fn add_process(&self, pid: Pid) -> cgroups::Result<()> {
        self.record("add_process", &pid.to_string())
    }

    fn apply(&self, _resources: &Resources) -> cgroups::Result<()> {
        self.record("apply", "")
    }

    fn freeze(&self) -> cgroups::Result<()> {
        self.record("freeze", "")
    }

    fn thaw(&self) -> cgroups::Result<()> {
        self.record("thaw", "")
    }

    fn stats(&self) -> cgroups::Result<Stats> {
        self.record("stats", "").map(|_| Stats::default())
    }

    fn oom_killed(&self) -> cgroups::Result<bool> {
        self.record("oom_killed", "").map(|_| false)
    }

    fn pids(&self) -> cgroups::Result<Vec<Pid>> {
        self.record("pids", "").map(|_| Vec::new())
    }

    fn kill_all(&self, signal: Signal) -> cgroups::Result<()> {
        self.record("kill_all", signal.as_str())
    }

    fn destroy(&self) -> cgroups::Result<()> {
        self.record("destroy", "")?;
        self.shared.lock().groups.remove(&self.path.to_string());
        Ok(())
    }
}

/// A bus client without a server: its connection task is gone, so what it publishes (events)
/// is dropped and its requests fail at once, as on a node whose bus went away.
fn client_without_server() -> async_nats::Client {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let client = runtime
            .block_on(
                async_nats::ConnectOptions::new()
                    .retry_on_initial_connect()
                    .connect("nats://127.0.0.1:1"),
            )
            .expect("a client");
        // Ends the client's connection task with its runtime.
        drop(runtime);
        client
    })
    .join()
    .expect("the client's thread")
}

/// A node under `root` whose host is `host`: cgroup v2 and the default bridge as far as the
/// lifecycle can tell, with nothing made on the host.
pub(crate) fn node(root: &Path, host: Arc<RecordingHost>) -> Arc<Node> {
    let root = root.join("runtime");
    let mut network = NetworkConfig::new(root.join("network"));
    network.bridge = BRIDGE.into();
    std::fs::create_dir_all(&network.state_dir).expect("the network's directory");
    let options = NodeOptions {
        root: root.clone(),
        name: "test".into(),
        labels: Default::default(),
        shim_binary: root.join("no-shim"),
        network: network.clone(),
        userns: None,
    };
    let containers_dir = root.join("containers");
    std::fs::create_dir_all(&containers_dir).expect("the containers' directory");
    let client = client_without_server();
    Arc::new(Node {
        blobs: BusBlobSource::new(client.clone()),
        cluster_names: names::ClusterNames::new(&client),
        client,
        containers_dir,
        snapshots: Snapshotter::open(root.join("snapshots")).expect("a snapshotter"),
        network: Some(BridgeNetwork::open(network).expect("the default network")),
        volumes: VolumeStore::open(root.join("volumes")).expect("a volume store"),
        cgroups: Some(Layout::V2 {
            root: root.join("cgroup"),
        }),
        containers: Mutex::new(HashMap::new()),
        names: Mutex::new(HashMap::new()),
        stdin_slots: streams::StdinSlots::default(),
        execs: exec::Execs::default(),
        networks: networks::Networks::open(root.join("networks"), "wharf_test"),
        userns: None,
        seccomp: Default::default(),
        dns: Default::default(),
        host,
        options,
    })
}

/// The record of a created container `id` (named `/id`) running `/bin/true` from an image
/// without layers, with `host_config`.
pub(crate) fn record(id: &str, host_config: HostConfig) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        name: format!("/{id}"),
        created: "2024-01-01T00:00:00Z".into(),
        created_nanos: 0,
        path: "/bin/true".into(),
        args: Vec::new(),
        config: ContainerConfig {
            image: "test".into(),
            hostname: id.into(),
            cmd: Some(vec!["/bin/true".into()]),
            ..Default::default()
        },
        host_config,
        networking_config: Default::default(),
        image_id: String::new(),
        image_name: "test".into(),
        chain_ids: Vec::new(),
        state: State {
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            ..Default::default()
        },
        restart_count: 0,
        network: None,
        connected: Vec::new(),
        primary_detached: false,
        links: Vec::new(),
        mounts: Vec::new(),
        has_been_started: false,
        platform: "linux".into(),
    }
}

/// Writes `rec` where the node keeps it, as a create (or an earlier runtime) left it.
pub(crate) fn save(node: &Node, rec: &ContainerRecord) -> ContainerPaths {
    let paths = ContainerPaths::new(&node.containers_dir, &rec.id);
    std::fs::create_dir_all(&paths.dir).expect("the container's directory");
    rec.save(&paths.dir).expect("the record saved");
    paths
}

/// A created container `id` with `host_config`, on the node as create leaves it.
pub(crate) fn container(node: &Node, id: &str, host_config: HostConfig) -> Arc<Container> {
    let rec = record(id, host_config);
    let paths = save(node, &rec);
    let c = Container::new(paths, rec.clone());
    node.names
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(rec.name.clone(), rec.id.clone());
    node.containers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(rec.id.clone(), c.clone());
    c
}

/// Waits (10 s at most) until `done` holds; panics naming `what` otherwise.
pub(crate) async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

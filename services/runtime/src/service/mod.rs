//! The runtime node on the bus: its containers, their records, and the endpoints the gateway
//! calls (`wharf.v1.runtime.node.<node>.<op>` and the broadcast `wharf.v1.runtime.all.<op>`).
//!
//! - `record`: the persisted container record and its files.
//! - `runtime_spec`: the OCI runtime spec of a container.
//! - `user`: `-u` resolved in the image's passwd and group files.
//! - `host`: overlay root, network namespace, /etc files.
//! - `kernel`: the [`Host`](kernel::Host) seam every mount, namespace, attachment, cgroup and
//!   shim call of the lifecycle goes through, so tests can record them instead.
//! - `create`: create: the request checked, image defaults merged, ID, name, root and record.
//! - `mounts`: binds, volumes, `--mount`, `--tmpfs` and `--volumes-from`, parsed and made.
//! - `ports`: published ports, parsed and picked.
//! - `network_attach`: a container on its networks (start, connect, disconnect), /etc/hosts.
//! - `start`: start, the shim's launch, and undoing what a start set up.
//! - `stop`: stop, restart, kill, pause and unpause.
//! - `exits`: what happens at exit (restart policy, `--rm`), and wait.
//! - `remove`: rm, and the background removal of a container's files.
//! - `restore`: the containers the node finds at start.
//! - `views`: `docker inspect` and `docker ps` shapes, resolve, filters.
//! - `streams`: logs, attach and stdin.
//! - `names`: the names in use, generated names, and rename.
//! - `stats`, `top`, `update`, `container_prune`: those commands; `limits`: the cgroup limits
//!   of a host config and the log's size.
//! - `step_run`, `step_copy`, `step_export`: a build's RUN and COPY/ADD steps and `COPY --from`
//!   sources (`build.run`, `build.copy`, `build.export`).

mod archive;
mod blocking;
mod commit;
mod container_prune;
mod create;
mod devices;
mod exec;
mod exits;
mod health;
pub mod host;
pub mod kernel;
mod limits;
mod links;
mod mounts;
mod names;
mod network_attach;
pub mod networks;
mod ports;
pub mod record;
mod remove;
pub use remove::drain_removals;
mod restore;
mod runtime_spec;
pub mod security;
mod start;
mod stats;
mod step_copy;
mod step_export;
mod step_run;
mod stop;
mod streams;
mod top;
mod update;
pub mod user;
mod views;
mod volumes;

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod testkit;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use wharf_bus::api;
use wharf_bus::container::{self as bus, NodeInfo};
use wharf_bus::endpoint::{BroadcastSubject, Empty, Endpoint, Subject};
use wharf_bus::{BusError, ErrorKind};

use crate::cgroups::Layout;
use crate::network::{BridgeNetwork, NetworkConfig};
use crate::snapshot::{BusBlobSource, Snapshotter};
use crate::volume::VolumeStore;

use record::{ContainerPaths, ContainerRecord, Status};

/// Settings of one runtime node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `<data-root>/runtime`.
    pub root: PathBuf,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// The `wharf-shim` program.
    pub shim_binary: PathBuf,
    /// Bridge, subnet and firewall table of the default network.
    pub network: NetworkConfig,
    /// `--userns-remap`: the host IDs container root and its users are (none: the host's).
    pub userns: Option<crate::userns::IdMap>,
}

/// What waiters watch: exits and removal.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    pub exits: u64,
    pub exit_code: i64,
    pub running: bool,
    pub removed: bool,
}

/// One container of this node.
pub struct Container {
    pub id: String,
    pub paths: ContainerPaths,
    pub record: Mutex<ContainerRecord>,
    /// Serializes start, stop, restart and remove of this container.
    pub op_lock: tokio::sync::Mutex<()>,
    pub phase: tokio::sync::watch::Sender<Phase>,
    /// Attaches made while the container was not running: joined to the shim at start.
    pub pending_attaches: Mutex<Vec<streams::PendingAttach>>,
}

impl Container {
    /// The container `rec` describes, its files under `paths`, its phase as the record says
    /// (a new container's is the default one).
    pub fn new(paths: ContainerPaths, rec: ContainerRecord) -> Arc<Container> {
        let phase = Phase {
            exit_code: rec.state.exit_code,
            running: rec.state.status.is_live(),
            ..Default::default()
        };
        Arc::new(Container {
            id: rec.id.clone(),
            paths,
            record: Mutex::new(rec),
            op_lock: tokio::sync::Mutex::new(()),
            phase: tokio::sync::watch::channel(phase).0,
            pending_attaches: Mutex::new(Vec::new()),
        })
    }

    pub fn snapshot(&self) -> ContainerRecord {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut ContainerRecord) -> R) -> R {
        f(&mut self.record.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies `f` and writes the record.
    pub fn update(&self, f: impl FnOnce(&mut ContainerRecord)) -> Result<(), BusError> {
        let mut rec = self.record.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut rec);
        rec.save(&self.paths.dir)
            .map_err(|e| BusError::internal(format!("cannot save container {}: {e}", self.id)))
    }

    /// [`Container::update`] where nobody waits for the answer (an exit, a health probe, a
    /// restore): the record in memory changes all the same, and a record that cannot be saved
    /// is logged, since after a restart of the node the container comes back as last saved.
    pub fn update_logged(&self, f: impl FnOnce(&mut ContainerRecord)) {
        if let Err(e) = self.update(f) {
            tracing::warn!(container = %self.id, "{}", e.message);
        }
    }

    pub fn status(&self) -> Status {
        self.with(|r| r.state.status)
    }
}

/// The node: everything its handlers share.
pub struct Node {
    pub options: NodeOptions,
    pub client: async_nats::Client,
    pub containers_dir: PathBuf,
    pub snapshots: Snapshotter,
    pub blobs: BusBlobSource,
    pub network: Option<BridgeNetwork>,
    pub volumes: VolumeStore,
    pub cgroups: Option<Layout>,
    pub containers: Mutex<HashMap<String, Arc<Container>>>,
    /// Names (with slash) to IDs, including names reserved by creates in progress.
    pub names: Mutex<HashMap<String, String>>,
    /// The names in use on every node (a JetStream key-value bucket).
    pub cluster_names: names::ClusterNames,
    pub stdin_slots: streams::StdinSlots,
    pub execs: exec::Execs,
    pub networks: networks::Networks,
    /// With `--userns-remap`: a user namespace holding the node's ID map, through which
    /// containers' layers are mounted idmapped.
    pub userns: Option<std::os::fd::OwnedFd>,
    /// The seccomp programs compiled for containers and execs.
    pub seccomp: crate::seccomp::Cache,
    /// The embedded DNS servers of the containers on user networks.
    pub dns: crate::dns::Server,
    /// Mounts, network namespaces and attachments, cgroups, the files written for containers
    /// and their shims: the host itself, or a test's double.
    pub host: Arc<dyn kernel::Host>,
}

impl Node {
    pub fn get(&self, id: &str) -> Result<Arc<Container>, BusError> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| BusError::not_found(format!("No such container: {id}")))
    }

    pub fn all(&self) -> Vec<Arc<Container>> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn info(&self) -> NodeInfo {
        let mut info = NodeInfo {
            name: self.options.name.clone(),
            labels: self.options.labels.clone(),
            cgroup_version: match &self.cgroups {
                Some(Layout::V2 { .. }) => "2".into(),
                Some(_) => "1".into(),
                None => String::new(),
            },
            cgroup_driver: "cgroupfs".into(),
            bridge: self.options.network.bridge.clone(),
            subnet: self.options.network.subnet.to_string(),
            security_options: std::iter::once("name=seccomp,profile=builtin".to_string())
                .chain(self.userns.is_some().then(|| "name=userns".to_string()))
                .collect(),
            ..Default::default()
        };
        for c in self.all() {
            info.containers += 1;
            match c.status() {
                Status::Running | Status::Restarting => info.running += 1,
                Status::Paused => info.paused += 1,
                _ => info.stopped += 1,
            }
        }
        info
    }

    pub async fn publish_event(
        &self,
        rec: &ContainerRecord,
        action: &str,
        extra: &[(&str, String)],
    ) {
        let mut attributes = std::collections::BTreeMap::new();
        for (k, v) in &rec.config.labels {
            attributes.insert(k.clone(), v.clone());
        }
        attributes.insert("image".to_string(), rec.image_name.clone());
        attributes.insert("name".to_string(), rec.short_name().to_string());
        for (k, v) in extra {
            attributes.insert(k.to_string(), v.clone());
        }
        let event = wharf_bus::events::Event::now("container", action, &rec.id, attributes);
        wharf_bus::events::publish(&self.client, &event).await;
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, BusError> {
    wharf_bus::rpc::decode(payload).inspect_err(|e| {
        tracing::warn!(
            payload = %String::from_utf8_lossy(&payload[..payload.len().min(200)]),
            "{}: {}", std::any::type_name::<T>(), e.message
        )
    })
}

/// Opens the node's stores, adopts the containers an earlier process left running, registers
/// the endpoints and serves until the bus connection ends.
pub async fn run(client: async_nats::Client, options: NodeOptions) -> anyhow::Result<()> {
    if !bus::valid_node_name(&options.name) {
        anyhow::bail!(
            "invalid node name {:?}: use letters, digits, '-' and '_' (at most 64)",
            options.name
        );
    }
    let containers_dir = options.root.join("containers");
    std::fs::create_dir_all(&containers_dir)?;
    // Root alone may enter the node's directory (moby CVE-2021-41091): through it, another
    // user of the host would reach containers' files (a setuid program of an image, data in
    // volumes) and the shims' control sockets.
    // With --userns-remap, the containers' root group may pass too (0710, as dockerd's
    // remapped root directory), to reach the files bound into them; nobody else.
    {
        use std::os::unix::fs::PermissionsExt;
        let (mode, group) = match options.userns {
            Some(map) => (0o710, map.gid),
            None => (0o700, 0),
        };
        nix::unistd::chown(&options.root, None, Some(nix::unistd::Gid::from_raw(group)))?;
        std::fs::set_permissions(&options.root, std::fs::Permissions::from_mode(mode))?;
    }
    let snapshots = Snapshotter::open(options.root.join("snapshots"))?;
    let volumes = VolumeStore::open(options.root.join("volumes"))?;
    let cgroups = match Layout::detect() {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("no cgroups ({e}): containers run without limits or stats");
            None
        }
    };
    let network = {
        let config = options.network.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<BridgeNetwork> {
            std::fs::create_dir_all(&config.state_dir)?;
            let net = BridgeNetwork::open(config)?;
            net.setup()?;
            Ok(net)
        })
        .await?
    };
    let network = match network {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::error!("bridge network unavailable ({e:#}): containers get no network");
            None
        }
    };
    let user_networks = {
        let dir = options.root.join("networks");
        let table = options.network.table.clone();
        tokio::task::spawn_blocking(move || networks::Networks::open(dir, &table)).await?
    };
    let userns = match options.userns {
        Some(map) => Some(tokio::task::spawn_blocking(move || map.user_namespace()).await??),
        None => None,
    };
    let node = Arc::new(Node {
        userns,
        blobs: BusBlobSource::new(client.clone()),
        client: client.clone(),
        containers_dir,
        snapshots,
        network,
        volumes,
        cgroups,
        containers: Mutex::new(HashMap::new()),
        names: Mutex::new(HashMap::new()),
        cluster_names: names::ClusterNames::new(&client),
        stdin_slots: streams::StdinSlots::default(),
        execs: exec::Execs::default(),
        networks: user_networks,
        seccomp: Default::default(),
        dns: Default::default(),
        host: Arc::new(kernel::RealHost),
        options,
    });
    restore::restore(&node).await;

    let mut running = wharf_bus::service::start(
        &client,
        wharf_bus::subjects::service_name::RUNTIME,
        "Wharf runtime: containers on this node",
        wharf_bus::subjects::group::RUNTIME,
    )
    .await?;
    let group = format!(
        "{}.runtime.node.{}",
        wharf_bus::subjects::PREFIX,
        node.options.name
    );
    // Request/reply operations: the declared request in, the declared reply out.
    macro_rules! reply {
        ($e:ty, |$n:ident, $req:ident| $body:expr) => {{
            let node = node.clone();
            running
                .serve_endpoint::<$e, _, _>(&group, move |incoming| {
                    let $n = node.clone();
                    async move {
                        let $req = incoming.request;
                        let reply: <$e as Endpoint>::Reply = $body;
                        Ok(reply)
                    }
                })
                .await?;
        }};
    }
    // Streams: the handler accepts the stream (`raw`, typed by the declaration) itself.
    macro_rules! stream {
        ($e:ty, |$n:ident, $req:ident, $raw:ident| $body:expr) => {{
            let node = node.clone();
            running
                .serve_stream::<$e, _, _>(&group, move |incoming| {
                    let $n = node.clone();
                    async move {
                        let ($req, $raw) = incoming.split();
                        $body;
                        Ok(())
                    }
                })
                .await?;
        }};
    }
    reply!(api::ContainerCreate, |n, req| create::create(&n, req)
        .await?);
    reply!(api::ContainerStart, |n, req| start::start(
        &n,
        &n.get(&req.id)?
    )
    .await?);
    reply!(api::ContainerStop, |n, req| {
        stop::stop(&n, &n.get(&req.id)?, req.signal, req.timeout).await?
    });
    reply!(api::ContainerRestart, |n, req| {
        stop::restart(&n, &n.get(&req.id)?, req.signal, req.timeout).await?
    });
    reply!(api::ContainerKill, |n, req| {
        stop::kill(&n, &n.get(&req.id)?, &req.signal).await?;
        Empty
    });
    reply!(api::ContainerWait, |n, req| {
        exits::wait(&n, &req.id, &req.condition).await?
    });
    reply!(api::ContainerRemove, |n, req| {
        let c = n.get(&req.id)?;
        match &req.link {
            Some(alias) => links::remove(&c, alias)?,
            None => remove::remove(&n, &c, req.force, req.volumes).await?,
        }
        Empty
    });
    reply!(api::ContainerInspect, |n, req| {
        views::inspect(&n, &n.get(&req.id)?, req.size).await
    });
    reply!(api::ContainerPause, |n, req| {
        stop::pause(&n, &n.get(&req.id)?, true).await?;
        Empty
    });
    reply!(api::ContainerUnpause, |n, req| {
        stop::pause(&n, &n.get(&req.id)?, false).await?;
        Empty
    });
    reply!(api::ContainerRename, |n, req| {
        names::rename(&n, &n.get(&req.id)?, &req.name).await?;
        Empty
    });
    reply!(api::ContainerResize, |n, req| {
        streams::resize(&n, &n.get(&req.id)?, req.height, req.width).await?;
        Empty
    });
    reply!(api::VolumeCreate, |n, req| volumes::create(&n, req).await?);
    reply!(api::VolumeRemove, |n, req| {
        volumes::remove(&n, req).await?;
        Empty
    });
    reply!(api::ExecCreate, |n, req| exec::create(&n, req).await?);
    stream!(api::ExecStart, |n, req, raw| {
        exec::start_attached(&n, req, &raw).await?
    });
    reply!(api::ExecStartDetached, |n, req| {
        exec::start_detached(&n, req).await?;
        Empty
    });
    reply!(api::ExecInspect, |n, req| exec::inspect(&n, &req.exec_id)?);
    reply!(api::ExecResize, |n, req| {
        exec::resize(&n, &req.exec_id, req.height, req.width).await?;
        Empty
    });
    stream!(api::ContainerStats, |n, req, raw| {
        let c = n.get(&req.id)?;
        stats::stats(&n, c, req, &raw).await?
    });
    reply!(api::ContainerTop, |n, req| {
        let c = n.get(&req.id)?;
        top::top(&n, &c, req).await?
    });
    reply!(api::ContainerUpdate, |n, req| {
        let c = n.get(&req.id)?;
        update::update(&n, &c, req.body).await?
    });
    reply!(api::NetworkCreate, |n, req| networks::create(&n, req)
        .await?);
    reply!(api::NetworkRemove, |n, req| {
        networks::remove(&n, &req.id).await?;
        Empty
    });
    reply!(api::NetworkConnect, |n, req| {
        network_attach::connect(&n, req).await?;
        Empty
    });
    reply!(api::NetworkDisconnect, |n, req| {
        network_attach::disconnect(&n, req).await?;
        Empty
    });
    stream!(api::ContainerLogs, |n, req, raw| {
        let c = n.get(&req.id)?;
        streams::logs(&n, c, req, &raw).await?
    });
    stream!(api::ContainerAttach, |n, req, raw| {
        let c = n.get(&req.id)?;
        streams::attach(&n, c, req, &raw).await?
    });
    stream!(api::ContainerStdin, |n, req, raw| {
        streams::stdin(&n, req, &raw).await?
    });
    reply!(api::ArchiveStat, |n, req| archive::stat(&n, req).await?);
    stream!(api::ArchiveGet, |n, req, raw| archive::get(&n, req, &raw)
        .await?);
    stream!(api::ArchivePut, |n, req, raw| archive::put(&n, req, &raw)
        .await?);
    stream!(api::ContainerExport, |n, req, raw| {
        archive::export(&n, n.get(&req.id)?, &raw).await?
    });
    reply!(api::ContainerChanges, |n, req| {
        archive::changes(&n, n.get(&req.id)?).await?
    });
    reply!(api::ContainerCommit, |n, req| {
        let c = n.get(&req.id)?;
        commit::commit(&n, c, req).await?
    });
    stream!(api::BuildRun, |n, req, raw| step_run::run(&n, req, &raw)
        .await?);
    stream!(api::BuildCopy, |n, req, raw| step_copy::copy(&n, req, &raw)
        .await?);
    stream!(api::BuildExport, |n, req, raw| {
        step_export::export(&n, req, &raw).await?
    });

    let subject = bus::all_subject(">");
    let broadcast_requests = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {subject}: {e}"))?;
    tokio::spawn(broadcasts(node.clone(), broadcast_requests));
    // Subscriptions are in place: make sure the server has them before anyone hears of us.
    let _ = client.flush().await;
    tokio::spawn(announce(node.clone()));
    tracing::info!(node = %node.options.name, "runtime node ready");
    running.wait().await;
    Ok(())
}

/// Answers the requests every node gets (`wharf.v1.runtime.all.<op>`).
async fn broadcasts(node: Arc<Node>, mut requests: async_nats::Subscriber) {
    let prefix = bus::all_subject("");
    while let Some(message) = requests.next().await {
        let node = node.clone();
        let prefix = prefix.clone();
        tokio::spawn(async move {
            let Some(reply) = message.reply.clone() else {
                return;
            };
            let op = message.subject.as_str().strip_prefix(&prefix).unwrap_or("");
            let payload = &message.payload;
            let node: &Arc<Node> = &node;
            let answer: Result<Bytes, BusError> = match op {
                n if n == api::NodePing::NAME => wharf_bus::rpc::encode(&node.info()),
                n if n == api::ContainerList::NAME => {
                    answer::<api::ContainerList, _, _>(payload, |req| async move {
                        views::list(node, &req).await
                    })
                    .await
                }
                n if n == api::ContainerResolve::NAME => {
                    answer::<api::ContainerResolve, _, _>(payload, |req| async move {
                        Ok(views::resolve(node, &req.name_or_id))
                    })
                    .await
                }
                n if n == api::ExecLocate::NAME => {
                    answer::<api::ExecLocate, _, _>(payload, |req| async move {
                        Ok(bus::ExecLocation {
                            node: node.options.name.clone(),
                            found: node.execs.get(&req.exec_id).is_some(),
                        })
                    })
                    .await
                }
                n if n == api::ContainerPrune::NAME => {
                    answer::<api::ContainerPrune, _, _>(payload, |req| async move {
                        container_prune::prune(node, &req).await
                    })
                    .await
                }
                n if n == api::NetworkList::NAME => {
                    answer::<api::NetworkList, _, _>(payload, |req| async move {
                        networks::list(node, &req.filters)
                    })
                    .await
                }
                n if n == api::NetworkPrune::NAME => {
                    answer::<api::NetworkPrune, _, _>(payload, |req| async move {
                        networks::prune(node, &req.filters).await
                    })
                    .await
                }
                n if n == api::VolumeList::NAME => {
                    answer::<api::VolumeList, _, _>(payload, |req| async move {
                        volumes::list(node, &req)
                    })
                    .await
                }
                n if n == api::VolumePrune::NAME => {
                    answer::<api::VolumePrune, _, _>(payload, |req| async move {
                        volumes::prune(node, req).await
                    })
                    .await
                }
                other => Err(BusError::invalid(format!(
                    "unknown broadcast operation {other}"
                ))),
            };
            let sent = match answer {
                Ok(payload) => {
                    wharf_bus::nodes::answer(&node.client, reply, &node.options.name, payload).await
                }
                Err(err) => {
                    node.client
                        .publish_with_headers(reply, err.to_headers(), Bytes::new())
                        .await
                }
            };
            if let Err(e) = sent {
                tracing::warn!("cannot answer broadcast: {e}");
            }
        });
    }
}

/// A broadcast's answer: the declared request decoded, `handle` run, the declared reply
/// encoded.
async fn answer<E, F, Fut>(payload: &[u8], handle: F) -> Result<Bytes, BusError>
where
    E: Endpoint + BroadcastSubject,
    F: FnOnce(E::Request) -> Fut,
    Fut: std::future::Future<Output = Result<E::Reply, BusError>>,
{
    let request: E::Request = decode(payload)?;
    wharf_bus::rpc::encode(&handle(request).await?)
}

/// Tells gateways this node exists, at start and every few seconds.
async fn announce(node: Arc<Node>) {
    let mut tick =
        tokio::time::interval(std::time::Duration::from_secs(bus::ANNOUNCE_INTERVAL_SECS));
    loop {
        tick.tick().await;
        if let Ok(payload) = wharf_bus::rpc::encode(&node.info()) {
            let _ = node.client.publish(bus::ANNOUNCE_SUBJECT, payload).await;
        }
    }
}

/// Maps an error kind the way handlers want for internal failures.
pub(crate) fn internal(context: impl std::fmt::Display, e: impl std::fmt::Display) -> BusError {
    BusError::new(ErrorKind::Internal, format!("{context}: {e}"))
}

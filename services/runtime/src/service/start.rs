//! Starting a container (`docker start`, and restarts by policy): its published ports checked,
//! its root mounted, its /etc files written, its network namespace made and attached, its
//! OCI spec and cgroup made, and its shim launched; on failure, and after an exit, what the
//! start set up on the host is undone ([`teardown`]).

use std::path::PathBuf;
use std::sync::Arc;

use wharf_bus::container::Changed;
use wharf_bus::image::{ImageRecord, ImageResolve};
use wharf_bus::subjects::{group, image_store, subject};
use wharf_bus::BusError;

use crate::shim::{ShimClient, ShimLaunch, ShimState};

use super::blocking::blocking;
use super::record::{ContainerPaths, ContainerRecord, NetworkState, Status};
use super::{
    exits, host, internal, limits, network_attach, ports, remove, runtime_spec, streams, user,
    Container, Node,
};

/// `docker start`.
pub async fn start(node: &Arc<Node>, c: &Arc<Container>) -> Result<Changed, BusError> {
    let _held = c.op_lock.lock().await;
    match c.status() {
        Status::Running | Status::Paused => return Ok(Changed { changed: false }),
        Status::Removing => {
            return Err(BusError::conflict(
                "container is marked for removal and cannot be started",
            ))
        }
        Status::Dead => {
            return Err(BusError::conflict(format!(
                "cannot start a dead container {}",
                c.id
            )))
        }
        _ => {}
    }
    c.update(|r| r.state.stopped_by_user = false)?;
    if let Err(e) = start_locked(node, c).await {
        drop(_held);
        // dockerd removes an AutoRemove container whose start failed.
        if c.with(|r| r.host_config.auto_remove) {
            if let Err(rm) = remove::remove(node, c, true, true).await {
                tracing::warn!(container = %c.id, "--rm after a failed start: {}", rm.message);
            }
        }
        return Err(e);
    }
    Ok(Changed { changed: true })
}

/// Starts the container (op_lock held): network, spec, cgroup, shim.
///
/// Boxed: an exit can restart the container, so start, monitor and exit refer to each other.
pub(crate) fn start_locked<'a>(
    node: &'a Arc<Node>,
    c: &'a Arc<Container>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BusError>> + Send + 'a>> {
    Box::pin(start_locked_inner(node, c))
}

/// [`start_locked`] unboxed: on success the record says running and the exit is watched; on
/// failure the error is recorded and what the launch set up is undone.
async fn start_locked_inner(node: &Arc<Node>, c: &Arc<Container>) -> Result<(), BusError> {
    let rec = c.snapshot();
    let outcome = launch(node, c, &rec).await;
    match outcome {
        Ok(state) => {
            let started_at = state.started_at.clone();
            c.update(|r| {
                r.state.status = Status::Running;
                r.state.pid = state.pid;
                r.state.started_at = started_at;
                r.state.exit_code = 0;
                r.state.error.clear();
                r.state.oom_killed = false;
                r.has_been_started = true;
            })?;
            c.phase.send_modify(|p| p.running = true);
            super::health::start(node, c, c.phase.borrow().exits);
            let rec = c.snapshot();
            node.publish_event(&rec, "start", &[]).await;
            tokio::spawn(exits::monitor(node.clone(), c.clone()));
            Ok(())
        }
        Err((err, code)) => {
            let message = err.message.clone();
            c.update_logged(|r| {
                r.state.exit_code = code;
                r.state.error = message;
                if r.has_been_started {
                    r.state.status = Status::Exited;
                }
            });
            let paths = c.paths.clone();
            let node2 = node.clone();
            let id = c.id.clone();
            let states = c.with(|r| r.networks());
            let cgroup = c.with(|r| r.cgroup_path());
            let _ = tokio::task::spawn_blocking(move || {
                teardown(&node2, &id, &paths, &states, &cgroup)
            })
            .await;
            c.update(|r| r.network = None)?;
            Err(err)
        }
    }
}

/// Exit code dockerd records for a start failure (the CLI derives its own from the text).
fn start_failure_code(message: &str) -> i64 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        128
    }
}

/// What the host side of a start prepared: the shim's launch, the networks joined (the first
/// and the others), and the embedded DNS server's sockets and settings.
type Prepared = (
    ShimLaunch,
    Option<NetworkState>,
    Vec<NetworkState>,
    Option<(crate::dns::Listeners, crate::dns::Config)>,
);

/// The embedded DNS server of a container on a user network: its sockets, bound in the
/// container's namespace, and where its queries go. Names that are not containers' are
/// forwarded only if one of its networks reaches outside. A server that cannot be set up
/// leaves the container without one, as dockerd does, with a warning.
pub(super) fn dns_server(
    node: &Arc<Node>,
    rec: &ContainerRecord,
    joined: &[&NetworkState],
    resolvers: &host::HostResolvers,
) -> Option<(crate::dns::Listeners, crate::dns::Config)> {
    let paths = ContainerPaths::new(&node.containers_dir, &rec.id);
    let listeners = match node.host.dns_listen(&paths.netns()) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(container = %rec.id, "embedded DNS server: {e}");
            return None;
        }
    };
    let outside = joined.iter().any(|n| {
        n.network_id.is_empty()
            || node
                .networks
                .find(&n.network_id)
                .is_some_and(|n| !n.record.internal)
    });
    let upstreams = match outside {
        true => resolvers.upstreams(rec.host_config.dns.as_deref().unwrap_or_default()),
        false => Vec::new(),
    };
    let config = crate::dns::Config {
        container: rec.id.clone(),
        names: Arc::new(network_attach::NetworkNames(Arc::downgrade(node))),
        upstreams,
    };
    Some((listeners, config))
}

/// Prepares the host side of a start and has the shim start the container: its state, or the
/// error with the exit code dockerd records for it.
async fn launch(
    node: &Arc<Node>,
    c: &Arc<Container>,
    rec: &ContainerRecord,
) -> Result<ShimState, (BusError, i64)> {
    let fail = |e: BusError| (e, 128);
    let ports = ports::mappings(rec).map_err(fail)?;
    if let Some(conflict) = ports::conflict(node, &c.id, &ports) {
        return Err(fail(BusError::internal(conflict)));
    }
    let lower: Vec<PathBuf> = rec
        .chain_ids
        .iter()
        .rev()
        .map(|chain| node.snapshots.fs_path(chain))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(internal("image layers", e)))?;
    if !lower.iter().all(|dir| dir.is_dir()) {
        // Discarded since the container was created (not on disk when the machine went down).
        let image: ImageRecord = wharf_bus::call(
            &node.client,
            &subject(group::IMAGE_STORE, image_store::IMAGE_RESOLVE),
            &ImageResolve {
                name: rec.image_id.clone(),
            },
        )
        .await
        .map_err(fail)?;
        node.snapshots
            .prepare_image(&image, &node.blobs)
            .await
            .map_err(|e| fail(internal("cannot unpack the image", e)))?;
    }
    let node2 = node.clone();
    let paths = c.paths.clone();
    let rec2 = rec.clone();
    // The shim process starts (exec, loading) while the host side is prepared.
    let starting = node
        .host
        .shim_spawn(&node.options.shim_binary, &c.paths.dir)
        .map_err(|e| fail(internal("cannot start the container's shim", e)))?;
    // Host side: root, /etc files, network, user, spec, cgroup.
    let prepared = blocking(move || -> Result<Prepared, BusError> {
        let mut rec = rec2;
        let system = &node2.host;
        // Legacy links: checked before anything is set up; their variables come before the
        // container's own, which win.
        let mut link_hosts = String::new();
        if !rec.links.is_empty() {
            let (env, hosts) = super::links::at_start(&node2, &rec)?;
            let own: Vec<String> = rec
                .config
                .env
                .iter()
                .map(|v| v.split('=').next().unwrap_or(v).to_string())
                .collect();
            let mut merged: Vec<String> = env
                .into_iter()
                .filter(|v| !own.iter().any(|k| Some(k.as_str()) == v.split('=').next()))
                .collect();
            merged.append(&mut rec.config.env);
            rec.config.env = merged;
            link_hosts = hosts;
        }
        system
            .mount_rootfs(
                &lower,
                &node2.options.root.join("empty"),
                &paths.upper(),
                &paths.work(),
                &paths.rootfs(),
                host::remap(&node2, &rec.host_config),
            )
            .map_err(|e| internal("cannot mount the container's root", e))?;
        let io = |what: &str, e: std::io::Error| internal(format!("cannot write {what}"), e);
        system
            .write_file(
                &paths.hostname(),
                format!("{}\n", rec.config.hostname).as_bytes(),
            )
            .map_err(|e| io("hostname", e))?;
        let resolvers = host::HostResolvers::read();
        let h = &rec.host_config;
        let mode = h.network_mode.as_str();
        // On a user network, names go to the embedded server (dockerd's 127.0.0.11).
        let embedded = super::networks::resolve_mode(&node2, mode)?.is_some();
        system
            .write_file(
                &paths.resolv_conf(),
                host::resolv_conf(
                    &resolvers,
                    h.dns.as_deref().unwrap_or_default(),
                    h.dns_search.as_deref().unwrap_or_default(),
                    h.dns_options.as_deref().unwrap_or_default(),
                    embedded,
                )
                .as_bytes(),
            )
            .map_err(|e| io("resolv.conf", e))?;
        let mut netns = None;
        let mut network = None;
        if mode != "host" {
            system
                .create_netns(&paths.netns())
                .map_err(|e| internal("cannot create the network namespace", e))?;
            netns = Some(paths.netns());
        }
        let mut connected = Vec::new();
        if mode != "host" && mode != "none" {
            let attached = network_attach::attach_networks(&node2, &rec, &paths.netns(), &ports)?;
            let mut attached = attached.into_iter();
            network = attached.next();
            connected = attached.collect();
        }
        let dns = match embedded {
            true => {
                let joined: Vec<_> = network.iter().chain(connected.iter()).collect();
                dns_server(&node2, &rec, &joined, &resolvers)
            }
            false => None,
        };
        let address = network.as_ref().map(|n| n.address.clone());
        let hosts = if mode == "host" {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            host::hosts_file(
                address.as_deref(),
                &rec.config.hostname,
                &rec.host_config.extra_hosts,
                &link_hosts,
            )
        };
        system
            .write_file(&paths.hosts(), hosts.as_bytes())
            .map_err(|e| io("hosts", e))?;
        let user = user::resolve(
            &paths.rootfs(),
            &rec.config.user,
            h.group_add.as_deref().unwrap_or_default(),
        )
        .map_err(|m| BusError::invalid(format!("unable to find user: {m}")))?;
        let map = host::remap(&node2, h).map(|(_, map)| map);
        if let Some(map) = map {
            // The files the node writes for the container are its root's, as dockerd makes them.
            let (uid, gid) = (
                nix::unistd::Uid::from_raw(map.uid),
                nix::unistd::Gid::from_raw(map.gid),
            );
            for file in [paths.hosts(), paths.hostname(), paths.resolv_conf()] {
                nix::unistd::chown(&file, Some(uid), Some(gid))
                    .map_err(|e| internal("cannot give the container its /etc files", e))?;
            }
        }
        let spec = runtime_spec::spec(&rec, &paths, &user, netns.as_deref(), map)?;
        let seccomp = compiled_seccomp(&node2, &spec)?;
        let mut cgroup_dirs = Vec::new();
        if let Some(layout) = &node2.cgroups {
            let group = system
                .cgroup_create(layout, &rec.cgroup_path())
                .map_err(|e| internal("cannot create the container's cgroup", e))?;
            let mut limits = limits::resources(h);
            limits.block_devices = limits::block_devices(h)?;
            limits.devices = Some(super::devices::plan(h)?.1);
            group
                .apply(&limits)
                .map_err(|e| {
                    // As a runtime reports it: the start fails, not the create.
                    BusError::invalid(format!(
                        "failed to create task for container: unable to apply cgroup configuration: {e}: unknown"
                    ))
                })?;
            cgroup_dirs = group.dirs();
        }
        let log_config = &h.log_config.config;
        let launch = ShimLaunch {
            id: rec.id.clone(),
            spec,
            rootfs: paths.rootfs(),
            log_path: paths.log(&rec.id),
            log_max_size: log_config
                .get("max-size")
                .and_then(|s| limits::parse_size(s)),
            log_max_files: log_config
                .get("max-file")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
            tty: rec.config.tty,
            open_stdin: rec.config.open_stdin,
            // The node decides what a client's end of stdin means (see streams).
            stdin_once: false,
            console_size: h.console_size.map(|[h, w]| (h as u16, w as u16)),
            cgroup_dirs,
            no_log: false,
            exec: None,
            seccomp,
        };
        Ok((launch, network, connected, dns))
    })
    .await
    .map_err(fail)?;
    let (launch, network, connected, dns) = prepared;
    if let Some((listeners, config)) = dns {
        if let Err(e) = node.dns.serve(listeners, config) {
            tracing::warn!(container = %c.id, "embedded DNS server: {e}");
        }
    }
    c.update(|r| {
        r.network = network.clone();
        r.connected = connected.clone();
    })
    .map_err(fail)?;
    node.host
        .shim_launch(starting, &launch)
        .await
        .map_err(|e| fail(internal("cannot start the container's shim", e)))?;
    streams::connect_pending(c, &ShimClient::open(&c.paths.dir)).await;
    match node.host.shim_start(&c.paths.dir).await {
        Ok(state) => Ok(state),
        Err(e) => {
            let message = format!("failed to create task for container: {e}: unknown");
            let code = start_failure_code(&message);
            Err((BusError::invalid(message), code))
        }
    }
}

/// The spec's seccomp filter compiled, from the node's cache (blocking on a miss).
pub(super) fn compiled_seccomp(
    node: &Node,
    spec: &oci_spec::runtime::Spec,
) -> Result<Option<crate::seccomp::Program>, BusError> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    node.seccomp
        .program(seccomp)
        .map(Some)
        .map_err(BusError::invalid)
}

/// Undoes what a start set up on the host (network, netns, cgroup). Safe to repeat.
pub(super) fn teardown(
    node: &Node,
    id: &str,
    paths: &ContainerPaths,
    states: &[NetworkState],
    cgroup: &str,
) {
    // Addresses and published ports are released now; the veths go with the namespace
    // (removed next), which the kernel tears down on its own time.
    node.dns.stop(id);
    network_attach::release_networks(node, id, states);
    if let Some(bridge) = &node.network {
        if let Err(e) = node.host.release(bridge, id) {
            tracing::warn!(container = %id, "network release: {e}");
        }
    }
    let _ = node.host.remove_netns(&paths.netns());
    if let Some(layout) = &node.cgroups {
        if let Ok(group) = node.host.cgroup_open(layout, cgroup) {
            let _ = group.kill_all(nix::sys::signal::Signal::SIGKILL);
            if let Err(e) = group.destroy() {
                tracing::warn!(container = %id, "cgroup: {e}");
            }
        }
    }
}

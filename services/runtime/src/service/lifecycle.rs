//! Create, start, stop, kill, wait, remove, pause, rename; what happens when a container
//! exits (restart policy, `--rm`); adopting containers after a runtime restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use wharf_bus::container::{Changed, CreateRequest, CreateResponse, HostConfig, WaitResponse};
use wharf_bus::image::{ImageRecord, ImageResolve};
use wharf_bus::subjects::{group, image_store, subject};
use wharf_bus::BusError;

use crate::cgroups::{self, Resources};
use crate::logs::format_go_rfc3339_nano;
use crate::network::{PortMapping, Protocol};
use crate::shim::{ShimClient, ShimLaunch, ShimState, StartingShim};
use crate::snapshot::Snapshotter;
use crate::worker::Worker;

use super::build;
use super::host;
use super::names;
use super::record::{
    ContainerPaths, ContainerRecord, MountPoint, NetworkState, PublishedPort, State, Status,
    ZERO_TIME,
};
use super::streams;
use super::user;
use super::{internal, Container, Node, Phase};

/// Default grace period of `docker stop`.
const DEFAULT_STOP_TIMEOUT: i64 = 10;

fn blocking_err(e: tokio::task::JoinError) -> BusError {
    BusError::internal(format!("runtime task failed: {e}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    tokio::task::spawn_blocking(f).await.map_err(blocking_err)?
}

fn new_id() -> String {
    loop {
        let bytes: [u8; 32] = rand::random();
        let id = hex::encode(bytes);
        // dockerd avoids IDs whose short form is all digits (it would read as a number).
        if !id[..12].bytes().all(|b| b.is_ascii_digit()) {
            return id;
        }
    }
}

/// Reserves `name` (with slash) for `id` on this node.
fn reserve_name(node: &Node, name: &str, id: &str) -> Result<(), BusError> {
    let mut names = node.names.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(other) = names.get(name) {
        return Err(BusError::conflict(format!(
            "Conflict. The container name \"{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
        )));
    }
    names.insert(name.to_string(), id.to_string());
    Ok(())
}

fn release_name(node: &Node, name: &str, id: &str) {
    let mut names = node.names.lock().unwrap_or_else(|e| e.into_inner());
    if names.get(name).map(String::as_str) == Some(id) {
        names.remove(name);
    }
}

fn check_host_config(host: &HostConfig) -> Result<(), BusError> {
    build::check_ulimits(host)?;
    super::security::parse(&host.security_opt)?;
    match host.restart_policy.name.as_str() {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => {
            return Err(BusError::invalid(format!(
                "invalid restart policy '{other}'"
            )))
        }
    }
    if host.restart_policy.maximum_retry_count < 0 {
        return Err(BusError::invalid(
            "invalid restart policy: maximum retry count cannot be negative",
        ));
    }
    if host.restart_policy.maximum_retry_count > 0 && host.restart_policy.name != "on-failure" {
        return Err(BusError::invalid(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ));
    }
    if host.auto_remove && !matches!(host.restart_policy.name.as_str(), "" | "no") {
        return Err(BusError::invalid(
            "can't create 'AutoRemove' container with restart policy",
        ));
    }
    if host.memory > 0 && (host.memory as u64) < (6 * 1024 * 1024) {
        return Err(BusError::invalid("Minimum memory limit allowed is 6MB"));
    }
    if host.nano_cpus > 0 && host.cpu_quota > 0 {
        return Err(BusError::invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if host.nano_cpus > 0 {
        let max = cgroups::host_cpus() as i64 * 1_000_000_000;
        if host.nano_cpus > max {
            return Err(BusError::invalid(format!(
                "Range of CPUs is from 0.01 to {}.00, as there are only {} CPUs available",
                cgroups::host_cpus(),
                cgroups::host_cpus()
            )));
        }
    }
    Ok(())
}

/// `POST /containers/create` on this node.
pub async fn create(node: &Arc<Node>, req: CreateRequest) -> Result<CreateResponse, BusError> {
    let body = req.body;
    if body.config.image.is_empty() {
        return Err(BusError::invalid(
            "Config cannot be empty in order to create a container",
        ));
    }
    check_host_config(&body.host_config)?;
    if body.host_config.privileged && remap(node, &body.host_config).is_some() {
        return Err(BusError::invalid(build::PRIVILEGED_USERNS));
    }
    super::networks::resolve_mode(node, &body.host_config.network_mode)?;
    for name in body.networking_config.endpoints_config.keys() {
        super::networks::resolve_mode(node, name)?;
    }
    let image: ImageRecord = wharf_bus::call(
        &node.client,
        &subject(group::IMAGE_STORE, image_store::IMAGE_RESOLVE),
        &ImageResolve {
            name: body.config.image.clone(),
        },
    )
    .await?;
    let c = create_from(node, &req.name, &image, body).await?;
    Ok(CreateResponse {
        id: c.id.clone(),
        warnings: Vec::new(),
    })
}

/// A build step's container (`build.run`, `build.copy`): from the image ID `image`, or from
/// nothing for `FROM scratch` (an empty `image`), with a generated name. The config is used
/// as the builder made it: no entrypoint unless it names one, so neither the image's
/// entrypoint nor its Cmd comes in.
pub(super) async fn create_for_step(
    node: &Arc<Node>,
    image: &str,
    mut config: wharf_bus::container::ContainerConfig,
    host_config: HostConfig,
) -> Result<Arc<Container>, BusError> {
    check_host_config(&host_config)?;
    super::networks::resolve_mode(node, &host_config.network_mode)?;
    let image = if image.is_empty() {
        ImageRecord {
            id: String::new(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            layers: Vec::new(),
            manifest: None,
            config: serde_json::json!({}),
            config_size: 0,
            size: 0,
            stored_at: String::new(),
            last_tag_time: None,
            parent: None,
        }
    } else {
        wharf_bus::call(
            &node.client,
            &subject(group::IMAGE_STORE, image_store::IMAGE_RESOLVE),
            &ImageResolve {
                name: image.to_string(),
            },
        )
        .await?
    };
    config.image = image.id.clone();
    // dockerd's create turns `[""]` into no entrypoint; `None` would let the image's in.
    if config.entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
        config.entrypoint = Some(vec![String::new()]);
    }
    let body = wharf_bus::container::CreateBody {
        config,
        host_config,
        networking_config: Default::default(),
    };
    create_from(node, "", &image, body).await
}

/// Creates the container `body` describes from `image` (already resolved) and records it.
async fn create_from(
    node: &Arc<Node>,
    name: &str,
    image: &ImageRecord,
    body: wharf_bus::container::CreateBody,
) -> Result<Arc<Container>, BusError> {
    let id = new_id();
    let mut config = build::merge_image_config(body.config.clone(), &image.config);
    if config.hostname.is_empty() {
        config.hostname = id[..12].to_string();
    }
    let (path, args) = build::command(&config)?;
    let name = if name.is_empty() {
        let mut attempt = 0;
        loop {
            let candidate = format!("/{}", names::generate(attempt));
            if reserve_name(node, &candidate, &id).is_ok() {
                break candidate;
            }
            attempt += 1;
        }
    } else {
        let name = format!("/{}", name.trim_start_matches('/'));
        reserve_name(node, &name, &id)?;
        name
    };
    let paths = ContainerPaths::new(&node.containers_dir, &id);
    let made = prepare(
        node,
        &id,
        &paths,
        image,
        config,
        body.host_config,
        body.networking_config,
    )
    .await;
    let (config, host_config, networking_config, mounts, chain_ids) = match made {
        Ok(m) => m,
        Err(e) => {
            release_name(node, &name, &id);
            let dir = paths.clone();
            let _ = tokio::task::spawn_blocking(move || discard(&dir)).await;
            return Err(e);
        }
    };
    let now = Utc::now();
    let record = ContainerRecord {
        id: id.clone(),
        name: name.clone(),
        created: format_go_rfc3339_nano(now),
        created_nanos: now.timestamp_nanos_opt().unwrap_or(0),
        path,
        args,
        image_name: config.image.clone(),
        config,
        host_config,
        networking_config,
        image_id: image.id.clone(),
        chain_ids,
        state: State {
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            ..Default::default()
        },
        restart_count: 0,
        network: None,
        connected: Vec::new(),
        mounts,
        has_been_started: false,
        platform: "linux".into(),
    };
    if let Err(e) = record.save(&paths.dir) {
        release_name(node, &name, &id);
        let dir = paths.clone();
        let _ = tokio::task::spawn_blocking(move || discard(&dir)).await;
        return Err(internal("cannot save the container", e));
    }
    let container = Arc::new(Container {
        id: id.clone(),
        paths,
        record: Mutex::new(record.clone()),
        op_lock: tokio::sync::Mutex::new(()),
        phase: tokio::sync::watch::channel(Phase::default()).0,
        pending_attaches: Mutex::new(Vec::new()),
    });
    node.containers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, container.clone());
    node.publish_event(&record, "create", &[]).await;
    Ok(container)
}

type Prepared = (
    wharf_bus::container::ContainerConfig,
    HostConfig,
    wharf_bus::container::NetworkingConfig,
    Vec<MountPoint>,
    Vec<String>,
);

/// Unpacks the image, mounts the root, creates the volumes and fills them from the image.
async fn prepare(
    node: &Arc<Node>,
    id: &str,
    paths: &ContainerPaths,
    image: &ImageRecord,
    config: wharf_bus::container::ContainerConfig,
    host_config: HostConfig,
    networking: wharf_bus::container::NetworkingConfig,
) -> Result<Prepared, BusError> {
    std::fs::create_dir_all(&paths.dir).map_err(|e| internal("cannot create the container", e))?;
    let chain_ids =
        Snapshotter::chain_ids_of(image).map_err(|e| BusError::invalid(e.to_string()))?;
    let lower = node
        .snapshots
        .prepare_image(image, &node.blobs)
        .await
        .map_err(|e| internal("cannot unpack the image", e))?;
    let node2 = node.clone();
    let id = id.to_string();
    let paths = paths.clone();
    blocking(move || {
        let rootfs = paths.rootfs();
        host::mount_rootfs(
            &lower,
            &node2.options.root.join("empty"),
            &paths.upper(),
            &paths.work(),
            &rootfs,
            remap(&node2, &host_config),
        )
        .map_err(|e| internal("cannot mount the container's root", e))?;
        let mounts = plan_mounts(&node2, &id, &config, &host_config, &rootfs)?;
        if !config.working_dir.is_empty() {
            make_dir_in_root(&rootfs, &config.working_dir);
            if let Some((_, map)) = remap(&node2, &host_config) {
                give_to_container_root(&rootfs, &config.working_dir, map);
            }
        }
        // dockerd puts an empty /.dockerenv in every container (programs test for it).
        {
            use nix::fcntl::{open, OFlag};
            use nix::sys::stat::Mode;
            if let Ok(root) = open(
                &rootfs,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                let _ = crate::container::touch_in_root(&root, Path::new("/.dockerenv"), 0o755);
            }
        }
        Ok((config, host_config, networking, mounts, chain_ids))
    })
    .await
}

/// With `--userns-remap`, the directories of `dir` the node made (host root's: what the image
/// has looks owned by the container's range) go to the container's root, as if it made them.
fn give_to_container_root(rootfs: &Path, dir: &str, map: crate::userns::IdMap) {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::{fstat, Mode};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(mut cur) = open(rootfs, flags, Mode::empty()) else {
        return;
    };
    for name in Path::new(dir).components().filter_map(|c| match c {
        std::path::Component::Normal(n) => Some(n),
        _ => None,
    }) {
        // A symlink on the way ends the walk: what it leads to is the image's.
        let Ok(next) = openat(&cur, name, flags, Mode::empty()) else {
            return;
        };
        if fstat(&next).is_ok_and(|st| st.st_uid == 0 && st.st_gid == 0) {
            let (uid, gid) = (
                nix::unistd::Uid::from_raw(map.uid),
                nix::unistd::Gid::from_raw(map.gid),
            );
            let _ = nix::unistd::fchown(&next, Some(uid), Some(gid));
        }
        cur = next;
    }
}

fn make_dir_in_root(rootfs: &Path, dir: &str) {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    if let Ok(root) = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        let _ = crate::container::mkdir_in_root(&root, Path::new(dir));
    }
}

/// Binds, named and anonymous volumes, `--mount` and `--tmpfs`, as dockerd plans them.
fn plan_mounts(
    node: &Node,
    id: &str,
    config: &wharf_bus::container::ContainerConfig,
    host: &HostConfig,
    rootfs: &Path,
) -> Result<Vec<MountPoint>, BusError> {
    let mut mounts: Vec<MountPoint> = Vec::new();
    let volume = |name: Option<&str>,
                  dest: &str,
                  rw: bool,
                  copy: bool,
                  mode: &str|
     -> Result<MountPoint, BusError> {
        let v = node
            .volumes
            .create(name, BTreeMap::new(), BTreeMap::new())
            .map_err(super::volumes::error)?;
        node.volumes
            .acquire(&v.name, id)
            .map_err(super::volumes::error)?;
        if copy {
            if let Err(e) = node.volumes.populate_from(&v.name, rootfs, Path::new(dest)) {
                tracing::warn!(volume = %v.name, "copy-up: {e}");
            }
        }
        if let Some((_, map)) = remap(node, host) {
            // A volume nothing was copied into is still host root's: it goes to the container's
            // root (what was copied up already has the owners the container sees).
            use std::os::unix::fs::MetadataExt;
            if std::fs::metadata(&v.mountpoint).is_ok_and(|m| m.uid() == 0 && m.gid() == 0) {
                let (uid, gid) = (
                    nix::unistd::Uid::from_raw(map.uid),
                    nix::unistd::Gid::from_raw(map.gid),
                );
                nix::unistd::chown(&v.mountpoint, Some(uid), Some(gid))
                    .map_err(|e| internal("cannot give the volume to the container's root", e))?;
            }
        }
        Ok(MountPoint {
            kind: "volume".into(),
            name: v.name.clone(),
            source: v.mountpoint.display().to_string(),
            destination: dest.to_string(),
            mode: mode.to_string(),
            rw,
            propagation: String::new(),
            anonymous: name.is_none(),
            options: String::new(),
        })
    };
    let check_dest = |dest: &str, kind: &str| -> Result<(), BusError> {
        if !dest.starts_with('/') {
            return Err(BusError::invalid(format!(
                "invalid mount config for type \"{kind}\": invalid mount path: '{dest}' mount path must be absolute"
            )));
        }
        if dest == "/" {
            return Err(BusError::invalid(format!(
                "invalid mount config for type \"{kind}\": invalid specification: destination can't be '/'"
            )));
        }
        Ok(())
    };
    let taken = |mounts: &Vec<MountPoint>, dest: &str| -> Result<(), BusError> {
        if mounts.iter().any(|m| m.destination == dest) {
            return Err(BusError::invalid(format!("Duplicate mount point: {dest}")));
        }
        Ok(())
    };
    for spec in &host.binds {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dest, opts) = match parts.as_slice() {
            [src, dest] => (*src, *dest, ""),
            [src, dest, opts] => (*src, *dest, *opts),
            _ => {
                return Err(BusError::invalid(format!(
                    "invalid volume specification: '{spec}'"
                )))
            }
        };
        let dest = dest.trim_end_matches('/');
        let kind = if src.starts_with('/') {
            "bind"
        } else {
            "volume"
        };
        check_dest(dest, kind)?;
        taken(&mounts, dest)?;
        let opt_list: Vec<&str> = opts.split(',').filter(|o| !o.is_empty()).collect();
        for o in &opt_list {
            if !matches!(
                *o,
                "ro" | "rw"
                    | "z"
                    | "Z"
                    | "nocopy"
                    | "rprivate"
                    | "private"
                    | "rshared"
                    | "shared"
                    | "rslave"
                    | "slave"
                    | "consistent"
                    | "cached"
                    | "delegated"
            ) {
                return Err(BusError::invalid(format!("invalid mode: {o}")));
            }
        }
        let rw = !opt_list.contains(&"ro");
        if kind == "bind" {
            let source = PathBuf::from(src);
            if !source.exists() {
                std::fs::create_dir_all(&source)
                    .map_err(|e| internal(format!("cannot create bind source {src}"), e))?;
            }
            mounts.push(MountPoint {
                kind: "bind".into(),
                name: String::new(),
                source: src.to_string(),
                destination: dest.to_string(),
                mode: opts.to_string(),
                rw,
                propagation: "rprivate".into(),
                anonymous: false,
                options: String::new(),
            });
        } else {
            let copy = !opt_list.contains(&"nocopy");
            let mp = volume(Some(src), dest, rw, copy, "z")?;
            mounts.push(MountPoint {
                mode: opts.to_string(),
                ..mp
            });
        }
    }
    for m in &host.mounts {
        let dest = m.target.trim_end_matches('/');
        check_dest(dest, &m.r#type)?;
        taken(&mounts, dest)?;
        match m.r#type.as_str() {
            "bind" => {
                if !Path::new(&m.source).exists() {
                    return Err(BusError::invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    )));
                }
                mounts.push(MountPoint {
                    kind: "bind".into(),
                    name: String::new(),
                    source: m.source.clone(),
                    destination: dest.to_string(),
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: "rprivate".into(),
                    anonymous: false,
                    options: String::new(),
                });
            }
            "volume" => {
                let nocopy = m
                    .volume_options
                    .as_ref()
                    .and_then(|o| o.get("NoCopy"))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let name = (!m.source.is_empty()).then_some(m.source.as_str());
                let mp = volume(name, dest, !m.read_only, !nocopy, "z")?;
                mounts.push(MountPoint {
                    mode: String::new(),
                    ..mp
                });
            }
            "tmpfs" => {
                let mut options = Vec::new();
                if let Some(o) = &m.tmpfs_options {
                    if let Some(size) = o.get("SizeBytes").and_then(|v| v.as_i64()) {
                        options.push(format!("size={size}"));
                    }
                    if let Some(mode) = o.get("Mode").and_then(|v| v.as_u64()) {
                        options.push(format!("mode={mode:o}"));
                    }
                }
                mounts.push(MountPoint {
                    kind: "tmpfs".into(),
                    name: String::new(),
                    source: String::new(),
                    destination: dest.to_string(),
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: String::new(),
                    anonymous: false,
                    options: options.join(","),
                });
            }
            other => return Err(BusError::invalid(format!("mount type unknown: {other}"))),
        }
    }
    for (dest, options) in &host.tmpfs {
        check_dest(dest, "tmpfs")?;
        taken(&mounts, dest)?;
        mounts.push(MountPoint {
            kind: "tmpfs".into(),
            name: String::new(),
            source: String::new(),
            destination: dest.clone(),
            mode: String::new(),
            rw: !options.split(',').any(|o| o == "ro"),
            propagation: String::new(),
            anonymous: false,
            options: options.clone(),
        });
    }
    // `--volumes-from name[:ro|:rw]`: the other container's volumes and binds, same places.
    for spec in &host.volumes_from {
        let (name, mode) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
        let q = name.trim_start_matches('/');
        let other = node
            .all()
            .into_iter()
            .find(|c| c.with(|r| r.id == q || r.short_name() == q))
            .or_else(|| {
                let mut found = node.all().into_iter().filter(|c| c.id.starts_with(q));
                match (found.next(), found.next()) {
                    (Some(c), None) => Some(c),
                    _ => None,
                }
            })
            .ok_or_else(|| BusError::not_found(format!("No such container: {name}")))?;
        for m in other.with(|r| r.mounts.clone()) {
            if m.kind == "tmpfs" || mounts.iter().any(|x| x.destination == m.destination) {
                continue;
            }
            if m.kind == "volume" {
                node.volumes
                    .acquire(&m.name, id)
                    .map_err(super::volumes::error)?;
            }
            let rw = match mode {
                "ro" => false,
                "rw" => true,
                _ => m.rw,
            };
            mounts.push(MountPoint {
                rw,
                anonymous: false,
                ..m
            });
        }
    }
    if let Some(volumes) = &config.volumes {
        for dest in volumes.keys() {
            let dest = dest.trim_end_matches('/');
            if mounts.iter().any(|m| m.destination == dest) {
                continue;
            }
            check_dest(dest, "volume")?;
            let mp = volume(None, dest, true, true, "")?;
            mounts.push(mp);
        }
    }
    Ok(mounts)
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

/// The node's user namespace and map, for a container that has one (`--userns-remap`, not
/// `--userns=host`).
pub(crate) fn remap<'a>(node: &'a Node, host: &HostConfig) -> host::Remap<'a> {
    match (&node.userns, node.options.userns) {
        (Some(fd), Some(map)) if host.userns_mode != "host" => Some((fd, map)),
        _ => None,
    }
}

/// Removes what create made (after a failed create or at remove).
fn discard(paths: &ContainerPaths) {
    let _ = host::unmount_rootfs(&paths.rootfs(), &host::layers_dir(&paths.upper()));
    let _ = host::remove_netns(&paths.netns());
    if let Err(e) = std::fs::remove_dir_all(&paths.dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %paths.dir.display(), "cannot remove container files: {e}");
        }
    }
}

/// [`discard`] off the caller's path, on one background thread: unmounting the root makes
/// overlayfs write back what its file system holds dirty, a second or more after a large image
/// was unpacked, and the removal is done once the container is gone from the node. Its
/// directory still holds the record (status `Removing`) until then, so a restart of the
/// runtime finishes an unfinished discard ([`restore`]).
fn discard_later(paths: ContainerPaths) {
    static REAPER: Worker<ContainerPaths> = Worker::new("container-discard", |queue| {
        for paths in queue {
            discard(&paths);
            PENDING_DISCARDS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    PENDING_DISCARDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if let Err(paths) = REAPER.send(paths) {
        discard(&paths);
        PENDING_DISCARDS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Removals handed to the background thread and not done yet.
static PENDING_DISCARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Waits (blocking) until the background removals are done, at most `limit`; whether they are.
pub fn drain_removals(limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while PENDING_DISCARDS.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

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
            if let Err(rm) = remove(node, c, true, true).await {
                tracing::warn!(container = %c.id, "--rm after a failed start: {}", rm.message);
            }
        }
        return Err(e);
    }
    Ok(Changed { changed: true })
}

fn ports_of(rec: &ContainerRecord) -> Result<Vec<PortMapping>, BusError> {
    let mut out = Vec::new();
    let mut bindings = rec.host_config.port_bindings.clone();
    if rec.host_config.publish_all_ports {
        if let Some(exposed) = &rec.config.exposed_ports {
            for port in exposed.keys() {
                bindings
                    .entry(port.clone())
                    .or_insert_with(|| vec![wharf_bus::container::PortBinding::default()]);
            }
        }
    }
    for (port, list) in bindings {
        let (number, proto) = port.split_once('/').unwrap_or((port.as_str(), "tcp"));
        let container_port: u16 = number
            .parse()
            .map_err(|_| BusError::invalid(format!("invalid port specification: \"{port}\"")))?;
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Err(BusError::invalid(format!("invalid proto: {other}"))),
        };
        for b in list {
            let host_ip = match b.host_ip.as_str() {
                "" | "0.0.0.0" => None,
                "::" => None,
                ip => Some(
                    ip.parse()
                        .map_err(|_| BusError::invalid(format!("invalid IP address: {ip}")))?,
                ),
            };
            let host_port = if b.host_port.is_empty() || b.host_port == "0" {
                free_port(protocol)?
            } else {
                b.host_port
                    .parse()
                    .map_err(|_| BusError::invalid(format!("invalid hostPort: {}", b.host_port)))?
            };
            out.push(PortMapping {
                host_ip,
                host_port,
                container_port,
                protocol,
            });
        }
    }
    Ok(out)
}

/// A free host port from the ephemeral range, for `-P` and `-p 80`.
fn free_port(protocol: Protocol) -> Result<u16, BusError> {
    let port = match protocol {
        Protocol::Tcp => std::net::TcpListener::bind("0.0.0.0:0").and_then(|l| l.local_addr()),
        Protocol::Udp => std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.local_addr()),
    }
    .map_err(|e| internal("cannot pick a host port", e))?
    .port();
    Ok(port)
}

/// A published port already in use by another container of this node.
fn port_conflict(node: &Node, me: &str, ports: &[PortMapping]) -> Option<String> {
    for c in node.all() {
        if c.id == me {
            continue;
        }
        let taken = c.with(|r| {
            r.network
                .as_ref()
                .map(|n| n.ports.clone())
                .unwrap_or_default()
        });
        for p in ports {
            if taken
                .iter()
                .any(|t| t.host_port == p.host_port && t.protocol == p.protocol.as_str())
            {
                return Some(format!(
                    "driver failed programming external connectivity on endpoint {} ({}): Bind for 0.0.0.0:{} failed: port is already allocated",
                    c.with(|r| r.short_name().to_string()),
                    me,
                    p.host_port
                ));
            }
        }
    }
    None
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
            let nets = user_nets(&rec);
            if !nets.is_empty() {
                let node2 = node.clone();
                let _ = tokio::task::spawn_blocking(move || refresh_hosts(&node2, &nets)).await;
            }
            node.publish_event(&rec, "start", &[]).await;
            tokio::spawn(monitor(node.clone(), c.clone()));
            Ok(())
        }
        Err((err, code)) => {
            let message = err.message.clone();
            let _ = c.update(|r| {
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
            let _ =
                tokio::task::spawn_blocking(move || teardown(&node2, &id, &paths, &states)).await;
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

async fn launch(
    node: &Arc<Node>,
    c: &Arc<Container>,
    rec: &ContainerRecord,
) -> Result<ShimState, (BusError, i64)> {
    let fail = |e: BusError| (e, 128);
    let ports = ports_of(rec).map_err(fail)?;
    if let Some(conflict) = port_conflict(node, &c.id, &ports) {
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
    let starting = StartingShim::start(&node.options.shim_binary, &c.paths.dir)
        .map_err(|e| fail(internal("cannot start the container's shim", e)))?;
    // Host side: root, /etc files, network, user, spec, cgroup.
    let prepared = blocking(
        move || -> Result<(ShimLaunch, Option<NetworkState>, Vec<NetworkState>), BusError> {
            let rec = rec2;
            host::mount_rootfs(
                &lower,
                &node2.options.root.join("empty"),
                &paths.upper(),
                &paths.work(),
                &paths.rootfs(),
                remap(&node2, &rec.host_config),
            )
            .map_err(|e| internal("cannot mount the container's root", e))?;
            let io = |what: &str, e: std::io::Error| internal(format!("cannot write {what}"), e);
            std::fs::write(paths.hostname(), format!("{}\n", rec.config.hostname))
                .map_err(|e| io("hostname", e))?;
            let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let h = &rec.host_config;
            std::fs::write(
                paths.resolv_conf(),
                host::resolv_conf(&host_resolv, &h.dns, &h.dns_search, &h.dns_options),
            )
            .map_err(|e| io("resolv.conf", e))?;
            let mode = h.network_mode.as_str();
            let mut netns = None;
            let mut network = None;
            if mode != "host" {
                host::create_netns(&paths.netns())
                    .map_err(|e| internal("cannot create the network namespace", e))?;
                netns = Some(paths.netns());
            }
            let mut connected = Vec::new();
            if mode != "host" && mode != "none" {
                let attached = attach_networks(&node2, &rec, &paths.netns(), &ports)?;
                let mut attached = attached.into_iter();
                network = attached.next();
                connected = attached.collect();
            }
            let address = network.as_ref().map(|n| n.address.clone());
            let hosts = if mode == "host" {
                std::fs::read_to_string("/etc/hosts").unwrap_or_default()
            } else {
                let nets: Vec<String> = network
                    .iter()
                    .chain(connected.iter())
                    .map(|n| n.network_id.clone())
                    .filter(|id| !id.is_empty())
                    .collect();
                hosts_text(&node2, &rec, address.as_deref(), &nets)
            };
            std::fs::write(paths.hosts(), hosts).map_err(|e| io("hosts", e))?;
            let user = user::resolve(&paths.rootfs(), &rec.config.user, &h.group_add)
                .map_err(|m| BusError::invalid(format!("unable to find user: {m}")))?;
            let map = remap(&node2, h).map(|(_, map)| map);
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
            let spec = build::spec(&rec, &paths, &user, netns.as_deref(), map)?;
            let seccomp = compiled_seccomp(&node2, &spec)?;
            let mut cgroup_dirs = Vec::new();
            if let Some(layout) = &node2.cgroups {
                let group = cgroups::create(layout, &format!("wharf/{}", rec.id))
                    .map_err(|e| internal("cannot create the container's cgroup", e))?;
                let mut limits = resources(h);
                limits.devices = Some(super::devices::plan(h)?.1);
                group
                    .apply(&limits)
                    .map_err(|e| BusError::invalid(e.to_string()))?;
                cgroup_dirs = group.dirs();
            }
            let log_config = &h.log_config.config;
            let launch = ShimLaunch {
                id: rec.id.clone(),
                spec,
                rootfs: paths.rootfs(),
                log_path: paths.log(&rec.id),
                log_max_size: log_config.get("max-size").and_then(|s| parse_size(s)),
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
            Ok((launch, network, connected))
        },
    )
    .await
    .map_err(fail)?;
    let (launch, network, connected) = prepared;
    c.update(|r| {
        r.network = network.clone();
        r.connected = connected.clone();
    })
    .map_err(fail)?;
    let shim = starting
        .launch(&launch)
        .await
        .map_err(|e| fail(internal("cannot start the container's shim", e)))?;
    streams::connect_pending(c, &shim).await;
    match shim.start().await {
        Ok(state) => Ok(state),
        Err(e) => {
            let message = format!("failed to create task for container: {e}: unknown");
            let code = start_failure_code(&message);
            Err((BusError::invalid(message), code))
        }
    }
}

/// A locally administered MAC derived from the address, as Docker derives it.
fn mac_for(address: std::net::Ipv4Addr) -> String {
    let o = address.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1024),
        'm' => (&t[..t.len() - 1], 1024 * 1024),
        'g' => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t.as_str(), 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult))
}

pub(crate) fn resources(h: &HostConfig) -> Resources {
    let mut r = Resources::default();
    if h.memory > 0 {
        r.memory = Some(h.memory as u64);
        r.memory_swap = match h.memory_swap {
            0 => cgroups::MemorySwap::Default,
            -1 => cgroups::MemorySwap::Unlimited,
            n => cgroups::MemorySwap::Total(n as u64),
        };
    }
    if h.nano_cpus > 0 {
        r.nano_cpus = Some(h.nano_cpus as u64);
    } else if h.cpu_quota > 0 {
        let period = if h.cpu_period > 0 {
            h.cpu_period
        } else {
            100_000
        };
        // In u128: a quota near i64::MAX overflowed u64 and panicked the request's task (found
        // by deploy/fuzz-api.sh); the cgroup's own check then refuses what is out of range.
        let nano = h.cpu_quota as u128 * 1_000_000_000 / period as u128;
        r.nano_cpus = Some(u64::try_from(nano).unwrap_or(u64::MAX));
    }
    if h.cpu_shares > 0 {
        r.cpu_shares = Some(h.cpu_shares as u64);
    }
    if let Some(p) = h.pids_limit.filter(|p| *p > 0) {
        r.pids_limit = Some(p as u64);
    }
    r
}

/// Undoes what a start set up on the host (network, netns, cgroup). Safe to repeat.
fn teardown(node: &Node, id: &str, paths: &ContainerPaths, states: &[NetworkState]) {
    // Addresses and published ports are released now; the veths go with the namespace
    // (removed next), which the kernel tears down on its own time.
    release_networks(node, id, states);
    if let Some(bridge) = &node.network {
        if let Err(e) = bridge.release(id) {
            tracing::warn!(container = %id, "network release: {e}");
        }
    }
    let _ = host::remove_netns(&paths.netns());
    if let Some(layout) = &node.cgroups {
        if let Ok(group) = cgroups::open(layout, &format!("wharf/{id}")) {
            let _ = group.kill_all(nix::sys::signal::Signal::SIGKILL);
            if let Err(e) = group.destroy() {
                tracing::warn!(container = %id, "cgroup: {e}");
            }
        }
    }
}

/// Releases the container's addresses and ports on the user networks in `states`.
fn release_networks(node: &Node, id: &str, states: &[NetworkState]) {
    for n in states.iter().filter(|n| !n.network_id.is_empty()) {
        if let Some(net) = node.networks.find(&n.network_id) {
            if let Err(e) = net.bridge.release(id) {
                tracing::warn!(container = %id, network = %n.network_name, "release: {e}");
            }
        }
    }
}

/// Detaches the container from the user networks in `states` (the default bridge is
/// detached by the caller).
fn detach_networks(node: &Node, id: &str, states: &[NetworkState]) {
    for n in states.iter().filter(|n| !n.network_id.is_empty()) {
        if let Some(net) = node.networks.find(&n.network_id) {
            if let Err(e) = net.bridge.detach_as(id, &n.host_interface) {
                tracing::warn!(container = %id, network = %n.network_name, "detach: {e}");
            }
        }
    }
}

fn published(ports: &[PortMapping]) -> Vec<PublishedPort> {
    ports
        .iter()
        .map(|p| PublishedPort {
            container_port: p.container_port,
            protocol: p.protocol.as_str().to_string(),
            host_ip: p
                .host_ip
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "0.0.0.0".into()),
            host_port: p.host_port,
        })
        .collect()
}

/// The networks a container joins at start, in order: its `NetworkMode` network, then the
/// others its endpoints config names. Published ports go on the first.
fn wanted_networks(
    node: &Node,
    rec: &ContainerRecord,
) -> Result<Vec<Option<Arc<super::networks::UserNetwork>>>, BusError> {
    let mode = rec.host_config.network_mode.as_str();
    let primary = super::networks::resolve_mode(node, mode)?;
    let mut out = vec![primary.clone()];
    for name in rec.networking_config.endpoints_config.keys() {
        if matches!(name.as_str(), "bridge" | "default" | "host" | "none") || name == mode {
            continue;
        }
        let net = super::networks::resolve_mode(node, name)?;
        if let Some(net) = net {
            if primary
                .as_ref()
                .is_some_and(|p| p.record.id == net.record.id)
            {
                continue;
            }
            out.push(Some(net));
        }
    }
    Ok(out)
}

fn aliases_for(rec: &ContainerRecord, net: &super::networks::NetworkRecord) -> Vec<String> {
    let mut aliases: Vec<String> = rec
        .networking_config
        .endpoints_config
        .iter()
        .filter(|(k, _)| *k == &net.name || *k == &net.id)
        .flat_map(|(_, e)| e.aliases.iter().cloned())
        .collect();
    aliases.dedup();
    aliases
}

/// Attaches a starting container to its networks; undoes its attachments on failure.
fn attach_networks(
    node: &Node,
    rec: &ContainerRecord,
    netns: &Path,
    ports: &[PortMapping],
) -> Result<Vec<NetworkState>, BusError> {
    let mut done: Vec<NetworkState> = Vec::new();
    let outcome = (|| -> Result<(), BusError> {
        for (i, net) in wanted_networks(node, rec)?.into_iter().enumerate() {
            let ports = if i == 0 { ports } else { &[][..] };
            let interface = format!("eth{i}");
            let state = match net {
                None => {
                    let bridge = node.network.as_ref().ok_or_else(|| {
                        BusError::unavailable("the bridge network is not available on this node")
                    })?;
                    let a = bridge.attach_as(
                        &rec.id,
                        netns,
                        ports,
                        &crate::network::host_interface_name(&rec.id),
                        &interface,
                    );
                    let a = a.map_err(|e| {
                        internal("cannot connect the container to the bridge network", e)
                    })?;
                    NetworkState {
                        network_id: String::new(),
                        network_name: "bridge".into(),
                        host_interface: a.host_interface.clone(),
                        aliases: Vec::new(),
                        address: a.address.to_string(),
                        prefix: a.prefix,
                        gateway: a.gateway.to_string(),
                        mac: mac_for(a.address),
                        ports: published(ports),
                    }
                }
                Some(net) => {
                    let host_if = super::networks::host_interface(&rec.id, &net.record.id);
                    let a = net
                        .bridge
                        .attach_as(&rec.id, netns, ports, &host_if, &interface)
                        .map_err(|e| {
                            internal(
                                format!(
                                    "cannot connect the container to network {}",
                                    net.record.name
                                ),
                                e,
                            )
                        })?;
                    NetworkState {
                        network_id: net.record.id.clone(),
                        network_name: net.record.name.clone(),
                        host_interface: host_if,
                        aliases: aliases_for(rec, &net.record),
                        address: a.address.to_string(),
                        prefix: a.prefix,
                        gateway: a.gateway.to_string(),
                        mac: mac_for(a.address),
                        ports: published(ports),
                    }
                }
            };
            done.push(state);
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        detach_networks(node, &rec.id, &done);
        if let Some(bridge) = &node.network {
            let _ = bridge.detach(&rec.id);
        }
        return Err(e);
    }
    Ok(done)
}

/// A container's /etc/hosts: Docker's fixed lines, `--add-host`, its own address, and its
/// peers on the user networks `nets`.
fn hosts_text(
    node: &Node,
    rec: &ContainerRecord,
    address: Option<&str>,
    nets: &[String],
) -> String {
    let mut text = host::hosts_file(address, &rec.config.hostname, &rec.host_config.extra_hosts);
    for (ip, names) in super::networks::peers(node, &rec.id, nets) {
        text.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    text
}

/// Rewrites (in place: it is bind-mounted) the /etc/hosts of every running container on the
/// user networks `nets`, so they find each other by name.
pub(crate) fn refresh_hosts(node: &Node, nets: &[String]) {
    if nets.is_empty() {
        return;
    }
    for c in node.all() {
        let rec = c.snapshot();
        if !rec.state.status.is_live() {
            continue;
        }
        let mine: Vec<String> = rec
            .network
            .iter()
            .chain(rec.connected.iter())
            .map(|n| n.network_id.clone())
            .filter(|id| !id.is_empty())
            .collect();
        if !mine.iter().any(|id| nets.contains(id)) {
            continue;
        }
        let address = rec.network.as_ref().map(|n| n.address.clone());
        let text = hosts_text(node, &rec, address.as_deref(), &mine);
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(c.paths.hosts())
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// User network IDs a record is attached to.
fn user_nets(rec: &ContainerRecord) -> Vec<String> {
    rec.network
        .iter()
        .chain(rec.connected.iter())
        .map(|n| n.network_id.clone())
        .filter(|id| !id.is_empty())
        .collect()
}

/// Waits for the container's exit (through its shim) and records it.
async fn monitor(node: Arc<Node>, c: Arc<Container>) {
    let shim = ShimClient::open(&c.paths.dir);
    let state = match shim.wait().await {
        Ok(state) => state,
        Err(e) => match ShimState::read(&c.paths.state()) {
            // A short-lived container's shim may record the exit and leave before we ask.
            Ok(state) if state.exit_code.is_some() => state,
            _ => {
                tracing::warn!(container = %c.id, "lost the shim ({e}); reading its state file");
                final_state_without_shim(&node, &c).await
            }
        },
    };
    on_exit(node, c, state).await;
}

/// The exit as the state file recorded it; when the shim died before recording one, the
/// container's processes are killed through its cgroup and the exit is 137.
async fn final_state_without_shim(node: &Arc<Node>, c: &Arc<Container>) -> ShimState {
    let path = c.paths.state();
    if let Ok(state) = ShimState::read(&path) {
        if state.exit_code.is_some() {
            return state;
        }
    }
    let node2 = node.clone();
    let id = c.id.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(layout) = &node2.cgroups {
            if let Ok(group) = cgroups::open(layout, &format!("wharf/{id}")) {
                let _ = group.kill_all(nix::sys::signal::Signal::SIGKILL);
            }
        }
    })
    .await;
    let mut state = ShimState::read(&path).unwrap_or_else(|_| ShimState {
        pid: 0,
        status: crate::shim::Status::Exited,
        started_at: ZERO_TIME.into(),
        exit_code: None,
        finished_at: None,
        oom_killed: None,
    });
    state.exit_code = Some(137);
    state.finished_at = Some(format_go_rfc3339_nano(Utc::now()));
    state
}

/// Records an exit, releases the host resources, then applies the restart policy or `--rm`.
pub(crate) async fn on_exit(node: Arc<Node>, c: Arc<Container>, state: ShimState) {
    let code = state.exit_code.unwrap_or(255) as i64;
    let node2 = node.clone();
    let id = c.id.clone();
    let paths = c.paths.clone();
    let nets = c.with(|r| user_nets(r));
    let states = c.with(|r| r.networks());
    let oom = tokio::task::spawn_blocking(move || {
        let oom = node2.cgroups.as_ref().and_then(|layout| {
            cgroups::open(layout, &format!("wharf/{id}"))
                .ok()
                .and_then(|g| g.oom_killed().ok())
        });
        teardown(&node2, &id, &paths, &states);
        oom.unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    let oom = oom || state.oom_killed.unwrap_or(false);
    let finished = state
        .finished_at
        .clone()
        .unwrap_or_else(|| format_go_rfc3339_nano(Utc::now()));
    let _ = c.update(|r| {
        r.state.status = Status::Exited;
        r.state.pid = 0;
        r.state.exit_code = code;
        r.state.finished_at = finished;
        r.state.oom_killed = oom;
        r.network = None;
    });
    c.phase.send_modify(|p| {
        p.exits += 1;
        p.exit_code = code;
        p.running = false;
    });
    if !nets.is_empty() {
        let node2 = node.clone();
        let _ = tokio::task::spawn_blocking(move || refresh_hosts(&node2, &nets)).await;
    }
    let rec = c.snapshot();
    if oom {
        node.publish_event(&rec, "oom", &[]).await;
    }
    node.publish_event(&rec, "die", &[("exitCode", code.to_string())])
        .await;

    let policy = rec.host_config.restart_policy.clone();
    let restart = !rec.state.stopped_by_user
        && match policy.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                code != 0
                    && (policy.maximum_retry_count == 0
                        || rec.restart_count < policy.maximum_retry_count)
            }
            _ => false,
        };
    if restart {
        let delay = Duration::from_millis(100u64 << rec.restart_count.clamp(0, 9));
        let _ = c.update(|r| {
            r.state.status = Status::Restarting;
            r.restart_count += 1;
        });
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _held = c.op_lock.lock().await;
            if c.status() != Status::Restarting {
                return;
            }
            if let Err(e) = start_locked(&node, &c).await {
                tracing::warn!(container = %c.id, "restart failed: {}", e.message);
                let _ = c.update(|r| r.state.status = Status::Exited);
            }
        });
        return;
    }
    if rec.host_config.auto_remove {
        if let Err(e) = remove(&node, &c, true, true).await {
            tracing::warn!(container = %c.id, "--rm: {}", e.message);
        }
    }
}

/// Parses a signal as Docker accepts it: `SIGKILL`, `KILL`, `9`.
pub fn parse_signal(text: &str) -> Result<i32, BusError> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        if n > 0 && n <= 64 {
            return Ok(n);
        }
        return Err(BusError::invalid(format!("Invalid signal: {text}")));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| BusError::invalid(format!("Invalid signal: {text}")))
}

async fn signal(c: &Container, signal: i32) -> Result<(), BusError> {
    signal_shim(&c.paths.dir, &c.id, signal).await
}

/// A container whose process ended (its shim gone, or still there with nothing left to signal)
/// before its exit was recorded is not an error: dockerd, too, takes containerd's "no such
/// process" as done and lets the exit event follow (found by deploy/fuzz-api.sh: a kill racing
/// a restart answered 500).
async fn signal_shim(dir: &Path, id: &str, signal: i32) -> Result<(), BusError> {
    match ShimClient::open(dir).kill(signal).await {
        Ok(()) => Ok(()),
        Err(crate::shim::ShimError::Gone { .. }) => Ok(()),
        Err(crate::shim::ShimError::Refused(m)) if m.ends_with("is not running") => Ok(()),
        Err(e) => Err(internal(format!("cannot signal container {id}"), e)),
    }
}

/// Waits until the container has exited more than `seen` times, at most `timeout`.
async fn exited_after(c: &Container, seen: u64, timeout: Option<Duration>) -> bool {
    let mut rx = c.phase.subscribe();
    let done = async {
        loop {
            if rx.borrow_and_update().exits > seen {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, done).await.is_ok(),
        None => {
            done.await;
            true
        }
    }
}

/// `docker stop`: the stop signal, then SIGKILL after the grace period.
pub async fn stop(
    node: &Arc<Node>,
    c: &Arc<Container>,
    sig: Option<String>,
    timeout: Option<i64>,
) -> Result<Changed, BusError> {
    let _held = c.op_lock.lock().await;
    stop_locked(node, c, sig, timeout).await
}

async fn stop_locked(
    node: &Arc<Node>,
    c: &Arc<Container>,
    sig: Option<String>,
    timeout: Option<i64>,
) -> Result<Changed, BusError> {
    let rec = c.snapshot();
    if rec.state.status == Status::Restarting {
        c.update(|r| {
            r.state.status = Status::Exited;
            r.state.stopped_by_user = true;
        })?;
        return Ok(Changed { changed: true });
    }
    if !rec.state.status.is_live() {
        return Ok(Changed { changed: false });
    }
    c.update(|r| r.state.stopped_by_user = true)?;
    let seen = c.phase.borrow().exits;
    let signal_name = sig
        .filter(|s| !s.is_empty())
        .or(rec.config.stop_signal.clone())
        .unwrap_or_else(|| "SIGTERM".into());
    let number = parse_signal(&signal_name)?;
    let timeout = timeout
        .or(rec.config.stop_timeout)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    if rec.state.status == Status::Paused {
        freeze(node, c, false).await?;
    }
    node.publish_event(&rec, "kill", &[("signal", number.to_string())])
        .await;
    let _ = signal(c, number).await;
    let grace = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
    if !exited_after(c, seen, grace).await {
        node.publish_event(&rec, "kill", &[("signal", "9".into())])
            .await;
        let _ = signal(c, 9).await;
        exited_after(c, seen, Some(Duration::from_secs(30))).await;
    }
    node.publish_event(&c.snapshot(), "stop", &[]).await;
    Ok(Changed { changed: true })
}

/// `docker restart`.
pub async fn restart(
    node: &Arc<Node>,
    c: &Arc<Container>,
    sig: Option<String>,
    timeout: Option<i64>,
) -> Result<Changed, BusError> {
    let _held = c.op_lock.lock().await;
    stop_locked(node, c, sig, timeout).await?;
    c.update(|r| r.state.stopped_by_user = false)?;
    start_locked(node, c).await?;
    node.publish_event(&c.snapshot(), "restart", &[]).await;
    Ok(Changed { changed: true })
}

/// `docker kill`.
pub async fn kill(node: &Arc<Node>, c: &Arc<Container>, sig: &str) -> Result<(), BusError> {
    let rec = c.snapshot();
    let number = if sig.is_empty() {
        9
    } else {
        parse_signal(sig)?
    };
    if !rec.state.status.is_live() {
        return Err(BusError::conflict(format!(
            "Cannot kill container: {}: Container {} is not running",
            rec.id, rec.id
        )));
    }
    if rec.state.status == Status::Paused && number == 9 {
        let _ = freeze(node, c, false).await;
    }
    signal(c, number).await?;
    node.publish_event(&rec, "kill", &[("signal", number.to_string())])
        .await;
    Ok(())
}

/// `docker wait` with its conditions.
pub async fn wait(node: &Arc<Node>, id: &str, condition: &str) -> Result<WaitResponse, BusError> {
    let c = node.get(id)?;
    let mut rx = c.phase.subscribe();
    let start = rx.borrow_and_update().clone();
    let response = |code: i64| WaitResponse {
        status_code: code,
        error: None,
    };
    match condition {
        "" | "not-running" => {
            let status = c.status();
            if !status.is_live() && status != Status::Restarting {
                return Ok(response(c.with(|r| r.state.exit_code)));
            }
            loop {
                if rx.changed().await.is_err() {
                    return Ok(response(start.exit_code));
                }
                let p = rx.borrow_and_update().clone();
                if p.exits > start.exits && !p.running && c.status() != Status::Restarting {
                    return Ok(response(p.exit_code));
                }
                if p.removed {
                    return Ok(response(p.exit_code));
                }
            }
        }
        "next-exit" => loop {
            if rx.changed().await.is_err() {
                return Ok(response(start.exit_code));
            }
            let p = rx.borrow_and_update().clone();
            if p.exits > start.exits || p.removed {
                return Ok(response(p.exit_code));
            }
        },
        "removed" => {
            if start.removed {
                return Ok(response(start.exit_code));
            }
            loop {
                if rx.changed().await.is_err() {
                    let code = c.with(|r| r.state.exit_code);
                    return Ok(response(code));
                }
                let p = rx.borrow_and_update().clone();
                if p.removed {
                    return Ok(response(p.exit_code));
                }
            }
        }
        other => Err(BusError::invalid(format!("invalid condition: \"{other}\""))),
    }
}

/// `docker rm`.
pub async fn remove(
    node: &Arc<Node>,
    c: &Arc<Container>,
    force: bool,
    volumes: bool,
) -> Result<(), BusError> {
    let _held = c.op_lock.lock().await;
    let rec = c.snapshot();
    if rec.state.status == Status::Removing {
        return Err(BusError::conflict(format!(
            "removal of container {} is already in progress",
            rec.id
        )));
    }
    if rec.state.status.is_live() || rec.state.status == Status::Restarting {
        if !force {
            let what = if rec.state.status == Status::Paused {
                "paused"
            } else {
                "running"
            };
            return Err(BusError::conflict(format!(
                "You cannot remove a {what} container {}. Stop the container before attempting removal or force remove",
                rec.id
            )));
        }
        c.update(|r| r.state.stopped_by_user = true)?;
        if rec.state.status == Status::Restarting {
            c.update(|r| r.state.status = Status::Exited)?;
        } else {
            let seen = c.phase.borrow().exits;
            if rec.state.status == Status::Paused {
                let _ = freeze(node, c, false).await;
            }
            node.publish_event(&rec, "kill", &[("signal", "9".into())])
                .await;
            let _ = signal(c, 9).await;
            exited_after(c, seen, Some(Duration::from_secs(30))).await;
        }
    }
    c.update(|r| r.state.status = Status::Removing)?;
    let rec = c.snapshot();
    let node2 = node.clone();
    let paths = c.paths.clone();
    let id = c.id.clone();
    let mounts = rec.mounts.clone();
    let states = rec.networks();
    blocking(move || {
        teardown(&node2, &id, &paths, &states);
        for m in mounts.iter().filter(|m| m.kind == "volume") {
            let _ = node2.volumes.release(&m.name, &id);
            if volumes && m.anonymous {
                if let Err(e) = node2.volumes.remove(&m.name, false) {
                    tracing::warn!(volume = %m.name, "cannot remove anonymous volume: {e}");
                }
            }
        }
        discard_later(paths);
        Ok(())
    })
    .await?;
    node.containers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&c.id);
    release_name(node, &rec.name, &rec.id);
    super::exec::forget_container(node, &rec.id);
    c.phase.send_modify(|p| p.removed = true);
    node.publish_event(&rec, "destroy", &[]).await;
    Ok(())
}

async fn freeze(node: &Arc<Node>, c: &Arc<Container>, on: bool) -> Result<(), BusError> {
    let Some(layout) = node.cgroups.clone() else {
        return Err(BusError::unavailable(
            "cgroups are not available on this node",
        ));
    };
    let id = c.id.clone();
    blocking(move || {
        let group =
            cgroups::open(&layout, &format!("wharf/{id}")).map_err(|e| internal("cgroup", e))?;
        if on { group.freeze() } else { group.thaw() }.map_err(|e| internal("cgroup", e))
    })
    .await
}

/// `docker pause` (`on`) and `docker unpause`.
pub async fn pause(node: &Arc<Node>, c: &Arc<Container>, on: bool) -> Result<(), BusError> {
    let _held = c.op_lock.lock().await;
    let rec = c.snapshot();
    match (rec.state.status, on) {
        (Status::Running, true) => {}
        (Status::Paused, false) => {}
        (Status::Paused, true) => {
            return Err(BusError::conflict(format!(
                "Container {} is already paused",
                rec.id
            )))
        }
        (Status::Running, false) => {
            return Err(BusError::conflict(format!(
                "Container {} is not paused",
                rec.id
            )))
        }
        _ => {
            return Err(BusError::conflict(format!(
                "Container {} is not running",
                rec.id
            )))
        }
    }
    freeze(node, c, on).await?;
    c.update(|r| r.state.status = if on { Status::Paused } else { Status::Running })?;
    node.publish_event(&rec, if on { "pause" } else { "unpause" }, &[])
        .await;
    Ok(())
}

/// `docker rename`.
pub async fn rename(node: &Arc<Node>, c: &Arc<Container>, new: &str) -> Result<(), BusError> {
    let new = format!("/{}", new.trim_start_matches('/'));
    let old = c.with(|r| r.name.clone());
    if new == old {
        return Err(BusError::invalid(
            "Renaming a container with the same name as its current name",
        ));
    }
    reserve_name(node, &new, &c.id)?;
    c.update(|r| r.name = new.clone())?;
    release_name(node, &old, &c.id);
    node.publish_event(&c.snapshot(), "rename", &[("oldName", old.clone())])
        .await;
    Ok(())
}

/// Loads every container record and adopts the containers whose shims still run; applies the
/// restart policy to those that ended while no runtime watched.
pub async fn restore(node: &Arc<Node>) {
    let entries = match std::fs::read_dir(&node.containers_dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("cannot read {}: {e}", node.containers_dir.display());
            return;
        }
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let rec = match ContainerRecord::load(&dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "skipping container without a readable record: {e}");
                continue;
            }
        };
        if rec.state.status == Status::Removing {
            // A remove was interrupted: finish it.
            let paths = ContainerPaths::new(&node.containers_dir, &rec.id);
            let node2 = node.clone();
            let id = rec.id.clone();
            let states = rec.networks();
            let _ = tokio::task::spawn_blocking(move || {
                teardown(&node2, &id, &paths, &states);
                discard(&paths);
            })
            .await;
            continue;
        }
        let c = Arc::new(Container {
            id: rec.id.clone(),
            paths: ContainerPaths::new(&node.containers_dir, &rec.id),
            record: Mutex::new(rec.clone()),
            op_lock: tokio::sync::Mutex::new(()),
            phase: tokio::sync::watch::channel(Phase {
                exit_code: rec.state.exit_code,
                running: rec.state.status.is_live(),
                ..Default::default()
            })
            .0,
            pending_attaches: Mutex::new(Vec::new()),
        });
        node.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rec.name.clone(), rec.id.clone());
        node.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rec.id.clone(), c.clone());
        match rec.state.status {
            Status::Running | Status::Paused => {
                let shim = ShimClient::open(&c.paths.dir);
                match shim.state().await {
                    Ok(state) if state.exit_code.is_none() => {
                        tracing::info!(container = %rec.id, "adopted running container");
                        tokio::spawn(monitor(node.clone(), c.clone()));
                    }
                    Ok(state) => {
                        tokio::spawn(on_exit(node.clone(), c.clone(), state));
                    }
                    Err(_) => {
                        let state = final_state_without_shim(node, &c).await;
                        tokio::spawn(on_exit(node.clone(), c.clone(), state));
                    }
                }
            }
            Status::Restarting => {
                let _ = c.update(|r| r.state.status = Status::Exited);
                restart_on_boot(node, &c);
            }
            Status::Exited | Status::Created => restart_on_boot(node, &c),
            _ => {}
        }
    }
}

/// Starts an exited container whose policy says it should run whenever the engine does.
fn restart_on_boot(node: &Arc<Node>, c: &Arc<Container>) {
    let rec = c.snapshot();
    let wanted = rec.has_been_started
        && match rec.host_config.restart_policy.name.as_str() {
            "always" => true,
            "unless-stopped" => !rec.state.stopped_by_user,
            _ => false,
        };
    if wanted {
        let node = node.clone();
        let c = c.clone();
        tokio::spawn(async move {
            let _held = c.op_lock.lock().await;
            if let Err(e) = start_locked(&node, &c).await {
                tracing::warn!(container = %c.id, "restart at boot failed: {}", e.message);
            }
        });
    }
}

/// `docker network connect`.
pub async fn connect(
    node: &Arc<Node>,
    req: wharf_bus::container::NetworkConnectRequest,
) -> Result<(), BusError> {
    let c = node.get(&req.container)?;
    let net = node
        .networks
        .find(&req.network)
        .ok_or_else(|| BusError::not_found(format!("network {} not found", req.network)))?;
    let _held = c.op_lock.lock().await;
    let rec = c.snapshot();
    if super::networks::wants_network(&rec, &net.record) {
        return Err(BusError::forbidden(format!(
            "endpoint with name {} already exists in network {}",
            rec.short_name(),
            net.record.name
        )));
    }
    c.update(|r| {
        r.networking_config.endpoints_config.insert(
            net.record.name.clone(),
            wharf_bus::container::EndpointSettings {
                aliases: req.aliases.clone(),
                links: Vec::new(),
            },
        );
    })?;
    if rec.state.status.is_live() {
        let node2 = node.clone();
        let c2 = c.clone();
        let net2 = net.clone();
        let aliases = req.aliases.clone();
        let state = blocking(move || {
            let rec = c2.snapshot();
            let index = rec.network.iter().count() + rec.connected.len();
            let host_if = super::networks::host_interface(&rec.id, &net2.record.id);
            let a = net2
                .bridge
                .attach_as(
                    &rec.id,
                    &c2.paths.netns(),
                    &[],
                    &host_if,
                    &format!("eth{index}"),
                )
                .map_err(|e| {
                    internal(format!("cannot connect to network {}", net2.record.name), e)
                })?;
            let _ = node2;
            Ok(NetworkState {
                network_id: net2.record.id.clone(),
                network_name: net2.record.name.clone(),
                host_interface: host_if,
                aliases,
                address: a.address.to_string(),
                prefix: a.prefix,
                gateway: a.gateway.to_string(),
                mac: mac_for(a.address),
                ports: Vec::new(),
            })
        })
        .await?;
        c.update(|r| r.connected.push(state))?;
        let nets = c.with(|r| user_nets(r));
        let node2 = node.clone();
        let _ = tokio::task::spawn_blocking(move || refresh_hosts(&node2, &nets)).await;
    }
    let mut attrs = BTreeMap::new();
    attrs.insert("container".to_string(), c.id.clone());
    attrs.insert("name".to_string(), net.record.name.clone());
    attrs.insert("type".to_string(), "bridge".to_string());
    let event = wharf_bus::events::Event::now("network", "connect", &net.record.id, attrs);
    wharf_bus::events::publish(&node.client, &event).await;
    Ok(())
}

/// `docker network disconnect`.
pub async fn disconnect(
    node: &Arc<Node>,
    req: wharf_bus::container::NetworkConnectRequest,
) -> Result<(), BusError> {
    let c = node.get(&req.container)?;
    let net = node
        .networks
        .find(&req.network)
        .ok_or_else(|| BusError::not_found(format!("network {} not found", req.network)))?;
    let _held = c.op_lock.lock().await;
    let rec = c.snapshot();
    if !super::networks::wants_network(&rec, &net.record) {
        return Err(BusError::forbidden(format!(
            "container {} is not connected to network {}",
            rec.id, net.record.name
        )));
    }
    let nets_before = user_nets(&rec);
    let states: Vec<NetworkState> = rec
        .networks()
        .into_iter()
        .filter(|n| n.network_id == net.record.id)
        .collect();
    let net2 = net.clone();
    let id = c.id.clone();
    blocking(move || {
        for s in &states {
            let _ = net2.bridge.detach_as(&id, &s.host_interface);
        }
        Ok(())
    })
    .await?;
    c.update(|r| {
        r.networking_config
            .endpoints_config
            .retain(|k, _| k != &net.record.name && k != &net.record.id);
        r.connected.retain(|n| n.network_id != net.record.id);
        if r.network
            .as_ref()
            .is_some_and(|n| n.network_id == net.record.id)
        {
            r.network = None;
        }
        if r.host_config.network_mode == net.record.name
            || r.host_config.network_mode == net.record.id
        {
            r.host_config.network_mode = "none".into();
        }
    })?;
    let node2 = node.clone();
    let _ = tokio::task::spawn_blocking(move || refresh_hosts(&node2, &nets_before)).await;
    let mut attrs = BTreeMap::new();
    attrs.insert("container".to_string(), c.id.clone());
    attrs.insert("name".to_string(), net.record.name.clone());
    attrs.insert("type".to_string(), "bridge".to_string());
    let event = wharf_bus::events::Event::now("network", "disconnect", &net.record.id, attrs);
    wharf_bus::events::publish(&node.client, &event).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use wharf_bus::container::HostConfig;

    /// Found by deploy/fuzz-api.sh: `POST /containers/{id}/update` with `CpuQuota`
    /// 9223372036854775806 overflowed the quota's conversion to CPUs and panicked the task, so
    /// the request never got an answer; a log `max-size` of too many gigabytes did the same.
    #[test]
    fn huge_cpu_quotas_and_sizes_do_not_overflow() {
        let host = HostConfig {
            cpu_quota: i64::MAX - 1,
            ..HostConfig::default()
        };
        assert_eq!(super::resources(&host).nano_cpus, Some(u64::MAX));
        let host = HostConfig {
            cpu_quota: 150_000,
            cpu_period: 100_000,
            ..HostConfig::default()
        };
        assert_eq!(super::resources(&host).nano_cpus, Some(1_500_000_000));
        assert_eq!(super::parse_size("99999999999999999999g"), None);
        assert_eq!(super::parse_size("17179869184g"), None);
        assert_eq!(super::parse_size("10m"), Some(10 << 20));
    }

    /// Found by deploy/fuzz-api.sh: `POST /containers/{id}/kill` racing the container's exit
    /// (its shim already gone) answered 500.
    #[tokio::test]
    async fn a_signal_to_a_container_whose_shim_is_gone_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        super::signal_shim(dir.path(), "gone", 9).await.unwrap();
        super::signal_shim(&dir.path().join("removed"), "removed", 15)
            .await
            .unwrap();
    }
}

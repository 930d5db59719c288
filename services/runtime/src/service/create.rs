//! Creating a container: the create request checked, the image's defaults merged into its
//! config, its ID and name, its root unpacked and mounted, its mounts made, and its record
//! written. Build steps create their containers here too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;
use wharf_bus::container::{
    ContainerConfig, CreateBody, CreateRequest, CreateResponse, HealthConfig, HostConfig,
    NetworkingConfig,
};
use wharf_bus::image::{ImageRecord, ImageResolve};
use wharf_bus::subjects::{group, image_store, subject};
use wharf_bus::BusError;

use crate::cgroups;
use crate::logs::format_go_rfc3339_nano;
use crate::snapshot::Snapshotter;

use super::blocking::blocking;
use super::record::{ContainerPaths, ContainerRecord, MountPoint, State, ZERO_TIME};
use super::{host, internal, mounts, names, remove, runtime_spec, Container, Node};

/// A new container ID: 64 hex digits, as dockerd makes them.
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

/// Refuses, with dockerd's texts, the host configs dockerd refuses at create: bad ulimits,
/// security options or restart policies, `--rm` with a restart policy, too little memory, and
/// more CPUs than the host has.
fn check_host_config(host: &HostConfig) -> Result<(), BusError> {
    runtime_spec::check_ulimits(host)?;
    // What this engine cannot do is refused as dockerd refuses it on a host without it: disk
    // quotas need overlay on xfs with pquota, device requests a driver (none is installed).
    if !host.storage_opt.is_empty() {
        return Err(BusError::invalid(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
        ));
    }
    if let Some(request) = host.device_requests.iter().flatten().next() {
        let caps: Vec<String> = request
            .capabilities
            .iter()
            .flatten()
            .map(|c| format!("[{}]", c.join(" ")))
            .collect();
        return Err(BusError::invalid(format!(
            "could not select device driver {:?} with capabilities: [{}]",
            request.driver,
            caps.join(" ")
        )));
    }
    let parent = host.cgroup_parent.trim_matches('/');
    if !parent.is_empty()
        && parent
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(BusError::invalid(format!(
            "invalid cgroup parent {:?}: a path of names, without . or ..",
            host.cgroup_parent
        )));
    }
    if host.blkio_weight != 0 && !(10..=1000).contains(&host.blkio_weight) {
        return Err(BusError::invalid(
            "Range of blkio weight is from 10 to 1000",
        ));
    }

    super::security::parse(host.security_opt.as_deref().unwrap_or_default())?;
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
    if host.memory_reservation > 0 && (host.memory_reservation as u64) < (6 * 1024 * 1024) {
        return Err(BusError::invalid(
            "Minimum memory reservation allowed is 6MB",
        ));
    }
    if host.memory > 0 && host.memory_reservation > host.memory {
        return Err(BusError::invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    if let Some(swappiness) = host.memory_swappiness.filter(|s| !(0..=100).contains(s)) {
        return Err(BusError::invalid(format!(
            "Invalid value: {swappiness}, valid memory swappiness range is 0-100"
        )));
    }
    let cpus = cgroups::host_cpus();
    if !host.cpuset_cpus.is_empty() && !cgroups::cpuset_within(&host.cpuset_cpus, cpus) {
        return Err(BusError::invalid(format!(
            "Requested CPUs are not available - requested {}, available: 0-{}",
            host.cpuset_cpus,
            cpus - 1
        )));
    }
    let nodes = memory_nodes();
    if !host.cpuset_mems.is_empty() && !cgroups::cpuset_within(&host.cpuset_mems, nodes) {
        return Err(BusError::invalid(format!(
            "Requested memory nodes are not available - requested {}, available: 0-{}",
            host.cpuset_mems,
            nodes - 1
        )));
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

/// How many memory nodes this host has (`/sys/devices/system/node/online`, `0-N`; 1 without
/// NUMA information).
fn memory_nodes() -> u64 {
    std::fs::read_to_string("/sys/devices/system/node/online")
        .ok()
        .and_then(|online| {
            online
                .trim()
                .split([',', '-'])
                .filter_map(|n| n.parse::<u64>().ok())
                .max()
        })
        .map_or(1, |last| last + 1)
}

/// Settings the host's cgroups cannot apply, discarded with dockerd's warnings: on cgroup v2
/// (and v1 without the memory controller) there is no swappiness and no OOM killer switch.
fn discard_unsupported(node: &Node, host: &mut HostConfig) -> Vec<String> {
    let v1_memory = matches!(
        &node.cgroups,
        Some(crate::cgroups::Layout::V1 { controllers, .. }) if controllers.contains_key("memory")
    );
    let mut warnings = Vec::new();
    // Block IO weights need the blkio controller's weight files (BFQ on v1) or io on v2.
    let blkio_has = |file: &str| match &node.cgroups {
        Some(crate::cgroups::Layout::V1 { controllers, .. }) => controllers
            .get("blkio")
            .is_some_and(|root| root.join(file).exists()),
        Some(crate::cgroups::Layout::V2 { root }) => {
            std::fs::read_to_string(root.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "io"))
        }
        None => false,
    };
    if host.blkio_weight > 0 && !blkio_has("blkio.weight") {
        host.blkio_weight = 0;
        warnings.push(
            "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
                .to_string(),
        );
    }
    if host
        .blkio_weight_device
        .as_ref()
        .is_some_and(|d| !d.is_empty())
        && !blkio_has("blkio.weight_device")
    {
        host.blkio_weight_device = None;
        warnings.push(
            "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded."
                .to_string(),
        );
    }
    if !v1_memory {
        if host.memory_swappiness.take().is_some() {
            warnings.push(
                "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded."
                    .to_string(),
            );
        }
        if host.oom_kill_disable.take() == Some(true) {
            warnings.push(
                "Your kernel does not support OomKillDisable. OomKillDisable discarded."
                    .to_string(),
            );
        }
    }
    warnings
}

/// `POST /containers/create` on this node.
pub async fn create(node: &Arc<Node>, req: CreateRequest) -> Result<CreateResponse, BusError> {
    let mut body = req.body;
    if body.config.image.is_empty() {
        return Err(BusError::invalid(
            "Config cannot be empty in order to create a container",
        ));
    }
    check_host_config(&body.host_config)?;
    let warnings = discard_unsupported(node, &mut body.host_config);
    // The devices of what is left must be there.
    super::limits::block_devices(&body.host_config)?;
    if body.host_config.privileged && host::remap(node, &body.host_config).is_some() {
        return Err(BusError::invalid(runtime_spec::PRIVILEGED_USERNS));
    }
    super::networks::resolve_mode(node, &body.host_config.network_mode)?;
    for (name, endpoint) in &body.networking_config.endpoints_config {
        super::networks::resolve_mode(node, name)?;
        super::networks::check_endpoint(node, name, endpoint)?;
    }
    if let Some(mac) = body.config.mac_address.as_deref().filter(|m| !m.is_empty()) {
        if crate::network::parse_mac(mac).is_none() {
            return Err(BusError::invalid(format!("invalid MAC address: {mac}")));
        }
    }
    let links = super::links::at_create(node, &mut body)?;
    let image: ImageRecord = wharf_bus::call(
        &node.client,
        &subject(group::IMAGE_STORE, image_store::IMAGE_RESOLVE),
        &ImageResolve {
            name: body.config.image.clone(),
        },
    )
    .await?;
    let c = create_from(node, &req.name, &image, body).await?;
    if !links.is_empty() {
        c.update(|r| r.links = links)?;
    }
    Ok(CreateResponse {
        id: c.id.clone(),
        warnings,
    })
}

/// A build step's container (`build.run`, `build.copy`): from the image ID `image`, or from
/// nothing for `FROM scratch` (an empty `image`), with a generated name. The config is used
/// as the builder made it: no entrypoint unless it names one, so neither the image's
/// entrypoint nor its Cmd comes in.
pub(super) async fn create_for_step(
    node: &Arc<Node>,
    image: &str,
    mut config: ContainerConfig,
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
    let body = CreateBody {
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
    body: CreateBody,
) -> Result<Arc<Container>, BusError> {
    let id = new_id();
    let mut config = merge_image_config(body.config.clone(), &image.config);
    if config.hostname.is_empty() {
        config.hostname = id[..12].to_string();
    }
    let (path, args) = command(&config)?;
    let name = if name.is_empty() {
        let mut attempt = 0;
        loop {
            let candidate = format!("/{}", names::generate(attempt));
            if names::reserve_name(node, &candidate, &id).await.is_ok() {
                break candidate;
            }
            attempt += 1;
        }
    } else {
        let name = format!("/{}", name.trim_start_matches('/'));
        names::reserve_name(node, &name, &id).await?;
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
            names::release_name(node, &name, &id).await;
            let (dir, system) = (paths.clone(), node.host.clone());
            let _ = tokio::task::spawn_blocking(move || remove::discard(&*system, &dir)).await;
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
        primary_detached: false,
        links: Vec::new(),
        mounts,
        has_been_started: false,
        platform: "linux".into(),
    };
    if let Err(e) = record.save(&paths.dir) {
        names::release_name(node, &name, &id).await;
        let (dir, system) = (paths.clone(), node.host.clone());
        let _ = tokio::task::spawn_blocking(move || remove::discard(&*system, &dir)).await;
        return Err(internal("cannot save the container", e));
    }
    let container = Container::new(paths, record.clone());
    node.containers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, container.clone());
    node.publish_event(&record, "create", &[]).await;
    Ok(container)
}

/// What [`prepare`] hands back for the record: the config, host config and networking
/// config as given, the mounts made, and the chain IDs of the image's layers.
type Prepared = (
    ContainerConfig,
    HostConfig,
    NetworkingConfig,
    Vec<MountPoint>,
    Vec<String>,
);

/// Unpacks the image, mounts the root, creates the volumes and fills them from the image.
async fn prepare(
    node: &Arc<Node>,
    id: &str,
    paths: &ContainerPaths,
    image: &ImageRecord,
    config: ContainerConfig,
    host_config: HostConfig,
    networking: NetworkingConfig,
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
        node2
            .host
            .mount_rootfs(
                &lower,
                &node2.options.root.join("empty"),
                &paths.upper(),
                &paths.work(),
                &rootfs,
                host::remap(&node2, &host_config),
            )
            .map_err(|e| internal("cannot mount the container's root", e))?;
        let mounts = mounts::make(&node2, &id, &config, &host_config, &rootfs)?;
        if !config.working_dir.is_empty() {
            make_dir_in_root(&rootfs, &config.working_dir);
            if let Some((_, map)) = host::remap(&node2, &host_config) {
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

/// Makes `dir` (the working directory) inside the container's root, never following a
/// symlink out of it; a failure is ignored.
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

/// The container's config with the image's defaults filled in, as dockerd merges them.
fn merge_image_config(mut config: ContainerConfig, image: &Value) -> ContainerConfig {
    let ic = image.get("config").cloned().unwrap_or(Value::Null);
    let strings = |v: Option<&Value>| -> Option<Vec<String>> {
        v.and_then(|v| v.as_array()).map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
    };
    // Env: the image's, overridden key by key by the container's.
    let mut env: Vec<String> = strings(ic.get("Env")).unwrap_or_default();
    for e in std::mem::take(&mut config.env) {
        let key = e.split('=').next().unwrap_or("").to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()) || !e.contains('='));
        env.push(e);
    }
    config.env = env;
    // An entrypoint given on create resets the image's Cmd (dockerd).
    if config.entrypoint.is_none() {
        config.entrypoint = strings(ic.get("Entrypoint"));
        if config.cmd.is_none() {
            config.cmd = strings(ic.get("Cmd"));
        }
    }
    if config.working_dir.is_empty() {
        config.working_dir = ic
            .get("WorkingDir")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
    }
    if config.user.is_empty() {
        config.user = ic
            .get("User")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
    }
    if let Some(ports) = ic.get("ExposedPorts").and_then(|v| v.as_object()) {
        let mine = config.exposed_ports.get_or_insert_with(BTreeMap::new);
        for (k, v) in ports {
            mine.entry(k.clone()).or_insert(v.clone());
        }
    }
    if let Some(vols) = ic.get("Volumes").and_then(|v| v.as_object()) {
        let mine = config.volumes.get_or_insert_with(BTreeMap::new);
        for (k, v) in vols {
            mine.entry(k.clone()).or_insert(v.clone());
        }
    }
    if config.stop_signal.is_none() {
        config.stop_signal = ic
            .get("StopSignal")
            .and_then(|v| v.as_str())
            .map(str::to_string);
    }
    if config.healthcheck.is_none() {
        config.healthcheck = ic
            .get("Healthcheck")
            .and_then(|h| serde_json::from_value::<HealthConfig>(h.clone()).ok());
    }
    if let Some(labels) = ic.get("Labels").and_then(|v| v.as_object()) {
        for (k, v) in labels {
            if let Some(v) = v.as_str() {
                config.labels.entry(k.clone()).or_insert(v.to_string());
            }
        }
    }
    if config.on_build.is_none() {
        config.on_build = strings(ic.get("OnBuild"));
    }
    if config.shell.is_none() {
        config.shell = strings(ic.get("Shell"));
    }
    config
}

/// `Path` and `Args` of the container (entrypoint then cmd); dockerd's 400 when empty.
fn command(config: &ContainerConfig) -> Result<(String, Vec<String>), BusError> {
    let mut all: Vec<String> = config.entrypoint.clone().unwrap_or_default();
    // `--entrypoint ""` clears the image's entrypoint.
    if all.len() == 1 && all[0].is_empty() {
        all.clear();
    }
    all.extend(config.cmd.clone().unwrap_or_default());
    if all.is_empty() {
        return Err(BusError::invalid("No command specified"));
    }
    let path = all.remove(0);
    Ok((path, all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_defaults_fill_what_the_create_left_out() {
        let image = json!({"config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"],
            "Entrypoint": null, "WorkingDir": "/srv", "ExposedPorts": {"80/tcp": {}},
            "Labels": {"l": "image"}}});
        let mut config = ContainerConfig {
            env: vec!["A=2".into()],
            ..Default::default()
        };
        config.labels.insert("l".into(), "mine".into());
        let merged = merge_image_config(config, &image);
        assert_eq!(merged.env, ["PATH=/bin", "A=2"]);
        assert_eq!(merged.cmd.as_deref().unwrap(), ["sh"]);
        assert_eq!(merged.working_dir, "/srv");
        assert!(merged.exposed_ports.unwrap().contains_key("80/tcp"));
        assert_eq!(merged.labels["l"], "mine");
    }

    #[test]
    fn an_entrypoint_on_create_drops_the_images_cmd() {
        let image = json!({"config": {"Entrypoint": ["/init"], "Cmd": ["serve"]}});
        let config = ContainerConfig {
            entrypoint: Some(vec!["echo".into()]),
            ..Default::default()
        };
        let merged = merge_image_config(config, &image);
        assert_eq!(command(&merged).unwrap(), ("echo".to_string(), vec![]));
        let merged = merge_image_config(ContainerConfig::default(), &image);
        assert_eq!(
            command(&merged).unwrap(),
            ("/init".to_string(), vec!["serve".to_string()])
        );
        assert_eq!(
            command(&ContainerConfig::default()).unwrap_err().message,
            "No command specified"
        );
    }
}

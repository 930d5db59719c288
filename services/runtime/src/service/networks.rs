//! User-defined bridge networks of this node (`docker network create/ls/inspect/rm/connect/
//! disconnect/prune`), and the predefined `bridge`, `host` and `none`.
//!
//! Each user network has its own Linux bridge (`wh-<id12>`), subnet (the first free /24 of
//! 10.89.0.0/16 that no route of the host already covers, unless `--subnet` names one),
//! address allocation and nftables table (`<table>_<id12>`). Containers on a user network find
//! each other by name, alias and short ID through their /etc/hosts, which the node rewrites
//! (in place: it is bind-mounted) whenever a member joins, leaves or is renamed.
//! A network belongs to the node that created it; the gateway places containers that ask for
//! it there.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use wharf_bus::container::{NetworkCreateRequest, NetworkListResponse, NetworkPruneResponse};
use wharf_bus::BusError;

use crate::network::{BridgeNetwork, NetworkConfig, Subnet};

use super::record::{ContainerRecord, NetworkState};
use super::{internal, Node};

const RECORD: &str = "network.json";

/// What the node keeps of a user network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: String,
    pub gateway: String,
    pub bridge: String,
    pub table: String,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub created: String,
    /// `--ip-range` (empty: the whole subnet).
    #[serde(default)]
    pub ip_range: String,
    /// The subnet was the create's own (`--subnet`): only then may containers choose
    /// addresses (`--ip`), as in dockerd.
    #[serde(default)]
    pub configured: bool,
}

pub struct UserNetwork {
    pub record: NetworkRecord,
    pub bridge: BridgeNetwork,
}

/// The user networks of this node.
pub struct Networks {
    dir: PathBuf,
    base_table: String,
    nets: Mutex<BTreeMap<String, Arc<UserNetwork>>>,
}

impl Networks {
    /// Loads the networks recorded under `dir` and sets their bridges up again.
    pub fn open(dir: PathBuf, base_table: &str) -> Networks {
        let networks = Networks {
            dir,
            base_table: base_table.to_string(),
            nets: Mutex::new(BTreeMap::new()),
        };
        let _ = std::fs::create_dir_all(&networks.dir);
        if let Ok(entries) = std::fs::read_dir(&networks.dir) {
            for e in entries.flatten() {
                let Ok(bytes) = std::fs::read(e.path().join(RECORD)) else {
                    continue;
                };
                let Ok(record) = serde_json::from_slice::<NetworkRecord>(&bytes) else {
                    continue;
                };
                match open_bridge(&networks.dir, &record) {
                    Ok(bridge) => {
                        if let Err(err) = bridge.setup() {
                            tracing::warn!(network = %record.name, "cannot set the network up: {err}");
                        }
                        networks
                            .nets
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(record.id.clone(), Arc::new(UserNetwork { record, bridge }));
                    }
                    Err(err) => {
                        tracing::warn!(network = %record.name, "cannot open the network: {err}")
                    }
                }
            }
        }
        networks
    }

    pub fn all(&self) -> Vec<Arc<UserNetwork>> {
        self.nets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A user network by name, full ID or unique ID prefix.
    pub fn find(&self, what: &str) -> Option<Arc<UserNetwork>> {
        let nets = self.nets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = nets
            .values()
            .find(|n| n.record.name == what || n.record.id == what)
        {
            return Some(n.clone());
        }
        let mut prefixed = nets.values().filter(|n| n.record.id.starts_with(what));
        match (prefixed.next(), prefixed.next()) {
            (Some(n), None) if !what.is_empty() => Some(n.clone()),
            _ => None,
        }
    }
}

fn open_bridge(dir: &std::path::Path, record: &NetworkRecord) -> Result<BridgeNetwork, BusError> {
    let subnet: Subnet = record
        .subnet
        .parse()
        .map_err(|e| internal(format!("network {}", record.name), e))?;
    let config = NetworkConfig {
        bridge: record.bridge.clone(),
        subnet,
        table: record.table.clone(),
        state_dir: dir.join(&record.id),
        internal: record.internal,
        gateway: record.gateway.parse().ok(),
        ip_range: record.ip_range.parse().ok(),
        ..driver_options(&record.options)
            .map_err(|e| internal(format!("network {}", record.name), e))?
    };
    BridgeNetwork::open(config).map_err(|e| internal(format!("network {}", record.name), e))
}

/// `com.docker.network.bridge.name`: the bridge's own name instead of `wh-<id>`.
const BRIDGE_NAME: &str = "com.docker.network.bridge.name";

/// The bridge driver options Wharf applies (`docker network create -o`): the MTU, whether
/// containers of the network reach each other, whether their traffic out is masqueraded.
/// Others are kept and shown, as dockerd keeps unknown ones.
fn driver_options(options: &BTreeMap<String, String>) -> Result<NetworkConfig, String> {
    let mut config = NetworkConfig::new(PathBuf::new());
    let flag = |key: &str| -> Result<Option<bool>, String> {
        options
            .get(key)
            .map(|v| match v.as_str() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                _ => Err(format!(
                    "failed to parse {key} value: {v} (strconv.ParseBool: parsing {v:?}: invalid syntax)"
                )),
            })
            .transpose()
    };
    if let Some(icc) = flag("com.docker.network.bridge.enable_icc")? {
        config.icc = icc;
    }
    if let Some(masquerade) = flag("com.docker.network.bridge.enable_ip_masquerade")? {
        config.masquerade = masquerade;
    }
    if let Some(v) = options.get("com.docker.network.driver.mtu") {
        let mtu: u32 = v.parse().map_err(|_| {
            format!(
                "failed to parse com.docker.network.driver.mtu value: {v} (strconv.Atoi: parsing {v:?}: invalid syntax)"
            )
        })?;
        if !(68..=65535).contains(&mtu) {
            return Err(format!("invalid MTU number: {mtu}"));
        }
        config.mtu = Some(mtu);
    }
    Ok(config)
}

/// The predefined network names.
pub fn is_predefined(name: &str) -> bool {
    matches!(name, "bridge" | "host" | "none" | "default")
}

/// The ID of a predefined network on this node (stable across restarts).
pub fn predefined_id(node: &Node, name: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!(
        "wharf-{}-{name}",
        node.options.name
    )))
}

/// IPv4 prefixes the host already routes (so a new subnet does not collide with them).
fn host_routes() -> Vec<Subnet> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| p.contains('/'))
        .filter_map(|p| p.parse::<Subnet>().ok())
        .collect()
}

fn overlaps(a: &Subnet, b: &Subnet) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

fn choose_subnet(node: &Node, taken: &[Subnet]) -> Result<Subnet, BusError> {
    let routes = host_routes();
    for n in 0..=255u8 {
        let candidate: Subnet = format!("10.89.{n}.0/24").parse().expect("valid");
        let clash = taken
            .iter()
            .chain(routes.iter())
            .any(|s| overlaps(s, &candidate))
            || overlaps(&node.options.network.subnet, &candidate);
        if !clash {
            return Ok(candidate);
        }
    }
    Err(BusError::unavailable(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
    ))
}

/// `docker network create`.
pub async fn create(node: &Arc<Node>, req: NetworkCreateRequest) -> Result<Value, BusError> {
    if req.name.is_empty() {
        return Err(BusError::invalid("network name cannot be empty"));
    }
    if is_predefined(&req.name) {
        return Err(BusError::forbidden(format!(
            "operation is not permitted on predefined {} network ",
            req.name
        )));
    }
    // Networks here are IPv4 bridges: neither can be switched.
    if req.enable_ipv4 == Some(false) {
        return Err(BusError::invalid(
            "IPv4 cannot be disabled: this engine's networks are IPv4 bridges",
        ));
    }
    if req.enable_ipv6 == Some(true) {
        return Err(BusError::invalid(
            "IPv6 networks are not supported: this engine's networks are IPv4 bridges",
        ));
    }
    if req.driver == "overlay" {
        // Overlay networks need a swarm; this engine is a dockerd in none.
        return Err(BusError::unavailable(
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
        ));
    }
    if !matches!(req.driver.as_str(), "" | "bridge") {
        return Err(BusError::not_found(format!(
            "plugin \"{}\" not found",
            req.driver
        )));
    }
    if node
        .networks
        .find(&req.name)
        .is_some_and(|n| n.record.name == req.name)
    {
        return Err(BusError::conflict(format!(
            "network with name {} already exists",
            req.name
        )));
    }
    let taken: Vec<Subnet> = node
        .networks
        .all()
        .iter()
        .filter_map(|n| n.record.subnet.parse().ok())
        .collect();
    let configs: Vec<Value> = req
        .ipam
        .as_ref()
        .and_then(|i| i.get("Config"))
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    if configs.len() > 1 {
        return Err(BusError::forbidden(
            "bridge driver doesn't support multiple subnets",
        ));
    }
    let asked = configs.first().cloned();
    let field = |key: &str| -> Option<String> {
        asked
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let subnet: Subnet = match field("Subnet").as_deref() {
        Some(text) => {
            let s: Subnet = text
                .parse()
                .map_err(|e| BusError::invalid(format!("invalid subnet {text}: {e}")))?;
            if taken.iter().any(|t| overlaps(t, &s)) || overlaps(&node.options.network.subnet, &s) {
                return Err(BusError::forbidden(
                    "Pool overlaps with other one on this address space",
                ));
            }
            s
        }
        None => {
            let node2 = node.clone();
            tokio::task::spawn_blocking(move || choose_subnet(&node2, &taken))
                .await
                .map_err(|e| internal("network", e))??
        }
    };
    let gateway = match field("Gateway") {
        Some(text) => {
            let g: std::net::Ipv4Addr = text
                .parse()
                .map_err(|_| BusError::invalid(format!("invalid gateway address {text}")))?;
            if !subnet.contains(g) {
                return Err(BusError::forbidden(format!(
                    "Invalid gateway {g}: it does not belong to subnet {subnet}"
                )));
            }
            g
        }
        None => subnet.gateway(),
    };
    let ip_range = match field("IPRange") {
        Some(text) => {
            let r: Subnet = text
                .parse()
                .map_err(|e| BusError::invalid(format!("invalid ip range {text}: {e}")))?;
            if !subnet.contains(r.network()) || r.prefix() < subnet.prefix() {
                return Err(BusError::forbidden(format!(
                    "Invalid ip range {r}: it does not belong to subnet {subnet}"
                )));
            }
            r.to_string()
        }
        None => String::new(),
    };
    let bridge = req.options.get(BRIDGE_NAME).cloned();
    if let Some(name) = &bridge {
        let plain = !name.is_empty()
            && name.len() <= 15
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plain {
            return Err(BusError::invalid(format!("invalid bridge name {name:?}")));
        }
        let taken = node.networks.all().iter().any(|n| &n.record.bridge == name)
            || node
                .network
                .as_ref()
                .is_some_and(|b| &b.config().bridge == name)
            || std::path::Path::new("/sys/class/net").join(name).exists();
        if taken {
            return Err(BusError::forbidden(format!(
                "bridge name {name} is already in use"
            )));
        }
    }
    driver_options(&req.options).map_err(BusError::invalid)?;
    let id = hex::encode(rand::random::<[u8; 32]>());
    let record = NetworkRecord {
        bridge: bridge.unwrap_or_else(|| format!("wh-{}", &id[..12])),
        table: format!("{}_{}", node.networks.base_table, &id[..12]),
        gateway: gateway.to_string(),
        ip_range,
        configured: field("Subnet").is_some(),
        subnet: subnet.to_string(),
        id: id.clone(),
        name: req.name.clone(),
        driver: "bridge".into(),
        internal: req.internal,
        attachable: req.attachable,
        labels: req.labels.clone(),
        options: req.options.clone(),
        created: crate::logs::format_go_rfc3339_nano(chrono::Utc::now()),
    };
    let dir = node.networks.dir.clone();
    let rec2 = record.clone();
    let bridge = tokio::task::spawn_blocking(move || -> Result<BridgeNetwork, BusError> {
        let ndir = dir.join(&rec2.id);
        std::fs::create_dir_all(&ndir).map_err(|e| internal("network", e))?;
        let bridge = open_bridge(&dir, &rec2)?;
        if let Err(e) = bridge.setup() {
            // Nothing of a network that could not be made stays behind: bridge, table, chain.
            let _ = bridge.teardown();
            let _ = std::fs::remove_dir_all(&ndir);
            return Err(internal(format!("cannot create network {}", rec2.name), e));
        }
        let json = serde_json::to_vec(&rec2).map_err(|e| internal("network", e))?;
        std::fs::write(ndir.join(RECORD), json).map_err(|e| internal("network", e))?;
        Ok(bridge)
    })
    .await
    .map_err(|e| internal("network", e))??;
    node.networks
        .nets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            id.clone(),
            Arc::new(UserNetwork {
                record: record.clone(),
                bridge,
            }),
        );
    publish(
        node,
        &record.id,
        &record.name,
        "create",
        &[("type", "bridge".into())],
    )
    .await;
    Ok(json!({"Id": id, "Warning": ""}))
}

/// A `network` event (create, destroy, connect, disconnect) with the network's name.
pub(super) async fn publish(
    node: &Node,
    id: &str,
    name: &str,
    action: &str,
    extra: &[(&str, String)],
) {
    let mut attrs = BTreeMap::new();
    attrs.insert("name".to_string(), name.to_string());
    for (k, v) in extra {
        attrs.insert(k.to_string(), v.clone());
    }
    let event = wharf_bus::events::Event::now("network", action, id, attrs);
    wharf_bus::events::publish(&node.client, &event).await;
}

/// Containers attached to network `id` (or to the default bridge when `id` is empty).
fn members(node: &Node, net_id: Option<&str>) -> Vec<(ContainerRecord, NetworkState)> {
    let mut out = Vec::new();
    for c in node.all() {
        let rec = c.snapshot();
        let states = rec.network.iter().chain(rec.connected.iter());
        for n in states {
            let matches = match net_id {
                Some(id) => n.network_id == id,
                None => n.network_id.is_empty(),
            };
            if matches {
                out.push((rec.clone(), n.clone()));
            }
        }
    }
    out
}

fn containers_json(members: &[(ContainerRecord, NetworkState)]) -> Value {
    let mut map = serde_json::Map::new();
    for (rec, n) in members {
        map.insert(
            rec.id.clone(),
            json!({
                "Name": rec.short_name(),
                "EndpointID": rec.id,
                "MacAddress": n.mac,
                "IPv4Address": format!("{}/{}", n.address, n.prefix),
                "IPv6Address": "",
            }),
        );
    }
    Value::Object(map)
}

/// `IPAM.Config` of a user network: its subnet, gateway and `--ip-range`.
fn ipam_config(r: &NetworkRecord) -> Value {
    let mut entry = json!({"Subnet": r.subnet, "Gateway": r.gateway});
    if !r.ip_range.is_empty() {
        entry["IPRange"] = json!(r.ip_range);
    }
    json!([entry])
}

#[allow(clippy::too_many_arguments)]
fn network_json(
    name: &str,
    id: &str,
    driver: &str,
    created: &str,
    config: Value,
    internal: bool,
    attachable: bool,
    labels: &BTreeMap<String, String>,
    options: &BTreeMap<String, String>,
    containers: Value,
) -> Value {
    json!({
        "Name": name,
        "Id": id,
        "Created": created,
        "Scope": "local",
        "Driver": driver,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": config},
        "Internal": internal,
        "Attachable": attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": labels,
    })
}

/// Every network of this node in Docker's shape.
fn all_json(node: &Node) -> Vec<Value> {
    let mut out = Vec::new();
    let started = "0001-01-01T00:00:00Z";
    let mut bridge_opts = BTreeMap::new();
    bridge_opts.insert(
        "com.docker.network.bridge.name".to_string(),
        node.options.network.bridge.clone(),
    );
    let subnet = node.options.network.subnet.to_string();
    let gateway = node.options.network.subnet.gateway().to_string();
    out.push(network_json(
        "bridge",
        &predefined_id(node, "bridge"),
        "bridge",
        started,
        json!([{"Subnet": subnet, "Gateway": gateway}]),
        false,
        false,
        &BTreeMap::new(),
        &bridge_opts,
        containers_json(&members(node, None)),
    ));
    for name in ["host", "none"] {
        out.push(network_json(
            name,
            &predefined_id(node, name),
            if name == "host" { "host" } else { "null" },
            started,
            json!([]),
            false,
            false,
            &BTreeMap::new(),
            &BTreeMap::new(),
            json!({}),
        ));
    }
    for n in node.networks.all() {
        let r = &n.record;
        out.push(network_json(
            &r.name,
            &r.id,
            &r.driver,
            &r.created,
            ipam_config(r),
            r.internal,
            r.attachable,
            &r.labels,
            &r.options,
            containers_json(&members(node, Some(&r.id))),
        ));
    }
    out
}

fn matches_filters(v: &Value, filters: &BTreeMap<String, Vec<String>>) -> Result<bool, BusError> {
    for (key, values) in filters {
        if values.is_empty() {
            continue;
        }
        let ok = match key.as_str() {
            "name" => values
                .iter()
                .any(|f| v["Name"].as_str().is_some_and(|n| n.contains(f.as_str()))),
            "id" => values
                .iter()
                .any(|f| v["Id"].as_str().is_some_and(|n| n.starts_with(f.as_str()))),
            "driver" => values.iter().any(|f| v["Driver"] == f.as_str()),
            "type" => values.iter().any(|f| {
                let builtin = is_predefined(v["Name"].as_str().unwrap_or(""));
                (f == "builtin" && builtin) || (f == "custom" && !builtin)
            }),
            "label" => values.iter().all(|f| match f.split_once('=') {
                Some((k, val)) => v["Labels"][k] == val,
                None => v["Labels"].get(f).is_some(),
            }),
            "scope" => values.iter().any(|f| f == "local"),
            "dangling" => {
                let dangling = v["Containers"].as_object().is_none_or(|m| m.is_empty())
                    && !is_predefined(v["Name"].as_str().unwrap_or(""));
                values.iter().any(|f| (f == "true" || f == "1") == dangling)
            }
            other => return Err(BusError::invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `docker network ls` / inspect on this node.
pub fn list(
    node: &Node,
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<NetworkListResponse, BusError> {
    let mut networks = Vec::new();
    for v in all_json(node) {
        if matches_filters(&v, filters)? {
            networks.push(v);
        }
    }
    Ok(NetworkListResponse {
        node: node.options.name.clone(),
        networks,
    })
}

/// `docker network rm`.
pub async fn remove(node: &Arc<Node>, id: &str) -> Result<(), BusError> {
    if let Some(name) = ["bridge", "host", "none"]
        .into_iter()
        .find(|n| predefined_id(node, n) == id || *n == id)
    {
        return Err(BusError::forbidden(format!(
            "{name} is a pre-defined network and cannot be removed"
        )));
    }
    let net = node
        .networks
        .find(id)
        .ok_or_else(|| BusError::not_found(format!("network {id} not found")))?;
    let users: Vec<String> = node
        .all()
        .iter()
        .filter(|c| c.with(|r| wants_network(r, &net.record)))
        .map(|c| c.id.clone())
        .collect();
    if !users.is_empty() {
        return Err(BusError::forbidden(format!(
            "error while removing network: network {} id {} has active endpoints",
            net.record.name, net.record.id
        )));
    }
    let dir = node.networks.dir.join(&net.record.id);
    let n2 = net.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = n2.bridge.teardown() {
            tracing::warn!(network = %n2.record.name, "teardown: {e}");
        }
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .map_err(|e| internal("network", e))?;
    node.networks
        .nets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&net.record.id);
    publish(
        node,
        &net.record.id,
        &net.record.name,
        "destroy",
        &[("type", "bridge".into())],
    )
    .await;
    Ok(())
}

/// Whether `net` is the container's `NetworkMode` network.
pub fn is_mode_of(rec: &ContainerRecord, net: &NetworkRecord) -> bool {
    let mode = rec.host_config.network_mode.as_str();
    mode == net.name || mode == net.id
}

/// Whether a container is configured to use a user network (running or not).
pub fn wants_network(rec: &ContainerRecord, net: &NetworkRecord) -> bool {
    (!rec.primary_detached && is_mode_of(rec, net))
        || rec
            .networking_config
            .endpoints_config
            .contains_key(&net.name)
        || rec.networking_config.endpoints_config.contains_key(&net.id)
}

/// `docker network prune`: user networks no container uses.
pub async fn prune(
    node: &Arc<Node>,
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<NetworkPruneResponse, BusError> {
    let mut report = NetworkPruneResponse::default();
    for net in node.networks.all() {
        if let Some(labels) = filters.get("label") {
            let ok = labels.iter().all(|f| match f.split_once('=') {
                Some((k, v)) => net.record.labels.get(k).map(String::as_str) == Some(v),
                None => net.record.labels.contains_key(f.as_str()),
            });
            if !ok {
                continue;
            }
        }
        if remove(node, &net.record.id).await.is_ok() {
            report.networks_deleted.push(net.record.name.clone());
        }
    }
    Ok(report)
}

/// The network a container's `NetworkMode` names, if it is a user network of this node.
pub fn resolve_mode(node: &Node, mode: &str) -> Result<Option<Arc<UserNetwork>>, BusError> {
    if matches!(mode, "" | "default" | "bridge" | "host" | "none") || mode.starts_with("container:")
    {
        return Ok(None);
    }
    node.networks
        .find(mode)
        .map(Some)
        .ok_or_else(|| BusError::not_found(format!("network {mode} not found")))
}

/// Host-side veth name of `container` on network `net` (15 bytes at most).
pub fn host_interface(container: &str, net: &str) -> String {
    format!("v{}{}", &container[..8], &net[..6])
}

/// What an endpoint config asks of network `name` (`--ip`, `--ip6`, `--mac-address`), checked
/// as dockerd checks it at create and connect.
pub fn check_endpoint(
    node: &Node,
    name: &str,
    e: &wharf_bus::container::EndpointSettings,
) -> Result<(), BusError> {
    if !e.mac_address.is_empty() && crate::network::parse_mac(&e.mac_address).is_none() {
        return Err(BusError::invalid(format!(
            "invalid MAC address: {}",
            e.mac_address
        )));
    }
    let Some(ipam) = &e.ipam_config else {
        return Ok(());
    };
    if !ipam.ipv6_address.is_empty() {
        return Err(BusError::invalid(
            "IPv6 addresses are not supported: Wharf's networks are IPv4 only",
        ));
    }
    if ipam.ipv4_address.is_empty() {
        return Ok(());
    }
    let Some(net) = resolve_mode(node, name)? else {
        return Err(BusError::invalid(
            "user specified IP address is supported on user defined networks only",
        ));
    };
    if !net.record.configured {
        return Err(BusError::invalid(
            "user specified IP address is supported only when connecting to networks with user configured subnets",
        ));
    }
    let text = &ipam.ipv4_address;
    let address: Ipv4Addr = text
        .parse()
        .map_err(|_| BusError::invalid(format!("invalid IPv4 address: {text}")))?;
    let subnet: Subnet = net
        .record
        .subnet
        .parse()
        .map_err(|e| internal(format!("network {}", net.record.name), e))?;
    if !subnet.contains(address) {
        return Err(BusError::invalid(format!(
            "Invalid address {address}: It does not belong to any of this network's subnets"
        )));
    }
    Ok(())
}

//! A container on its networks: attached at start (the default bridge or its `NetworkMode`
//! network, then the others its endpoints config names, published ports on the first),
//! `docker network connect` and `disconnect` while it runs, released at exit, and the
//! /etc/hosts that lets containers on one user network find each other by name and alias.

use std::path::Path;
use std::sync::Arc;

use wharf_bus::BusError;

use crate::network::PortMapping;

use super::blocking::blocking;
use super::networks::UserNetwork;
use super::record::{ContainerRecord, NetworkState};
use super::{host, internal, ports, Container, Node};

/// A locally administered MAC derived from the address, as Docker derives it.
fn mac_for(address: std::net::Ipv4Addr) -> String {
    let o = address.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Releases the container's addresses and ports on the user networks in `states`.
pub(super) fn release_networks(node: &Node, id: &str, states: &[NetworkState]) {
    for n in states.iter().filter(|n| !n.network_id.is_empty()) {
        if let Some(net) = node.networks.find(&n.network_id) {
            if let Err(e) = node.host.release(&net.bridge, id) {
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
            if let Err(e) = node.host.detach_as(&net.bridge, id, &n.host_interface) {
                tracing::warn!(container = %id, network = %n.network_name, "detach: {e}");
            }
        }
    }
}

/// The networks a container joins at start, in order: its `NetworkMode` network, then the
/// others its endpoints config names. Published ports go on the first.
fn wanted_networks(
    node: &Node,
    rec: &ContainerRecord,
) -> Result<Vec<Option<Arc<super::networks::UserNetwork>>>, BusError> {
    let mode = rec.host_config.network_mode.as_str();
    let primary = super::networks::resolve_mode(node, mode)?;
    // Disconnected from its NetworkMode network and not connected again: not joined.
    let mut out = Vec::new();
    if !rec.primary_detached {
        out.push(primary.clone());
    }
    for name in rec.networking_config.endpoints_config.keys() {
        if super::networks::is_predefined(name) || (name == mode && !rec.primary_detached) {
            continue;
        }
        let net = super::networks::resolve_mode(node, name)?;
        if let Some(net) = net {
            let joined = |id: &str| out.iter().flatten().any(|n| n.record.id == id);
            if joined(&net.record.id) {
                continue;
            }
            out.push(Some(net));
        }
    }
    Ok(out)
}

/// The aliases `rec`'s endpoints config gives it on `net` (`--network-alias`).
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
pub(super) fn attach_networks(
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
                    let a = node.host.attach(
                        bridge,
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
                        ports: ports::published(ports),
                    }
                }
                Some(net) => {
                    let host_if = super::networks::host_interface(&rec.id, &net.record.id);
                    let a = node
                        .host
                        .attach(&net.bridge, &rec.id, netns, ports, &host_if, &interface)
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
                        ports: ports::published(ports),
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
            let _ = node.host.detach(bridge, &rec.id);
        }
        return Err(e);
    }
    Ok(done)
}

/// A container's /etc/hosts: Docker's fixed lines, `--add-host`, its own address, and its
/// peers on the user networks `nets`.
pub(super) fn hosts_text(
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
pub(super) fn refresh_hosts(node: &Node, nets: &[String]) {
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
pub(super) fn user_nets(rec: &ContainerRecord) -> Vec<String> {
    rec.network
        .iter()
        .chain(rec.connected.iter())
        .map(|n| n.network_id.clone())
        .filter(|id| !id.is_empty())
        .collect()
}

/// The container and the network a connect or disconnect names.
fn container_and_network(
    node: &Arc<Node>,
    req: &wharf_bus::container::NetworkConnectRequest,
) -> Result<(Arc<Container>, Arc<UserNetwork>), BusError> {
    let c = node.get(&req.container)?;
    let net = node
        .networks
        .find(&req.network)
        .ok_or_else(|| BusError::not_found(format!("network {} not found", req.network)))?;
    Ok((c, net))
}

/// `docker network connect`.
pub async fn connect(
    node: &Arc<Node>,
    req: wharf_bus::container::NetworkConnectRequest,
) -> Result<(), BusError> {
    let (c, net) = container_and_network(node, &req)?;
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
        if super::networks::is_mode_of(r, &net.record) {
            r.primary_detached = false;
        }
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
            let a = node2
                .host
                .attach(
                    &net2.bridge,
                    &rec.id,
                    &c2.paths.netns(),
                    &[],
                    &host_if,
                    &format!("eth{index}"),
                )
                .map_err(|e| {
                    internal(format!("cannot connect to network {}", net2.record.name), e)
                })?;
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
    let extra = [("container", c.id.clone()), ("type", "bridge".to_string())];
    super::networks::publish(node, &net.record.id, &net.record.name, "connect", &extra).await;
    Ok(())
}

/// `docker network disconnect`.
pub async fn disconnect(
    node: &Arc<Node>,
    req: wharf_bus::container::NetworkConnectRequest,
) -> Result<(), BusError> {
    let (c, net) = container_and_network(node, &req)?;
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
    let host = node.host.clone();
    blocking(move || {
        for s in &states {
            let _ = host.detach_as(&net2.bridge, &id, &s.host_interface);
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
        if super::networks::is_mode_of(r, &net.record) {
            r.primary_detached = true;
        }
    })?;
    let node2 = node.clone();
    let _ = tokio::task::spawn_blocking(move || refresh_hosts(&node2, &nets_before)).await;
    let extra = [("container", c.id.clone()), ("type", "bridge".to_string())];
    super::networks::publish(node, &net.record.id, &net.record.name, "disconnect", &extra).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_are_derived_from_the_address_as_docker_derives_them() {
        assert_eq!(
            super::mac_for(std::net::Ipv4Addr::new(172, 17, 0, 2)),
            "02:42:ac:11:00:02"
        );
    }
}

//! A container on its networks: attached at start (the default bridge or its `NetworkMode`
//! network, then the others its endpoints config names, published ports on the first),
//! `docker network connect` and `disconnect` while it runs, released at exit, and the names
//! the embedded DNS server gives containers on one user network for each other.

use std::path::Path;
use std::sync::Arc;

use wharf_bus::BusError;

use crate::network::{format_mac, PortMapping, Requested};

use super::blocking::blocking;
use super::networks::UserNetwork;
use super::record::{ContainerRecord, NetworkState};
use super::{host, internal, ports, Container, Node};

/// An attach's failure: an address asked for that is taken is the client's conflict, in
/// libnetwork's words; anything else is the engine's.
fn attach_error(context: String, e: crate::network::NetworkError) -> BusError {
    match e {
        crate::network::NetworkError::AddressInUse => BusError::conflict(e.to_string()),
        e => internal(context, e),
    }
}

/// What `rec` asks for on the network its endpoints config calls one of `keys`: `--ip`, and
/// `--mac-address` (the endpoint's, or for its `NetworkMode` network, `primary`, the
/// container-wide one older API versions send).
fn requested(rec: &ContainerRecord, keys: &[&str], primary: bool) -> Requested {
    let endpoint = rec
        .networking_config
        .endpoints_config
        .iter()
        .find(|(k, _)| keys.contains(&k.as_str()))
        .map(|(_, e)| e);
    let address = endpoint
        .and_then(|e| e.ipam_config.as_ref())
        .and_then(|c| c.ipv4_address.parse().ok());
    let container_wide = rec.config.mac_address.as_deref().filter(|_| primary);
    let mac = endpoint
        .map(|e| e.mac_address.as_str())
        .filter(|m| !m.is_empty())
        .or(container_wide)
        .and_then(crate::network::parse_mac);
    Requested { address, mac }
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
            let primary = i == 0 && !rec.primary_detached;
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
                        &requested(rec, &["bridge", "default"], primary),
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
                        mac: format_mac(a.mac),
                        ports: ports::published(ports),
                    }
                }
                Some(net) => {
                    let host_if = super::networks::host_interface(&rec.id, &net.record.id);
                    let keys = [net.record.name.as_str(), net.record.id.as_str()];
                    let want = requested(rec, &keys, primary);
                    let a = node
                        .host
                        .attach(
                            &net.bridge,
                            &rec.id,
                            netns,
                            ports,
                            &host_if,
                            &interface,
                            &want,
                        )
                        .map_err(|e| {
                            attach_error(
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
                        mac: format_mac(a.mac),
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

/// The names of the containers on the node's user networks, as the embedded DNS server gives
/// them to one of them (see [`crate::dns`]): each container sharing a user network with the
/// asker, under its name, its aliases on that network and its short ID, each also followed by
/// `.network`. Read from the records at the time of the query.
pub struct NetworkNames(pub std::sync::Weak<Node>);

impl NetworkNames {
    /// Calls `f` with each address a live container has on one of `me`'s user networks, its
    /// record and that network's state.
    fn each_peer(&self, me: &str, mut f: impl FnMut(&ContainerRecord, &NetworkState)) {
        let Some(node) = self.0.upgrade() else {
            return;
        };
        let Ok(asker) = node.get(me) else {
            return;
        };
        let mine = asker.with(|r| user_nets(r));
        if mine.is_empty() {
            return;
        }
        for c in node.all() {
            c.with(|rec| {
                if !rec.state.status.is_live() {
                    return;
                }
                for n in rec.network.iter().chain(rec.connected.iter()) {
                    if !n.network_id.is_empty() && mine.contains(&n.network_id) {
                        f(rec, n);
                    }
                }
            });
        }
    }
}

/// Whether `name` (lower case) is `rec`'s on network `n`.
fn answers_to(rec: &ContainerRecord, n: &NetworkState, name: &str) -> bool {
    let plain = |candidate: &str| candidate.eq_ignore_ascii_case(name);
    let scoped = |candidate: &str| {
        name.strip_suffix(&n.network_name.to_ascii_lowercase())
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|rest| candidate.eq_ignore_ascii_case(rest))
    };
    let short_id = &rec.id[..12.min(rec.id.len())];
    std::iter::once(rec.short_name())
        .chain(n.aliases.iter().map(String::as_str))
        .chain(std::iter::once(short_id))
        .any(|c| plain(c) || scoped(c))
}

impl crate::dns::Names for NetworkNames {
    fn addresses(&self, me: &str, name: &str) -> Option<Vec<std::net::Ipv4Addr>> {
        // The asker's own links on its user networks (`--link c:alias`): `(network, c)` for
        // each link whose alias is `name`.
        let linked: Vec<(String, String)> = self
            .0
            .upgrade()
            .and_then(|node| node.get(me).ok())
            .map(|asker| {
                asker.with(|r| {
                    let links = r.networking_config.endpoints_config.iter();
                    links
                        .flat_map(|(net, e)| {
                            e.links
                                .iter()
                                .filter_map(|l| super::links::parse(l).ok())
                                .filter(|(_, alias)| alias.eq_ignore_ascii_case(name))
                                .map(|(child, _)| (net.clone(), child))
                        })
                        .collect()
                })
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        self.each_peer(me, |rec, n| {
            let link = linked.iter().any(|(net, child)| {
                (net == &n.network_name || net == &n.network_id) && child == rec.short_name()
            });
            if link || answers_to(rec, n, name) {
                out.extend(n.address.parse::<std::net::Ipv4Addr>().ok());
            }
        });
        out.sort();
        out.dedup();
        (!out.is_empty()).then_some(out)
    }

    fn name_of(&self, me: &str, address: std::net::Ipv4Addr) -> Option<String> {
        let mut found = None;
        let text = address.to_string();
        self.each_peer(me, |rec, n| {
            if found.is_none() && n.address == text {
                found = Some(format!("{}.{}", rec.short_name(), n.network_name));
            }
        });
        found
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
    super::networks::check_endpoint(node, &net.record.name, &req.endpoint)?;
    if super::networks::wants_network(&rec, &net.record) {
        return Err(BusError::forbidden(format!(
            "endpoint with name {} already exists in network {}",
            rec.short_name(),
            net.record.name
        )));
    }
    c.update(|r| {
        r.networking_config
            .endpoints_config
            .insert(net.record.name.clone(), req.endpoint.clone());
        if super::networks::is_mode_of(r, &net.record) {
            r.primary_detached = false;
        }
    })?;
    if rec.state.status.is_live() {
        let node2 = node.clone();
        let c2 = c.clone();
        let net2 = net.clone();
        let aliases = req.endpoint.aliases.clone();
        let state = blocking(move || {
            let rec = c2.snapshot();
            let keys = [net2.record.name.as_str(), net2.record.id.as_str()];
            let want = requested(&rec, &keys, false);
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
                    &want,
                )
                .map_err(|e| {
                    attach_error(format!("cannot connect to network {}", net2.record.name), e)
                })?;
            Ok(NetworkState {
                network_id: net2.record.id.clone(),
                network_name: net2.record.name.clone(),
                host_interface: host_if,
                aliases,
                address: a.address.to_string(),
                prefix: a.prefix,
                gateway: a.gateway.to_string(),
                mac: format_mac(a.mac),
                ports: Vec::new(),
            })
        })
        .await?;
        c.update(|r| r.connected.push(state))?;
        if !node.dns.serves(&c.id) {
            embedded_dns_on_connect(node, &c).await;
        }
    }
    let extra = [("container", c.id.clone()), ("type", "bridge".to_string())];
    super::networks::publish(node, &net.record.id, &net.record.name, "connect", &extra).await;
    Ok(())
}

/// A running container without the embedded DNS server (it started on the default bridge)
/// that joins a user network gets one, and its resolv.conf names it, as in dockerd.
async fn embedded_dns_on_connect(node: &Arc<Node>, c: &Arc<Container>) {
    let (node2, c2) = (node.clone(), c.clone());
    let server = blocking(move || {
        let rec = c2.snapshot();
        let joined: Vec<&NetworkState> = rec.network.iter().chain(rec.connected.iter()).collect();
        let resolvers = host::HostResolvers::read();
        let Some(server) = super::start::dns_server(&node2, &rec, &joined, &resolvers) else {
            return Ok(None);
        };
        let h = &rec.host_config;
        let text = host::resolv_conf(
            &resolvers,
            h.dns.as_deref().unwrap_or_default(),
            h.dns_search.as_deref().unwrap_or_default(),
            h.dns_options.as_deref().unwrap_or_default(),
            true,
        );
        // In place: the file is bind-mounted into the container.
        node2
            .host
            .write_file(&c2.paths.resolv_conf(), text.as_bytes())
            .map_err(|e| internal("cannot write resolv.conf", e))?;
        Ok(Some(server))
    })
    .await;
    match server {
        Ok(Some((listeners, config))) => {
            if let Err(e) = node.dns.serve(listeners, config) {
                tracing::warn!(container = %c.id, "embedded DNS server: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(container = %c.id, "embedded DNS server: {}", e.message),
    }
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
    let extra = [("container", c.id.clone()), ("type", "bridge".to_string())];
    super::networks::publish(node, &net.record.id, &net.record.name, "disconnect", &extra).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::network::{format_mac, mac_for, parse_mac};

    #[test]
    fn macs_are_derived_from_the_address_as_docker_derives_them() {
        let mac = mac_for(std::net::Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(format_mac(mac), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:AC:11:00:02"), Some(mac));
        for bad in [
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "2:42:ac:11:00:02",
            "zz:42:ac:11:00:02",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}

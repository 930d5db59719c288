//! Published ports (`-p`, `-P`): the container's `PortBindings` (and, with `-P`, every exposed
//! port) read with dockerd's error texts, free host ports picked where none was asked for,
//! and the check that no other container of the node holds the same host port.

use wharf_bus::container::PortBinding;
use wharf_bus::BusError;

use crate::network::{PortMapping, Protocol};

use super::record::{ContainerRecord, PublishedPort};
use super::{internal, Node};

/// The ports a starting container publishes (`PortBindings`, and with `-P` every exposed port),
/// with a free host port picked for each that asked for none.
pub(super) fn mappings(rec: &ContainerRecord) -> Result<Vec<PortMapping>, BusError> {
    let mut out = Vec::new();
    let mut bindings = rec.host_config.port_bindings.clone();
    if rec.host_config.publish_all_ports {
        if let Some(exposed) = &rec.config.exposed_ports {
            for port in exposed.keys() {
                bindings
                    .entry(port.clone())
                    .or_insert_with(|| vec![PortBinding::default()]);
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
pub(super) fn conflict(node: &Node, me: &str, ports: &[PortMapping]) -> Option<String> {
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

/// The published ports as the container's record keeps them (`docker port`, `docker ps`):
/// any host address shown as `0.0.0.0`.
pub(super) fn published(ports: &[PortMapping]) -> Vec<PublishedPort> {
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

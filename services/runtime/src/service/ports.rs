//! Published ports (`-p`, `-P`): the container's `PortBindings` (and, with `-P`, every exposed
//! port) parsed with dockerd's error texts, free host ports picked where none was asked for,
//! and the check that no other container of the node holds the same host port.

use std::net::Ipv4Addr;

use wharf_bus::container::{ContainerConfig, HostConfig, PortBinding};
use wharf_bus::BusError;

use crate::network::{PortMapping, Protocol};

use super::record::{ContainerRecord, PublishedPort};
use super::{internal, Node};

/// A port the container publishes, as asked: `host_port` is `None` when the node picks one
/// (`-p 80`, `-P`, a host port of `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestedPort {
    /// The host address to listen on; `None` for all of them (empty, `0.0.0.0` or `::`).
    host_ip: Option<Ipv4Addr>,
    host_port: Option<u16>,
    container_port: u16,
    protocol: Protocol,
}

/// The ports `host`'s `PortBindings` publish, in the order of their `port/proto` keys, with
/// every port `config` exposes added (bound to any free host port) under `-P`
/// (`PublishAllPorts`).
fn requested(config: &ContainerConfig, host: &HostConfig) -> Result<Vec<RequestedPort>, BusError> {
    let mut out = Vec::new();
    let mut bindings = host.port_bindings.clone().unwrap_or_default();
    if host.publish_all_ports {
        if let Some(exposed) = &config.exposed_ports {
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
            let host_port =
                if b.host_port.is_empty() || b.host_port == "0" {
                    None
                } else {
                    Some(b.host_port.parse().map_err(|_| {
                        BusError::invalid(format!("invalid hostPort: {}", b.host_port))
                    })?)
                };
            out.push(RequestedPort {
                host_ip,
                host_port,
                container_port,
                protocol,
            });
        }
    }
    Ok(out)
}

/// The ports a starting container publishes, with a free host port picked for each that
/// asked for none.
pub(super) fn mappings(rec: &ContainerRecord) -> Result<Vec<PortMapping>, BusError> {
    requested(&rec.config, &rec.host_config)?
        .into_iter()
        .map(|p| {
            Ok(PortMapping {
                host_ip: p.host_ip,
                host_port: match p.host_port {
                    Some(port) => port,
                    None => free_port(p.protocol)?,
                },
                container_port: p.container_port,
                protocol: p.protocol,
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn host(bindings: &[(&str, &[(&str, &str)])]) -> HostConfig {
        let mut port_bindings = BTreeMap::new();
        for (port, list) in bindings {
            port_bindings.insert(
                port.to_string(),
                list.iter()
                    .map(|(ip, port)| PortBinding {
                        host_ip: ip.to_string(),
                        host_port: port.to_string(),
                    })
                    .collect(),
            );
        }
        HostConfig {
            port_bindings: Some(port_bindings),
            ..HostConfig::default()
        }
    }

    fn refusal(host: &HostConfig) -> String {
        let e = requested(&ContainerConfig::default(), host).unwrap_err();
        assert_eq!(e.kind, wharf_bus::ErrorKind::Invalid);
        e.message
    }

    #[test]
    fn bindings_with_and_without_a_host_port_or_address() {
        let host = host(&[
            ("80/tcp", &[("", "8080"), ("127.0.0.1", "8081")]),
            ("53/udp", &[("0.0.0.0", "")]),
            ("443", &[("::", "0")]),
        ]);
        let ports = requested(&ContainerConfig::default(), &host).unwrap();
        let port = |host_ip: Option<Ipv4Addr>, host_port, container_port, protocol| RequestedPort {
            host_ip,
            host_port,
            container_port,
            protocol,
        };
        assert_eq!(
            ports,
            [
                port(None, None, 443, Protocol::Tcp),
                port(None, None, 53, Protocol::Udp),
                port(None, Some(8080), 80, Protocol::Tcp),
                port(Some(Ipv4Addr::LOCALHOST), Some(8081), 80, Protocol::Tcp),
            ]
        );
    }

    #[test]
    fn publish_all_adds_the_exposed_ports_not_already_bound() {
        let config = ContainerConfig {
            exposed_ports: Some(
                ["80/tcp", "9000/udp"]
                    .into_iter()
                    .map(|p| (p.to_string(), serde_json::json!({})))
                    .collect(),
            ),
            ..ContainerConfig::default()
        };
        let mut host = host(&[("80/tcp", &[("", "8080")])]);
        assert_eq!(requested(&config, &host).unwrap().len(), 1);
        host.publish_all_ports = true;
        let ports = requested(&config, &host).unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].host_port, Some(8080));
        assert_eq!((ports[1].container_port, ports[1].host_port), (9000, None));
        assert_eq!(ports[1].protocol, Protocol::Udp);
    }

    #[test]
    fn bindings_are_refused_with_dockerds_texts() {
        assert_eq!(
            refusal(&host(&[("http/tcp", &[])])),
            "invalid port specification: \"http/tcp\""
        );
        assert_eq!(
            refusal(&host(&[("70000", &[])])),
            "invalid port specification: \"70000\""
        );
        assert_eq!(refusal(&host(&[("80/sctp", &[])])), "invalid proto: sctp");
        assert_eq!(
            refusal(&host(&[("80/tcp", &[("localhost", "8080")])])),
            "invalid IP address: localhost"
        );
        assert_eq!(
            refusal(&host(&[("80/tcp", &[("", "80800")])])),
            "invalid hostPort: 80800"
        );
    }

    #[test]
    fn published_ports_show_any_address_as_0_0_0_0() {
        let ports = published(&[PortMapping {
            host_ip: None,
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        }]);
        assert_eq!(ports[0].host_ip, "0.0.0.0");
        assert_eq!(ports[0].protocol, "tcp");
        assert_eq!((ports[0].host_port, ports[0].container_port), (8080, 80));
    }
}

//! Published ports in Docker's `-p [ip:]hostPort:containerPort[/tcp|udp]` form.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::error::{NetworkError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port: traffic to `host_ip` (any local address if `None`) at `host_port` goes
/// to the container's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl FromStr for PortMapping {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<PortMapping> {
        let invalid =
            |reason: &str| NetworkError::invalid(format!("port mapping {text:?}"), reason);
        let (ports, protocol) = match text.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(invalid("protocol must be tcp or udp")),
            None => (text, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [host, container] => (None, *host, *container),
            [ip, host, container] => {
                let ip: Ipv4Addr = ip.parse().map_err(|_| invalid("host IP is not IPv4"))?;
                (Some(ip), *host, *container)
            }
            _ => return Err(invalid("expected [ip:]hostPort:containerPort[/tcp|udp]")),
        };
        let port = |p: &str| -> Result<u16> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(invalid("ports must be numbers from 1 to 65535")),
            }
        };
        Ok(PortMapping {
            host_ip,
            host_port: port(host_port)?,
            container_port: port(container_port)?,
            protocol,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_port_forms_parse() {
        let p: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(
            p,
            PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp
            }
        );
        let p: PortMapping = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.protocol, Protocol::Udp);
        assert_eq!(p.to_string(), "127.0.0.1:5353:53/udp");
    }

    #[test]
    fn malformed_port_mappings_are_refused() {
        for text in [
            "80",
            "0:80",
            "70000:80",
            "a:80",
            "8080:80/sctp",
            "x:1:2",
            "1:2:3:4",
        ] {
            assert!(text.parse::<PortMapping>().is_err(), "{text} accepted");
        }
    }
}

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::error::{NetworkError, Result};

/// An IPv4 subnet in CIDR form whose host addresses go to the gateway and containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// Wharf's default subnet: outside docker0's 172.17.0.0/16 so both engines can share a host.
pub const DEFAULT_SUBNET: &str = "172.30.0.0/16";

/// docker0's default subnet, which Wharf refuses to overlap.
const DOCKER0_SUBNET: Subnet = Subnet {
    network: Ipv4Addr::new(172, 17, 0, 0),
    prefix: 16,
};

impl Subnet {
    /// A subnet with room for a gateway and at least one container (prefix at most /30), and
    /// not overlapping docker0's default subnet.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Subnet> {
        let text = format!("{network}/{prefix}");
        if prefix > 30 {
            return Err(NetworkError::invalid(
                format!("subnet {text}"),
                "prefix must be at most /30 to hold a gateway and a container",
            ));
        }
        if u32::from(network) & !mask(prefix) != 0 {
            return Err(NetworkError::invalid(
                format!("subnet {text}"),
                "host bits are set (write the network address)",
            ));
        }
        let subnet = Subnet { network, prefix };
        if subnet.overlaps(&DOCKER0_SUBNET) {
            return Err(NetworkError::invalid(
                format!("subnet {text}"),
                "overlaps docker0's 172.17.0.0/16",
            ));
        }
        Ok(subnet)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first host address, given to the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The host addresses containers may get: after the gateway, before the broadcast address.
    pub fn container_range(&self) -> std::ops::RangeInclusive<u32> {
        let first = u32::from(self.network) + 2;
        let broadcast = u32::from(self.network) | !mask(self.prefix);
        first..=broadcast - 1
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == u32::from(self.network)
    }

    fn overlaps(&self, other: &Subnet) -> bool {
        let prefix = self.prefix.min(other.prefix);
        u32::from(self.network) & mask(prefix) == u32::from(other.network) & mask(prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Subnet> {
        let invalid = |reason: &str| NetworkError::invalid(format!("subnet {text:?}"), reason);
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| invalid("expected CIDR form a.b.c.d/n"))?;
        let network: Ipv4Addr = address
            .parse()
            .map_err(|_| invalid("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("bad prefix length"))?;
        if prefix > 32 {
            return Err(invalid("prefix length above 32"));
        }
        Subnet::new(network, prefix)
    }
}

impl Default for Subnet {
    fn default() -> Self {
        DEFAULT_SUBNET.parse().expect("the default subnet is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_subnet_is_172_30_with_gateway_first_host() {
        let subnet = Subnet::default();
        assert_eq!(subnet.to_string(), "172.30.0.0/16");
        assert_eq!(subnet.gateway(), Ipv4Addr::new(172, 30, 0, 1));
        let range = subnet.container_range();
        assert_eq!(Ipv4Addr::from(*range.start()), Ipv4Addr::new(172, 30, 0, 2));
        assert_eq!(
            Ipv4Addr::from(*range.end()),
            Ipv4Addr::new(172, 30, 255, 254)
        );
    }

    #[test]
    fn subnets_overlapping_docker0_are_refused() {
        assert!("172.17.0.0/16".parse::<Subnet>().is_err());
        assert!("172.17.5.0/24".parse::<Subnet>().is_err());
        assert!("172.16.0.0/12".parse::<Subnet>().is_err());
        assert!("172.18.0.0/16".parse::<Subnet>().is_ok());
    }

    #[test]
    fn malformed_subnets_are_refused() {
        for text in [
            "172.30.0.1/16",
            "172.30.0.0",
            "172.30.0.0/31",
            "x/8",
            "10.0.0.0/33",
        ] {
            assert!(text.parse::<Subnet>().is_err(), "{text} accepted");
        }
    }
}

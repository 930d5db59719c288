//! Container networking that coexists with a dockerd on the same host: Wharf's own
//! bridge (`wharf0`), subnet (172.30.0.0/16) and nftables table (`table ip wharf`).
//!
//! - `subnet`: IPv4 subnets, the gateway and the container address range ([`Subnet`]).
//! - `ipam`: per-container addresses, persisted atomically in a JSON file ([`Ipam`]).
//! - `links`: bridges, veth pairs, addresses and routes behind the [`Links`] trait;
//!   `netlink` does them with rtnetlink requests ([`Netlink`], the default), `links` also has
//!   iproute2's `ip` ([`IpRoute2`]).
//! - `sysctl`: IPv4 forwarding and the bridge's `route_localnet`.
//! - `ports`: Docker's `-p [ip:]hostPort:containerPort[/proto]` ([`PortMapping`]).
//! - `firewall`: masquerade, published-port DNAT, isolation between networks and `--internal`
//!   in Wharf's nftables table ([`Firewall`]).
//! - `forward`: each network's accept rules in iptables' FORWARD chain (a dockerd beside us
//!   sets its policy to DROP).
//! - `nft`: nftables scripts run in-process through libnftables, or by the `nft` program.
//! - `bridge_network`: setup, attach, detach and teardown of one network ([`BridgeNetwork`]).
//!
//! Published ports answer on 127.0.0.1 through DNAT in the nat output hook plus
//! `route_localnet=1` on the bridge only (and a masquerade of 127.0.0.0/8 into the bridge),
//! rather than a userland proxy: no extra process per port, and the container sees a real
//! connection. The sysctl is per interface and disappears with the bridge.
//!
//! This is blocking code (netlink sockets and nftables): async callers use `spawn_blocking`.

mod bridge_network;
mod command;
mod error;
mod firewall;
pub mod forward;
mod ipam;
mod links;
mod netlink;
mod nft;
mod ports;
mod subnet;
mod sysctl;

pub use bridge_network::{
    format_mac, host_interface_name, mac_for, parse_mac, Attachment, BridgeNetwork, NetworkConfig,
    Requested,
};
pub use error::{NetworkError, Result};
pub use firewall::Firewall;
pub use ipam::{Ipam, Pool};
pub use links::{IpRoute2, Links, Veth};
pub use netlink::Netlink;
pub use ports::{PortMapping, Protocol};
pub use subnet::{Subnet, DEFAULT_SUBNET};
pub use sysctl::{enable_ip_forward, enable_route_localnet};

/// Container IDs become interface names, nft comments and file names: keep them plain.
pub(crate) fn check_container_id(container: &str) -> Result<()> {
    let plain = !container.is_empty()
        && container.len() <= 128
        && container
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        Ok(())
    } else {
        Err(NetworkError::invalid(
            format!("container ID {container:?}"),
            "use letters, digits, _ and -",
        ))
    }
}

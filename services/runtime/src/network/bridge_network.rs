//! One bridge network: the bridge, its subnet's addresses, and its firewall table, and the
//! attach/detach of containers to it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::check_container_id;
use super::error::{NetworkError, Result};
use super::firewall::Firewall;
use super::forward;
use super::ipam::{Ipam, Pool};
use super::links::Links;
use super::netlink::Netlink;
use super::ports::PortMapping;
use super::subnet::Subnet;
use super::sysctl;

/// Where a network lives. The defaults (`wharf0`, 172.30.0.0/16, `table ip wharf`) differ from
/// Docker's (`docker0`, 172.17.0.0/16, iptables) so both engines run side by side.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub bridge: String,
    pub subnet: Subnet,
    pub table: String,
    /// Directory of the IPAM state file.
    pub state_dir: PathBuf,
    /// `--internal`: no route in or out of the bridge, only between its containers.
    pub internal: bool,
    /// `--gateway`: the bridge's address (the subnet's first one when `None`).
    pub gateway: Option<Ipv4Addr>,
    /// `--ip-range`: where containers' addresses come from (the whole subnet when `None`).
    pub ip_range: Option<Subnet>,
    /// `com.docker.network.driver.mtu`: the MTU of the network's veths (both ends).
    pub mtu: Option<u32>,
    /// `com.docker.network.bridge.enable_icc`: containers of the network reach each other.
    pub icc: bool,
    /// `com.docker.network.bridge.enable_ip_masquerade`: traffic leaving the host is
    /// masqueraded behind its address.
    pub masquerade: bool,
}

impl NetworkConfig {
    /// The addresses of the network: subnet, gateway and range.
    pub fn pool(&self) -> Pool {
        Pool {
            subnet: self.subnet,
            gateway: self.gateway.unwrap_or_else(|| self.subnet.gateway()),
            range: self.ip_range,
        }
    }
}

/// What a container asks of its place on a network: an address (`--ip`) and a MAC address
/// (`--mac-address`); otherwise the next free address and a MAC derived from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requested {
    pub address: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
}

/// A locally administered MAC derived from the address, as Docker derives it
/// (`02:42:` and the address's four bytes).
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let o = address.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff` (either case) as bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

impl NetworkConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> NetworkConfig {
        NetworkConfig {
            bridge: "wharf0".to_owned(),
            subnet: Subnet::default(),
            table: "wharf".to_owned(),
            state_dir: state_dir.into(),
            internal: false,
            gateway: None,
            ip_range: None,
            mtu: None,
            icc: true,
            masquerade: true,
        }
    }
}

/// A container's place on the network, as attach made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The container end's MAC address.
    pub mac: [u8; 6],
    /// The host end of the veth pair, on the bridge.
    pub host_interface: String,
    /// The container end, inside its namespace.
    pub interface: String,
    pub ports: Vec<PortMapping>,
}

/// Interface name of a container's network end.
const CONTAINER_INTERFACE: &str = "eth0";
/// Linux interface names hold at most 15 bytes.
const IFNAMSIZ_MAX: usize = 15;

/// A bridge network on this host.
pub struct BridgeNetwork<L: Links = Netlink> {
    config: NetworkConfig,
    links: L,
    firewall: Firewall,
    ipam: Mutex<Ipam>,
}

impl BridgeNetwork<Netlink> {
    /// Opens the network's IPAM state; nothing on the host changes until [`Self::setup`].
    pub fn open(config: NetworkConfig) -> Result<Self> {
        Self::with_links(config, Netlink)
    }
}

impl<L: Links> BridgeNetwork<L> {
    pub fn with_links(config: NetworkConfig, links: L) -> Result<Self> {
        check_interface_name(&config.bridge)?;
        let firewall = Firewall::new(&config.table, &config.state_dir)?;
        let ipam = Mutex::new(Ipam::open_pool(config.pool(), &config.state_dir)?);
        Ok(BridgeNetwork {
            config,
            links,
            firewall,
            ipam,
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    /// The bridge (with the gateway address, up), IPv4 forwarding, 127.0.0.1 routing into the
    /// bridge, and the firewall table. Safe to repeat, e.g. at every runtime start.
    pub fn setup(&self) -> Result<()> {
        let bridge = &self.config.bridge;
        let subnet = self.config.subnet;
        if !self.links.exists(bridge)? {
            self.links.add_bridge(bridge)?;
        }
        self.links
            .set_address(bridge, self.config.pool().gateway, subnet.prefix())?;
        // The bridge keeps its own MTU (as dockerd 20.10 leaves it); the veths get the network's.
        self.links.set_up(bridge)?;
        sysctl::enable_ip_forward()?;
        sysctl::enable_route_localnet(bridge)?;
        let policy = super::firewall::Policy {
            internal: self.config.internal,
            masquerade: self.config.masquerade,
            icc: self.config.icc,
        };
        self.firewall.setup(subnet, bridge, policy)?;
        forward::allow(bridge, self.config.internal)
    }

    /// Connects the network namespace at `netns` (e.g. `/proc/<pid>/ns/net`) of `container`:
    /// an address, a veth pair with `eth0` inside, a default route via the gateway, and DNAT
    /// rules for `ports`. On failure, what was done is undone.
    pub fn attach(
        &self,
        container: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Attachment> {
        self.attach_as(
            container,
            netns,
            ports,
            &host_interface_name(container),
            CONTAINER_INTERFACE,
            &Requested::default(),
        )
    }

    /// Like [`Self::attach`] with chosen interface names: `host_interface` on the bridge,
    /// `interface` inside (`eth1` for a second network).
    pub fn attach_as(
        &self,
        container: &str,
        netns: &Path,
        ports: &[PortMapping],
        host_interface: &str,
        interface: &str,
        want: &Requested,
    ) -> Result<Attachment> {
        check_container_id(container)?;
        check_interface_name(host_interface)?;
        let host_interface = host_interface.to_owned();
        if self.links.exists(&host_interface)? {
            // Left by an earlier run of this container whose namespace the kernel is still
            // tearing down (see `release`): it is ours to remove.
            self.links.delete(&host_interface)?;
        }
        let address = self.lock_ipam().allocate_as(container, want.address)?;
        let subnet = self.config.subnet;
        let attachment = Attachment {
            address,
            prefix: subnet.prefix(),
            gateway: self.config.pool().gateway,
            mac: want.mac.unwrap_or_else(|| mac_for(address)),
            host_interface,
            interface: interface.to_owned(),
            ports: ports.to_vec(),
        };
        let connect = || -> Result<()> {
            self.links.add_veth(
                &attachment.host_interface,
                &self.config.bridge,
                interface,
                netns,
                &super::links::Veth {
                    mac: attachment.mac,
                    mtu: self.config.mtu,
                    isolated: !self.config.icc,
                },
            )?;
            self.links.configure_inside(
                netns,
                interface,
                address,
                attachment.prefix,
                attachment.gateway,
            )?;
            self.firewall.publish(container, address, ports)
        };
        if let Err(e) = connect() {
            let _ = self.firewall.unpublish(container);
            let _ = self.links.delete(&attachment.host_interface);
            let _ = self.lock_ipam().release(container);
            return Err(e);
        }
        Ok(attachment)
    }

    /// Like [`Self::detach`] for an attachment made with [`Self::attach_as`].
    pub fn detach_as(&self, container: &str, host_interface: &str) -> Result<()> {
        check_container_id(container)?;
        self.firewall.unpublish(container)?;
        self.links.delete(host_interface)?;
        self.lock_ipam().release(container)?;
        Ok(())
    }

    /// Removes the container's DNAT rules and releases its address but leaves the veth pair:
    /// for a caller about to drop the container's network namespace, whose destruction takes
    /// the pair with it (the kernel deletes a veth in ~20 ms; this way nobody waits for it).
    pub fn release(&self, container: &str) -> Result<()> {
        check_container_id(container)?;
        self.firewall.unpublish(container)?;
        self.lock_ipam().release(container)?;
        Ok(())
    }

    /// Removes the container's DNAT rules and veth pair and releases its address. Safe to
    /// repeat, and works after the container's namespace is gone.
    pub fn detach(&self, container: &str) -> Result<()> {
        check_container_id(container)?;
        self.firewall.unpublish(container)?;
        self.links.delete(&host_interface_name(container))?;
        self.lock_ipam().release(container)?;
        Ok(())
    }

    /// The address allocated to `container`, if attached.
    pub fn address_of(&self, container: &str) -> Option<Ipv4Addr> {
        self.lock_ipam().address_of(container)
    }

    /// Removes the firewall table, the veths on the bridge (deleting a bridge only frees its
    /// ports) and the bridge. Address allocations stay in the state file, so a later
    /// [`Self::detach`] of a known container still releases its address.
    pub fn teardown(&self) -> Result<()> {
        self.firewall.teardown()?;
        forward::remove(&self.config.bridge)?;
        let bridge = &self.config.bridge;
        if !self.links.exists(bridge)? {
            return Ok(());
        }
        for port in self.links.ports_of(bridge)? {
            self.links.delete(&port)?;
        }
        self.links.delete(bridge)
    }

    fn lock_ipam(&self) -> std::sync::MutexGuard<'_, Ipam> {
        // A panic while holding the lock cannot leave Ipam half-changed (it saves before it
        // returns), so a poisoned lock is still usable.
        self.ipam.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `veth` + the start of the container ID, within the 15-byte interface name limit.
pub fn host_interface_name(container: &str) -> String {
    let keep = IFNAMSIZ_MAX - "veth".len();
    format!("veth{}", &container[..container.len().min(keep)])
}

fn check_interface_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= IFNAMSIZ_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if plain {
        Ok(())
    } else {
        Err(NetworkError::invalid(
            format!("interface name {name:?}"),
            "at most 15 letters, digits, _, - or .",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_interface_names_fit_the_kernel_limit() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(host_interface_name(id), "veth0123456789a");
        assert_eq!(host_interface_name("ab"), "vethab");
    }

    #[test]
    fn container_ids_that_would_break_names_are_refused() {
        assert!(check_container_id("abc-123_x").is_ok());
        for id in ["", "a b", "a/b", "a\"b", "ä"] {
            assert!(check_container_id(id).is_err(), "{id:?} accepted");
        }
    }
}

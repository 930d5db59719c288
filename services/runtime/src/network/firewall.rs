//! NAT rules in Wharf's own nftables table (`table ip wharf` by default). Nothing here reads or
//! writes iptables' or Docker's tables, so both engines can share a host.
//!
//! Layout:
//! - `postrouting` (nat, srcnat): masquerade the subnet leaving by any interface but the bridge;
//!   masquerade 127.0.0.0/8 sources entering the bridge (published ports reached on 127.0.0.1,
//!   see [`super::sysctl::enable_route_localnet`]), so containers answer to the gateway.
//! - `prerouting` (nat, dstnat) and `output` (nat, -100): packets to a local address jump to
//!   `published`; prerouting covers traffic from outside, output the host's own.
//! - `published`: two fixed rules that DNAT through two maps, first `bound_ports`
//!   (`host ip . protocol . port`, for `-p ip:port:port`), then `any_ports`
//!   (`protocol . port`); an element's value is the container's `address . port`.
//!
//! Why maps: publishing and unpublishing are each one nftables transaction that names the
//! elements it adds or deletes by key, so neither lists rules nor needs rule handles, and
//! neither the transaction nor a packet's lookup grows with the number of containers (no
//! per-container rules or chains; even libnftables' object cache stays two maps). The keys
//! and the address come from the container's port list, kept in
//! `<state_dir>/published/<container id>` while its elements exist, so a restarted runtime
//! can still unpublish, and a container without published ports costs no nftables call.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use wharf_bus::files::{write_atomic, Durability};

use super::check_container_id;
use super::error::{NetworkError, Result};
use super::nft::{list, run_script};
use super::ports::PortMapping;
use super::subnet::Subnet;

const PUBLISHED: &str = "published";
const BOUND_PORTS: &str = "bound_ports";
const ANY_PORTS: &str = "any_ports";
/// Directory (in the state directory) of the port lists of containers with published ports.
const PUBLISHED_DIR: &str = "published";

/// What a network's rules allow besides its published ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `--internal`: nothing in or out.
    pub internal: bool,
    /// Traffic leaving the host is masqueraded.
    pub masquerade: bool,
    /// Containers of the network reach each other (enforced by the bridge ports).
    pub icc: bool,
}

/// Wharf's nftables table.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
    published_dir: PathBuf,
}

impl Firewall {
    /// `table` must be a plain identifier (letters, digits, `_`); the port lists of published
    /// containers live under `state_dir`.
    pub fn new(table: &str, state_dir: &Path) -> Result<Firewall> {
        let plain = !table.is_empty()
            && table.len() <= 64
            && table.starts_with(|c: char| c.is_ascii_alphabetic())
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(NetworkError::invalid(
                format!("nftables table name {table:?}"),
                "use letters, digits and _",
            ));
        }
        Ok(Firewall {
            table: table.to_owned(),
            published_dir: state_dir.join(PUBLISHED_DIR),
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table, chains and maps if missing and rewrites the fixed rules, in one nft
    /// transaction; published ports already present (map elements) are kept. (Traffic between
    /// containers of a network without `icc` is stopped at the bridge: its ports are isolated,
    /// see [`super::links::Veth`].) Safe to repeat.
    pub fn setup(&self, subnet: Subnet, bridge: &str, policy: Policy) -> Result<()> {
        let t = &self.table;
        // Nothing enters or leaves an internal network; its containers talk among themselves.
        let outside = match (policy.internal, policy.masquerade) {
            (true, _) => format!(
                "add rule ip {t} forward iifname \"{bridge}\" oifname != \"{bridge}\" drop\n\
                 add rule ip {t} forward oifname \"{bridge}\" iifname != \"{bridge}\" drop\n"
            ),
            (false, true) => format!(
                "add rule ip {t} postrouting ip saddr {subnet} oifname != \"{bridge}\" masquerade\n"
            ),
            (false, false) => String::new(),
        };

        let script = format!(
            "add table ip {t}\n\
             add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
             add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
             add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}\n\
             add chain ip {t} forward {{ type filter hook forward priority filter; policy accept; }}\n\
             add chain ip {t} input {{ type filter hook input priority filter; policy accept; }}\n\
             add chain ip {t} {PUBLISHED}\n\
             add map ip {t} {BOUND_PORTS} {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             add map ip {t} {ANY_PORTS} {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             flush chain ip {t} postrouting\n\
             flush chain ip {t} prerouting\n\
             flush chain ip {t} output\n\
             flush chain ip {t} {PUBLISHED}\n\
             flush chain ip {t} forward\n\
             flush chain ip {t} input\n\
             {outside}\
             add rule ip {t} forward oifname \"{bridge}\" iifname != \"{bridge}\" ct state != {{ established, related }} ct status & dnat == 0 drop\n\
             add rule ip {t} input iifname \"{bridge}\" ip daddr 127.0.0.0/8 ct state != {{ established, related }} drop\n\
             add rule ip {t} postrouting oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade\n\
             add rule ip {t} prerouting fib daddr type local jump {PUBLISHED}\n\
             add rule ip {t} output fib daddr type local jump {PUBLISHED}\n\
             add rule ip {t} {PUBLISHED} dnat ip to ip daddr . meta l4proto . th dport map @{BOUND_PORTS}\n\
             add rule ip {t} {PUBLISHED} dnat ip to meta l4proto . th dport map @{ANY_PORTS}\n"
        );
        match run_script(&script) {
            Ok(_) => Ok(()),
            Err(first) => {
                // A table of an older layout (other map types) cannot be amended: start it
                // afresh. Ports published in it are lost until their containers restart.
                tracing::warn!(table = %t, "rebuilding the nftables table: {first}");
                run_script(&format!("add table ip {t}\ndelete table ip {t}\n"))?;
                run_script(&script).map(drop)
            }
        }
    }

    /// DNATs `ports` to `address`, replacing the container's earlier ports; one nft
    /// transaction, none for no ports. A port another container holds fails the whole call.
    pub fn publish(&self, container: &str, address: Ipv4Addr, ports: &[PortMapping]) -> Result<()> {
        check_container_id(container)?;
        self.unpublish(container)?;
        if ports.is_empty() {
            return Ok(());
        }
        let t = &self.table;
        let script: String = ports
            .iter()
            .map(|port| {
                let (map, element) = map_element(port, address);
                format!("add element ip {t} {map} {{ {element} }}\n")
            })
            .collect();
        // The port list goes to disk first: if it is there, unpublish can find the keys.
        self.save_ports(container, address, ports)?;
        if let Err(e) = run_script(&script) {
            // The transaction applied nothing, so there is nothing to find later.
            let _ = fs::remove_file(self.ports_file(container));
            return Err(e);
        }
        Ok(())
    }

    /// Deletes the container's map elements in one nft transaction; a container without
    /// published ports needs no nft call, and a table already gone is not an error.
    pub fn unpublish(&self, container: &str) -> Result<()> {
        check_container_id(container)?;
        let Some((address, ports)) = self.load_ports(container)? else {
            return Ok(());
        };
        let t = &self.table;
        // Each delete is preceded by an add of the same element, so the transaction also
        // succeeds when an element is already gone (nft 1.0 has no `destroy`).
        let script: String = ports
            .iter()
            .map(|port| {
                let (map, element) = map_element(port, address);
                let (_, key) = map_key(port);
                format!(
                    "add element ip {t} {map} {{ {element} }}\n\
                     delete element ip {t} {map} {{ {key} }}\n"
                )
            })
            .collect();
        if let Err(e) = run_script(&script) {
            // Without the table there is nothing left to delete.
            if self.exists()? {
                return Err(e);
            }
        }
        let file = self.ports_file(container);
        fs::remove_file(&file).map_err(|e| NetworkError::io("removing", file, e))
    }

    /// The container's map elements as nft text, `key : address . port` (for checks and
    /// diagnostics; one nft call per port).
    pub fn published_rules(&self, container: &str) -> Result<Vec<String>> {
        check_container_id(container)?;
        let Some((_, ports)) = self.load_ports(container)? else {
            return Ok(Vec::new());
        };
        let mut elements = Vec::new();
        for port in &ports {
            let (map, key) = map_key(port);
            let script = format!("get element ip {} {map} {{ {key} }}", self.table);
            let Ok(listing) = list(&script) else {
                continue;
            };
            elements.extend(listing.lines().filter_map(|line| {
                let inner = line.trim().strip_prefix("elements = {")?;
                Some(inner.trim_end_matches('}').trim().to_owned())
            }));
        }
        Ok(elements)
    }

    /// Deletes the whole table (chains, maps and rules with it) and the port lists.
    pub fn teardown(&self) -> Result<()> {
        let t = &self.table;
        run_script(&format!("add table ip {t}\ndelete table ip {t}\n"))?;
        match fs::remove_dir_all(&self.published_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetworkError::io("removing", &self.published_dir, e)),
        }
    }

    /// Whether the table exists (lists the tables: not for per-container paths).
    pub fn exists(&self) -> Result<bool> {
        let wanted = format!("table ip {}", self.table);
        Ok(list("list tables")?
            .lines()
            .any(|line| line.trim() == wanted))
    }

    fn ports_file(&self, container: &str) -> PathBuf {
        self.published_dir.join(container)
    }

    /// Writes the container address and port list (the address, then one
    /// `[ip:]host:container/proto` a line) atomically.
    fn save_ports(&self, container: &str, address: Ipv4Addr, ports: &[PortMapping]) -> Result<()> {
        let dir = &self.published_dir;
        fs::create_dir_all(dir).map_err(|e| NetworkError::io("creating", dir, e))?;
        let file = self.ports_file(container);
        let mut text = format!("{address}\n");
        text.extend(ports.iter().map(|p| format!("{p}\n")));
        // Not synced, like the IPAM state: published ports live as long as their container.
        write_atomic(&file, text.as_bytes(), Durability::Unsynced)
            .map_err(|e| NetworkError::io("writing", &file, e))
    }

    fn load_ports(&self, container: &str) -> Result<Option<(Ipv4Addr, Vec<PortMapping>)>> {
        let file = self.ports_file(container);
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(NetworkError::io("reading", file, e)),
        };
        let mut lines = text.lines().filter(|line| !line.is_empty());
        let address = lines
            .next()
            .and_then(|line| line.parse().ok())
            .ok_or_else(|| {
                NetworkError::invalid(format!("port list {}", file.display()), "no address")
            })?;
        let ports = lines
            .map(str::parse)
            .collect::<Result<Vec<PortMapping>>>()?;
        Ok(Some((address, ports)))
    }
}

/// The map and the element key that DNAT `port`'s packets.
fn map_key(port: &PortMapping) -> (&'static str, String) {
    let proto = port.protocol.as_str();
    match port.host_ip {
        Some(ip) => (BOUND_PORTS, format!("{ip} . {proto} . {}", port.host_port)),
        None => (ANY_PORTS, format!("{proto} . {}", port.host_port)),
    }
}

/// The map and the whole element (`key : address . port`) of `port` published to `address`.
fn map_element(port: &PortMapping, address: Ipv4Addr) -> (&'static str, String) {
    let (map, key) = map_key(port);
    (map, format!("{key} : {address} . {}", port.container_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_bound_to_an_address_key_the_bound_map_and_others_the_any_map() {
        let any: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(map_key(&any), (ANY_PORTS, "tcp . 8080".to_owned()));
        let bound: PortMapping = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(
            map_key(&bound),
            (BOUND_PORTS, "127.0.0.1 . udp . 5353".to_owned())
        );
        assert_eq!(
            map_element(&bound, Ipv4Addr::new(172, 30, 0, 2)).1,
            "127.0.0.1 . udp . 5353 : 172.30.0.2 . 53"
        );
    }

    #[test]
    fn port_lists_survive_a_new_firewall_over_the_same_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<PortMapping> = vec![
            "8080:80".parse().unwrap(),
            "127.0.0.1:5353:53/udp".parse().unwrap(),
        ];
        let first = Firewall::new("wharf", dir.path()).unwrap();
        let address = Ipv4Addr::new(172, 30, 0, 2);
        first.save_ports("abc", address, &ports).unwrap();
        let second = Firewall::new("wharf", dir.path()).unwrap();
        assert_eq!(second.load_ports("abc").unwrap(), Some((address, ports)));
        assert_eq!(second.load_ports("other").unwrap(), None);
    }
}

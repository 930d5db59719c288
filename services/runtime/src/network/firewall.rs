//! NAT rules in Wharf's own nftables table (`table ip wharf` by default). Nothing here reads or
//! writes iptables' or Docker's tables, so both engines can share a host.
//!
//! Layout:
//! - `postrouting` (nat, srcnat): masquerade the subnet leaving by any interface but the bridge;
//!   masquerade 127.0.0.0/8 sources entering the bridge (published ports reached on 127.0.0.1,
//!   see [`super::sysctl::enable_route_localnet`]), so containers answer to the gateway.
//! - `prerouting` (nat, dstnat) and `output` (nat, -100): packets to a local address jump to
//!   `published`; prerouting covers traffic from outside, output the host's own.
//! - `published`: one DNAT rule per published port, commented `ctr:<container id>` so they can
//!   be found and deleted when the container detaches.

use std::net::Ipv4Addr;

use super::command::{run, run_with_input};
use super::error::{NetworkError, Result};
use super::ports::PortMapping;
use super::subnet::Subnet;

const NFT: &str = "nft";
const PUBLISHED: &str = "published";

/// Wharf's nftables table.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
}

impl Firewall {
    /// `table` must be a plain identifier (letters, digits, `_`).
    pub fn new(table: &str) -> Result<Firewall> {
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
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table and chains if missing and rewrites the fixed rules, in one nft
    /// transaction; published-port rules already present are kept. Safe to repeat.
    pub fn setup(&self, subnet: Subnet, bridge: &str) -> Result<()> {
        let t = &self.table;
        let script = format!(
            "add table ip {t}\n\
             add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
             add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
             add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}\n\
             add chain ip {t} {PUBLISHED}\n\
             flush chain ip {t} postrouting\n\
             flush chain ip {t} prerouting\n\
             flush chain ip {t} output\n\
             add rule ip {t} postrouting ip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
             add rule ip {t} postrouting oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade\n\
             add rule ip {t} prerouting fib daddr type local jump {PUBLISHED}\n\
             add rule ip {t} output fib daddr type local jump {PUBLISHED}\n"
        );
        run_with_input(NFT, &["-f", "-"], &script).map(drop)
    }

    /// Adds a DNAT rule per port to `address`, replacing the container's earlier rules.
    pub fn publish(&self, container: &str, address: Ipv4Addr, ports: &[PortMapping]) -> Result<()> {
        let t = &self.table;
        let mut script = self.delete_rules_script(container)?;
        for port in ports {
            let proto = port.protocol.as_str();
            let only_ip = port
                .host_ip
                .map(|ip| format!("ip daddr {ip} "))
                .unwrap_or_default();
            script.push_str(&format!(
                "add rule ip {t} {PUBLISHED} {only_ip}{proto} dport {} dnat to {address}:{} comment \"{}\"\n",
                port.host_port,
                port.container_port,
                comment(container),
            ));
        }
        if script.is_empty() {
            return Ok(());
        }
        run_with_input(NFT, &["-f", "-"], &script).map(drop)
    }

    /// Deletes the container's DNAT rules; none (or no table) is not an error.
    pub fn unpublish(&self, container: &str) -> Result<()> {
        let script = self.delete_rules_script(container)?;
        if script.is_empty() {
            return Ok(());
        }
        run_with_input(NFT, &["-f", "-"], &script).map(drop)
    }

    /// The DNAT rules of `container` as nft rule text (for checks and diagnostics).
    pub fn published_rules(&self, container: &str) -> Result<Vec<String>> {
        Ok(self
            .rules_of(container)?
            .into_iter()
            .map(|(_, text)| text)
            .collect())
    }

    /// Deletes the whole table (chains and rules with it).
    pub fn teardown(&self) -> Result<()> {
        if !self.exists()? {
            return Ok(());
        }
        run(NFT, &["delete", "table", "ip", &self.table]).map(drop)
    }

    pub fn exists(&self) -> Result<bool> {
        let wanted = format!("table ip {}", self.table);
        Ok(run(NFT, &["list", "tables"])?
            .lines()
            .any(|line| line.trim() == wanted))
    }

    fn delete_rules_script(&self, container: &str) -> Result<String> {
        Ok(self
            .rules_of(container)?
            .into_iter()
            .map(|(handle, _)| {
                format!(
                    "delete rule ip {} {PUBLISHED} handle {handle}\n",
                    self.table
                )
            })
            .collect())
    }

    /// Handles and a readable form of the rules commented for `container`.
    fn rules_of(&self, container: &str) -> Result<Vec<(u64, String)>> {
        if !self.exists()? {
            return Ok(Vec::new());
        }
        let out = run(
            NFT,
            &["-j", "-a", "list", "chain", "ip", &self.table, PUBLISHED],
        )?;
        let json: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| NetworkError::NftOutput(e.to_string()))?;
        let items = json["nftables"]
            .as_array()
            .ok_or_else(|| NetworkError::NftOutput("no nftables array".into()))?;
        let wanted = comment(container);
        let mut rules = Vec::new();
        for rule in items.iter().filter_map(|item| item.get("rule")) {
            if rule["comment"].as_str() != Some(wanted.as_str()) {
                continue;
            }
            let handle = rule["handle"]
                .as_u64()
                .ok_or_else(|| NetworkError::NftOutput("rule without handle".into()))?;
            rules.push((handle, rule["expr"].to_string()));
        }
        Ok(rules)
    }
}

fn comment(container: &str) -> String {
    format!("ctr:{container}")
}

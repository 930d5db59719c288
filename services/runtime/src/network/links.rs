//! Links, addresses and routes: the small interface the network code needs from the kernel,
//! and an implementation of it with the `ip` program from iproute2 ([`IpRoute2`]).
//!
//! The default implementation is [`super::netlink::Netlink`] (rtnetlink requests, no process
//! per step: an `ip` call costs a few milliseconds, a netlink request tens of microseconds).
//! `IpRoute2` stays for comparison and as a fallback: its commands are what operators debug
//! with.

use std::net::Ipv4Addr;
use std::path::Path;

use super::command::{run, run_in_netns};
use super::error::Result;

/// The link operations network setup uses. Names are kernel interface names (at most 15 bytes).
pub trait Links {
    fn exists(&self, name: &str) -> Result<bool>;
    /// Creates a bridge named `name` (fails if a link of that name exists).
    fn add_bridge(&self, name: &str) -> Result<()>;
    /// Gives `name` the address `address/prefix` (replacing the same address if present).
    fn set_address(&self, name: &str, address: Ipv4Addr, prefix: u8) -> Result<()>;
    fn set_up(&self, name: &str) -> Result<()>;
    /// Creates a veth pair: `host` in this namespace attached to `bridge`, and `peer` created
    /// directly in the namespace at `netns`, with `veth`'s MAC address (and MTU on both ends).
    fn add_veth(
        &self,
        host: &str,
        bridge: &str,
        peer: &str,
        netns: &Path,
        veth: &Veth,
    ) -> Result<()>;
    /// Deletes a link (a veth's peer goes with it); a missing link is not an error.
    fn delete(&self, name: &str) -> Result<()>;
    /// The links attached to `bridge`.
    fn ports_of(&self, bridge: &str) -> Result<Vec<String>>;
    /// Inside `netns`: `lo` and `interface` up, `address/prefix` on `interface`, default route
    /// via `gateway`.
    fn configure_inside(
        &self,
        netns: &Path,
        interface: &str,
        address: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<()>;
}

/// What a new veth pair gets: the container end's MAC address, an MTU for both ends
/// (`com.docker.network.driver.mtu`; the kernel's default without one), and whether the host
/// end is an isolated bridge port (`enable_icc=false`: isolated ports forward to the bridge,
/// never to each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Veth {
    pub mac: [u8; 6],
    pub mtu: Option<u32>,
    pub isolated: bool,
}

/// [`Links`] through the `ip` program.
#[derive(Debug, Default, Clone, Copy)]
pub struct IpRoute2;

const IP: &str = "ip";

impl Links for IpRoute2 {
    fn exists(&self, name: &str) -> Result<bool> {
        // `ip -o link show NAME` fails for a missing link; list all and compare instead, so that
        // a real failure is not taken for absence.
        let out = run(IP, &["-o", "link", "show"])?;
        Ok(out.lines().any(|line| link_name(line) == Some(name)))
    }

    fn add_bridge(&self, name: &str) -> Result<()> {
        run(IP, &["link", "add", "name", name, "type", "bridge"]).map(drop)
    }

    fn set_address(&self, name: &str, address: Ipv4Addr, prefix: u8) -> Result<()> {
        let cidr = format!("{address}/{prefix}");
        run(IP, &["addr", "replace", &cidr, "dev", name]).map(drop)
    }

    fn set_up(&self, name: &str) -> Result<()> {
        run(IP, &["link", "set", "dev", name, "up"]).map(drop)
    }

    fn add_veth(
        &self,
        host: &str,
        bridge: &str,
        peer: &str,
        netns: &Path,
        veth: &Veth,
    ) -> Result<()> {
        let netns = netns.to_string_lossy();
        let mac = super::format_mac(veth.mac);
        let mtu = veth.mtu.map(|m| m.to_string());
        let mut args = vec!["link", "add", "name", host];
        if let Some(m) = &mtu {
            args.extend(["mtu", m.as_str()]);
        }
        args.extend(["type", "veth", "peer", "name", peer, "address", &mac]);
        if let Some(m) = &mtu {
            args.extend(["mtu", m.as_str()]);
        }
        args.extend(["netns", &netns]);
        run(IP, &args)?;
        let attach = run(IP, &["link", "set", "dev", host, "master", bridge])
            .and_then(|_| match veth.isolated {
                true => run(
                    IP,
                    &[
                        "link",
                        "set",
                        "dev",
                        host,
                        "type",
                        "bridge_slave",
                        "isolated",
                        "on",
                    ],
                ),
                false => Ok(String::new()),
            })
            .and_then(|_| run(IP, &["link", "set", "dev", host, "up"]));
        if let Err(e) = attach {
            let _ = self.delete(host);
            return Err(e);
        }
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<()> {
        if !self.exists(name)? {
            return Ok(());
        }
        run(IP, &["link", "delete", "dev", name]).map(drop)
    }

    fn ports_of(&self, bridge: &str) -> Result<Vec<String>> {
        let out = run(IP, &["-o", "link", "show", "master", bridge])?;
        Ok(out
            .lines()
            .filter_map(link_name)
            .map(str::to_owned)
            .collect())
    }

    fn configure_inside(
        &self,
        netns: &Path,
        interface: &str,
        address: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<()> {
        let cidr = format!("{address}/{prefix}");
        let gateway = gateway.to_string();
        run_in_netns(netns, IP, &["link", "set", "dev", "lo", "up"])?;
        run_in_netns(netns, IP, &["addr", "replace", &cidr, "dev", interface])?;
        run_in_netns(netns, IP, &["link", "set", "dev", interface, "up"])?;
        run_in_netns(
            netns,
            IP,
            &[
                "route", "replace", "default", "via", &gateway, "dev", interface,
            ],
        )
        .map(drop)
    }
}

/// The name in a line of `ip -o link show`: `5: vethab@if4: <…>` → `vethab`.
fn link_name(line: &str) -> Option<&str> {
    let name = line.split(": ").nth(1)?;
    Some(name.split('@').next().unwrap_or(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_are_read_without_the_peer_suffix() {
        assert_eq!(
            link_name("5: vethab12@if4: <BROADCAST,MULTICAST> mtu 1500"),
            Some("vethab12")
        );
        assert_eq!(link_name("1: lo: <LOOPBACK,UP> mtu 65536"), Some("lo"));
    }
}

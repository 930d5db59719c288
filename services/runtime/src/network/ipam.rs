//! Address allocation for one subnet, persisted so allocations survive a runtime restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wharf_bus::files::{write_atomic, Durability};

use super::error::{NetworkError, Result};
use super::subnet::Subnet;

const STATE_FILE: &str = "ipam.json";

/// The file's content: the subnet it belongs to, each container's address, and the last address
/// handed out (allocation continues after it, so a released address is not reused at once).
#[derive(Debug, Serialize, Deserialize)]
struct State {
    subnet: String,
    #[serde(default)]
    last: Option<Ipv4Addr>,
    allocations: BTreeMap<String, Ipv4Addr>,
}

/// Where a network's container addresses come from: its subnet less the network, broadcast
/// and gateway addresses, within `range` when the network was created with `--ip-range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub range: Option<Subnet>,
}

impl Pool {
    /// The whole subnet, its first address the gateway's.
    pub fn of(subnet: Subnet) -> Pool {
        Pool {
            subnet,
            gateway: subnet.gateway(),
            range: None,
        }
    }

    /// First and last address allocation hands out (the gateway among them is skipped).
    fn bounds(&self) -> (u32, u32) {
        let all = self.subnet.container_range();
        // The subnet's host addresses: from the one after the network address.
        let (mut first, mut end) = (*all.start() - 1, *all.end());
        if let Some(range) = self.range {
            let r = range.container_range();
            first = first.max(u32::from(range.network()));
            end = end.min(*r.end() + 1);
        }
        (first, end)
    }

    fn holds(&self, address: Ipv4Addr) -> bool {
        let a = u32::from(address);
        let all = self.subnet.container_range();
        self.subnet.contains(address)
            && a >= *all.start() - 1
            && a <= *all.end()
            && address != self.gateway
    }
}

/// Container addresses of one subnet; every change is written to `<state_dir>/ipam.json`
/// (temporary file + rename) before it is returned.
#[derive(Debug)]
pub struct Ipam {
    subnet: Subnet,
    pool: Pool,
    path: PathBuf,
    last: Option<Ipv4Addr>,
    allocations: BTreeMap<String, Ipv4Addr>,
}

impl Ipam {
    /// Loads the allocations from `state_dir` (creating the directory), or starts empty.
    pub fn open(subnet: Subnet, state_dir: &Path) -> Result<Ipam> {
        Ipam::open_pool(Pool::of(subnet), state_dir)
    }

    /// [`Self::open`] for a pool with its own gateway or range.
    pub fn open_pool(pool: Pool, state_dir: &Path) -> Result<Ipam> {
        let subnet = pool.subnet;
        fs::create_dir_all(state_dir)
            .map_err(|e| NetworkError::io("creating state directory", state_dir, e))?;
        let path = state_dir.join(STATE_FILE);
        let mut ipam = Ipam {
            subnet,
            pool,
            path,
            last: None,
            allocations: BTreeMap::new(),
        };
        let bytes = match fs::read(&ipam.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ipam),
            Err(e) => return Err(NetworkError::io("reading", &ipam.path, e)),
        };
        let state: State =
            serde_json::from_slice(&bytes).map_err(|source| NetworkError::StateFormat {
                path: ipam.path.clone(),
                source,
            })?;
        if state.subnet != subnet.to_string() {
            return Err(NetworkError::SubnetMismatch {
                path: ipam.path.clone(),
                found: state.subnet,
                configured: subnet.to_string(),
            });
        }
        for (container, &address) in &state.allocations {
            if !ipam.is_container_address(address) {
                return Err(NetworkError::CorruptState {
                    path: ipam.path.clone(),
                    container: container.clone(),
                    address,
                });
            }
        }
        ipam.last = state.last.filter(|a| ipam.is_container_address(*a));
        ipam.allocations = state.allocations;
        Ok(ipam)
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// The address of `container`, allocating one if it has none (so a retried attach gets the
    /// same address).
    pub fn allocate(&mut self, container: &str) -> Result<Ipv4Addr> {
        self.allocate_as(container, None)
    }

    /// [`Self::allocate`], with the address `wanted` when given (`--ip`): it must be one of the
    /// subnet's host addresses that no other container holds.
    pub fn allocate_as(&mut self, container: &str, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        if let Some(&address) = self.allocations.get(container) {
            if wanted.is_none_or(|w| w == address) {
                return Ok(address);
            }
        }
        let address = match wanted {
            Some(w) => {
                let taken = self
                    .allocations
                    .iter()
                    .any(|(c, a)| *a == w && c != container);
                if taken || !self.pool.holds(w) {
                    return Err(NetworkError::AddressInUse);
                }
                w
            }
            None => self
                .next_free()
                .ok_or_else(|| NetworkError::SubnetExhausted {
                    subnet: self.subnet.to_string(),
                    capacity: self.capacity(),
                })?,
        };
        let previous = self.allocations.insert(container.to_owned(), address);
        // A chosen address does not move where allocation continues.
        let previous_last = match wanted {
            None => self.last.replace(address),
            Some(_) => self.last,
        };
        if let Err(e) = self.save() {
            match previous {
                Some(p) => self.allocations.insert(container.to_owned(), p),
                None => self.allocations.remove(container),
            };
            self.last = previous_last;
            return Err(e);
        }
        Ok(address)
    }

    /// Frees the address of `container`; returns it, or `None` if it had none.
    pub fn release(&mut self, container: &str) -> Result<Option<Ipv4Addr>> {
        let Some(address) = self.allocations.remove(container) else {
            return Ok(None);
        };
        if let Err(e) = self.save() {
            self.allocations.insert(container.to_owned(), address);
            return Err(e);
        }
        Ok(Some(address))
    }

    pub fn address_of(&self, container: &str) -> Option<Ipv4Addr> {
        self.allocations.get(container).copied()
    }

    pub fn allocations(&self) -> &BTreeMap<String, Ipv4Addr> {
        &self.allocations
    }

    fn capacity(&self) -> u32 {
        let (first, end) = self.pool.bounds();
        let gateway = u32::from(self.pool.gateway);
        (end + 1).saturating_sub(first) - u32::from((first..=end).contains(&gateway))
    }

    fn is_container_address(&self, address: Ipv4Addr) -> bool {
        self.pool.holds(address)
    }

    /// The first free address after `last`, wrapping around to the start of the range.
    fn next_free(&self) -> Option<Ipv4Addr> {
        let mut used: BTreeSet<u32> = self.allocations.values().map(|a| u32::from(*a)).collect();
        used.insert(u32::from(self.pool.gateway));
        let (first, end) = self.pool.bounds();
        if first > end {
            return None;
        }
        let start = match self.last {
            Some(last) if (first..end).contains(&u32::from(last)) => u32::from(last) + 1,
            _ => first,
        };
        (start..=end)
            .chain(first..start)
            .find(|candidate| !used.contains(candidate))
            .map(Ipv4Addr::from)
    }

    /// Writes the state to a temporary file in the same directory and renames it over the
    /// state file, so a crash leaves either the old or the new state, never a torn one. Not
    /// synced: allocations belong to running containers, which a power loss ends (and a start
    /// waits for no disk flush).
    fn save(&self) -> Result<()> {
        let state = State {
            subnet: self.subnet.to_string(),
            last: self.last,
            allocations: self.allocations.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&state).expect("IPAM state serializes");
        write_atomic(&self.path, &bytes, Durability::Unsynced)
            .map_err(|e| NetworkError::io("writing", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    #[test]
    fn allocation_starts_after_the_gateway_and_is_stable_per_container() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(subnet("10.88.0.0/24"), dir.path()).unwrap();
        assert_eq!(ipam.allocate("a").unwrap(), Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(ipam.allocate("b").unwrap(), Ipv4Addr::new(10, 88, 0, 3));
        assert_eq!(ipam.allocate("a").unwrap(), Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(ipam.address_of("b"), Some(Ipv4Addr::new(10, 88, 0, 3)));
    }

    #[test]
    fn released_addresses_return_to_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(subnet("10.88.0.0/30"), dir.path()).unwrap();
        let only = ipam.allocate("a").unwrap();
        assert_eq!(ipam.release("a").unwrap(), Some(only));
        assert_eq!(ipam.release("a").unwrap(), None);
        assert_eq!(ipam.allocate("b").unwrap(), only);
    }

    #[test]
    fn allocations_survive_reopening_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let net = subnet("10.88.0.0/24");
        {
            let mut ipam = Ipam::open(net, dir.path()).unwrap();
            ipam.allocate("a").unwrap();
            ipam.allocate("b").unwrap();
            ipam.release("a").unwrap();
        }
        let mut ipam = Ipam::open(net, dir.path()).unwrap();
        assert_eq!(ipam.address_of("a"), None);
        assert_eq!(ipam.address_of("b"), Some(Ipv4Addr::new(10, 88, 0, 3)));
        // Allocation continues after the last address handed out.
        assert_eq!(ipam.allocate("c").unwrap(), Ipv4Addr::new(10, 88, 0, 4));
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn exhausted_subnet_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        // /29: network, gateway, broadcast and five container addresses.
        let mut ipam = Ipam::open(subnet("10.88.0.0/29"), dir.path()).unwrap();
        for n in 0..5 {
            ipam.allocate(&format!("c{n}")).unwrap();
        }
        let err = ipam.allocate("one-too-many").unwrap_err();
        assert!(matches!(
            err,
            NetworkError::SubnetExhausted { capacity: 5, .. }
        ));
        assert!(
            err.to_string().contains("10.88.0.0/29 is exhausted"),
            "{err}"
        );
        ipam.release("c2").unwrap();
        assert_eq!(
            ipam.allocate("one-too-many").unwrap(),
            Ipv4Addr::new(10, 88, 0, 4)
        );
    }

    #[test]
    fn chosen_addresses_gateways_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool {
            subnet: subnet("10.77.0.0/24"),
            gateway: Ipv4Addr::new(10, 77, 0, 254),
            range: Some(subnet("10.77.0.128/25")),
        };
        let mut ipam = Ipam::open_pool(pool, dir.path()).unwrap();
        // The range's first address; the gateway at its end is never handed out.
        assert_eq!(ipam.allocate("a").unwrap(), Ipv4Addr::new(10, 77, 0, 128));
        let chosen = Ipv4Addr::new(10, 77, 0, 9);
        assert_eq!(ipam.allocate_as("b", Some(chosen)).unwrap(), chosen);
        assert_eq!(ipam.allocate("c").unwrap(), Ipv4Addr::new(10, 77, 0, 129));
        for taken in [
            chosen,
            Ipv4Addr::new(10, 77, 0, 254),
            Ipv4Addr::new(10, 77, 0, 255),
            Ipv4Addr::new(10, 77, 0, 0),
        ] {
            let err = ipam.allocate_as("d", Some(taken)).unwrap_err();
            assert_eq!(err.to_string(), "Address already in use");
        }
        // Reopened, a chosen address outside the range is still the container's.
        drop(ipam);
        let ipam = Ipam::open_pool(pool, dir.path()).unwrap();
        assert_eq!(ipam.address_of("b"), Some(chosen));
        assert_eq!(ipam.capacity(), 126);
    }

    #[test]
    fn state_of_another_subnet_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Ipam::open(subnet("10.88.0.0/24"), dir.path())
            .unwrap()
            .allocate("a")
            .unwrap();
        let err = Ipam::open(subnet("10.89.0.0/24"), dir.path()).unwrap_err();
        assert!(matches!(err, NetworkError::SubnetMismatch { .. }), "{err}");
    }
}

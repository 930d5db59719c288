//! runtime: runs containers on its host. [`service`] is the node on the bus. [`snapshot`] unpacks image layers
//! into overlayfs lower directories (used by container creation); [`cgroups`] limits, pauses,
//! measures and kills containers' processes.

pub mod cgroups;
pub mod container;
pub mod dns;
pub mod logs;
pub mod mount_api;
pub mod network;
pub mod seccomp;
pub mod shim;
pub mod snapshot;
pub mod userns;
pub mod volume;
mod worker;
pub mod xattrs;

pub mod service;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Settings of one runtime node.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Wharf's data root; the runtime keeps its files under `<data_root>/runtime`.
    pub data_root: PathBuf,
    /// Node name (defaults to the host name).
    pub node_name: String,
    /// Labels for placement.
    pub labels: BTreeMap<String, String>,
    /// Bridge of the default network (`wharf0`).
    pub bridge: Option<String>,
    /// Subnet of the default network (`172.30.0.0/16`).
    pub subnet: Option<String>,
    /// nftables table of the NAT rules (`wharf`).
    pub firewall_table: Option<String>,
    /// The `wharf-shim` program.
    pub shim_binary: Option<PathBuf>,
    /// `--userns-remap` (`default` or `USER[:GROUP]`).
    pub userns_remap: Option<String>,
}

/// Opens the node, adopts its running containers and serves until the bus connection ends.
pub async fn run(client: async_nats::Client, options: Options) -> anyhow::Result<()> {
    let root = options.data_root.join("runtime");
    let mut network = network::NetworkConfig::new(root.join("network"));
    if let Some(b) = options.bridge {
        network.bridge = b;
    }
    if let Some(s) = options.subnet {
        network.subnet = s
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid --fixed-cidr {s}: {e}"))?;
    }
    if let Some(t) = options.firewall_table {
        network.table = t;
    }
    let userns = match &options.userns_remap {
        Some(spec) => Some(userns::IdMap::from_remap(spec).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let node = service::NodeOptions {
        root,
        userns,
        name: options.node_name,
        labels: options.labels,
        shim_binary: options
            .shim_binary
            .unwrap_or_else(shim::default_shim_binary),
        network,
    };
    service::run(client, node).await
}

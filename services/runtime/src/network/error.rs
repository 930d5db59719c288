use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A subnet, port mapping or container ID that cannot be used.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    /// An address asked for (`--ip`) is another container's, or the gateway's, network's or
    /// broadcast address (libnetwork's words).
    #[error("Address already in use")]
    AddressInUse,
    /// Every host address of the subnet is allocated.
    #[error("subnet {subnet} is exhausted: all {capacity} container addresses are allocated")]
    SubnetExhausted { subnet: String, capacity: u32 },
    /// The state file was written for another subnet; reusing it would hand out foreign addresses.
    #[error("IPAM state {path} is for subnet {found}, not the configured {configured}")]
    SubnetMismatch {
        path: PathBuf,
        found: String,
        configured: String,
    },
    /// An address in the state file that is not a container address of the subnet.
    #[error("IPAM state {path}: address {address} of {container} is outside the subnet")]
    CorruptState {
        path: PathBuf,
        container: String,
        address: Ipv4Addr,
    },
    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A state file that is not the JSON this module writes.
    #[error("IPAM state {path}: {source}")]
    StateFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// An external command (`ip`, `nft`) failed; `stderr` is its own message.
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    /// A netlink request to the kernel failed; `source` carries the kernel's errno.
    #[error("{operation}: {source}")]
    Netlink {
        operation: String,
        #[source]
        source: std::io::Error,
    },
    /// An output of `nft -j` that does not have the expected shape.
    #[error("unexpected nft output: {0}")]
    NftOutput(String),
}

impl NetworkError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        NetworkError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetworkError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, NetworkError>;

//! The kernel switches container networking needs.

use std::fs;
use std::path::PathBuf;

use super::error::{NetworkError, Result};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns on IPv4 forwarding (host-wide; Docker does the same and nothing turns it off again).
pub fn enable_ip_forward() -> Result<()> {
    write_switch(PathBuf::from(IP_FORWARD))
}

/// Lets `bridge` route packets whose source is 127.0.0.0/8, so a published port DNATed in the
/// output hook answers on 127.0.0.1 (the firewall masquerades such packets to the gateway
/// address). Per interface: it goes away with the bridge.
pub fn enable_route_localnet(bridge: &str) -> Result<()> {
    write_switch(PathBuf::from(format!(
        "/proc/sys/net/ipv4/conf/{bridge}/route_localnet"
    )))
}

fn write_switch(path: PathBuf) -> Result<()> {
    if fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    fs::write(&path, "1").map_err(|e| NetworkError::io("writing", path, e))
}

//! A network's place in iptables' FORWARD chain. A dockerd on the same host sets that chain's
//! policy to DROP (and with br_netfilter, frames between two ports of one bridge pass through
//! it too), which would drop every packet of Wharf's containers that nftables let through: a
//! packet must be accepted by every base chain of its hook. So each network gets a chain of its
//! own, `WHARF-<bridge>`, jumped to from FORWARD, accepting what leaves the bridge and what
//! answers it or was DNATed to a published port; isolation and `--internal` stay in Wharf's
//! nftables table, whose drops win anyway.
//!
//! Without an `iptables` program there is no such chain to join (nothing of dockerd's either).

use std::path::Path;

use super::command::run;
use super::error::{NetworkError, Result};

fn iptables() -> Option<&'static str> {
    ["/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// The chain of `bridge` (bridge names have at most 15 bytes: the name fits xtables' 28).
pub fn chain(bridge: &str) -> String {
    format!("WHARF-{bridge}")
}

/// Creates or rewrites the chain of `bridge` and jumps to it from FORWARD (once).
pub fn allow(bridge: &str, internal: bool) -> Result<()> {
    let Some(program) = iptables() else {
        return Ok(());
    };
    let chain = chain(bridge);
    let ipt = |args: &[&str]| -> Result<String> {
        let mut all = vec!["-w", "-t", "filter"];
        all.extend_from_slice(args);
        run(program, &all)
    };
    match ipt(&["-N", &chain]) {
        Ok(_) => {}
        // Already there: rewritten below.
        Err(NetworkError::Command { ref stderr, .. }) if stderr.contains("exists") => {}
        Err(e) => return Err(e),
    }
    ipt(&["-F", &chain])?;
    if internal {
        ipt(&["-A", &chain, "-i", bridge, "-o", bridge, "-j", "ACCEPT"])?;
    } else {
        ipt(&["-A", &chain, "-i", bridge, "-j", "ACCEPT"])?;
        ipt(&[
            "-A",
            &chain,
            "-o",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED,DNAT",
            "-j",
            "ACCEPT",
        ])?;
    }
    if ipt(&["-C", "FORWARD", "-j", &chain]).is_err() {
        ipt(&["-I", "FORWARD", "-j", &chain])?;
    }
    Ok(())
}

/// Removes the jump and the chain of `bridge`, if there.
pub fn remove(bridge: &str) -> Result<()> {
    let Some(program) = iptables() else {
        return Ok(());
    };
    let chain = chain(bridge);
    let ipt = |args: &[&str]| {
        let mut all = vec!["-w", "-t", "filter"];
        all.extend_from_slice(args);
        run(program, &all)
    };
    while ipt(&["-D", "FORWARD", "-j", &chain]).is_ok() {}
    if ipt(&["-F", &chain]).is_ok() {
        ipt(&["-X", &chain])?;
    }
    Ok(())
}

//! Legacy links (`--link NAME[:ALIAS]`), as dockerd keeps them.
//!
//! On the default bridge a link is kept by the child's ID (a rename of the child follows it):
//! at start the child must run on the default bridge, and the parent gets an `/etc/hosts` line
//! for it and dockerd's environment variables (`ALIAS_PORT_5432_TCP_ADDR`, `ALIAS_NAME`,
//! `ALIAS_ENV_*`, ...). Inspect shows `/child:/parent/alias`, `docker ps` lists
//! `/parent/alias` among the child's names, and `docker rm --link /parent/alias` drops it.
//! On a user network a link is an alias only its parent resolves (the endpoint's `Links`,
//! answered by the embedded DNS server).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wharf_bus::container::CreateBody;
use wharf_bus::BusError;

use super::record::ContainerRecord;
use super::{Container, Node};

/// One link of a container on the default bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The linked container's ID.
    pub child: String,
    pub alias: String,
}

/// `NAME[:ALIAS]` (a leading `/`, and a path before the alias, as in `/db:/web/db`, are
/// dropped), as dockerd's `ParseLink`.
pub fn parse(spec: &str) -> Result<(String, String), BusError> {
    let bad = || BusError::invalid(format!("bad format for links: {spec}"));
    let (name, alias) = match spec.split_once(':') {
        Some((name, alias)) if !alias.contains(':') => (name, alias),
        Some(_) => return Err(bad()),
        None => (spec, spec),
    };
    let name = name.strip_prefix('/').unwrap_or(name);
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    // Both become words of the container's /etc/hosts and names of its variables: a
    // container name's characters only, so a client cannot write lines of its own there.
    let plain = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    if !plain(name) || !plain(alias) {
        return Err(bad());
    }
    Ok((name.to_string(), alias.to_string()))
}

/// The container of this node named `name` (without the slash).
fn by_name(node: &Node, name: &str) -> Option<Arc<Container>> {
    let id = node
        .names
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&format!("/{name}"))
        .cloned()?;
    node.get(&id).ok()
}

/// A create's links: on a user network they become the endpoint's `Links`; on the default
/// bridge each must name a container of this node not on the host's network, and is kept by
/// its ID. `HostConfig.Links` is emptied either way.
pub fn at_create(node: &Node, body: &mut CreateBody) -> Result<Vec<Link>, BusError> {
    let Some(specs) = body.host_config.links.take().filter(|l| !l.is_empty()) else {
        return Ok(Vec::new());
    };
    let mode = body.host_config.network_mode.clone();
    if super::networks::resolve_mode(node, &mode)?.is_some() {
        for spec in &specs {
            parse(spec)?;
        }
        // The CLI sends them in both places.
        let endpoint = body
            .networking_config
            .endpoints_config
            .entry(mode)
            .or_default();
        for spec in specs {
            if !endpoint.links.contains(&spec) {
                endpoint.links.push(spec);
            }
        }
        return Ok(Vec::new());
    }
    let mut links = Vec::new();
    for spec in &specs {
        let (name, alias) = parse(spec)?;
        let child = by_name(node, &name).ok_or_else(|| {
            BusError::invalid(format!(
                "could not get container for {name}: No such container: {name}"
            ))
        })?;
        if child.with(|r| r.host_config.network_mode == "host") {
            return Err(BusError::invalid(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior",
            ));
        }
        links.push(Link {
            child: child.id.clone(),
            alias,
        });
    }
    Ok(links)
}

/// What a starting container on the default bridge gets from its links: environment
/// variables and `/etc/hosts` lines. A child that is gone or not running fails the start in
/// dockerd's words.
pub fn at_start(node: &Node, rec: &ContainerRecord) -> Result<(Vec<String>, String), BusError> {
    let mut env = Vec::new();
    let mut hosts = String::new();
    let parent = rec.short_name();
    for link in &rec.links {
        let child = node.get(&link.child).ok().map(|c| c.snapshot());
        let refuse = |name: &str| {
            BusError::invalid(format!(
                "Cannot link to a non running container: /{name} AS /{parent}/{}",
                link.alias
            ))
        };
        let Some(child) = child else {
            return Err(refuse(&link.child[..12.min(link.child.len())]));
        };
        if !child.state.status.is_live() {
            return Err(refuse(child.short_name()));
        }
        let Some(address) = child
            .network
            .as_ref()
            .filter(|n| n.network_id.is_empty())
            .map(|n| n.address.clone())
        else {
            return Err(BusError::invalid(format!(
                "Cannot link to /{}, as it does not belong to the default network",
                child.short_name()
            )));
        };
        let mut names = format!("{} {}", link.alias, child.config.hostname);
        if link.alias != child.short_name() {
            names = format!("{names} {}", child.short_name());
        }
        hosts.push_str(&format!("{address}\t{names}\n"));
        let ports: Vec<String> = child
            .config
            .exposed_ports
            .iter()
            .flat_map(|p| p.keys().cloned())
            .collect();
        env.extend(environment(
            &format!("/{parent}/{}", link.alias),
            &address,
            &ports,
            &child.config.env,
        ));
    }
    Ok((env, hosts))
}

/// A port key (`80/tcp`) as number and protocol.
fn port(key: &str) -> (u32, String) {
    let (n, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    (n.parse().unwrap_or(0), proto.to_ascii_lowercase())
}

/// dockerd's link variables for the link `name` (`/parent/alias`) to a container at `ip`
/// exposing `ports` with environment `child_env`: the default port (the lowest, TCP first),
/// ranges of three or more consecutive ports, each port, the name, and the child's variables
/// but HOME and PATH.
pub fn environment(name: &str, ip: &str, ports: &[String], child_env: &[String]) -> Vec<String> {
    let alias = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .to_uppercase()
        .replace('-', "_");
    let mut ports: Vec<(u32, String)> = ports.iter().map(|p| port(p)).collect();
    ports.sort_by(|a, b| a.0.cmp(&b.0).then((b.1 == "tcp").cmp(&(a.1 == "tcp"))));
    let mut env = Vec::new();
    if let Some((n, proto)) = ports.first() {
        env.push(format!("{alias}_PORT={proto}://{ip}:{n}"));
    }
    let mut i = 0;
    while i < ports.len() {
        let (n, proto) = &ports[i];
        let j = next_contiguous(&ports, *n, i);
        if j > i + 1 {
            let up = proto.to_uppercase();
            let (m, last) = &ports[j];
            let last_up = last.to_uppercase();
            env.push(format!("{alias}_PORT_{n}_{up}_START={proto}://{ip}:{n}"));
            env.push(format!("{alias}_PORT_{n}_{up}_ADDR={ip}"));
            env.push(format!("{alias}_PORT_{n}_{up}_PROTO={proto}"));
            env.push(format!("{alias}_PORT_{n}_{up}_PORT_START={n}"));
            env.push(format!("{alias}_PORT_{n}_{last_up}_END={last}://{ip}:{m}"));
            env.push(format!("{alias}_PORT_{n}_{last_up}_PORT_END={m}"));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    for (n, proto) in &ports {
        let up = proto.to_uppercase();
        env.push(format!("{alias}_PORT_{n}_{up}={proto}://{ip}:{n}"));
        env.push(format!("{alias}_PORT_{n}_{up}_ADDR={ip}"));
        env.push(format!("{alias}_PORT_{n}_{up}_PORT={n}"));
        env.push(format!("{alias}_PORT_{n}_{up}_PROTO={proto}"));
    }
    env.push(format!("{alias}_NAME={name}"));
    for var in child_env {
        let Some((k, v)) = var.split_once('=') else {
            continue;
        };
        if k != "HOME" && k != "PATH" {
            env.push(format!("{alias}_ENV_{k}={v}"));
        }
    }
    // A range repeats its first port's address and protocol: one of each, as in dockerd's
    // environment.
    let mut seen = std::collections::HashSet::new();
    env.retain(|v| seen.insert(v.split('=').next().unwrap_or(v).to_string()));
    env
}

/// The last index of the run of consecutive port numbers starting at `index`.
fn next_contiguous(ports: &[(u32, String)], mut value: u32, index: usize) -> usize {
    for (i, (n, _)) in ports.iter().enumerate().skip(index + 1) {
        if *n > value + 1 {
            return i - 1;
        }
        value += 1;
    }
    ports.len() - 1
}

/// `HostConfig.Links` as dockerd shows it: `/child:/parent/alias`, with today's names.
pub fn shown(node: &Node, rec: &ContainerRecord) -> Option<Vec<String>> {
    if rec.links.is_empty() {
        return None;
    }
    let parent = rec.short_name();
    let list = rec
        .links
        .iter()
        .map(|l| {
            let child = node
                .get(&l.child)
                .map(|c| c.with(|r| r.short_name().to_string()))
                .unwrap_or_else(|_| l.child[..12.min(l.child.len())].to_string());
            format!("/{child}:/{parent}/{}", l.alias)
        })
        .collect();
    Some(list)
}

/// The link names of each linked container (`/parent/alias`), by child ID, for `docker ps`.
pub fn names_by_child(node: &Node) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in node.all() {
        c.with(|r| {
            for l in &r.links {
                out.entry(l.child.clone()).or_default().push(format!(
                    "/{}/{}",
                    r.short_name(),
                    l.alias
                ));
            }
        });
    }
    out
}

/// `docker rm --link /parent/alias`: drops the link `alias` of `parent`.
pub fn remove(parent: &Container, alias: &str) -> Result<(), BusError> {
    let (name, found) = parent.with(|r| {
        let found = r.links.iter().any(|l| l.alias == alias);
        (r.short_name().to_string(), found)
    });
    if !found {
        return Err(BusError::not_found(format!(
            "No such container: {name}/{alias}"
        )));
    }
    parent.update(|r| r.links.retain(|l| l.alias != alias))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_as_dockerd_parses_them() {
        let p = |s| parse(s).map_err(|e| e.message);
        assert_eq!(p("db"), Ok(("db".into(), "db".into())));
        assert_eq!(p("db:al"), Ok(("db".into(), "al".into())));
        assert_eq!(p("/db:/web/al"), Ok(("db".into(), "al".into())));
        assert_eq!(p(":x"), Err("bad format for links: :x".into()));
        assert_eq!(p("a:b:c"), Err("bad format for links: a:b:c".into()));
        // Nothing that would add lines to /etc/hosts or odd variable names.
        for bad in ["db:x\n6.6.6.6 evil", "db:x y", "db\t:x", "db:=x"] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn variables_name_ports_ranges_and_the_childs_environment() {
        let ports = ["7001/udp", "5432/tcp", "7000/udp", "7002/udp"].map(String::from);
        let env = ["SECRET=s", "PATH=/bin", "HOME=/root", "BAD"].map(String::from);
        let mut got = environment("/web/db-al", "10.0.0.2", &ports, &env);
        got.sort();
        let ip = "10.0.0.2";
        let mut want: Vec<String> = vec![
            format!("DB_AL_ENV_SECRET=s"),
            format!("DB_AL_NAME=/web/db-al"),
            format!("DB_AL_PORT=tcp://{ip}:5432"),
            format!("DB_AL_PORT_5432_TCP=tcp://{ip}:5432"),
            format!("DB_AL_PORT_5432_TCP_ADDR={ip}"),
            format!("DB_AL_PORT_5432_TCP_PORT=5432"),
            format!("DB_AL_PORT_5432_TCP_PROTO=tcp"),
            format!("DB_AL_PORT_7000_UDP=udp://{ip}:7000"),
            format!("DB_AL_PORT_7000_UDP_ADDR={ip}"),
            format!("DB_AL_PORT_7000_UDP_END=udp://{ip}:7002"),
            format!("DB_AL_PORT_7000_UDP_PORT=7000"),
            format!("DB_AL_PORT_7000_UDP_PORT_END=7002"),
            format!("DB_AL_PORT_7000_UDP_PORT_START=7000"),
            format!("DB_AL_PORT_7000_UDP_PROTO=udp"),
            format!("DB_AL_PORT_7000_UDP_START=udp://{ip}:7000"),
        ];
        for n in [7001, 7002] {
            want.push(format!("DB_AL_PORT_{n}_UDP=udp://{ip}:{n}"));
            want.push(format!("DB_AL_PORT_{n}_UDP_ADDR={ip}"));
            want.push(format!("DB_AL_PORT_{n}_UDP_PORT={n}"));
            want.push(format!("DB_AL_PORT_{n}_UDP_PROTO=udp"));
        }
        want.sort();
        assert_eq!(got, want);
        // Without ports: the name and the variables only.
        assert_eq!(
            environment("/web/x", ip, &[], &["A=1".into()]),
            vec!["X_NAME=/web/x".to_string(), "X_ENV_A=1".into()]
        );
    }
}

//! Names that are not containers': where they go, and the trip there from the container's
//! network namespace.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::in_netns_async;

/// How long one upstream server has to answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The servers a container's forwarded queries go to: its `--dns` servers if it has any, else
/// the host's (`host_resolv` is the host's resolv.conf; when it names systemd-resolved's stub,
/// `resolved` is systemd-resolved's own file of the real upstream servers). Loopback servers
/// cannot be reached from the container's namespace and are left out; with none left, Google's
/// public servers, as dockerd.
pub fn upstreams(host_resolv: &str, resolved: Option<&str>, dns: &[String]) -> Vec<SocketAddr> {
    let mut servers: Vec<IpAddr> = if dns.is_empty() {
        let host = nameservers(host_resolv);
        match resolved {
            Some(real) if host.contains(&IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53))) => {
                nameservers(real)
            }
            _ => host,
        }
    } else {
        dns.iter().filter_map(|s| s.parse().ok()).collect()
    };
    if dns.is_empty() {
        servers.retain(|ip| !ip.is_loopback());
    }
    if servers.is_empty() {
        servers = vec![
            IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
            IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
        ];
    }
    servers.dedup();
    servers
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The `nameserver` addresses of a resolv.conf (a zone index like `%eth0` is dropped).
fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            words.next()?.split('%').next()?.parse().ok()
        })
        .collect()
}

fn unspecified(to: &SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

/// The answer of the first upstream server that gives one, over UDP.
pub async fn udp(netns: &Arc<OwnedFd>, upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for to in upstreams {
        match udp_one(netns, *to, query).await {
            Ok(Some(reply)) => return Some(reply),
            Ok(None) => {}
            Err(e) => tracing::debug!(upstream = %to, "dns forward: {e}"),
        }
    }
    None
}

async fn udp_one(
    netns: &Arc<OwnedFd>,
    to: SocketAddr,
    query: &[u8],
) -> io::Result<Option<Vec<u8>>> {
    let socket = in_netns_async(netns.clone(), move || {
        let s = std::net::UdpSocket::bind(unspecified(&to))?;
        s.connect(to)?;
        s.set_nonblocking(true)?;
        Ok(s)
    })
    .await?;
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        // A connected socket only hears from `to`; a reply must carry the query's ID.
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(n) => n?,
            Err(_) => return Ok(None),
        };
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(Some(buf));
        }
    }
}

/// The answer of the first upstream server that gives one, over TCP (`query` without its
/// length prefix).
pub async fn tcp(netns: &Arc<OwnedFd>, upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for to in upstreams {
        match tokio::time::timeout(TIMEOUT, tcp_one(netns, *to, query)).await {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(e)) => tracing::debug!(upstream = %to, "dns forward over tcp: {e}"),
            Err(_) => {}
        }
    }
    None
}

async fn tcp_one(netns: &Arc<OwnedFd>, to: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let stream = in_netns_async(netns.clone(), move || {
        let s = std::net::TcpStream::connect_timeout(&to, TIMEOUT)?;
        s.set_nonblocking(true)?;
        Ok(s)
    })
    .await?;
    let mut stream = tokio::net::TcpStream::from_std(stream)?;
    let len = u16::try_from(query.len()).map_err(io::Error::other)?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(query);
    stream.write_all(&out).await?;
    let len = stream.read_u16().await?;
    let mut reply = vec![0u8; len as usize];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn the_hosts_servers_without_loopback_else_googles() {
        let host =
            "search lan\nnameserver 127.0.0.1\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n";
        assert_eq!(
            upstreams(host, None, &[]),
            addrs(&["10.0.0.2:53", "[fe80::1]:53"])
        );
        assert_eq!(
            upstreams("nameserver 127.0.0.1\n", None, &[]),
            addrs(&["8.8.8.8:53", "8.8.4.4:53"])
        );
    }

    #[test]
    fn systemd_resolveds_stub_is_replaced_by_its_real_upstreams() {
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\n";
        let real = "nameserver 192.0.2.1\nnameserver 192.0.2.2\n";
        assert_eq!(
            upstreams(stub, Some(real), &[]),
            addrs(&["192.0.2.1:53", "192.0.2.2:53"])
        );
        // Not the stub: the host's own servers stay, whatever resolved's file says.
        assert_eq!(
            upstreams("nameserver 10.1.1.1\n", Some(real), &[]),
            addrs(&["10.1.1.1:53"])
        );
    }

    #[test]
    fn dns_flags_replace_the_hosts_servers() {
        let dns = vec![
            "1.1.1.1".to_string(),
            "not-an-ip".into(),
            "127.0.0.1".into(),
        ];
        assert_eq!(
            upstreams("nameserver 10.0.0.2\n", None, &dns),
            addrs(&["1.1.1.1:53", "127.0.0.1:53"])
        );
    }
}

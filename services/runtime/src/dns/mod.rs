//! The embedded DNS server of user networks, as dockerd's at 127.0.0.11.
//!
//! A container whose network is a user network gets `nameserver 127.0.0.11` in its
//! `/etc/resolv.conf`. The runtime node answers there: the sockets are made inside the
//! container's network namespace (a short-lived thread enters it, binds 127.0.0.11:53 for
//! UDP and TCP, and leaves), then served by the node's own tasks, so the container runs
//! nothing of ours and a query never leaves its namespace to be answered.
//!
//! - Names of containers sharing a user network with the asker (container name, network
//!   aliases, short ID, each also as `name.network`) are answered from the node's records at
//!   the time of the query: containers started before or after, and new addresses after a
//!   restart, are seen at once ([`Names`]).
//! - Other names are forwarded to upstream servers ([`upstreams`]: `--dns`, or the host's
//!   resolvers) from a socket made in the container's namespace, as dockerd does: the query
//!   leaves by the container's own network, so a container of an `--internal` network gets
//!   no answer from outside.
//!
//! Queries are parsed by `hickory-proto`; what cannot be parsed gets FORMERR, a response
//! sent to the server is dropped, and at most [`MAX_FORWARDS`] forwards per container are in
//! flight (more are dropped; clients retry).

mod answer;
mod forward;
mod serve;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use answer::Names;
pub use forward::upstreams;

/// Where containers find the server.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// Forwarded queries in flight per container.
pub const MAX_FORWARDS: usize = 64;

/// One container's server sockets, made in its network namespace, and the namespace (kept
/// open: forwarded queries leave from it).
pub struct Listeners {
    pub udp: std::net::UdpSocket,
    pub tcp: std::net::TcpListener,
    pub netns: Arc<OwnedFd>,
}

impl Listeners {
    /// Binds 127.0.0.11:53 (UDP and TCP) inside the network namespace held at `netns`.
    pub fn open(netns: &Path) -> io::Result<Listeners> {
        let ns: OwnedFd = std::fs::File::open(netns)?.into();
        let address = SocketAddr::from((ADDRESS, 53));
        let (udp, tcp) = in_netns(&ns, move || {
            let udp = std::net::UdpSocket::bind(address)?;
            let tcp = std::net::TcpListener::bind(address)?;
            Ok((udp, tcp))
        })?;
        Ok(Listeners {
            udp,
            tcp,
            netns: Arc::new(ns),
        })
    }
}

/// Runs `f` on a thread of its own that has entered the network namespace `netns` (the
/// thread ends with it, so no other work ever runs in the container's namespace). Sockets
/// made by `f` stay in that namespace.
pub fn in_netns<T: Send>(
    netns: &OwnedFd,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| enter(netns).and_then(|()| f()))
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// [`in_netns`] from async code: the namespace thread reports back when done, so no thread of
/// the runtime waits for it.
pub async fn in_netns_async<T: Send + 'static>(
    netns: Arc<OwnedFd>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(enter(&netns).and_then(|()| f()));
    });
    rx.await
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
}

/// Moves the calling thread into the network namespace `netns`.
fn enter(netns: &OwnedFd) -> io::Result<()> {
    nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// What one container's server needs besides its sockets.
pub struct Config {
    /// The asking container's ID.
    pub container: String,
    pub names: Arc<dyn Names>,
    /// Where names that are not containers' go; none: they get SERVFAIL.
    pub upstreams: Vec<SocketAddr>,
}

/// The node's servers, one per container on a user network.
#[derive(Default)]
pub struct Server {
    running: Mutex<HashMap<String, serve::Endpoint>>,
}

impl Server {
    /// Serves `config.container` on `listeners`, replacing a server it already had. Called
    /// within the tokio runtime.
    pub fn serve(&self, listeners: Listeners, config: Config) -> io::Result<()> {
        let id = config.container.clone();
        let endpoint = serve::Endpoint::start(listeners, config)?;
        self.lock().insert(id, endpoint);
        Ok(())
    }

    /// Stops the container's server (nothing if it has none); its sockets close.
    pub fn stop(&self, container: &str) {
        self.lock().remove(container);
    }

    /// Whether the container has a server.
    pub fn serves(&self, container: &str) -> bool {
        self.lock().contains_key(container)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, serve::Endpoint>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

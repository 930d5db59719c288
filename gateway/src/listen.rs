//! API listeners: unix sockets (mode 0660) and TCP, where a non-loopback address is refused
//! unless TLS with client-certificate verification is configured (the API is root-equivalent).
//! Each listener serves a bounded number of connections, with deadlines for the TLS handshake
//! and for request headers (`limits.rs`).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Body;
use axum::http::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::limits::Limits;
use crate::TlsOptions;

pub enum Listener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
    Tcp {
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
    },
}

impl Listener {
    pub fn describe(&self) -> String {
        match self {
            Listener::Unix { path, .. } => format!("unix://{}", path.display()),
            Listener::Tcp { listener, tls } => format!(
                "{}://{}",
                if tls.is_some() { "tcp+tls" } else { "tcp" },
                listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            ),
        }
    }
}

/// Where one `-H` address listens, after checking it: unix path, or TCP address with its TLS
/// acceptor. Checking reads the certificates but binds nothing, so `wharf up` can refuse a bad
/// setting before it starts any service.
pub enum Endpoint {
    Unix(PathBuf),
    Tcp {
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
    },
}

/// Parses and checks one `-H` address.
pub async fn resolve(host: &str, tls: Option<&TlsOptions>) -> anyhow::Result<Endpoint> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(Endpoint::Unix(PathBuf::from(if path.is_empty() {
            "/run/wharf/docker.sock"
        } else {
            path
        })));
    }
    let addr = host
        .strip_prefix("tcp://")
        .with_context(|| format!("invalid host {host}: use unix:///path or tcp://host:port"))?;
    let default_port = if tls.is_some() { 2376 } else { 2375 };
    let addr = if addr
        .rsplit_once(':')
        .map(|(_, p)| p.parse::<u16>().is_ok())
        .unwrap_or(false)
    {
        addr.to_string()
    } else {
        format!("{addr}:{default_port}")
    };
    let sock: SocketAddr = tokio::net::lookup_host(&addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?
        .next()
        .with_context(|| format!("cannot resolve {addr}"))?;
    let verified_tls = tls.map(|t| t.verify).unwrap_or(false);
    if !sock.ip().is_loopback() && !verified_tls {
        bail!(
            "refusing to listen on tcp://{addr} without TLS client verification: the Docker API is root-equivalent; \
             use --tlsverify with --tlscacert, --tlscert and --tlskey, or listen on a loopback address"
        );
    }
    let tls = match tls {
        Some(t) => Some(tls_acceptor(t)?),
        None => None,
    };
    Ok(Endpoint::Tcp { addr: sock, tls })
}

/// The group `-G` names, which must exist (as with dockerd).
pub fn socket_gid(group: Option<&str>) -> anyhow::Result<Option<nix::unistd::Gid>> {
    match group {
        None => Ok(None),
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Ok(Some(g.gid)),
            _ => bail!("group {name} not found: cannot give the API socket to it"),
        },
    }
}

/// Binds one `-H` address.
pub async fn bind(
    host: &str,
    tls: Option<&TlsOptions>,
    group: Option<&str>,
) -> anyhow::Result<Listener> {
    match resolve(host, tls).await? {
        Endpoint::Unix(path) => bind_unix(path, socket_gid(group)?).await,
        Endpoint::Tcp { addr, tls } => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on tcp://{addr}"))?;
            Ok(Listener::Tcp { listener, tls })
        }
    }
}

async fn bind_unix(path: PathBuf, gid: Option<nix::unistd::Gid>) -> anyhow::Result<Listener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            bail!("{} is in use by another daemon", path.display());
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on unix://{}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = gid {
        nix::unistd::chown(&path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {gid}", path.display()))?;
    }
    Ok(Listener::Unix { listener, path })
}

fn tls_acceptor(t: &TlsOptions) -> anyhow::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&t.cert)
            .with_context(|| format!("cannot read --tlscert {}", t.cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .context("bad --tlscert")?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&t.key)
            .with_context(|| format!("cannot read --tlskey {}", t.key.display()))?,
    ))
    .context("bad --tlskey")?
    .context("no private key in --tlskey")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if t.verify {
        let ca = t.ca.as_ref().context("--tlsverify needs --tlscacert")?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut std::io::BufReader::new(
            std::fs::File::open(ca)
                .with_context(|| format!("cannot read --tlscacert {}", ca.display()))?,
        )) {
            roots.add(c.context("bad --tlscacert")?)?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()?;
        builder
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?
    } else {
        builder.with_no_client_auth().with_single_cert(certs, key)?
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `stop` is cancelled; each connection is served by `app`, at most
/// `limits.max_connections` at once (the others wait in the kernel's accept queue).
pub async fn serve(listener: Listener, app: axum::Router, stop: CancellationToken, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut full_warned: Option<Instant> = None;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            (slot, accepted) = accept_in_slot(&listener, &slots, &limits, &mut full_warned) => match accepted {
                Ok(Conn::Unix(s)) => {
                    connections.spawn(serve_connection(s, app.clone(), limits, slot));
                }
                Ok(Conn::Tcp(s, None)) => {
                    connections.spawn(serve_connection(s, app.clone(), limits, slot));
                }
                Ok(Conn::Tcp(s, Some(acceptor))) => {
                    let app = app.clone();
                    connections.spawn(async move {
                        match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(s)).await {
                            Ok(Ok(tls)) => serve_connection(tls, app, limits, slot).await,
                            Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(
                                "TLS handshake not done within {:?}: connection closed",
                                limits.tls_handshake_timeout
                            ),
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning on the same error.
                    drop(slot);
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    if let Listener::Unix { path, .. } = &listener {
        let _ = std::fs::remove_file(path);
    }
}

/// Waits for a free connection slot, then for a connection. Cancel-safe: dropping it before a
/// connection arrives frees the slot and loses no connection.
async fn accept_in_slot(
    listener: &Listener,
    slots: &Arc<Semaphore>,
    limits: &Limits,
    full_warned: &mut Option<Instant>,
) -> (OwnedSemaphorePermit, std::io::Result<Conn>) {
    let slot = match slots.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => {
            if full_warned.is_none_or(|at| at.elapsed() >= FULL_WARNING_INTERVAL) {
                *full_warned = Some(Instant::now());
                tracing::warn!(
                    "{} holds its maximum of {} connections: new ones wait until one ends",
                    listener.describe(),
                    limits.max_connections
                );
            }
            slots
                .clone()
                .acquire_owned()
                .await
                .expect("the connection semaphore is never closed")
        }
    };
    (slot, accept(listener).await)
}

/// How often a listener that keeps hitting its connection cap says so.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, Option<TlsAcceptor>),
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    match listener {
        Listener::Unix { listener, .. } => listener.accept().await.map(|(s, _)| Conn::Unix(s)),
        Listener::Tcp { listener, tls } => listener.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            Conn::Tcp(s, tls.clone())
        }),
    }
}

/// Serves HTTP/1.1 (with upgrades, for attach and exec) on one connection while it holds `slot`.
/// A client gets `limits.header_read_timeout` for each request's header, counted from when the
/// server starts waiting for it; nothing bounds a request once its header is in.
///
/// HTTP/1.1 only, as dockerd: hyper-util's HTTP/1-or-2 detection reads the first bytes without
/// any deadline, so an idle client would escape the header timeout.
async fn serve_connection<S>(
    stream: S,
    app: axum::Router,
    limits: Limits,
    slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _slot = slot;
    let service = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            match crate::version::negotiate(req.map(Body::new)) {
                Ok(req) => app.oneshot(req).await,
                Err(resp) => Ok(resp),
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades()
        .await
    {
        tracing::debug!("connection ended: {e}");
    }
}

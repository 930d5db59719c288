//! API listeners: unix sockets (mode 0660) and TCP, where a non-loopback address is refused
//! unless TLS with client-certificate verification is configured (the API is root-equivalent).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::body::Body;
use axum::http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

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

/// Accepts connections until `stop` is cancelled; each connection is served by `app`.
pub async fn serve(listener: Listener, app: axum::Router, stop: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = accept(&listener) => match accepted {
                Ok(Conn::Unix(s)) => { connections.spawn(serve_connection(s, app.clone())); }
                Ok(Conn::Tcp(s, None)) => { connections.spawn(serve_connection(s, app.clone())); }
                Ok(Conn::Tcp(s, Some(acceptor))) => {
                    let app = app.clone();
                    connections.spawn(async move {
                        match acceptor.accept(s).await {
                            Ok(tls) => serve_connection(tls, app).await,
                            Err(e) => tracing::debug!("TLS handshake failed: {e}"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    if let Listener::Unix { path, .. } = &listener {
        let _ = std::fs::remove_file(path);
    }
}

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

async fn serve_connection<S>(stream: S, app: axum::Router)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            match crate::version::negotiate(req.map(Body::new)) {
                Ok(req) => app.oneshot(req).await,
                Err(resp) => Ok(resp),
            }
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
        .await
    {
        tracing::debug!("connection ended: {e}");
    }
}

//! Which endpoints serve a registry: Docker Hub's mirrors first, insecure registries (by name,
//! CIDR, or loopback) over unverified TLS or plain HTTP, and the HTTP clients for each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use super::upload::UPLOAD_CHUNK;
use super::{RegistryError, Session};
use crate::auth::Credentials;

const DOCKER_HUB_ENDPOINT: &str = "https://registry-1.docker.io";

/// How registry-sync reaches registries: mirrors, insecure registries, and the HTTP clients.
pub struct Registries {
    secure: reqwest::Client,
    insecure: reqwest::Client,
    mirrors: Vec<String>,
    insecure_registries: Vec<String>,
    /// Docker Hub's registry endpoint, after the mirrors.
    hub_endpoint: String,
}

/// One base URL to try for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host[:port]` or `http://host[:port]` (mirrors may add a path).
    pub base: String,
    /// TLS certificates go unchecked (insecure registries).
    pub insecure_tls: bool,
    /// A mirror: registry errors there move on to the next endpoint instead of failing the pull.
    pub mirror: bool,
}

/// `host[:port]` of a mirror URL (`https://host:port/path`).
fn mirror_authority(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or("")
}

/// True for hosts Docker treats as insecure without being told: loopback addresses.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// `host` of `host[:port]` / `[v6]:port`.
fn host_of(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match domain.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => domain,
    }
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Registries {
    pub fn new(mirrors: &[String], insecure_registries: &[String]) -> anyhow::Result<Registries> {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(15))
                .read_timeout(Duration::from_secs(60))
                .tcp_nodelay(true)
                .danger_accept_invalid_certs(insecure)
                .build()
        };
        let mirrors = mirrors
            .iter()
            .map(|m| {
                let m = m.trim().trim_end_matches('/');
                let m = if m.contains("://") {
                    m.to_string()
                } else {
                    format!("https://{m}")
                };
                // As dockerd: credentials belong in `docker login`, not in a URL that ends up in
                // `docker info`, error messages and logs.
                // The message hides the userinfo it complains about.
                if let Some(at) = mirror_authority(&m).rfind('@') {
                    let (scheme, rest) = m.split_once("://").unwrap_or(("https", &m));
                    anyhow::bail!(
                        "invalid mirror: username/password not allowed in URI \"{scheme}://<redacted>@{}\"",
                        &rest[at + 1..]
                    );
                }
                Ok(m)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Registries {
            secure: build(false)?,
            insecure: build(true)?,
            mirrors,
            insecure_registries: insecure_registries.to_vec(),
            hub_endpoint: DOCKER_HUB_ENDPOINT.to_string(),
        })
    }

    /// Reaches Docker Hub at `base` instead of `https://registry-1.docker.io` (tests point it at
    /// a loopback port, so nothing leaves the machine).
    pub fn with_hub_endpoint(mut self, base: &str) -> Registries {
        self.hub_endpoint = base.trim_end_matches('/').to_string();
        self
    }

    /// What `docker info` shows.
    pub fn settings(&self) -> wharf_bus::registry::RegistrySettings {
        let mut insecure = vec!["::1/128".to_string(), "127.0.0.0/8".to_string()];
        for r in &self.insecure_registries {
            if !insecure.contains(r) {
                insecure.push(r.clone());
            }
        }
        wharf_bus::registry::RegistrySettings {
            mirrors: self.mirrors.iter().map(|m| format!("{m}/")).collect(),
            insecure_registries: insecure,
        }
    }

    /// Whether `domain` (`host[:port]`) may be reached over plain HTTP or unverified TLS.
    pub fn is_insecure(&self, domain: &str) -> bool {
        let host = host_of(domain);
        if is_loopback(host) {
            return true;
        }
        let ip = host.parse::<IpAddr>().ok();
        self.insecure_registries.iter().any(|entry| {
            let entry = entry.trim();
            if entry.contains('/') {
                ip.map(|ip| in_cidr(ip, entry)).unwrap_or(false)
            } else {
                entry.eq_ignore_ascii_case(domain)
            }
        })
    }

    /// Endpoints to try for `domain`, in order.
    pub fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        if domain == wharf_bus::reference::DEFAULT_DOMAIN {
            let mut out: Vec<Endpoint> = self
                .mirrors
                .iter()
                .map(|m| Endpoint {
                    base: m.clone(),
                    insecure_tls: self.is_insecure(mirror_authority(m)),
                    mirror: true,
                })
                .collect();
            out.push(Endpoint {
                base: self.hub_endpoint.clone(),
                insecure_tls: false,
                mirror: false,
            });
            return out;
        }
        let mut out = vec![Endpoint {
            base: format!("https://{domain}"),
            insecure_tls: self.is_insecure(domain),
            mirror: false,
        }];
        if self.is_insecure(domain) {
            out.push(Endpoint {
                base: format!("http://{domain}"),
                insecure_tls: true,
                mirror: false,
            });
        }
        out
    }

    /// Endpoints `docker login` tries for `domain`: never a mirror, which must not see the
    /// credentials of the registry it mirrors.
    pub fn login_endpoints(&self, domain: &str) -> Vec<Endpoint> {
        self.endpoints(domain)
            .into_iter()
            .filter(|e| !e.mirror)
            .collect()
    }

    /// The HTTP client for `endpoint`: certificates unchecked only for insecure registries.
    pub fn http(&self, endpoint: &Endpoint) -> reqwest::Client {
        if endpoint.insecure_tls {
            self.insecure.clone()
        } else {
            self.secure.clone()
        }
    }

    /// A session with one endpoint for one repository, holding the tokens of one pull.
    pub fn session(&self, endpoint: Endpoint, path: &str, creds: Credentials) -> Session {
        let http = self.http(&endpoint);
        Session {
            http,
            endpoint,
            path: path.to_string(),
            creds,
            auth: Mutex::new(HashMap::new()),
            push: false,
            mount_sources: Vec::new(),
            chunk_size: UPLOAD_CHUNK,
        }
    }

    /// What `fetch` gets from the first endpoint of `domain` that answers for the repository
    /// `path`, with the session that got it: mirrors move on after any error, the others only
    /// after transport errors (as dockerd's pull does). The error is the one that ended the
    /// search, or the last endpoint's.
    pub async fn first_answer<T>(
        &self,
        domain: &str,
        path: &str,
        creds: &Credentials,
        fetch: impl for<'s> Fn(&'s Session) -> BoxFuture<'s, Result<T, RegistryError>>,
    ) -> Result<(Session, T), RegistryError> {
        let mut last: Option<RegistryError> = None;
        for endpoint in self.endpoints(domain) {
            let mirror = endpoint.mirror;
            let session = self.session(endpoint, path, creds.clone());
            let fetched = match session.ping().await {
                Ok(()) => fetch(&session).await,
                Err(e) => Err(e),
            };
            match fetched {
                Ok(fetched) => return Ok((session, fetched)),
                Err(e) if e.is_transport() || mirror => {
                    tracing::debug!(endpoint = %session.endpoint.base, "trying next endpoint: {e}");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(RegistryError::Invalid("no endpoint for registry".into())))
    }

    /// A push session with the first endpoint of `domain` that answers (https before http for
    /// insecure registries; mirrors are never pushed to). The error is the last endpoint's.
    pub async fn push_endpoint(
        &self,
        domain: &str,
        path: &str,
        creds: Credentials,
        mount_sources: &[String],
    ) -> Result<Session, RegistryError> {
        self.reach(domain, |endpoint| {
            self.push_session(endpoint, path, creds.clone())
                .with_mount_sources(mount_sources)
        })
        .await
    }

    /// A session that asks for `push,pull` access to the repository.
    pub fn push_session(&self, endpoint: Endpoint, path: &str, creds: Credentials) -> Session {
        Session {
            push: true,
            ..self.session(endpoint, path, creds)
        }
    }

    /// The session `open` makes for the first endpoint of `domain` that answers (https before
    /// http for insecure registries), never a mirror: what pushes and syncs talk to, since a
    /// mirror neither takes pushes nor surely lists all of a repository's tags. The error is
    /// the last endpoint's.
    pub async fn reach(
        &self,
        domain: &str,
        open: impl Fn(Endpoint) -> Session,
    ) -> Result<Session, RegistryError> {
        let mut last = None;
        for endpoint in self.endpoints(domain) {
            if endpoint.mirror {
                continue;
            }
            let candidate = open(endpoint);
            match candidate.ping().await {
                Ok(()) => return Ok(candidate),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(RegistryError::Invalid("no endpoint for registry".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registries(insecure: &[&str]) -> Registries {
        Registries::new(
            &["http://127.0.0.1:5001".to_string()],
            &insecure.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn loopback_registries_are_insecure_by_default() {
        let r = registries(&[]);
        for d in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.9.9",
            "[::1]:5000",
        ] {
            assert!(r.is_insecure(d), "{d}");
        }
        assert!(!r.is_insecure("registry.example.com"));
        assert!(!r.is_insecure("10.1.2.3:5000"));
    }

    #[test]
    fn insecure_registries_match_host_port_or_cidr() {
        let r = registries(&["myreg:5000", "10.0.0.0/8"]);
        assert!(r.is_insecure("myreg:5000"));
        assert!(!r.is_insecure("myreg"));
        assert!(r.is_insecure("10.1.2.3:5000"));
        assert!(!r.is_insecure("11.1.2.3"));
    }

    #[test]
    fn docker_hub_tries_mirrors_first_and_others_fall_back_to_http_only_when_insecure() {
        let r = registries(&[]);
        let hub = r.endpoints("docker.io");
        assert_eq!(
            hub.iter().map(|e| e.base.as_str()).collect::<Vec<_>>(),
            ["http://127.0.0.1:5001", "https://registry-1.docker.io"]
        );
        assert!(hub[0].mirror && !hub[1].mirror);
        let local = r.endpoints("127.0.0.1:5000");
        assert_eq!(
            local.iter().map(|e| e.base.as_str()).collect::<Vec<_>>(),
            ["https://127.0.0.1:5000", "http://127.0.0.1:5000"]
        );
        assert!(local[0].insecure_tls);
        let remote = r.endpoints("quay.io");
        assert_eq!(remote.len(), 1);
        assert!(!remote[0].insecure_tls);
    }

    #[test]
    fn docker_hub_endpoint_can_be_pointed_elsewhere_after_the_mirrors() {
        let r = registries(&[]).with_hub_endpoint("http://127.0.0.1:9/");
        let hub = r.endpoints("docker.io");
        assert_eq!(
            hub.iter().map(|e| e.base.as_str()).collect::<Vec<_>>(),
            ["http://127.0.0.1:5001", "http://127.0.0.1:9"]
        );
    }

    #[test]
    fn mirrors_with_credentials_in_the_url_are_refused() {
        let err = Registries::new(&["https://user:secret@mirror.example/".to_string()], &[])
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "invalid mirror: username/password not allowed in URI \"https://<redacted>@mirror.example\""
        );
        // An `@` in the path is no userinfo.
        Registries::new(&["https://mirror.example/@team".to_string()], &[]).unwrap();
    }

    #[test]
    fn settings_list_default_loopback_cidrs_for_docker_info() {
        let s = registries(&["myreg:5000"]).settings();
        assert_eq!(s.mirrors, ["http://127.0.0.1:5001/"]);
        assert_eq!(
            s.insecure_registries,
            ["::1/128", "127.0.0.0/8", "myreg:5000"]
        );
    }
}

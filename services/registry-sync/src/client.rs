//! An OCI Distribution client: which endpoints serve a registry, authenticated GETs of manifests
//! and blobs, and registry errors in the words dockerd uses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::auth::{self, Challenge, Credentials, TokenError};
use crate::manifest;

const DOCKER_HUB_ENDPOINT: &str = "https://registry-1.docker.io";

/// Most of a registry's error body that is read: enough for any error document, and a registry
/// streaming gigabytes of "error" costs no more than this.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

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

/// A registry failure, before it is put in terms of the image being pulled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached: `Get "url": dial tcp ...: connect: connection refused`.
    #[error("Get \"{url}\": {message}")]
    Transport { url: String, message: String },
    /// The registry answered with an error code (`MANIFEST_UNKNOWN`, `DENIED`, ...).
    #[error("{}: {message}", code_words(code))]
    Code {
        status: u16,
        code: String,
        message: String,
    },
    /// The registry answered with a status and no error document.
    #[error("received unexpected HTTP status: {status}")]
    Status { status: String },
    /// A Basic challenge and nothing to answer it with.
    #[error("Get \"{url}\": no basic auth credentials")]
    NoBasicCredentials { url: String },
    /// The token server would not hand out a token.
    #[error("{0}")]
    Token(String),
    #[error("{0}")]
    Invalid(String),
}

impl RegistryError {
    /// Transport failures mean "try the next endpoint"; answers from a registry do not, except
    /// from a mirror.
    pub fn is_transport(&self) -> bool {
        matches!(self, RegistryError::Transport { .. })
    }
}

/// `MANIFEST_UNKNOWN` -> `manifest unknown`, as Go's errcode prints codes.
pub(crate) fn code_words(code: &str) -> String {
    code.replace('_', " ").to_lowercase()
}

/// A registry's error body: `{"errors":[{"code":"...","message":"..."}]}`.
#[derive(Deserialize)]
pub(crate) struct ErrorDocument {
    #[serde(default)]
    pub(crate) errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
pub(crate) struct ErrorEntry {
    #[serde(default)]
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// Go's wording of a failed HTTP exchange, which the docker CLI's users know
/// (`dial tcp 127.0.0.1:5000: connect: connection refused`).
pub fn describe_http_error(err: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let addr = err
                .url()
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
                .unwrap_or_default();
            let addr = addr.replace(['[', ']'], "");
            let addr = match addr.rsplit_once(':') {
                Some((h, p)) if h.contains(':') => format!("[{h}]:{p}"),
                _ => addr,
            };
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    format!("dial tcp {addr}: connect: connection refused")
                }
                std::io::ErrorKind::ConnectionReset => {
                    format!("read tcp {addr}: read: connection reset by peer")
                }
                std::io::ErrorKind::TimedOut => format!("dial tcp {addr}: i/o timeout"),
                _ => format!("dial tcp {addr}: {io}"),
            };
        }
        source = e.source();
    }
    // No I/O cause: spell out the chain (TLS, protocol, timeouts).
    let mut parts = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    if parts.is_empty() {
        parts.push(err.to_string());
    }
    parts.dedup();
    parts.join(": ")
}

/// `host[:port]` of a mirror URL (`https://host:port/path`).
fn mirror_authority(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or("")
}

/// Reads at most `cap` bytes of a body in chunks, never more; says whether any was left unread.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Bytes, bool), reqwest::Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
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

/// How requests of one scope authenticate, once a challenge was answered.
#[derive(Clone)]
enum Authorization {
    Bearer(String),
    Basic(String, String),
}

/// Tokens and passwords never reach logs or panics.
impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authorization::Bearer(_) => f.debug_tuple("Bearer").field(&REDACTED).finish(),
            Authorization::Basic(user, _) => {
                f.debug_tuple("Basic").field(user).field(&REDACTED).finish()
            }
        }
    }
}

/// Shown in place of a secret in `Debug` output.
pub(crate) struct Redacted;

pub(crate) const REDACTED: Redacted = Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Talks to one endpoint about one repository. Tokens are cached per scope for the session.
pub struct Session {
    http: reqwest::Client,
    pub endpoint: Endpoint,
    path: String,
    creds: Credentials,
    auth: Mutex<HashMap<String, Authorization>>,
    /// Asks for `push,pull` scope instead of `pull`.
    push: bool,
    /// Other repositories of the registry blobs may be mounted from: a push's token asks for
    /// `pull` on each too, or a token registry refuses the mount.
    mount_sources: Vec<String>,
    /// Blobs up to this size go up in one request; larger ones in chunks of this size.
    chunk_size: u64,
}

/// A fetched manifest: its bytes, content type and the registry's digest header, if any.
pub struct FetchedManifest {
    pub body: Bytes,
    pub content_type: String,
    pub docker_content_digest: Option<String>,
}

impl Session {
    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}", self.endpoint.base, tail)
    }

    /// The URL of a manifest by tag or digest. A reference that could leave the path (`/`,
    /// `..` in a query or fragment, escapes) is refused: tags can come from a registry's list.
    fn manifest_url(&self, reference: &str) -> Result<String, RegistryError> {
        if reference.is_empty()
            || reference.starts_with('.')
            || reference.contains(['/', '?', '#', '%', '\\'])
            || reference
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(RegistryError::Invalid(format!(
                "{reference:?} is neither a tag nor a digest"
            )));
        }
        Ok(self.url(&format!("{}/manifests/{reference}", self.path)))
    }

    /// `GET /v2/`: tells whether the endpoint is up and learns its challenge early.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.endpoint.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| transport(&url, &e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            // Answer the challenge now so the manifest request goes through first time.
            // Failures wait for the first real request, whose URL the error then names.
            let challenges = challenges_of(response.headers());
            if !challenges.is_empty() {
                if let Err(e) = self.authorize(&challenges, &url).await {
                    tracing::debug!("cannot answer the registry's challenge yet: {e}");
                }
            }
        }
        Ok(())
    }

    /// Other repositories this session may mount blobs from (push sessions).
    pub fn with_mount_sources(mut self, repos: &[String]) -> Session {
        self.mount_sources = repos.iter().filter(|r| **r != self.path).cloned().collect();
        self.mount_sources.sort();
        self.mount_sources.dedup();
        self
    }

    /// Uploads of blobs larger than `size` go in chunks of `size` bytes.
    pub fn with_chunk_size(mut self, size: u64) -> Session {
        self.chunk_size = size.max(1);
        self
    }

    /// The token scope(s) this session asks for, space-separated.
    fn scope(&self) -> String {
        if self.push {
            let mut scope = format!("repository:{}:push,pull", self.path);
            for repo in &self.mount_sources {
                scope.push(' ');
                scope.push_str(&auth::pull_scope(repo));
            }
            scope
        } else {
            auth::pull_scope(&self.path)
        }
    }

    async fn authorize(&self, challenges: &[Challenge], url: &str) -> Result<(), RegistryError> {
        let scope = self.scope();
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service, .. } => Some((realm, service)),
            _ => None,
        });
        let authorization = if let Some(token) = &self.creds.registry_token {
            Authorization::Bearer(token.clone())
        } else if let Some((realm, service)) = bearer {
            let token =
                auth::fetch_token(&self.http, realm, service.as_deref(), &scope, &self.creds)
                    .await
                    .map_err(|e| token_error(e, &self.creds))?;
            Authorization::Bearer(token)
        } else if challenges
            .iter()
            .any(|c| matches!(c, Challenge::Basic { .. }))
        {
            match &self.creds.basic {
                Some((u, p)) => Authorization::Basic(u.clone(), p.clone()),
                None => {
                    return Err(RegistryError::NoBasicCredentials {
                        url: url.to_string(),
                    })
                }
            }
        } else {
            return Ok(());
        };
        self.auth.lock().unwrap().insert(scope, authorization);
        Ok(())
    }

    fn authorized(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.auth.lock().unwrap().get(&self.scope()) {
            Some(Authorization::Bearer(t)) => req = req.bearer_auth(t),
            Some(Authorization::Basic(u, p)) => req = req.basic_auth(u, Some(p)),
            None => {}
        }
        req
    }

    /// GET with authentication: answers one 401 challenge and retries once.
    async fn get(&self, url: &str, headers: HeaderMap) -> Result<reqwest::Response, RegistryError> {
        let mut answered = false;
        loop {
            let req = self.authorized(self.http.get(url).headers(headers.clone()));
            let response = req.send().await.map_err(|e| transport(url, &e))?;
            if response.status() == StatusCode::UNAUTHORIZED && !answered {
                let challenges = challenges_of(response.headers());
                if !challenges.is_empty() {
                    answered = true;
                    self.authorize(&challenges, url).await?;
                    continue;
                }
            }
            if response.status().is_success() {
                return Ok(response);
            }
            return Err(error_of(response).await);
        }
    }

    /// Fetches a manifest by tag or digest, refusing bodies over [`manifest::MAX_MANIFEST_SIZE`].
    pub async fn manifest(&self, tag_or_digest: &str) -> Result<FetchedManifest, RegistryError> {
        let url = self.manifest_url(tag_or_digest)?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, manifest::ACCEPT.parse().unwrap());
        let mut response = self.get(&url, headers).await?;
        let too_big = || {
            RegistryError::Invalid(format!(
                "manifest too large: more than {} bytes",
                manifest::MAX_MANIFEST_SIZE
            ))
        };
        if response.content_length().unwrap_or(0) > manifest::MAX_MANIFEST_SIZE as u64 {
            return Err(too_big());
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let docker_content_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (body, over) = read_capped(&mut response, manifest::MAX_MANIFEST_SIZE)
            .await
            .map_err(|e| transport(&url, &e))?;
        if over {
            return Err(too_big());
        }
        Ok(FetchedManifest {
            body,
            content_type,
            docker_content_digest,
        })
    }

    /// The repository's tags (`GET tags/list`, following `Link` pages), sorted.
    pub async fn tags(&self) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = self.url(&format!("{}/tags/list?n={TAGS_PAGE}", self.path));
        let mut tags = Vec::new();
        let mut visited = std::collections::HashSet::new();
        for _ in 0..MAX_TAG_PAGES {
            if !visited.insert(url.clone()) {
                return Err(RegistryError::Invalid(format!(
                    "the tag list's pages go round in a circle at {url}"
                )));
            }
            let mut response = self.get(&url, HeaderMap::new()).await?;
            let next = response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let (body, over) = read_capped(&mut response, MAX_TAG_PAGE_BYTES)
                .await
                .map_err(|e| transport(&url, &e))?;
            if over {
                return Err(RegistryError::Invalid(format!(
                    "tag list too large: more than {MAX_TAG_PAGE_BYTES} bytes a page"
                )));
            }
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| RegistryError::Invalid(format!("malformed tag list: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            if tags.len() > MAX_TAGS {
                return Err(RegistryError::Invalid(format!(
                    "the repository lists more than {MAX_TAGS} tags"
                )));
            }
            match next {
                Some(link) if link.starts_with('/') => {
                    url = format!("{}{link}", self.endpoint.base)
                }
                Some(link) => url = link,
                None => {
                    tags.sort();
                    tags.dedup();
                    return Ok(tags);
                }
            }
        }
        Err(RegistryError::Invalid(format!(
            "tag list longer than {MAX_TAG_PAGES} pages"
        )))
    }

    /// The digest the registry serves for a tag or digest (`HEAD` of the manifest); `None`
    /// when it has no such manifest.
    pub async fn manifest_digest(&self, reference: &str) -> Result<Option<String>, RegistryError> {
        let url = self.manifest_url(reference)?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, manifest::ACCEPT.parse().unwrap());
        let response = self
            .send(reqwest::Method::HEAD, &url, headers, None)
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)),
            _ => Err(error_of(response).await),
        }
    }

    /// Starts a blob download at `offset` (a Range request when resuming). Returns the response
    /// and the offset its body starts at: 0 when the registry ignored the range.
    pub async fn blob(
        &self,
        digest: &str,
        offset: u64,
    ) -> Result<(reqwest::Response, u64), RegistryError> {
        let url = self.url(&format!("{}/blobs/{}", self.path, digest));
        let mut headers = HeaderMap::new();
        if offset > 0 {
            headers.insert(RANGE, format!("bytes={offset}-").parse().unwrap());
        }
        let response = self.get(&url, headers).await?;
        if offset > 0 && response.status() == StatusCode::PARTIAL_CONTENT {
            let start = response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start == Some(offset) {
                return Ok((response, offset));
            }
            return Err(RegistryError::Invalid(format!(
                "registry answered a range request for {digest} with the wrong range"
            )));
        }
        Ok((response, 0))
    }

    /// Any request with authentication: answers one 401 challenge and retries once. Returns
    /// the response whatever its status.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut answered = false;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url)
                .headers(headers.clone());
            if let Some(body) = &body {
                req = req.body(body.clone());
            }
            let response = self
                .authorized(req)
                .send()
                .await
                .map_err(|e| transport(url, &e))?;
            if response.status() == StatusCode::UNAUTHORIZED && !answered {
                let challenges = challenges_of(response.headers());
                if !challenges.is_empty() {
                    answered = true;
                    self.authorize(&challenges, url).await?;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: whether the repository has the blob.
    pub async fn has_blob(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = self.blob_url(digest);
        let response = self
            .send(reqwest::Method::HEAD, &url, HeaderMap::new(), None)
            .await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(error_of(response).await),
        }
    }

    /// Tries to mount `digest` from repository `from` of the same registry. `Ok(false)` when the
    /// registry started an upload instead (the blob is then uploaded as usual).
    pub async fn mount_blob(&self, digest: &str, from: &str) -> Result<bool, RegistryError> {
        let response = self
            .post_uploads(&format!("?mount={digest}&from={from}"))
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            s if s.is_success() => Ok(false),
            _ => Err(error_of(response).await),
        }
    }

    /// Uploads a blob held in memory (configs, manifests' small companions).
    pub async fn upload_blob(&self, digest: &str, data: Bytes) -> Result<(), RegistryError> {
        self.upload(
            digest,
            &MemorySource(data),
            &(std::sync::Arc::new(|_| {}) as ProgressFn),
        )
        .await
    }

    /// Uploads a blob from `source`, reporting the bytes sent so far to `progress`.
    ///
    /// Blobs up to the chunk size go up in one `PUT` (monolithic); larger ones as `PATCH`
    /// chunks of that size (never below the registry's `OCI-Chunk-Min-Length`), then a closing
    /// `PUT ?digest=`. A chunk that fails (connection lost, 5xx, an expired token) is resumed
    /// from what the registry says it received (`GET` of the upload's `Range`), a few times;
    /// an upload the registry forgot starts over. The registry checks the digest at the end:
    /// bytes that do not match are refused there.
    pub async fn upload(
        &self,
        digest: &str,
        source: &dyn UploadSource,
        progress: &ProgressFn,
    ) -> Result<(), RegistryError> {
        let size = source.size();
        let mut failures = 0;
        'start: loop {
            let (mut location, min_chunk) = self.start_upload().await?;
            let chunk = self.chunk_size.max(min_chunk);
            if size <= chunk {
                match self
                    .put_chunk(&location, digest, source, size, progress)
                    .await
                {
                    Ok(()) => {
                        progress(size);
                        return Ok(());
                    }
                    Err(e) if retryable(&e) && failures < UPLOAD_RETRIES => {
                        failures += 1;
                        tracing::info!("upload of {digest} failed, starting over: {e}");
                        tokio::time::sleep(backoff(failures)).await;
                        continue 'start;
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut offset = 0;
            let mut reader = None;
            while offset < size {
                let end = (offset + chunk).min(size);
                let result = match reader.take() {
                    Some(r) => Ok(r),
                    None => source.open(offset).await.map(SharedReader::new),
                };
                let result = match result {
                    Ok(r) => {
                        let sent = self.patch_chunk(&location, &r, offset, end, progress).await;
                        sent.map(|next| (next, r))
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok((next, r)) => {
                        location = next;
                        offset = end;
                        reader = Some(r);
                    }
                    Err(e) if retryable(&e) && failures < UPLOAD_RETRIES => {
                        failures += 1;
                        tokio::time::sleep(backoff(failures)).await;
                        match self.upload_status(&location).await {
                            Ok((at, received)) if received <= size => {
                                tracing::info!(
                                    "upload of {digest} failed at {offset}, resuming at {received}: {e}"
                                );
                                location = at;
                                offset = received;
                                progress(offset);
                            }
                            _ => {
                                tracing::info!("upload of {digest} failed, starting over: {e}");
                                continue 'start;
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            loop {
                let put = with_digest(&location, digest);
                let err = match self
                    .send(
                        reqwest::Method::PUT,
                        &put,
                        HeaderMap::new(),
                        Some(Bytes::new()),
                    )
                    .await
                {
                    Ok(response) if response.status().is_success() => return Ok(()),
                    Ok(response) => error_of(response).await,
                    Err(e) => e,
                };
                if !retryable(&err) || failures >= UPLOAD_RETRIES {
                    return Err(err);
                }
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
                // The PUT may have gone through with only its answer lost.
                if self.has_blob(digest).await.unwrap_or(false) {
                    return Ok(());
                }
                match self.upload_status(&location).await {
                    Ok((at, received)) if received == size => location = at,
                    _ => {
                        tracing::info!("closing upload of {digest} failed, starting over: {err}");
                        continue 'start;
                    }
                }
            }
        }
    }

    /// An empty `POST /v2/<repo>/blobs/uploads/<query>`: starts an upload, or mounts.
    async fn post_uploads(&self, query: &str) -> Result<reqwest::Response, RegistryError> {
        let url = self.url(&format!("{}/blobs/uploads/{query}", self.path));
        self.send(
            reqwest::Method::POST,
            &url,
            HeaderMap::new(),
            Some(Bytes::new()),
        )
        .await
    }

    /// `POST uploads/`: the upload's absolute location, and the registry's minimum chunk.
    async fn start_upload(&self) -> Result<(String, u64), RegistryError> {
        let response = self.post_uploads("").await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        let min_chunk = response
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((self.location_of(&response)?, min_chunk))
    }

    /// A response's `Location`, made absolute.
    fn location_of(&self, response: &reqwest::Response) -> Result<String, RegistryError> {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Invalid("upload answered without a Location".into()))?;
        Ok(if location.starts_with('/') {
            format!("{}{location}", self.endpoint.base)
        } else {
            location.to_string()
        })
    }

    /// The whole blob in the closing `PUT ?digest=` (monolithic upload).
    async fn put_chunk(
        &self,
        location: &str,
        digest: &str,
        source: &dyn UploadSource,
        size: u64,
        progress: &ProgressFn,
    ) -> Result<(), RegistryError> {
        let put = with_digest(location, digest);
        let reader = SharedReader::new(source.open(0).await?);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/octet-stream".parse().unwrap());
        headers.insert(CONTENT_LENGTH, size.into());
        let response = self
            .streamed(
                reqwest::Method::PUT,
                &put,
                headers,
                reader.take(size, 0, progress),
            )
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(error_of(response).await)
    }

    /// One `PATCH` of bytes `[from, to)`; returns the location of the rest of the upload.
    async fn patch_chunk(
        &self,
        location: &str,
        reader: &SharedReader,
        from: u64,
        to: u64,
        progress: &ProgressFn,
    ) -> Result<String, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/octet-stream".parse().unwrap());
        headers.insert(CONTENT_LENGTH, (to - from).into());
        headers.insert(
            reqwest::header::CONTENT_RANGE,
            format!("{from}-{}", to - 1).parse().unwrap(),
        );
        let body = reader.take(to - from, from, progress);
        let response = self
            .streamed(reqwest::Method::PATCH, location, headers, body)
            .await?;
        if response.status().is_success() {
            return self.location_of(&response);
        }
        Err(error_of(response).await)
    }

    /// `GET` of an upload in progress: its location and how many bytes the registry holds.
    async fn upload_status(&self, location: &str) -> Result<(String, u64), RegistryError> {
        let response = self
            .send(reqwest::Method::GET, location, HeaderMap::new(), None)
            .await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        // `Range: 0-<last byte>`; an upload with nothing yet says `0-0` (or nothing).
        let received = response
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start_matches("bytes=").split_once('-'))
            .and_then(|(_, last)| last.parse::<u64>().ok())
            .map_or(0, |last| if last == 0 { 0 } else { last.saturating_add(1) });
        let at = if response.headers().contains_key(reqwest::header::LOCATION) {
            self.location_of(&response)?
        } else {
            location.to_string()
        };
        Ok((at, received))
    }

    /// A request whose body is a stream, sent once: a 401 is answered by authorizing again and
    /// returned as an error for the caller to retry.
    async fn streamed(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, RegistryError> {
        let req = self.http.request(method, url).headers(headers).body(body);
        let response = self
            .authorized(req)
            .send()
            .await
            .map_err(|e| transport(url, &e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenges = challenges_of(response.headers());
            if !challenges.is_empty() {
                self.authorize(&challenges, url).await?;
                return Err(RegistryError::Status {
                    status: "401 Unauthorized (token renewed)".into(),
                });
            }
        }
        Ok(response)
    }

    /// `PUT /v2/<repo>/manifests/<tag>`; returns the registry's `Docker-Content-Digest`.
    pub async fn put_manifest(
        &self,
        tag: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<Option<String>, RegistryError> {
        let url = self.manifest_url(tag)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            media_type
                .parse()
                .map_err(|_| RegistryError::Invalid(format!("bad media type {media_type}")))?,
        );
        let response = self
            .send(reqwest::Method::PUT, &url, headers, Some(body))
            .await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        Ok(response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// The URL of a blob, for error messages.
    pub fn blob_url(&self, digest: &str) -> String {
        self.url(&format!("{}/blobs/{}", self.path, digest))
    }
}

/// Tags asked for per page of `tags/list`, pages followed at most, and the most one page may
/// weigh.
const TAGS_PAGE: usize = 1000;
const MAX_TAG_PAGES: usize = 1000;
const MAX_TAG_PAGE_BYTES: usize = 4 << 20;
/// The most tags a repository may list.
const MAX_TAGS: usize = 100_000;

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// Uploads of blobs up to this size are monolithic; larger blobs go in chunks of this size.
pub const UPLOAD_CHUNK: u64 = 64 << 20;

/// Failed chunks (or uploads) retried per blob before the upload fails.
const UPLOAD_RETRIES: u32 = 4;

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(200 << failures.min(5))
}

/// Failures worth another try: the connection, the registry's own trouble, a renewed token.
fn retryable(err: &RegistryError) -> bool {
    match err {
        RegistryError::Transport { .. } => true,
        RegistryError::Status { status } => {
            status.starts_with('5') || status.starts_with("401") || status.starts_with("429")
        }
        RegistryError::Code { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// `location` with `digest=` added to its query.
fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// Hears how many bytes of a blob the registry was sent so far.
pub type ProgressFn = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Bytes in order; an `Err` item ends them.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A blob to upload: its size, and its bytes from any offset (a failed chunk resumes there).
pub trait UploadSource: Send + Sync {
    fn size(&self) -> u64;
    fn open(
        &self,
        offset: u64,
    ) -> futures::future::BoxFuture<'_, Result<ByteStream, RegistryError>>;
}

/// A blob held in memory.
pub struct MemorySource(pub Bytes);

impl UploadSource for MemorySource {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn open(
        &self,
        offset: u64,
    ) -> futures::future::BoxFuture<'_, Result<ByteStream, RegistryError>> {
        let rest = self.0.slice((offset as usize).min(self.0.len())..);
        Box::pin(async move {
            Ok(Box::pin(futures::stream::once(async move { Ok(rest) })) as ByteStream)
        })
    }
}

/// One open source read across several chunk bodies: each body takes its share and leaves the
/// rest (of a piece it split) for the next.
struct SharedReader(std::sync::Arc<tokio::sync::Mutex<ReaderState>>);

struct ReaderState {
    stream: ByteStream,
    pending: Bytes,
}

impl SharedReader {
    fn new(stream: ByteStream) -> SharedReader {
        SharedReader(std::sync::Arc::new(tokio::sync::Mutex::new(ReaderState {
            stream,
            pending: Bytes::new(),
        })))
    }

    /// A body of the next `len` bytes; `progress` hears `base` plus what was sent so far. A
    /// source that ends early fails the body (and so the request).
    fn take(&self, len: u64, base: u64, progress: &ProgressFn) -> reqwest::Body {
        use futures::StreamExt;
        let state = self.0.clone();
        let progress = progress.clone();
        let body = futures::stream::unfold(len, move |left| {
            let state = state.clone();
            let progress = progress.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let mut state = state.lock().await;
                if state.pending.is_empty() {
                    match state.stream.next().await {
                        Some(Ok(piece)) => state.pending = piece,
                        Some(Err(e)) => return Some((Err(e), 0)),
                        None => {
                            let early = std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the blob ended before its size",
                            );
                            return Some((Err(early), 0));
                        }
                    }
                }
                let n = (state.pending.len() as u64).min(left);
                let piece = state.pending.split_to(n as usize);
                progress(base + len - left + n);
                Some((Ok(piece), left - n))
            }
        });
        reqwest::Body::wrap_stream(body)
    }
}

fn transport(url: &str, err: &reqwest::Error) -> RegistryError {
    RegistryError::Transport {
        url: url.to_string(),
        message: describe_http_error(err),
    }
}

pub(crate) fn challenges_of(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(auth::parse_challenges)
        .collect()
}

fn token_error(err: TokenError, creds: &Credentials) -> RegistryError {
    match err {
        TokenError::Refused { status: 401, body } => {
            // A token server refusing credentials says so in a registry error document or text.
            let message = serde_json::from_str::<ErrorDocument>(&body)
                .ok()
                .and_then(|d| d.errors.into_iter().next())
                .map(|e| e.message)
                .or_else(|| {
                    serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["details"].as_str().map(str::to_string))
                })
                .unwrap_or_else(|| {
                    if creds.is_empty() {
                        "authentication required".to_string()
                    } else {
                        "incorrect username or password".to_string()
                    }
                });
            RegistryError::Code {
                status: 401,
                code: "UNAUTHORIZED".into(),
                message,
            }
        }
        TokenError::Refused { status, body } => {
            RegistryError::Token(format!("failed to fetch token: {status}: {body}"))
        }
        TokenError::Transport(m) => RegistryError::Token(m),
        e @ TokenError::TooLarge => RegistryError::Token(e.to_string()),
        TokenError::Malformed(m) => RegistryError::Token(m),
    }
}

/// Turns an error response into a [`RegistryError`], reading its error document if it has one.
async fn error_of(mut response: reqwest::Response) -> RegistryError {
    let status = response.status();
    let (body, _) = read_capped(&mut response, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let body = &body[..];
    if let Ok(doc) = serde_json::from_slice::<ErrorDocument>(body) {
        if let Some(first) = doc.errors.into_iter().next() {
            return RegistryError::Code {
                status: status.as_u16(),
                code: if first.code.is_empty() {
                    "UNKNOWN".into()
                } else {
                    first.code
                },
                message: first.message,
            };
        }
    }
    if status == StatusCode::UNAUTHORIZED {
        let text = String::from_utf8_lossy(body).trim().to_string();
        return RegistryError::Code {
            status: 401,
            code: "UNAUTHORIZED".into(),
            message: if text.is_empty() {
                "authentication required".into()
            } else {
                text
            },
        };
    }
    if status == StatusCode::NOT_FOUND {
        // Registries without error documents: dockerd's distribution client reports 404s as
        // unknown manifests.
        return RegistryError::Code {
            status: 404,
            code: "MANIFEST_UNKNOWN".into(),
            message: "manifest unknown".into(),
        };
    }
    RegistryError::Status {
        status: status.to_string(),
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
    fn authorization_debug_redacts_tokens_and_passwords() {
        let bearer = format!("{:?}", Authorization::Bearer("tok-secret".into()));
        assert_eq!(bearer, "Bearer(<redacted>)");
        let basic = format!(
            "{:#?}",
            Authorization::Basic("alice".into(), "pw-secret".into())
        );
        assert!(
            !basic.contains("pw-secret") && basic.contains("alice"),
            "{basic}"
        );
    }

    #[test]
    fn tag_pages_follow_the_next_link() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=x&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=2")
        );
        assert_eq!(
            next_link(r#"<http://r/v2/a/tags/list?n=1>; rel="prev""#),
            None
        );
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn registry_error_codes_read_like_go_errcode() {
        let e = RegistryError::Code {
            status: 404,
            code: "MANIFEST_UNKNOWN".into(),
            message: "manifest unknown".into(),
        };
        assert_eq!(e.to_string(), "manifest unknown: manifest unknown");
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

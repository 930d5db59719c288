//! `docker login`: checks credentials against a registry the way dockerd does (moby's
//! `registry/service.go` Auth and `registry/auth.go` loginV2): ping `/v2/`, answer its challenge
//! with the credentials, and call the login good when `/v2/` then answers 200.

use reqwest::StatusCode;
use wharf_bus::error::go_quote;
use wharf_bus::registry::{LoginReply, RegistryAuth};
use wharf_bus::BusError;

use crate::auth::{self, Challenge, Credentials, TokenError};
use crate::client::{self, Endpoint, ErrorDocument, Registries};

/// What dockerd answers a good login with.
pub const LOGIN_SUCCEEDED: &str = "Login Succeeded";

/// Docker Hub's name in `docker login` (the CLI sends `https://index.docker.io/v1/`).
const INDEX_HOSTNAME: &str = "index.docker.io";

/// The registry (`host[:port]`) a login's `serveraddress` names; Docker Hub when it names none.
pub fn login_domain(server_address: Option<&str>) -> Result<String, BusError> {
    let address = server_address.map(str::trim).unwrap_or("");
    if address.is_empty() {
        return Ok(wharf_bus::reference::DEFAULT_DOMAIN.to_string());
    }
    let rest = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(BusError::invalid(format!(
            "unable to parse server address: {}",
            go_quote(address)
        )));
    }
    if host == INDEX_HOSTNAME || host == wharf_bus::reference::DEFAULT_DOMAIN {
        return Ok(wharf_bus::reference::DEFAULT_DOMAIN.to_string());
    }
    Ok(host.to_string())
}

/// Logs in to the registry `auth` names: the endpoints in turn (https, then http for insecure
/// registries), moving on only while an endpoint has not shown itself to be a registry.
pub async fn login(registries: &Registries, auth: &RegistryAuth) -> Result<LoginReply, BusError> {
    let domain = login_domain(auth.server_address.as_deref())?;
    let mut creds = Credentials::from_auth(Some(auth));
    // A registry token is for pulls; a login proves the password or identity token.
    creds.registry_token = None;
    let mut last = None;
    for endpoint in registries.login_endpoints(&domain) {
        match attempt(&registries.http(&endpoint), &endpoint, &creds).await {
            Ok(reply) => return Ok(reply),
            Err(Failure {
                error,
                fallback: true,
            }) => {
                tracing::info!(
                    "error logging in to endpoint {}, trying next endpoint: {}",
                    endpoint.base,
                    error.message
                );
                last = Some(error);
            }
            Err(Failure { error, .. }) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| BusError::internal(format!("no endpoint to log in to {domain}"))))
}

/// A failed attempt; `fallback` when the endpoint never answered as a registry, so the next one
/// is worth a try.
struct Failure {
    error: BusError,
    fallback: bool,
}

async fn attempt(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    creds: &Credentials,
) -> Result<LoginReply, Failure> {
    let url = format!("{}/v2/", endpoint.base.trim_end_matches('/'));
    let transport = |e: reqwest::Error| {
        BusError::internal(format!(
            "Get {}: {}",
            go_quote(&url),
            client::describe_http_error(&e)
        ))
    };
    let ping = http.get(&url).send().await.map_err(|e| Failure {
        error: transport(e),
        fallback: true,
    })?;
    let found_v2 = ping
        .headers()
        .get_all("docker-distribution-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ' ']))
        .any(|v| v.trim() == "registry/2.0");
    let challenges = if ping.status() == StatusCode::UNAUTHORIZED {
        client::challenges_of(ping.headers())
    } else {
        Vec::new()
    };
    drop(ping);
    let fail = |error: BusError| Failure {
        error,
        fallback: !found_v2,
    };

    let mut identity_token = creds.identity_token.clone().unwrap_or_default();
    let mut request = http.get(&url);
    let bearer = challenges.iter().find_map(|c| match c {
        Challenge::Bearer { realm, service, .. } => Some((realm, service)),
        _ => None,
    });
    if let Some((realm, service)) = bearer {
        let issued = auth::fetch_login_token(http, realm, service.as_deref(), creds)
            .await
            .map_err(|e| fail(token_failure(&url, e)))?;
        if let Some(refresh) = issued.refresh_token {
            identity_token = refresh;
        }
        request = request.bearer_auth(issued.token);
    } else if challenges
        .iter()
        .any(|c| matches!(c, Challenge::Basic { .. }))
    {
        if let Some((user, password)) = &creds.basic {
            request = request.basic_auth(user, Some(password));
        }
    }
    let response = request.send().await.map_err(|e| fail(transport(e)))?;
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(LoginReply {
            status: LOGIN_SUCCEEDED.to_string(),
            identity_token,
        });
    }
    let message = format!(
        "login attempt to {url} failed with status: {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    // Not an `unauthorized` error in dockerd (moby's loginV2 builds it with errors.Errorf), so
    // its API answers 500, and the CLI does not take it for a prompt to log in.
    Err(fail(BusError::internal(message)))
}

/// A token server's refusal in the words of Docker's distribution client, inside the failed
/// `GET /v2/` it was part of: `Get "https://reg/v2/": unauthorized: incorrect username or password`.
/// Only an `unauthorized` answer is a refusal (401); anything else is a failure.
fn token_failure(url: &str, err: TokenError) -> BusError {
    let (unauthorized, text) = match err {
        TokenError::Refused { status, body } if (400..500).contains(&status) => {
            refusal_text(status, &body)
        }
        TokenError::Refused { status, .. } => {
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            (
                false,
                format!("received unexpected HTTP status: {status} {reason}"),
            )
        }
        TokenError::Transport(m) => (false, m),
        e @ TokenError::TooLarge => (false, format!("unable to decode token response: {e}")),
        TokenError::Malformed(m) => (false, format!("unable to decode token response: {m}")),
    };
    let message = format!("Get {}: {text}", go_quote(url));
    if unauthorized {
        BusError::unauthorized(message)
    } else {
        BusError::internal(message)
    }
}

/// A 4xx token answer: a `details` text, a registry error document, or nothing readable.
fn refusal_text(status: u16, body: &str) -> (bool, String) {
    let details = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["details"].as_str().map(str::to_string))
        .filter(|d| !d.is_empty());
    if let Some(details) = details {
        return match status {
            401 => (true, format!("unauthorized: {details}")),
            429 => (false, format!("toomanyrequests: {details}")),
            _ => (false, format!("unknown: {details}")),
        };
    }
    match serde_json::from_str::<ErrorDocument>(body) {
        Ok(doc) if !doc.errors.is_empty() => {
            let first = &doc.errors[0];
            let code = if first.code.is_empty() {
                "UNKNOWN"
            } else {
                first.code.as_str()
            };
            (
                code == "UNAUTHORIZED",
                format!("{}: {}", client::code_words(code), first.message),
            )
        }
        _ if status == 401 => (true, "unauthorized: authentication required".to_string()),
        Ok(_) => (
            false,
            format!(
                "error parsing HTTP {status} response body: no error details found in HTTP response body: {}",
                go_quote(body)
            ),
        ),
        Err(e) => (
            false,
            format!(
                "error parsing HTTP {status} response body: {e}: {}",
                go_quote(body)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_address_names_the_registry_and_docker_hub_by_default() {
        let domain = |a: Option<&str>| login_domain(a).unwrap();
        assert_eq!(domain(None), "docker.io");
        assert_eq!(domain(Some("")), "docker.io");
        assert_eq!(domain(Some("https://index.docker.io/v1/")), "docker.io");
        assert_eq!(domain(Some("docker.io")), "docker.io");
        assert_eq!(domain(Some("127.0.0.1:5000")), "127.0.0.1:5000");
        assert_eq!(domain(Some("http://127.0.0.1:5000/v2/")), "127.0.0.1:5000");
        assert_eq!(domain(Some("https://reg.example.com")), "reg.example.com");
        assert!(login_domain(Some("https://")).is_err());
    }

    #[test]
    fn token_refusals_read_as_dockerd_prints_them() {
        let url = "http://127.0.0.1:5000/v2/";
        let refused = |status, body: &str| {
            token_failure(
                url,
                TokenError::Refused {
                    status,
                    body: body.to_string(),
                },
            )
        };
        let e = refused(401, r#"{"details":"incorrect username or password"}"#);
        assert_eq!(e.kind, wharf_bus::ErrorKind::Unauthorized);
        assert_eq!(
            e.message,
            r#"Get "http://127.0.0.1:5000/v2/": unauthorized: incorrect username or password"#
        );
        let e = refused(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
        );
        assert_eq!(e.kind, wharf_bus::ErrorKind::Unauthorized);
        assert!(
            e.message.ends_with(": unauthorized: bad credentials"),
            "{}",
            e.message
        );
        let e = refused(401, "nope");
        assert!(e
            .message
            .ends_with(": unauthorized: authentication required"));
        let e = refused(503, "down");
        assert_eq!(e.kind, wharf_bus::ErrorKind::Internal);
        assert!(e
            .message
            .ends_with(": received unexpected HTTP status: 503 Service Unavailable"));
    }
}

//! Registry authentication: `WWW-Authenticate` challenges, Docker's credentials, and the token
//! dance of the Docker registry token spec (anonymous, basic-authenticated, or refresh-token).

use std::collections::HashMap;

use serde::Deserialize;
use wharf_bus::registry::RegistryAuth;

use crate::client::{read_capped, MAX_ERROR_BODY, REDACTED};

/// Largest token response read: tokens are a few KiB; a bigger answer is refused, not buffered.
pub const MAX_TOKEN_RESPONSE: usize = 1024 * 1024;

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic {
        realm: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value: `Bearer realm="..",service="..",scope=".."` or
/// `Basic realm=".."`. Several challenges may share one header; quoted values may hold commas.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let (scheme, after) = match rest.find(|c: char| c.is_whitespace()) {
            Some(i) => (&rest[..i], rest[i..].trim_start()),
            None => (rest, ""),
        };
        let scheme = scheme.trim_end_matches(',');
        let (params, remainder) = parse_params(after);
        rest = remainder.trim_start_matches([',', ' ']);
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                if let Some(realm) = params.get("realm") {
                    out.push(Challenge::Bearer {
                        realm: realm.clone(),
                        service: params.get("service").cloned(),
                        scope: params.get("scope").cloned(),
                    });
                }
            }
            "basic" => out.push(Challenge::Basic {
                realm: params.get("realm").cloned(),
            }),
            _ => {}
        }
        if scheme.is_empty() {
            break;
        }
    }
    out
}

/// Reads `k=v` / `k="v"` pairs until one that is not a pair (the next challenge's scheme).
fn parse_params(mut s: &str) -> (HashMap<String, String>, &str) {
    let mut params = HashMap::new();
    loop {
        s = s.trim_start_matches([',', ' ', '\t']);
        let Some(eq) = s.find('=') else { break };
        let key = &s[..eq];
        if key.is_empty() || key.contains([' ', ',', '"']) {
            break;
        }
        let after = &s[eq + 1..];
        let (value, remainder) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end.min(q.len())..])
        } else {
            let end = after.find([',', ' ']).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        params.insert(key.to_ascii_lowercase(), value);
        s = remainder;
    }
    (params, s)
}

/// What a client gave us to authenticate with. `Debug` shows which kinds are present, never the
/// password or tokens.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub basic: Option<(String, String)>,
    /// OAuth refresh token (`identitytoken` from `docker login` against token servers).
    pub identity_token: Option<String>,
    /// A bearer token to use as is.
    pub registry_token: Option<String>,
}

impl Credentials {
    pub fn from_auth(auth: Option<&RegistryAuth>) -> Credentials {
        let Some(auth) = auth else {
            return Credentials::default();
        };
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Credentials {
            basic: auth.basic(),
            identity_token: nonempty(&auth.identity_token),
            registry_token: nonempty(&auth.registry_token),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.basic.is_none() && self.identity_token.is_none() && self.registry_token.is_none()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| REDACTED);
        f.debug_struct("Credentials")
            .field(
                "basic",
                &self.basic.as_ref().map(|(user, _)| (user, REDACTED)),
            )
            .field("identity_token", &secret(&self.identity_token))
            .field("registry_token", &secret(&self.registry_token))
            .finish()
    }
}

/// The pull scope of a repository, as the token spec spells it.
pub fn pull_scope(path: &str) -> String {
    format!("repository:{path}:pull")
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token server refused: its status and body.
    #[error("{status}: {body}")]
    Refused { status: u16, body: String },
    #[error("{0}")]
    Transport(String),
    #[error("token response too large: more than {MAX_TOKEN_RESPONSE} bytes")]
    TooLarge,
    #[error("malformed token response: {0}")]
    Malformed(String),
}

/// What a token server handed out.
pub struct IssuedToken {
    pub token: String,
    /// Given to `docker login` (offline access) so later logins need no password: Docker keeps it
    /// as the identity token.
    pub refresh_token: Option<String>,
}

/// Asks the token server of a Bearer challenge for a token with `scope` (one scope, or several
/// separated by spaces).
pub async fn fetch_token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    creds: &Credentials,
) -> Result<String, TokenError> {
    request_token(http, realm, service, Some(scope), false, creds)
        .await
        .map(|issued| issued.token)
}

/// Asks for a token as `docker login` does: no scope, and with offline access, so the server may
/// add a refresh token.
pub async fn fetch_login_token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    creds: &Credentials,
) -> Result<IssuedToken, TokenError> {
    request_token(http, realm, service, None, true, creds).await
}

async fn request_token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scope: Option<&str>,
    offline: bool,
    creds: &Credentials,
) -> Result<IssuedToken, TokenError> {
    let transport =
        |e: reqwest::Error| TokenError::Transport(crate::client::describe_http_error(&e));
    let mut response = if let Some(refresh) = &creds.identity_token {
        // OAuth2 refresh-token grant, as docker does for identity tokens.
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", "docker"),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        if let Some(s) = service {
            form.push(("service", s));
        }
        if offline {
            form.push(("access_type", "offline"));
        }
        http.post(realm)
            .form(&form)
            .send()
            .await
            .map_err(transport)?
    } else {
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        // Several scopes (a push that mounts from another repository) go as repeated
        // `scope` parameters, as docker sends them.
        for s in scope.into_iter().flat_map(str::split_whitespace) {
            query.push(("scope", s));
        }
        if offline {
            query.push(("offline_token", "true"));
            query.push(("client_id", "docker"));
        }
        if let Some((u, _)) = &creds.basic {
            query.push(("account", u.as_str()));
        }
        let mut req = http.get(realm).query(&query);
        if let Some((u, p)) = &creds.basic {
            req = req.basic_auth(u, Some(p));
        }
        req.send().await.map_err(transport)?
    };
    let status = response.status();
    if !status.is_success() {
        let (body, _) = read_capped(&mut response, MAX_ERROR_BODY)
            .await
            .map_err(transport)?;
        return Err(TokenError::Refused {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(4096)])
                .trim()
                .to_string(),
        });
    }
    if response.content_length().unwrap_or(0) > MAX_TOKEN_RESPONSE as u64 {
        return Err(TokenError::TooLarge);
    }
    let (body, over) = read_capped(&mut response, MAX_TOKEN_RESPONSE)
        .await
        .map_err(transport)?;
    if over {
        return Err(TokenError::TooLarge);
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| TokenError::Malformed(e.to_string()))?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| TokenError::Malformed("no token in the answer".into()))?;
    Ok(IssuedToken {
        token,
        refresh_token: parsed.refresh_token.filter(|t| !t.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_gives_realm_service_and_scope() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
    }

    #[test]
    fn basic_challenge_and_several_challenges_in_one_header() {
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic {
                realm: Some("Registry Realm".into())
            }]
        );
        let c = parse_challenges(
            r#"Basic realm="a, b", Bearer realm="http://127.0.0.1:1/t",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            Challenge::Basic {
                realm: Some("a, b".into())
            }
        );
        assert!(
            matches!(&c[1], Challenge::Bearer { scope: Some(s), .. } if s == "repository:a/b:pull,push")
        );
    }

    #[test]
    fn unquoted_values_and_unknown_schemes() {
        let c = parse_challenges("bearer realm=http://x/token,service=reg");
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "http://x/token".into(),
                service: Some("reg".into()),
                scope: None
            }]
        );
        assert!(parse_challenges("Negotiate abc").is_empty());
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn credentials_come_from_fields_or_auth_string() {
        use base64::Engine;
        let auth = RegistryAuth {
            auth: Some(base64::engine::general_purpose::STANDARD.encode("u:p:w")),
            identity_token: Some(String::new()),
            ..Default::default()
        };
        let c = Credentials::from_auth(Some(&auth));
        assert_eq!(c.basic, Some(("u".into(), "p:w".into())));
        assert_eq!(c.identity_token, None);
        assert!(Credentials::from_auth(None).is_empty());
    }

    #[test]
    fn credentials_debug_shows_the_user_and_redacts_password_and_tokens() {
        let c = Credentials {
            basic: Some(("alice".into(), "hunter2".into())),
            identity_token: Some("refresh-secret".into()),
            registry_token: Some("bearer-secret".into()),
        };
        let shown = format!("{c:?} {c:#?}");
        for secret in ["hunter2", "refresh-secret", "bearer-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("alice"));
        assert!(shown.contains("<redacted>"));
        assert_eq!(
            format!("{:?}", Credentials::default()),
            "Credentials { basic: None, identity_token: None, registry_token: None }"
        );
    }
}

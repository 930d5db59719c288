//! Answering a registry's `WWW-Authenticate` challenge: a Bearer token from the token server
//! (or the one `docker login` was given), or Basic credentials, cached per scope for the
//! session and never shown in `Debug` output.

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};

use super::error::ErrorDocument;
use super::{RegistryError, Session};
use crate::auth::{self, Challenge, Credentials, TokenError};

/// How requests of one scope authenticate, once a challenge was answered.
#[derive(Clone)]
pub(super) enum Authorization {
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

impl Session {
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

    pub(super) async fn authorize(
        &self,
        challenges: &[Challenge],
        url: &str,
    ) -> Result<(), RegistryError> {
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

    pub(super) fn authorized(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.auth.lock().unwrap().get(&self.scope()) {
            Some(Authorization::Bearer(t)) => req = req.bearer_auth(t),
            Some(Authorization::Basic(u, p)) => req = req.basic_auth(u, Some(p)),
            None => {}
        }
        req
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

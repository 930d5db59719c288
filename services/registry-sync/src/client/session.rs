//! A session with one endpoint about one repository, and its requests: each answers one `401`
//! challenge by authorizing (`authorization.rs`) and retries once.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::authorization::Authorization;
use super::error::{error_of, transport};
use super::{challenges_of, Endpoint, RegistryError};
use crate::auth::Credentials;

/// Talks to one endpoint about one repository. Tokens are cached per scope for the session.
pub struct Session {
    pub(super) http: reqwest::Client,
    pub endpoint: Endpoint,
    pub(super) path: String,
    pub(super) creds: Credentials,
    pub(super) auth: Mutex<HashMap<String, Authorization>>,
    /// Asks for `push,pull` scope instead of `pull`.
    pub(super) push: bool,
    /// Other repositories of the registry blobs may be mounted from: a push's token asks for
    /// `pull` on each too, or a token registry refuses the mount.
    pub(super) mount_sources: Vec<String>,
    /// Blobs up to this size go up in one request; larger ones in chunks of this size.
    pub(super) chunk_size: u64,
}

impl Session {
    pub(super) fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}", self.endpoint.base, tail)
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

    /// GET with authentication: answers one 401 challenge and retries once.
    pub(super) async fn get(
        &self,
        url: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, RegistryError> {
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

    /// Any request with authentication: answers one 401 challenge and retries once. Returns
    /// the response whatever its status.
    pub(super) async fn send(
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

    /// A request whose body is a stream, sent once: a 401 is answered by authorizing again and
    /// returned as an error for the caller to retry.
    pub(super) async fn streamed(
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
}

//! Manifest requests (fetch by tag or digest, `HEAD` for the digest, `PUT`) and the paged tag
//! list, each bounded in size.

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;

use super::error::{error_of, read_capped, transport};
use super::{RegistryError, Session};
use crate::manifest;

/// A fetched manifest: its bytes, content type and the registry's digest header, if any.
pub struct FetchedManifest {
    pub body: Bytes,
    pub content_type: String,
    pub docker_content_digest: Option<String>,
}

impl Session {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

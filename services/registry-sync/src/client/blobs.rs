//! Blob downloads (resumable with a `Range` request) and existence checks.

use reqwest::header::{HeaderMap, RANGE};
use reqwest::StatusCode;

use super::error::error_of;
use super::{RegistryError, Session};

impl Session {
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

    /// The URL of a blob, for error messages.
    pub fn blob_url(&self, digest: &str) -> String {
        self.url(&format!("{}/blobs/{}", self.path, digest))
    }
}

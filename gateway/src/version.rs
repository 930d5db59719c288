//! API version negotiation: paths with and without `/vX.Y`, dockerd's limits and errors.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub const API_VERSION: &str = "1.50";
pub const MIN_API_VERSION: &str = "1.24";

/// The API version a request asked for (the path prefix, or the newest when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub const CURRENT: ApiVersion = ApiVersion(1, 50);
    pub const MIN: ApiVersion = ApiVersion(1, 24);

    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= ApiVersion(major, minor)
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Strips a `/vX.Y` prefix, checks it against the supported range and records it in the
/// request's extensions. Returns the response to send instead when the version is refused.
// The refusal is a whole response, built once per refused request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub fn negotiate(mut req: Request<Body>) -> Result<Request<Body>, Response> {
    let path = req.uri().path();
    let mut version = ApiVersion::CURRENT;
    if let Some(rest) = path.strip_prefix("/v") {
        let (v, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if let Some(parsed) = ApiVersion::parse(v) {
            if parsed > ApiVersion::CURRENT {
                return Err(ApiError::bad_request(format!(
                    "client version {parsed} is too new. Maximum supported API version is {API_VERSION}"
                ))
                .into_response());
            }
            if parsed < ApiVersion::MIN {
                let message = format!(
                    "client version {parsed} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                );
                // Clients older than API 1.23 read errors as plain text, as dockerd writes them.
                if parsed < ApiVersion(1, 23) {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; charset=utf-8",
                        )],
                        format!("{message}\n"),
                    )
                        .into_response());
                }
                return Err(ApiError::bad_request(message).into_response());
            }
            version = parsed;
            let new_path_and_query = match req.uri().query() {
                Some(q) => format!("{tail}?{q}"),
                None => tail.to_string(),
            };
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = new_path_and_query.parse().ok();
            match axum::http::Uri::from_parts(parts) {
                Ok(uri) => *req.uri_mut() = uri,
                Err(_) => {
                    return Err(
                        ApiError::new(StatusCode::BAD_REQUEST, "invalid request path")
                            .into_response(),
                    )
                }
            }
        }
    }
    req.extensions_mut().insert(version);
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str) -> Result<(String, ApiVersion), StatusCode> {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        match negotiate(req) {
            Ok(r) => Ok((
                r.uri().to_string(),
                *r.extensions().get::<ApiVersion>().unwrap(),
            )),
            Err(resp) => Err(resp.status()),
        }
    }

    #[test]
    fn versioned_and_plain_paths_reach_the_same_route() {
        assert_eq!(
            run("/v1.41/images/json?all=1").unwrap(),
            ("/images/json?all=1".to_string(), ApiVersion(1, 41))
        );
        assert_eq!(
            run("/images/json").unwrap(),
            ("/images/json".to_string(), ApiVersion::CURRENT)
        );
        assert_eq!(run("/v1.45/_ping").unwrap().0, "/_ping");
    }

    #[test]
    fn versions_outside_the_range_are_refused() {
        assert_eq!(run("/v1.99/version").unwrap_err(), StatusCode::BAD_REQUEST);
        assert_eq!(run("/v1.12/version").unwrap_err(), StatusCode::BAD_REQUEST);
    }
}

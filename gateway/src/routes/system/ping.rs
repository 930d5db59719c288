//! `/_ping` and `/version`: whether the engine answers, with the API version headers, and
//! which engine it is.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::version::{API_VERSION, MIN_API_VERSION};

pub async fn ping() -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("API-Version", HeaderValue::from_static(API_VERSION));
    headers.insert("Builder-Version", HeaderValue::from_static("1"));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert("OSType", HeaderValue::from_static("linux"));
    // API 1.42 on: the node's swarm state, which the CLI reads to hide swarm commands. Wharf is
    // never part of a swarm (routes/swarm.rs).
    headers.insert("Swarm", HeaderValue::from_static("inactive"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    (StatusCode::OK, headers, "OK").into_response()
}

pub(super) fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn go_arch() -> String {
    wharf_bus::registry::Platform::host().architecture
}

pub async fn version() -> axum::Json<Value> {
    let kernel = kernel_version();
    let engine = json!({
        "Name": "Engine",
        "Version": wharf_bus::VERSION,
        "Details": {
            "ApiVersion": API_VERSION,
            "Arch": go_arch(),
            "BuildTime": "",
            "Experimental": "false",
            "GitCommit": option_env!("WHARF_GIT_COMMIT").unwrap_or(""),
            "GoVersion": "rust",
            "KernelVersion": kernel,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux"
        }
    });
    axum::Json(json!({
        "Platform": { "Name": "Wharf" },
        "Components": [engine],
        "Version": wharf_bus::VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": option_env!("WHARF_GIT_COMMIT").unwrap_or(""),
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": ""
    }))
}

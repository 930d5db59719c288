//! `wharf.v1.registry-sync.login` against an axum server playing a token-auth registry: the
//! token request is `docker login`'s (offline access, client id, account, no scope), the token
//! server's refresh token comes back as the identity token, and a refusal is dockerd's text.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use support::Bus;
use wharf_bus::registry::{LoginReply, RegistryAuth};
use wharf_bus::ErrorKind;

struct Fake {
    base: String,
    /// The query of each token request.
    token_queries: Mutex<Vec<HashMap<String, String>>>,
}

async fn v2(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer == Some("Bearer login-token") {
        return axum::Json(serde_json::json!({})).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                "WWW-Authenticate",
                format!(
                    r#"Bearer realm="{}/token",service="fake-registry""#,
                    fake.base
                ),
            ),
            (
                "Docker-Distribution-API-Version",
                "registry/2.0".to_string(),
            ),
        ],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
        .into_response()
}

async fn token(
    State(fake): State<Arc<Fake>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    fake.token_queries.lock().unwrap().push(q);
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:secret")
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"details":"incorrect username or password"}"#,
        )
            .into_response();
    }
    axum::Json(serde_json::json!({"token": "login-token", "refresh_token": "alice-refresh"}))
        .into_response()
}

async fn start_fake() -> (Arc<Fake>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let fake = Arc::new(Fake {
        base: format!("http://{host}"),
        token_queries: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/v2/", get(v2))
        .route("/token", get(token))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, host)
}

fn auth(host: &str, password: &str) -> RegistryAuth {
    RegistryAuth {
        username: Some("alice".into()),
        password: Some(password.into()),
        server_address: Some(host.to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn login_to_a_token_registry_returns_the_refresh_token_as_identity_token() {
    let (fake, host) = start_fake().await;
    let bus = Bus::start(Default::default()).await;
    let reply: LoginReply = wharf_bus::call(
        &bus.client,
        "wharf.v1.registry-sync.login",
        &auth(&host, "secret"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, "Login Succeeded");
    assert_eq!(reply.identity_token, "alice-refresh");
    let queries = fake.token_queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 1, "{queries:?}");
    let q = &queries[0];
    assert_eq!(q.get("offline_token").map(String::as_str), Some("true"));
    assert_eq!(q.get("client_id").map(String::as_str), Some("docker"));
    assert_eq!(q.get("account").map(String::as_str), Some("alice"));
    assert_eq!(q.get("service").map(String::as_str), Some("fake-registry"));
    assert_eq!(q.get("scope"), None);
}

#[tokio::test]
async fn login_with_a_wrong_password_is_refused_in_dockerds_words() {
    let (_fake, host) = start_fake().await;
    let bus = Bus::start(Default::default()).await;
    let err = wharf_bus::call::<_, LoginReply>(
        &bus.client,
        "wharf.v1.registry-sync.login",
        &auth(&host, "wrong"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(
        err.message,
        format!("Get \"http://{host}/v2/\": unauthorized: incorrect username or password")
    );
}

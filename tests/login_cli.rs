//! `docker login` and `docker logout` with the real docker CLI against `wharf up` and a real
//! registry (basic auth, and a token server). Expected texts are dockerd 20.10's: moby's
//! `registry/auth.go` (loginV2) and docker/distribution's token client.

mod support;

use std::time::Duration;

use support::{DockerCli, Output, Registry, Stack};

const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// `docker login -u USER --password-stdin REGISTRY`.
fn login(docker: &DockerCli, registry: &str, user: &str, password: &str) -> Output {
    support::run(
        docker.command(&["login", "-u", user, "--password-stdin", registry]),
        Some(format!("{password}\n").into_bytes()),
        LOGIN_TIMEOUT,
    )
}

/// The credentials the CLI stored for `registry`, if any.
fn stored_auth(docker: &DockerCli, registry: &str) -> Option<serde_json::Value> {
    let config = std::fs::read_to_string(docker.config.path().join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    config["auths"]
        .get(registry)
        .filter(|v| !v.is_null())
        .cloned()
}

/// The right password logs in and is stored by the CLI; `docker logout` forgets it; a wrong
/// password is refused with `expected_refusal` and stores nothing.
fn check_login_and_logout(registry: &Registry, user: &str, password: &str, expected_refusal: &str) {
    let stack = Stack::start();

    let docker = stack.docker();
    let out = login(&docker, &registry.host, user, password).ok();
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
    let stored = stored_auth(&docker, &registry.host).expect("the CLI stores the login");
    use base64::Engine;
    assert_eq!(
        stored["auth"],
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
        "{stored}"
    );

    let out = docker.ok(&["logout", &registry.host]);
    assert!(
        out.stdout
            .contains(&format!("Removing login credentials for {}", registry.host)),
        "{out}"
    );
    assert_eq!(stored_auth(&docker, &registry.host), None);

    let refused = stack.docker();
    let out = login(&refused, &registry.host, user, "wrong-password").failed();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("Error response from daemon: {expected_refusal}")),
        "{out}"
    );
    assert!(!out.stdout.contains("Login Succeeded"), "{out}");
    assert_eq!(stored_auth(&refused, &registry.host), None);
}

#[test]
fn docker_login_to_a_basic_auth_registry_succeeds_and_a_wrong_password_is_refused() {
    let registry = Registry::start_basic("wharf", "s3cret-pass");
    let refusal = format!(
        "login attempt to http://{}/v2/ failed with status: 401 Unauthorized",
        registry.host
    );
    check_login_and_logout(&registry, "wharf", "s3cret-pass", &refusal);
}

#[test]
fn docker_login_to_a_token_registry_succeeds_and_a_wrong_password_is_refused() {
    let registry = Registry::start_token("tokenuser", "t0ken-pass");
    let refusal = format!(
        "Get \"http://{}/v2/\": unauthorized: incorrect username or password",
        registry.host
    );
    check_login_and_logout(&registry, "tokenuser", "t0ken-pass", &refusal);
}

#[test]
fn docker_login_to_an_unreachable_registry_names_the_failed_request() {
    let stack = Stack::start();
    let docker = stack.docker();
    // A loopback port nothing listens on: https is tried, then http (loopback is insecure).
    let port = support::free_port();
    let host = format!("127.0.0.1:{port}");
    let out = login(&docker, &host, "u", "p").failed();
    assert!(
        out.stderr.contains(&format!(
            "Error response from daemon: Get \"http://{host}/v2/\": dial tcp {host}: connect: connection refused"
        )),
        "{out}"
    );
}

/// `POST /auth` answers as dockerd 20.10 does: 200 with `Status` and `IdentityToken`; a token
/// server's refusal is a 401, a registry's refusal of `/v2/` a 500 (moby's loginV2 does not mark
/// it unauthorized).
#[test]
fn post_auth_answers_with_dockerds_status_codes() {
    let stack = Stack::start();
    let basic = Registry::start_basic("u", "pw");
    let token = Registry::start_token("u", "pw");
    let post = |registry: &Registry, password: &str| {
        let body = serde_json::json!({
            "username": "u",
            "password": password,
            "serveraddress": registry.host,
        });
        let (status, _, body) = support::unix_request(
            &stack.socket,
            "POST",
            "/auth",
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
        .unwrap();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        )
    };
    for registry in [&basic, &token] {
        let (status, body) = post(registry, "pw");
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            serde_json::json!({"IdentityToken": "", "Status": "Login Succeeded"})
        );
    }
    let (status, body) = post(&basic, "bad");
    assert_eq!(status, 500, "{body}");
    let (status, body) = post(&token, "bad");
    assert_eq!(status, 401, "{body}");
}

//! The Engine API seen by an HTTP client library (bollard) and by plain HTTP over the socket.

mod support;

use std::collections::HashMap;

use bollard::query_parameters::{CreateImageOptionsBuilder, ListImagesOptionsBuilder};
use futures::StreamExt;
use support::fixtures::{self, PushFormat};
use support::{Registry, Stack};

async fn client(stack: &Stack) -> bollard::Docker {
    bollard::Docker::connect_with_unix(&stack.host, 120, bollard::API_DEFAULT_VERSION)
        .expect("bollard client")
        .negotiate_version()
        .await
        .expect("version negotiation")
}

/// (max, min) API versions the engine under test must report.
fn api_versions() -> (String, String) {
    if support::reference_host().is_some() {
        // dockerd 20.10, which the Debian 12 machines have.
        ("1.41".into(), "1.12".into())
    } else {
        ("1.50".into(), "1.24".into())
    }
}

async fn start() -> Stack {
    tokio::task::spawn_blocking(Stack::start).await.unwrap()
}

async fn stop(stack: Stack) {
    tokio::task::spawn_blocking(move || drop(stack))
        .await
        .unwrap();
}

#[tokio::test]
async fn bollard_pings_and_negotiates_the_newest_version_both_speak() {
    let stack = start().await;
    let docker = client(&stack).await;
    assert_eq!(docker.ping().await.unwrap(), "OK");
    let (max, min) = api_versions();
    // bollard speaks up to its own default version (1.49 for 0.19): the lower of the two.
    let own = bollard::API_DEFAULT_VERSION;
    let parse = |v: &str| -> (usize, usize) {
        let (a, b) = v.split_once('.').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let both = parse(&max).min((own.major_version, own.minor_version));
    assert_eq!(
        docker.client_version().to_string(),
        format!("{}.{}", both.0, both.1),
        "bollard negotiated down to the version both speak"
    );
    let v = docker.version().await.unwrap();
    assert_eq!(v.api_version.as_deref(), Some(max.as_str()), "{v:?}");
    assert_eq!(v.min_api_version.as_deref(), Some(min.as_str()), "{v:?}");
    assert_eq!(v.os.as_deref(), Some("linux"));
    assert_eq!(v.arch.as_deref(), Some(fixtures::host_arch()));
    let components: Vec<String> = v
        .components
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(components.contains(&"Engine".to_string()), "{components:?}");
    stop(stack).await;
}

#[tokio::test]
async fn ping_headers_carry_the_api_version() {
    let stack = start().await;
    let (status, headers, body) =
        support::unix_request(&stack.socket, "GET", "/_ping", &[], None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, b"OK");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("api-version"), Some(api_versions().0));
    assert_eq!(header("ostype").as_deref(), Some("linux"));
    let (status, headers, _) =
        support::unix_request(&stack.socket, "HEAD", "/_ping", &[], None).unwrap();
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, _)| k == "api-version"));
    stop(stack).await;
}

#[tokio::test]
async fn bollard_pulls_lists_and_inspects_images() {
    let registry = tokio::task::spawn_blocking(Registry::start).await.unwrap();
    let n = format!("bollard-{}", std::process::id());
    let (registry, pushed) = tokio::task::spawn_blocking(move || {
        let p = fixtures::push_image(
            &registry,
            &fixtures::schema2(&n),
            "fixtures/bollard",
            "v1",
            PushFormat::DockerV2S2,
        );
        (registry, p)
    })
    .await
    .unwrap();
    let stack = start().await;
    let docker = client(&stack).await;

    let options = CreateImageOptionsBuilder::new()
        .from_image(&pushed.repository)
        .tag("v1")
        .build();
    let mut progress = docker.create_image(Some(options), None, None);
    let mut statuses = Vec::new();
    while let Some(item) = progress.next().await {
        let info = item.expect("pull progress");
        assert!(info.error_detail.is_none(), "{info:?}");
        if let Some(s) = info.status {
            statuses.push(s);
        }
    }
    assert!(
        statuses.contains(&format!(
            "Status: Downloaded newer image for {}",
            pushed.reference()
        )),
        "{statuses:?}"
    );
    assert!(statuses.contains(&format!("Digest: {}", pushed.manifest_digest)));

    // A reference filter also filters the names shown: `repo:v1` leaves out `repo@digest`.
    let list_by = |pattern: String| {
        let docker = docker.clone();
        async move {
            let mut filters = HashMap::new();
            filters.insert("reference", vec![pattern]);
            docker
                .list_images(Some(
                    ListImagesOptionsBuilder::new().filters(&filters).build(),
                ))
                .await
                .unwrap()
        }
    };
    let list = list_by(pushed.reference()).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].repo_tags, vec![pushed.reference()]);
    assert!(list[0].repo_digests.is_empty(), "{list:?}");
    let list = list_by(pushed.repository.clone()).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let summary = &list[0];
    assert_eq!(summary.id, pushed.id);
    assert_eq!(summary.repo_tags, vec![pushed.reference()]);
    assert_eq!(summary.repo_digests, vec![pushed.by_digest()]);
    assert_eq!(summary.size, pushed.size as i64);
    assert_eq!(summary.labels, pushed.labels.clone().into_iter().collect());
    assert_eq!(summary.created, 1_714_564_800);
    assert_eq!(summary.containers, -1);

    let all = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .unwrap();
    assert!(all.iter().any(|i| i.id == pushed.id));

    let inspect = docker.inspect_image(&pushed.reference()).await.unwrap();
    assert_eq!(inspect.id.as_deref(), Some(pushed.id.as_str()));
    assert_eq!(inspect.repo_tags, Some(vec![pushed.reference()]));
    assert_eq!(inspect.size, Some(pushed.size as i64));
    assert_eq!(
        inspect.root_fs.as_ref().and_then(|r| r.layers.clone()),
        Some(pushed.diff_ids.clone())
    );
    let config = inspect.config.expect("Config");
    assert_eq!(config.cmd, Some(pushed.cmd.clone()));
    assert_eq!(config.env, Some(pushed.env.clone()));
    let by_id = docker.inspect_image(&pushed.id).await.unwrap();
    assert_eq!(by_id.id, inspect.id);
    let short = &pushed.id["sha256:".len().."sha256:".len() + 12];
    assert_eq!(docker.inspect_image(short).await.unwrap().id, inspect.id);

    let history = docker.image_history(&pushed.reference()).await.unwrap();
    assert_eq!(history.len(), pushed.history.len());
    assert_eq!(history[0].id, pushed.id);

    match docker.inspect_image("wharf-no-such-image").await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        }) => {
            assert_eq!(status_code, 404);
            let expected = "No such image: wharf-no-such-image:latest";
            if support::reference_host().is_some() {
                // dockerd 20.10 prefixed it with "no such image: NAME: ".
                assert!(message.ends_with(expected), "{message}");
            } else {
                assert_eq!(message, expected);
            }
        }
        other => panic!("expected a 404: {other:?}"),
    }
    drop(registry);
    stop(stack).await;
}

/// `(status, message)` of a request that must fail with a JSON `{"message": ...}` body.
fn error_of(stack: &Stack, method: &str, path: &str) -> (u16, String) {
    let (status, headers, body) =
        support::unix_request(&stack.socket, method, path, &[], None).unwrap();
    let ct = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{method} {path}: content-type {ct:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    let message = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {path}: no message in {v}"))
        .to_string();
    (status, message)
}

#[tokio::test]
async fn malformed_requests_get_json_messages_and_dockerd_status_codes() {
    if support::skip_on_reference("dockerd 20.10 predates the texts and codes of API 1.45") {
        return;
    }
    let stack = start().await;
    let (max, _) = api_versions();
    let s = tokio::task::spawn_blocking(move || {
        let checks = [
            (
                "GET",
                "/v1.45/images/wharf-no-such-image/json".to_string(),
                404,
                "No such image: wharf-no-such-image:latest".to_string(),
            ),
            (
                "DELETE",
                "/images/wharf-no-such-image:v9".to_string(),
                404,
                "No such image: wharf-no-such-image:v9".to_string(),
            ),
            (
                "GET",
                "/images/json?filters=%7B%22color%22%3A%5B%22blue%22%5D%7D".to_string(),
                400,
                "invalid filter 'color'".to_string(),
            ),
            (
                "GET",
                "/v1.99/version".to_string(),
                400,
                format!("client version 1.99 is too new. Maximum supported API version is {max}"),
            ),
            (
                "GET",
                "/v1.45/no-such-endpoint".to_string(),
                404,
                "page not found".to_string(),
            ),
        ];
        for (method, path, status, message) in checks {
            let (got_status, got_message) = error_of(&stack, method, &path);
            assert_eq!(
                (got_status, got_message.as_str()),
                (status, message.as_str()),
                "{method} {path}"
            );
        }
        // A filter that is not JSON at all.
        let (status, _) = error_of(&stack, "GET", "/images/json?filters=not-json");
        assert_eq!(status, 400);
        stack
    })
    .await
    .unwrap();
    stop(s).await;
}

#[tokio::test]
async fn api_versions_before_1_23_get_plain_text_errors() {
    // dockerd writes errors as JSON only for API 1.23 and later; older clients get text.
    let stack = start().await;
    let (_, min) = api_versions();
    let s = tokio::task::spawn_blocking(move || {
        let (status, _, body) =
            support::unix_request(&stack.socket, "GET", "/v1.5/version", &[], None).unwrap();
        assert_eq!(status, 400);
        assert_eq!(
            String::from_utf8_lossy(&body).trim(),
            format!(
                "client version 1.5 is too old. Minimum supported API version is {min}, please upgrade your client to a newer version"
            )
        );
        stack
    })
    .await
    .unwrap();
    stop(s).await;
}

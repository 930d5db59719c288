//! The swarm commands and `GET /distribution/{name}/json`, with the real docker CLI and HTTP
//! against `wharf up`. Expected are a dockerd's answers when it is not part of a swarm, and its
//! distribution descriptors, as recorded from a private dockerd 20.10 (moby 28's
//! `daemon/cluster` and distribution router answer the same).
//!
//! `WHARF_E2E_REFERENCE_HOST=unix:///path/docker.sock cargo test --test swarm_distribution`
//! runs them against a real dockerd; what Wharf does where dockerd would start a swarm is
//! skipped there.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use support::fixtures::{self, ImageSpec, PushFormat, Pushed};
use support::{DockerCli, Registry, Stack};

const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
const NOT_IN_A_SWARM: &str = "This node is not part of a swarm";

/// Unique fixture names per test, so parallel tests against one reference engine never share IDs.
fn name(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// (status, JSON body) of `method path` on the engine's API socket.
fn api(stack: &Stack, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, _, body) =
        support::unix_request(&stack.socket, method, path, headers, None).unwrap();
    let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: {status} without JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, body)
}

/// `docker ARGS` fails with exit 1 and prints `Error response from daemon: <message>`.
#[track_caller]
fn refused(docker: &DockerCli, args: &[&str], message: &str) {
    let out = docker.run(args).failed();
    assert_eq!(out.code, Some(1), "docker {}: {out}", args.join(" "));
    assert_eq!(
        out.stderr.trim_end(),
        format!("Error response from daemon: {message}"),
        "docker {}: {out}",
        args.join(" ")
    );
    assert_eq!(out.stdout, "", "docker {}: {out}", args.join(" "));
}

#[test]
fn swarm_commands_answer_as_a_dockerd_in_no_swarm() {
    let stack = Stack::start();
    let docker = stack.docker();

    for args in [
        &["node", "ls"][..],
        &["node", "rm", "n1"],
        &["service", "ls"],
        &["service", "ps", "web"],
        &["service", "rm", "web"],
        &["secret", "ls"],
        &["config", "ls"],
        &["swarm", "update", "--autolock"],
        &["stack", "ls"],
    ] {
        refused(&docker, args, NOT_A_MANAGER);
    }
    // Inspections print the empty list they gathered, then the error.
    let out = docker.run(&["service", "inspect", "web"]).failed();
    assert_eq!(out.stdout, "[]\n", "{out}");
    assert_eq!(
        out.stderr.trim_end(),
        format!("Error response from daemon: {NOT_A_MANAGER}"),
        "{out}"
    );
    let out = docker.run(&["swarm", "unlock-key"]).failed();
    assert_eq!(
        out.stderr.trim_end(),
        format!("could not fetch unlock key: Error response from daemon: {NOT_A_MANAGER}"),
        "{out}"
    );
    refused(&docker, &["swarm", "leave"], NOT_IN_A_SWARM);
    refused(&docker, &["swarm", "leave", "--force"], NOT_IN_A_SWARM);

    let out = docker.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(out.stdout.trim(), "inactive", "{out}");
    let out = docker.ok(&["info", "--format", "{{json .Swarm}}"]);
    let swarm: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        swarm,
        json!({"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
               "ControlAvailable": false, "Error": "", "RemoteManagers": null}),
        "{out}"
    );
    let out = docker.ok(&["info"]);
    assert!(out.stdout.contains(" Swarm: inactive\n"), "{out}");
    // The CLI reads the node's state from /info and refuses by itself.
    let out = docker.run(&["swarm", "unlock"]).failed();
    assert_eq!(
        out.stderr.trim_end(),
        "Error: This node is not part of a swarm",
        "{out}"
    );

    // The API, with and without a version prefix.
    let unavailable = |m: &str| (503, json!({ "message": m }));
    for (method, path) in [
        ("GET", "/swarm"),
        ("GET", "/v1.41/swarm"),
        ("GET", "/swarm/unlockkey"),
        ("GET", "/v1.41/nodes"),
        ("GET", "/services"),
        ("GET", "/tasks"),
        ("GET", "/v1.41/tasks/abc"),
        ("GET", "/secrets"),
        ("GET", "/configs/abc"),
        ("DELETE", "/v1.41/services/abc"),
    ] {
        assert_eq!(
            api(&stack, method, path, &[]),
            unavailable(NOT_A_MANAGER),
            "{method} {path}"
        );
    }
    assert_eq!(
        api(&stack, "POST", "/v1.41/swarm/leave?force=1", &[]),
        unavailable(NOT_IN_A_SWARM)
    );
    // The request is read before the refusal: an update must name the swarm's version.
    let (status, _, body) = support::unix_request(
        &stack.socket,
        "POST",
        "/v1.41/swarm/update",
        &[("Content-Type", "application/json")],
        Some(b"{}"),
    )
    .unwrap();
    assert_eq!(
        (status, serde_json::from_slice::<Value>(&body).unwrap()),
        (
            400,
            json!({"message": "invalid swarm version '': strconv.ParseUint: parsing \"\": invalid syntax"})
        )
    );

    if support::skip_on_reference(
        "dockerd would start or join a swarm; 20.10 has no Swarm header on /_ping",
    ) {
        return;
    }
    refused(
        &docker,
        &["swarm", "init"],
        "This node cannot start a swarm: Wharf does not support swarm mode",
    );
    refused(
        &docker,
        &[
            "swarm",
            "join",
            "--token",
            "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx",
            "127.0.0.1:2377",
        ],
        "This node cannot join a swarm: Wharf does not support swarm mode",
    );
    let (_, headers, _) = support::unix_request(&stack.socket, "GET", "/_ping", &[], None).unwrap();
    assert!(
        headers.contains(&("swarm".to_string(), "inactive".to_string())),
        "{headers:?}"
    );
}

/// `GET /distribution/{reference}/json` with `headers`.
fn distribution(stack: &Stack, reference: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    api(
        stack,
        "GET",
        &format!("/v1.41/distribution/{reference}/json"),
        headers,
    )
}

/// What dockerd answers for `pushed`: the manifest the registry serves (its size is that of
/// the registry's bytes) with `platforms`.
fn descriptor(pushed: &Pushed, media_type: &str, platforms: Value) -> Value {
    json!({
        "Descriptor": {
            "mediaType": media_type,
            "digest": pushed.manifest_digest,
            "size": manifest_size(pushed),
        },
        "Platforms": platforms,
    })
}

/// The size of the manifest as the registry stores it.
fn manifest_size(pushed: &Pushed) -> usize {
    let (registry, repository) = pushed.repository.split_once('/').unwrap();
    let (status, _, body) = support::http_get(
        registry,
        &format!("/v2/{repository}/manifests/{}", pushed.manifest_digest),
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.oci.image.manifest.v1+json, \
             application/vnd.oci.image.index.v1+json",
        )],
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(support::sha256(&body), pushed.manifest_digest);
    body.len()
}

/// A platform as dockerd writes it (image-spec's JSON).
fn platform(spec: &ImageSpec) -> Value {
    let mut p = json!({"architecture": spec.architecture, "os": spec.os});
    if let Some(v) = &spec.variant {
        p["variant"] = json!(v);
    }
    p
}

#[test]
fn distribution_inspect_describes_what_the_registry_serves() {
    let registry = Registry::start();
    let n = name("distribution");
    let single = fixtures::oci(&n);
    let schema2 = fixtures::push_image(
        &registry,
        &single,
        "dist/schema2",
        "v1",
        PushFormat::DockerV2S2,
    );
    let oci = fixtures::push_image(&registry, &single, "dist/oci", "v1", PushFormat::Oci);
    let specs = fixtures::multi_platform(&n);
    let (list, _) = fixtures::push_index(
        &registry,
        &specs,
        "dist/multi",
        "latest",
        PushFormat::DockerList,
    );
    let (index, _) = fixtures::push_index(
        &registry,
        &specs,
        "dist/index",
        "latest",
        PushFormat::OciIndex,
    );
    let stack = Stack::start();

    // A Docker image manifest: its config's platform.
    let (status, body) = distribution(&stack, &schema2.reference(), &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        descriptor(
            &schema2,
            "application/vnd.docker.distribution.manifest.v2+json",
            json!([platform(&single)])
        )
    );
    // By digest, the same.
    let (status, by_digest) = distribution(&stack, &schema2.by_digest(), &[]);
    assert_eq!((status, &by_digest), (200, &body));

    // An OCI image manifest: dockerd names no platform for one.
    let (status, body) = distribution(&stack, &oci.reference(), &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        descriptor(
            &oci,
            "application/vnd.oci.image.manifest.v1+json",
            Value::Null
        )
    );

    // A manifest list and an OCI index: every entry's platform, in order; a reference without
    // a tag means `latest`.
    let platforms = Value::Array(specs.iter().map(platform).collect());
    let (status, body) = distribution(&stack, &list.repository, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        descriptor(
            &list,
            "application/vnd.docker.distribution.manifest.list.v2+json",
            platforms.clone()
        )
    );
    let (status, body) = distribution(&stack, &index.reference(), &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        descriptor(&index, "application/vnd.oci.image.index.v1+json", platforms)
    );

    // What is not there.
    let (status, body) = distribution(&stack, &format!("{}:nope", schema2.repository), &[]);
    assert_eq!(
        (status, body),
        (
            404,
            json!({"message": "manifest unknown: manifest unknown"})
        )
    );
    // docker-registry answers an unknown repository's manifest as an unknown manifest too.
    let (status, body) = distribution(&stack, &format!("{}/dist/none:v1", registry.host), &[]);
    assert_eq!(
        (status, body),
        (
            404,
            json!({"message": "manifest unknown: manifest unknown"})
        )
    );
    let (status, body) = distribution(&stack, &"a".repeat(64), &[]);
    assert_eq!(
        (status, body),
        (
            500,
            json!({"message": "no manifest found for full image ID"})
        )
    );
}

#[test]
fn distribution_inspect_uses_the_callers_credentials_and_names_unreachable_registries() {
    let registry = Registry::start_basic("dist", "dist-pass");
    let n = name("distribution-auth");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::oci(&n),
        "dist/private",
        "v1",
        PushFormat::DockerV2S2,
    );
    let stack = Stack::start();

    // Without credentials the HEAD of the tag meets the registry's challenge (dockerd's 500).
    let (status, body) = distribution(&stack, &pushed.reference(), &[]);
    assert_eq!(
        (status, body),
        (
            500,
            json!({"message": format!(
                "Head \"http://{}/v2/dist/private/manifests/v1\": no basic auth credentials",
                registry.host
            )})
        )
    );
    let header = |password: &str| {
        base64::engine::general_purpose::URL_SAFE.encode(
            json!({"username": "dist", "password": password, "serveraddress": registry.host})
                .to_string(),
        )
    };
    let (status, body) = distribution(
        &stack,
        &pushed.reference(),
        &[("X-Registry-Auth", &header("wrong"))],
    );
    assert_eq!(
        (status, body),
        (
            401,
            json!({"message": "unauthorized: authentication required"})
        )
    );
    let (status, body) = distribution(
        &stack,
        &pushed.reference(),
        &[("X-Registry-Auth", &header("dist-pass"))],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["Descriptor"]["digest"],
        pushed.manifest_digest.as_str()
    );

    // A loopback port nothing listens on: https is tried, then http (loopback is insecure).
    let host = format!("127.0.0.1:{}", support::free_port());
    let (status, body) = distribution(&stack, &format!("{host}/dist/x:v1"), &[]);
    assert_eq!(
        (status, body),
        (
            500,
            json!({"message": format!("Get \"http://{host}/v2/\": dial tcp {host}: connect: connection refused")})
        )
    );
}

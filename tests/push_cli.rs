//! `docker push` with the real docker CLI against `wharf up` and real registries: the image
//! comes back the same (ID, output), a second push finds every layer, another repository of
//! the same registry mounts them, and a registry that wants a password refuses a push without
//! one in dockerd 20.10's words (moby `distribution/push_v2.go`).

mod support;

use support::fixtures::{self, PushFormat};
use support::{Output, Registry, Stack};

const USER: &str = "pusher";
const PASSWORD: &str = "push-secret";

fn name(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// The last status of each layer (`<id>: <status>`) in a push's output; without a terminal
/// the CLI prints every status on its own line.
fn layer_lines(out: &Output) -> Vec<String> {
    let mut last: Vec<(String, String)> = Vec::new();
    for line in out.stdout.lines() {
        let Some((id, status)) = line.split_once(": ") else {
            continue;
        };
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        match last.iter_mut().find(|(i, _)| i == id) {
            Some(entry) => entry.1 = status.to_string(),
            None => last.push((id.to_string(), status.to_string())),
        }
    }
    last.into_iter()
        .map(|(id, s)| format!("{id}: {s}"))
        .collect()
}

#[test]
fn push_after_login_comes_back_the_same_and_finds_its_layers_the_second_time() {
    let source = Registry::start();
    let pushed = fixtures::push_image(
        &source,
        &fixtures::schema2(&name("push")),
        "fixtures/push",
        "v1",
        PushFormat::DockerV2S2,
    );
    let target = Registry::start_basic(USER, PASSWORD);
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &pushed.reference()]);
    // A committed layer is stored uncompressed: it goes out gzip-compressed.
    docker.ok(&[
        "run",
        "--name",
        "marker",
        &pushed.reference(),
        "sh",
        "-c",
        "echo pushed-marker > /marker",
    ]);
    let image = format!("{}/app/pushed:v1", target.host);
    docker.ok(&["commit", "marker", &image]);
    let id = docker.inspect(&image)["Id"].clone();
    docker.login(&target.host, USER, PASSWORD);

    let out = docker.ok(&["push", &image]);
    assert!(
        out.stdout.contains(&format!(
            "The push refers to repository [{}/app/pushed]",
            target.host
        )),
        "{out}"
    );
    let lines = layer_lines(&out);
    assert_eq!(lines.len(), 4, "one line per layer: {out}");
    assert!(lines.iter().all(|l| l.ends_with(": Pushed")), "{out}");
    let last = out.stdout.lines().last().unwrap_or("").to_string();
    assert!(
        last.starts_with("v1: digest: sha256:") && last.contains(" size: "),
        "{out}"
    );

    // `docker images --digests` shows the pushed digest.
    let digest = last.split_whitespace().nth(2).unwrap_or("").to_string();
    let out = docker.ok(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}} {{.Digest}}",
    ]);
    assert!(
        out.stdout
            .contains(&format!("{}/app/pushed {digest}", target.host)),
        "{out}"
    );

    let again = docker.ok(&["push", &image]);
    let lines = layer_lines(&again);
    assert_eq!(lines.len(), 4, "{again}");
    assert!(
        lines.iter().all(|l| l.ends_with(": Layer already exists")),
        "{again}"
    );
    assert_eq!(again.stdout.lines().last(), Some(last.as_str()), "{again}");

    // The pushed image comes back with the same ID and the same files.
    docker.ok(&["rm", "marker"]);
    docker.ok(&["rmi", &image, &pushed.reference()]);
    docker.ok(&["pull", &image]);
    assert_eq!(docker.inspect(&image)["Id"], id);
    let out = docker.ok(&["run", "--rm", &image, "cat", "/marker"]);
    assert_eq!(out.stdout.trim(), "pushed-marker", "{out}");
}

#[test]
fn push_to_another_repository_of_the_registry_mounts_the_layers() {
    let registry = Registry::start_basic(USER, PASSWORD);
    let stack = Stack::start();
    let docker = stack.docker();
    docker.login(&registry.host, USER, PASSWORD);
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::schema2(&name("mount")),
        "fixtures/mount",
        "v1",
        PushFormat::DockerV2S2,
    );
    docker.ok(&["pull", &pushed.reference()]);
    let other = format!("{}/other/copy:v2", registry.host);
    docker.ok(&["tag", &pushed.reference(), &other]);
    let out = docker.ok(&["push", &other]);
    let lines = layer_lines(&out);
    assert_eq!(lines.len(), pushed.layer_blobs.len(), "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with(": Mounted from fixtures/mount")),
        "{out}"
    );
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("v2: digest: sha256:"),
        "{out}"
    );
}

#[test]
fn push_without_login_to_a_password_registry_says_no_basic_auth_credentials() {
    let source = Registry::start();
    let pushed = fixtures::push_image(
        &source,
        &fixtures::schema2(&name("nologin")),
        "fixtures/nologin",
        "v1",
        PushFormat::DockerV2S2,
    );
    let target = Registry::start_basic(USER, PASSWORD);
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &pushed.reference()]);
    let image = format!("{}/app/secret:v1", target.host);
    docker.ok(&["tag", &pushed.reference(), &image]);
    let out = docker.run(&["push", &image]).failed();
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stderr.trim(), "no basic auth credentials", "{out}");
}

#[test]
fn push_to_a_token_registry_after_login_is_pulled_back_by_another_engine() {
    let source = Registry::start();
    let pushed = fixtures::push_image(
        &source,
        &fixtures::schema2(&name("token")),
        "fixtures/token",
        "v1",
        PushFormat::DockerV2S2,
    );
    let target = Registry::start_token(USER, PASSWORD);
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &pushed.reference()]);
    let image = format!("{}/app/token:v3", target.host);
    docker.ok(&["tag", &pushed.reference(), &image]);
    docker.login(&target.host, USER, PASSWORD);
    let out = docker.ok(&["push", &image]);
    let lines = layer_lines(&out);
    assert_eq!(lines.len(), pushed.layer_blobs.len(), "{out}");
    assert!(lines.iter().all(|l| l.ends_with(": Pushed")), "{out}");

    let other = Stack::start();
    let fresh = other.docker();
    fresh.login(&target.host, USER, PASSWORD);
    fresh.ok(&["pull", &image]);
    assert_eq!(fresh.inspect(&image)["Id"], pushed.id.as_str());
    let expected = docker.ok(&[
        "run",
        "--rm",
        &pushed.reference(),
        "cat",
        "/opt/app/config.json",
    ]);
    let out = fresh.ok(&["run", "--rm", &image, "cat", "/opt/app/config.json"]);
    assert_eq!(out.stdout, expected.stdout, "{out}");
}

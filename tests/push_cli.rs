//! `docker push` with the real docker CLI against `wharf up` and real registries: the image
//! comes back the same (ID, output), a second push finds every layer, another repository of
//! the same registry mounts them, and a registry that wants a password refuses a push without
//! one in dockerd 20.10's words (moby `distribution/push_v2.go`). An image built and pushed by
//! Wharf is pulled and run by a private dockerd 20.10; `docker push --all-tags` pushes every tag
//! of a repository as dockerd does.
//!
//! `WHARF_E2E_REFERENCE_HOST=unix:///path/docker.sock cargo test --test push_cli` runs the tests
//! that need no Wharf processes against that engine instead (see tests/README.md).

mod support;

use std::path::Path;
use std::time::Duration;

use support::dockerd::Dockerd;
use support::fixtures::{self, ImageSpec, PushFormat};
use support::{DockerCli, Output, Registry, Stack};

const USER: &str = "pusher";
const PASSWORD: &str = "push-secret";

fn name(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// A fixture image in a plain source registry (kept running while bound), pulled into a new
/// Wharf stack.
struct Pulled {
    _source: Registry,
    pushed: fixtures::Pushed,
    stack: Stack,
}

fn pulled_fixture(test: &str) -> Pulled {
    let source = Registry::start();
    let pushed = fixtures::push_image(
        &source,
        &fixtures::schema2(&name(test)),
        &format!("fixtures/{test}"),
        "v1",
        PushFormat::DockerV2S2,
    );
    let stack = Stack::start();
    stack.docker().ok(&["pull", &pushed.reference()]);
    Pulled {
        _source: source,
        pushed,
        stack,
    }
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
    let Pulled {
        _source,
        pushed,
        stack,
    } = pulled_fixture("push");
    let target = Registry::start_basic(USER, PASSWORD);
    let docker = stack.docker();
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

    // To a registry that has none of it: the committed layer, whose compressed digest is now
    // known, is compressed again for the upload, to the same bytes and so the same manifest.
    let elsewhere = Registry::start();
    let copy = format!("{}/app/pushed:v1", elsewhere.host);
    docker.ok(&["tag", &image, &copy]);
    let out = docker.ok(&["push", &copy]);
    let lines = layer_lines(&out);
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines.iter().all(|l| l.ends_with(": Pushed")), "{out}");
    assert_eq!(out.stdout.lines().last(), Some(last.as_str()), "{out}");
    docker.ok(&["rmi", &copy]);

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
    let Pulled {
        _source,
        pushed,
        stack,
    } = pulled_fixture("nologin");
    let target = Registry::start_basic(USER, PASSWORD);
    let docker = stack.docker();
    let image = format!("{}/app/secret:v1", target.host);
    docker.ok(&["tag", &pushed.reference(), &image]);
    let out = docker.run(&["push", &image]).failed();
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stderr.trim(), "no basic auth credentials", "{out}");
}

#[test]
fn push_to_a_token_registry_after_login_is_pulled_back_by_another_engine() {
    let Pulled {
        _source,
        pushed,
        stack,
    } = pulled_fixture("token");
    let target = Registry::start_token(USER, PASSWORD);
    let docker = stack.docker();
    let image = format!("{}/app/token:v3", target.host);
    docker.ok(&["tag", &pushed.reference(), &image]);
    docker.login(&target.host, USER, PASSWORD);
    let out = docker.ok(&["push", &image]);
    let lines = layer_lines(&out);
    assert_eq!(lines.len(), pushed.layer_blobs.len(), "{out}");
    assert!(lines.iter().all(|l| l.ends_with(": Pushed")), "{out}");
    // A mount needs a token that also grants `pull` on the repository mounted from: the token
    // server gives exactly the scopes asked for, so a push token without it would upload.
    let sibling = format!("{}/app/sibling:v4", target.host);
    docker.ok(&["tag", &pushed.reference(), &sibling]);
    let out = docker.ok(&["push", &sibling]);
    let lines = layer_lines(&out);
    assert_eq!(lines.len(), pushed.layer_blobs.len(), "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with(": Mounted from app/token")),
        "{out}"
    );

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

// ---------------------------------------------------------------------------------------------
// Built by Wharf, pulled and run by dockerd

/// `docker login -u USER --password-stdin REGISTRY`, which must succeed.
#[track_caller]
fn docker_login(docker: &DockerCli, registry: &str) {
    let out = support::run(
        docker.command(&["login", "-u", USER, "--password-stdin", registry]),
        Some(format!("{PASSWORD}\n").into_bytes()),
        Duration::from_secs(60),
    )
    .ok();
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
}

/// `docker build -t TAG .` in `ctx` with the legacy builder, which must succeed.
#[track_caller]
fn build(docker: &DockerCli, ctx: &Path, tag: &str) -> Output {
    let mut cmd = docker.command(&["build", "-t", tag, "."]);
    cmd.current_dir(ctx).env("DOCKER_BUILDKIT", "0");
    support::run(cmd, None, support::DOCKER_TIMEOUT).ok()
}

/// `docker image inspect -f FORMAT IMAGE`, trimmed.
#[track_caller]
fn inspect_format(docker: &DockerCli, format: &str, image: &str) -> String {
    docker
        .ok(&["image", "inspect", "-f", format, image])
        .stdout
        .trim()
        .to_string()
}

/// What a push printed for one tag: the layers' last statuses (`<short diff ID>: <status>`, in
/// the order they first appear) and the `<tag>: digest: <digest> size: <size>` line after them.
#[derive(Debug)]
struct TagPush {
    tag: String,
    digest: String,
    size: u64,
    layers: Vec<(String, String)>,
}

/// The tags a push printed a digest for, in order; the layer lines before each digest line
/// belong to that tag.
fn tag_pushes(out: &Output) -> Vec<TagPush> {
    let mut pushes = Vec::new();
    let mut layers: Vec<(String, String)> = Vec::new();
    for line in out.stdout.lines() {
        let Some((head, rest)) = line.split_once(": ") else {
            continue;
        };
        if let Some(rest) = rest.strip_prefix("digest: ") {
            let (digest, size) = rest
                .split_once(" size: ")
                .unwrap_or_else(|| panic!("a digest line without a size: {line:?}\n{out}"));
            assert!(
                digest.len() == 71
                    && digest.starts_with("sha256:")
                    && digest[7..].bytes().all(|b| b.is_ascii_hexdigit()),
                "{line:?}"
            );
            pushes.push(TagPush {
                tag: head.to_string(),
                digest: digest.to_string(),
                size: size.parse().unwrap_or_else(|_| panic!("size of {line:?}")),
                layers: std::mem::take(&mut layers),
            });
            continue;
        }
        if head.len() != 12 || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        match layers.iter_mut().find(|(id, _)| id == head) {
            Some(entry) => entry.1 = rest.to_string(),
            None => layers.push((head.to_string(), rest.to_string())),
        }
    }
    assert!(
        layers.is_empty(),
        "layer lines after the last digest line: {layers:?}\n{out}"
    );
    pushes
}

/// The short IDs (`sha256:` dropped, 12 hex digits) the CLI shows for diff IDs, sorted.
fn short_ids<'a>(diff_ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut ids: Vec<String> = diff_ids
        .into_iter()
        .map(|d| d.trim_start_matches("sha256:")[..12].to_string())
        .collect();
    ids.sort();
    ids
}

/// A password registry, an image built by Wharf's legacy builder and pushed there after `docker
/// login`; a private dockerd 20.10 is refused without a login, then logs in, pulls it and runs it:
/// the same output, the same image ID, and the digest Wharf's push printed as its repo digest.
#[test]
fn an_image_built_and_pushed_by_wharf_is_pulled_and_run_by_dockerd_after_login() {
    if support::skip_on_reference("compares Wharf with a dockerd of its own") {
        return;
    }
    let source = Registry::start();
    let base = fixtures::push_image(
        &source,
        &ImageSpec::busybox_like(&name("base"), fixtures::host_arch(), vec![]),
        "fixtures/base",
        "v1",
        PushFormat::DockerV2S2,
    );
    let target = Registry::start_basic(USER, PASSWORD);
    let (dockerd, stack) = std::thread::scope(|s| {
        let dockerd = s.spawn(Dockerd::start);
        let stack = Stack::start();
        (dockerd.join().unwrap(), stack)
    });

    // Wharf: log in, build, tag, push.
    let wharf = stack.docker();
    docker_login(&wharf, &target.host);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\n\
             ENV GREETING=\"hello from the build\"\n\
             LABEL org.example.pushed=by-wharf\n\
             RUN echo \"built with $GREETING\" > /built.txt\n\
             CMD [\"sh\", \"-c\", \"cat /built.txt; echo greeting=$GREETING; ls /bin\"]\n",
            base.reference()
        ),
    )
    .unwrap();
    let local = format!("built-{}:latest", std::process::id());
    build(&wharf, ctx.path(), &local);
    let image = format!("{}/app/built:v1", target.host);
    wharf.ok(&["tag", &local, &image]);
    let out = wharf.ok(&["push", &image]);
    assert!(
        out.stdout.contains(&format!(
            "The push refers to repository [{}/app/built]",
            target.host
        )),
        "{out}"
    );
    let pushes = tag_pushes(&out);
    assert_eq!(pushes.len(), 1, "one digest line: {out}");
    let pushed = &pushes[0];
    assert_eq!(pushed.tag, "v1", "{out}");
    // The base layer and the RUN step's layer, both uploaded.
    assert_eq!(pushed.layers.len(), 2, "{out}");
    assert!(pushed.layers.iter().all(|(_, s)| s == "Pushed"), "{out}");
    let wharf_id = inspect_format(&wharf, "{{.Id}}", &image);
    let wharf_layers: Vec<String> = serde_json::from_str::<Vec<String>>(&inspect_format(
        &wharf,
        "{{json .RootFS.Layers}}",
        &image,
    ))
    .unwrap();
    assert_eq!(
        short_ids(pushed.layers.iter().map(|(id, _)| id.as_str())),
        short_ids(wharf_layers.iter().map(String::as_str)),
        "the push names the image's layers by their diff IDs: {out}"
    );
    let wharf_run = wharf.ok(&["run", "--rm", &image]);
    assert!(
        wharf_run
            .stdout
            .starts_with("built with hello from the build\ngreeting=hello from the build\n"),
        "{wharf_run}"
    );

    // dockerd: refused without a login, in its words.
    let other = DockerCli::new(&dockerd.host);
    let refused = other.run(&["pull", &image]).failed();
    assert_eq!(refused.code, Some(1), "{refused}");
    assert_eq!(
        refused.stderr.trim(),
        format!(
            "Error response from daemon: Head \"http://{}/v2/app/built/manifests/v1\": no basic auth credentials",
            target.host
        ),
        "{refused}"
    );

    // Logged in, it pulls the manifest Wharf pushed and runs the image the same.
    docker_login(&other, &target.host);
    let pulled = other.ok(&["pull", &image]);
    assert!(
        pulled
            .stdout
            .lines()
            .any(|l| l == format!("Digest: {}", pushed.digest)),
        "dockerd pulls the digest Wharf's push printed ({}): {pulled}",
        pushed.digest
    );
    let run = other.ok(&["run", "--rm", &image]);
    assert_eq!(run.stdout, wharf_run.stdout, "{run}");
    assert_eq!(inspect_format(&other, "{{.Id}}", &image), wharf_id);
    let repo_digest = format!("{}/app/built@{}", target.host, pushed.digest);
    let digests: Vec<String> =
        serde_json::from_str(&inspect_format(&other, "{{json .RepoDigests}}", &image)).unwrap();
    assert_eq!(digests, vec![repo_digest.clone()]);
    let digests: Vec<String> =
        serde_json::from_str(&inspect_format(&wharf, "{{json .RepoDigests}}", &image)).unwrap();
    assert!(digests.contains(&repo_digest), "{digests:?}");
    assert_eq!(
        inspect_format(&other, "{{json .Config.Labels}}", &image),
        inspect_format(&wharf, "{{json .Config.Labels}}", &image)
    );
    assert_eq!(
        inspect_format(
            &other,
            "{{index .Config.Labels \"org.example.pushed\"}}",
            &image
        ),
        "by-wharf"
    );
    // The manifest as the registry serves it is what was pushed, `size:` its length.
    let (user, password) = target.credentials().unwrap();
    let manifest = manifest(&target, &user, &password, "app/built", "v1");
    assert_eq!(manifest.0, pushed.digest);
    assert_eq!(manifest.1.len() as u64, pushed.size);
}

// ---------------------------------------------------------------------------------------------
// docker push --all-tags

/// The manifest of `repo:reference` as the registry serves it: (its digest, its bytes); the
/// `Docker-Content-Digest` header must agree with the bytes.
#[track_caller]
fn manifest(
    registry: &Registry,
    user: &str,
    password: &str,
    repo: &str,
    reference: &str,
) -> (String, Vec<u8>) {
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let (status, headers, body) = support::http_get(
        &registry.host,
        &format!("/v2/{repo}/manifests/{reference}"),
        &[
            ("Authorization", &auth),
            (
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            ),
        ],
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let digest = support::sha256(&body);
    let header = headers
        .iter()
        .find(|(k, _)| k == "docker-content-digest")
        .map(|(_, v)| v.clone());
    assert_eq!(header.as_deref(), Some(digest.as_str()));
    (digest, body)
}

/// `GET /v2/<repo>/tags/list`, sorted.
fn registry_tags(registry: &Registry, user: &str, password: &str, repo: &str) -> Vec<String> {
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let (status, _, body) = support::http_get(
        &registry.host,
        &format!("/v2/{repo}/tags/list"),
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut tags: Vec<String> = list["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags
}

/// A busybox-like image of the base layer and one layer of its own.
fn two_layer_image(registry: &Registry, which: &str, seed: u64) -> fixtures::Pushed {
    let spec = ImageSpec::busybox_like(
        &name(which),
        fixtures::host_arch(),
        vec![(
            fixtures::app_layer(which, seed, 8 * 1024),
            "/bin/sh -c #(nop) COPY dir:app in /opt/app ",
        )],
    );
    fixtures::push_image(
        registry,
        &spec,
        &format!("fixtures/{which}"),
        "v1",
        PushFormat::DockerV2S2,
    )
}

/// `docker push --all-tags REPO` (the CLI sends an empty tag): dockerd 20.10 pushes the tags of
/// the repository in lexical order (moby's reference store sorts them), under one "The push
/// refers to repository" line; each tag lists its layers (`<short diff ID>: Preparing`, then
/// `Pushed` or `Layer already exists`) and ends with `<tag>: digest: sha256:... size: N`. A layer
/// an earlier tag of the same push uploaded "already exists". Seen with dockerd 20.10.24 (two
/// images sharing the base layer, tagged v1, v2 and v3 = v1):
///
/// ```text
/// The push refers to repository [127.0.0.1:25917/demo/app]
/// ab8a50607843: Preparing
/// 2eccc241f353: Preparing
/// 2eccc241f353: Pushed
/// ab8a50607843: Pushed
/// v1: digest: sha256:8e69257b52bb4949fbd9161501a925ec0774528fc7f97360549908211decc473 size: 731
/// fe5d48da2f59: Preparing
/// 2eccc241f353: Preparing
/// 2eccc241f353: Layer already exists
/// fe5d48da2f59: Pushed
/// v2: digest: sha256:e7476ee1926d1c0574e429899c9ea948c3819637d40ecf5e6bd8fade2f7242a1 size: 731
/// ab8a50607843: Preparing
/// 2eccc241f353: Preparing
/// ab8a50607843: Layer already exists
/// 2eccc241f353: Layer already exists
/// v3: digest: sha256:8e69257b52bb4949fbd9161501a925ec0774528fc7f97360549908211decc473 size: 731
/// ```
///
/// (the order of a tag's final statuses varies: layers go up side by side). Without `-a` and
/// without a tag the CLI says "Using default tag: latest" and only `:latest` goes.
#[test]
fn push_all_tags_pushes_every_tag_of_the_repository_in_dockerds_order() {
    let source = Registry::start();
    let a = two_layer_image(&source, "all-a", 11);
    let b = two_layer_image(&source, "all-b", 12);
    assert_eq!(
        a.diff_ids[0], b.diff_ids[0],
        "the images share the base layer"
    );
    assert_ne!(a.id, b.id);
    let target = Registry::start_basic(USER, PASSWORD);
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &a.reference()]);
    docker.ok(&["pull", &b.reference()]);
    let repo_path = format!("app/all-{}", std::process::id());
    let repo = format!("{}/{repo_path}", target.host);
    // Lexical order (dockerd's): latest, v1, v10, v9; latest and v10 are b, v1 and v9 are a.
    let tags = [("v1", &a), ("v10", &b), ("v9", &a), ("latest", &b)];
    for (tag, image) in tags {
        docker.ok(&["tag", &image.reference(), &format!("{repo}:{tag}")]);
    }
    // Another repository of the registry is not pushed.
    docker.ok(&[
        "tag",
        &a.reference(),
        &format!("{}/app/elsewhere:v1", target.host),
    ]);
    docker.login(&target.host, USER, PASSWORD);

    let out = docker.ok(&["push", "--all-tags", &repo]);
    let refers = format!("The push refers to repository [{repo}]");
    assert_eq!(out.stdout.lines().next(), Some(refers.as_str()), "{out}");
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("The push refers to"))
            .count(),
        1,
        "{out}"
    );
    assert!(!out.stdout.contains("Using default tag"), "{out}");
    let pushes = tag_pushes(&out);
    let order: Vec<&str> = pushes.iter().map(|p| p.tag.as_str()).collect();
    assert_eq!(order, ["latest", "v1", "v10", "v9"], "{out}");
    let image_of = |tag: &str| tags.iter().find(|(t, _)| *t == tag).unwrap().1;
    for (i, push) in pushes.iter().enumerate() {
        let image = image_of(&push.tag);
        assert_eq!(
            short_ids(push.layers.iter().map(|(id, _)| id.as_str())),
            short_ids(image.diff_ids.iter().map(String::as_str)),
            "{}: one line per layer of the image: {out}",
            push.tag
        );
        // Uploaded by an earlier tag of this push: "Layer already exists".
        let earlier: Vec<&String> = pushes[..i]
            .iter()
            .flat_map(|p| image_of(&p.tag).diff_ids.iter())
            .collect();
        for (id, status) in &push.layers {
            let diff_id = image.diff_ids.iter().find(|d| d[7..19] == *id).unwrap();
            let want = if earlier.contains(&diff_id) {
                "Layer already exists"
            } else {
                "Pushed"
            };
            assert_eq!(status, want, "{}: layer {id}: {out}", push.tag);
        }
    }
    let digest_of = |tag: &str| &pushes.iter().find(|p| p.tag == tag).unwrap().digest;
    assert_eq!(digest_of("latest"), digest_of("v10"), "{out}");
    assert_eq!(digest_of("v1"), digest_of("v9"), "{out}");
    assert_ne!(digest_of("v1"), digest_of("latest"), "{out}");

    // The registry holds every tag, each the manifest the push printed, of the right image.
    assert_eq!(
        registry_tags(&target, USER, PASSWORD, &repo_path),
        ["latest", "v1", "v10", "v9"]
    );
    for push in &pushes {
        let (digest, body) = manifest(&target, USER, PASSWORD, &repo_path, &push.tag);
        assert_eq!(digest, push.digest, "{}", push.tag);
        assert_eq!(body.len() as u64, push.size, "{}", push.tag);
        let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            m["config"]["digest"],
            image_of(&push.tag).id.as_str(),
            "{m}"
        );
    }
    let (status, _, _) = support::http_get(
        &target.host,
        "/v2/app/elsewhere/tags/list",
        &[(
            "Authorization",
            &format!("Basic {}", {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
            }),
        )],
    )
    .unwrap();
    assert_eq!(status, 404, "app/elsewhere was not pushed");

    // Without -a and without a tag: :latest only, every layer already there.
    let again = docker.ok(&["push", &repo]);
    let lines: Vec<&str> = again.stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("Using default tag: latest"),
        "{again}"
    );
    assert_eq!(lines.get(1).copied(), Some(refers.as_str()), "{again}");
    let pushes_again = tag_pushes(&again);
    assert_eq!(pushes_again.len(), 1, "{again}");
    assert_eq!(pushes_again[0].tag, "latest", "{again}");
    assert_eq!(&pushes_again[0].digest, digest_of("latest"), "{again}");
    assert!(
        pushes_again[0]
            .layers
            .iter()
            .all(|(_, s)| s == "Layer already exists"),
        "{again}"
    );
}

/// dockerd 20.10's refusals: `push -a` of a repository with no image ("An image does not exist
/// locally with the tag: REPO", after "The push refers to repository [REPO]"), the same without
/// `-a` (the CLI's "Using default tag: latest" first), a repository with only a digest reference
/// ("no tags to push for REPO"), and `:latest` missing from a repository that has other tags
/// ("tag does not exist: REPO:latest"); exit code 1 each time.
#[test]
fn push_of_a_repository_without_tags_fails_as_dockerd_does() {
    let registry = Registry::start();
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::schema2(&name("notags")),
        "fixtures/notags",
        "v1",
        PushFormat::DockerV2S2,
    );
    let stack = Stack::start();
    let docker = stack.docker();
    // Every case runs; the mismatches are reported together.
    let mut wrong = Vec::new();
    let mut refused = |args: &[&str], stdout: &[&str], stderr: &str| {
        let out = docker.run(args);
        if out.code != Some(1)
            || out.stdout.lines().collect::<Vec<_>>() != stdout
            || out.stderr.trim() != stderr
        {
            wrong.push(format!(
                "docker {}: want exit 1, stdout {stdout:?}, stderr {stderr:?}; got {out}",
                args.join(" ")
            ));
        }
    };

    let none = format!("{}/app/none-{}", registry.host, std::process::id());
    let refers = format!("The push refers to repository [{none}]");
    let missing = format!("An image does not exist locally with the tag: {none}");
    refused(&["push", "-a", &none], &[refers.as_str()], &missing);
    refused(
        &["push", &none],
        &["Using default tag: latest", refers.as_str()],
        &missing,
    );

    // Pulled by digest: the repository has a digest reference and no tag.
    docker.ok(&["pull", &pushed.by_digest()]);
    let repo = &pushed.repository;
    let refers = format!("The push refers to repository [{repo}]");
    refused(
        &["push", "--all-tags", repo],
        &[refers.as_str()],
        &format!("no tags to push for {repo}"),
    );

    docker.ok(&["tag", &pushed.by_digest(), &format!("{repo}:other")]);
    refused(
        &["push", repo],
        &["Using default tag: latest", refers.as_str()],
        &format!("tag does not exist: {repo}:latest"),
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

//! The image half of Docker, tried as a user does: the real `docker` CLI against `wharf up`, images
//! built by the tests and pushed to a real registry. Expected texts are dockerd's.
//!
//! `WHARF_E2E_REFERENCE_HOST=unix:///path/docker.sock cargo test --test images_cli` runs the same
//! tests against a real dockerd (tests that need Wharf's flags or processes skip themselves).

mod support;

use std::time::Duration;

use support::fixtures::{self, PushFormat, Pushed};
use support::{human_size, strings, DockerCli, Registry, Stack, StackOptions};

/// Unique fixture names per test, so parallel tests against one reference engine never share IDs.
fn name(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

fn strings_of<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

/// Checks `docker image inspect` of `image` against what was pushed.
#[track_caller]
fn assert_inspect_matches(docker: &DockerCli, image: &str, pushed: &Pushed) -> serde_json::Value {
    let v = docker.inspect(image);
    assert_eq!(v["Id"], pushed.id.as_str(), "Id is the config digest");
    assert_eq!(
        strings(&v["RootFS"]["Layers"], false),
        pushed.diff_ids,
        "RootFS.Layers are the diff IDs"
    );
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert_eq!(strings(&v["Config"]["Cmd"], false), pushed.cmd);
    assert_eq!(strings(&v["Config"]["Env"], false), pushed.env);
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(v["Config"]["Labels"].clone()).expect("Labels");
    assert_eq!(labels, pushed.labels);
    assert_eq!(v["Architecture"], pushed.architecture.as_str());
    assert_eq!(v["Os"], "linux");
    assert_eq!(
        v["Size"].as_u64(),
        Some(pushed.size),
        "Size is the unpacked size: {v}"
    );
    assert_eq!(v["Created"], "2024-05-01T12:00:00Z");
    v
}

#[track_caller]
fn assert_history_matches(docker: &DockerCli, image: &str, pushed: &Pushed) {
    let out = docker.ok(&[
        "history",
        "--no-trunc",
        "--human=false",
        "--format",
        "{{.ID}}\t{{.CreatedBy}}\t{{.Size}}",
        image,
    ]);
    let rows: Vec<Vec<String>> = out
        .lines()
        .iter()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    // Newest first; a row that made a layer shows that layer's size.
    let mut sizes = pushed.layer_sizes.iter();
    let mut expected: Vec<(String, u64)> = pushed
        .history
        .iter()
        .map(|h| {
            let size = if h.empty_layer {
                0
            } else {
                *sizes.next().unwrap()
            };
            (h.created_by.clone(), size)
        })
        .collect();
    expected.reverse();
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per history entry: {out}"
    );
    for (i, (row, (created_by, size))) in rows.iter().zip(&expected).enumerate() {
        let id = if i == 0 {
            pushed.id.as_str()
        } else {
            "<missing>"
        };
        assert_eq!(row[0], id, "row {i} ID: {out}");
        assert_eq!(&row[1], created_by, "row {i} CREATED BY: {out}");
        assert_eq!(row[2], size.to_string(), "row {i} SIZE: {out}");
    }
}

#[test]
fn version_shows_client_and_server_with_api_1_45() {
    let stack = Stack::start();
    let docker = stack.docker();
    let out = docker.ok(&["version"]);
    assert!(out.stdout.contains("Client:"), "{out}");
    assert!(out.stdout.contains("Server:"), "{out}");
    let v: serde_json::Value = serde_json::from_str(
        &docker
            .ok(&["version", "--format", "{{json .Server}}"])
            .stdout,
    )
    .unwrap();
    assert_eq!(v["Os"], "linux", "{v}");
    assert_eq!(v["Arch"], fixtures::host_arch(), "{v}");
    if support::reference_host().is_none() {
        assert_eq!(v["ApiVersion"], "1.50", "{v}");
        assert_eq!(v["MinAPIVersion"], "1.24", "{v}");
    }
    let client: serde_json::Value = serde_json::from_str(
        &docker
            .ok(&["version", "--format", "{{json .Client}}"])
            .stdout,
    )
    .unwrap();
    // The CLI negotiated: the lower of its own newest version and the server's.
    let version = |s: &serde_json::Value| -> (u32, u32) {
        let s = s.as_str().unwrap_or_else(|| panic!("a version: {client}"));
        let (a, b) = s.split_once('.').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let newest = if client["DefaultAPIVersion"].is_string() {
        version(&client["DefaultAPIVersion"])
    } else {
        // CLIs before 25 show their own newest version here.
        version(&client["ApiVersion"])
    };
    let expected = newest.min(version(&v["ApiVersion"]));
    assert_eq!(version(&client["ApiVersion"]), expected, "{client} {v}");
}

#[test]
fn info_succeeds() {
    let stack = Stack::start();
    let docker = stack.docker();
    let out = docker.ok(&["info", "--format", "{{json .}}"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("docker info JSON");
    assert!(v["ServerErrors"].is_null(), "{v}");
    assert_eq!(v["OSType"], "linux", "{v}");
    assert_eq!(v["Architecture"], std::env::consts::ARCH, "{v}");
    assert!(v["Images"].as_u64().is_some(), "{v}");
    if support::reference_host().is_none() {
        assert_eq!(
            v["DockerRootDir"],
            stack.data_root.display().to_string(),
            "{v}"
        );
    }
    docker.ok(&["info"]);
}

#[test]
fn cli_says_it_cannot_connect_when_the_stack_is_stopped() {
    if support::skip_on_reference("stops the engine") {
        return;
    }
    let mut stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["version"]);
    let status = stack.stop().expect("wharf up ended");
    assert!(
        status.success(),
        "wharf up exits 0 on SIGTERM: {status:?}\n{}",
        stack.log()
    );
    assert!(stack.log().contains("Wharf stopped"), "{}", stack.log());
    let out = docker.run(&["images"]).failed();
    let expected = format!(
        "Cannot connect to the Docker daemon at {}. Is the docker daemon running?",
        stack.host
    );
    assert!(out.stderr.contains(&expected), "{out}");
}

#[test]
fn pull_schema2_multi_layer_image() {
    let registry = Registry::start();
    let n = name("schema2");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::schema2(&n),
        "fixtures/schema2",
        "v1",
        PushFormat::DockerV2S2,
    );
    assert_eq!(
        pushed.manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "skopeo pushed a schema2 manifest"
    );
    assert_eq!(pushed.diff_ids.len(), 3);
    let stack = Stack::start();
    let docker = stack.docker();
    let out = docker.ok(&["pull", &pushed.reference()]);
    assert!(
        out.stdout
            .contains(&format!("Digest: {}", pushed.manifest_digest)),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "Status: Downloaded newer image for {}",
            pushed.reference()
        )),
        "{out}"
    );
    assert_eq!(
        out.stdout.lines().last(),
        Some(pushed.reference().as_str()),
        "{out}"
    );

    // dockerd's progress, as the CLI prints it without a terminal: one line per layer, named by
    // the first 12 hex digits of its blob digest.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "v1: Pulling from fixtures/schema2", "{out}");
    for blob in &pushed.layer_blobs {
        let short = &blob["sha256:".len().."sha256:".len() + 12];
        assert!(
            lines.contains(&format!("{short}: Pull complete").as_str())
                || lines.contains(&format!("{short}: Already exists").as_str()),
            "no 'Pull complete' for layer {short}: {out}"
        );
    }

    let v = assert_inspect_matches(&docker, &pushed.reference(), &pushed);
    assert_eq!(strings(&v["RepoTags"], false), vec![pushed.reference()]);
    assert_eq!(strings(&v["RepoDigests"], false), vec![pushed.by_digest()]);

    let rows = docker.images(&[&pushed.repository]);
    assert_eq!(
        rows,
        vec![(
            pushed.repository.clone(),
            "v1".to_string(),
            pushed.id.clone(),
            human_size(pushed.size)
        )]
    );
    assert_history_matches(&docker, &pushed.reference(), &pushed);

    // Pulling again changes nothing.
    let again = docker.ok(&["pull", &pushed.reference()]);
    assert!(
        again.stdout.contains(&format!(
            "Status: Image is up to date for {}",
            pushed.reference()
        )),
        "{again}"
    );
}

#[test]
fn pull_oci_image_with_zstd_layers() {
    let registry = Registry::start();
    let n = name("zstd");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::oci(&n),
        "fixtures/zstd",
        "latest",
        PushFormat::OciZstd,
    );
    assert_eq!(
        pushed.manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    for layer in pushed.manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "{layer}"
        );
    }
    if support::skip_on_reference("dockerd 20.10 cannot unpack zstd layers (Docker 23+ can)") {
        return;
    }
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &pushed.reference()]);
    assert_inspect_matches(&docker, &pushed.reference(), &pushed);
    assert_history_matches(&docker, &pushed.reference(), &pushed);
}

#[test]
fn pull_manifest_list_chooses_the_host_platform() {
    pull_multi_platform(
        PushFormat::DockerList,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    );
}

#[test]
fn pull_oci_index_chooses_the_host_platform() {
    pull_multi_platform(
        PushFormat::OciIndex,
        "application/vnd.oci.image.index.v1+json",
    );
}

fn pull_multi_platform(format: PushFormat, media_type: &str) {
    let registry = Registry::start();
    let n = name(&format!("multi-{format:?}"));
    let specs = fixtures::multi_platform(&n);
    let (pushed, platforms) =
        fixtures::push_index(&registry, &specs, "fixtures/multi", "latest", format);
    assert_eq!(
        pushed.manifest["mediaType"], media_type,
        "{}",
        pushed.manifest
    );
    assert_eq!(pushed.manifest["manifests"].as_array().unwrap().len(), 2);
    assert_ne!(platforms[0].id, platforms[1].id);
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &pushed.reference()]);
    let arch = docker.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Architecture}}",
        &pushed.reference(),
    ]);
    assert_eq!(arch.stdout.trim(), fixtures::host_arch());
    let v = assert_inspect_matches(&docker, &pushed.reference(), &pushed);
    // The digest recorded is the one pulled by: the index's.
    assert_eq!(strings(&v["RepoDigests"], false), vec![pushed.by_digest()]);

    // --platform picks the other one.
    let other = platforms
        .iter()
        .find(|p| p.architecture != fixtures::host_arch())
        .unwrap();
    let platform = format!("linux/{}", other.architecture);
    docker.ok(&["pull", "--platform", &platform, &pushed.reference()]);
    let v = docker.inspect(&pushed.reference());
    assert_eq!(v["Id"], other.id.as_str());
    assert_eq!(v["Architecture"], other.architecture.as_str());
}

#[test]
fn pull_by_digest_records_the_digest_without_a_tag() {
    let registry = Registry::start();
    let n = name("bydigest");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::oci(&n),
        "fixtures/bydigest",
        "v2",
        PushFormat::Oci,
    );
    let stack = Stack::start();
    let docker = stack.docker();
    let out = docker.ok(&["pull", &pushed.by_digest()]);
    assert!(
        out.stdout
            .contains(&format!("Digest: {}", pushed.manifest_digest)),
        "{out}"
    );
    let v = assert_inspect_matches(&docker, &pushed.by_digest(), &pushed);
    assert!(strings(&v["RepoTags"], false).is_empty(), "{v}");
    assert_eq!(strings(&v["RepoDigests"], false), vec![pushed.by_digest()]);
    let out = docker.ok(&[
        "images",
        "--digests",
        "--no-trunc",
        "--format",
        "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}",
        &pushed.repository,
    ]);
    assert_eq!(
        out.stdout.trim(),
        format!(
            "{} <none> {} {}",
            pushed.repository, pushed.manifest_digest, pushed.id
        )
    );
}

#[test]
fn pull_of_a_missing_tag_says_manifest_unknown() {
    let registry = Registry::start();
    let n = name("missing");
    fixtures::push_image(
        &registry,
        &fixtures::oci(&n),
        "fixtures/present",
        "v1",
        PushFormat::Oci,
    );
    let stack = Stack::start();
    let docker = stack.docker();
    let reference = format!("{}/fixtures/present:nope", registry.host);
    let out = docker.run(&["pull", &reference]).failed();
    let expected = format!(
        "Error response from daemon: manifest for {reference} not found: manifest unknown: manifest unknown"
    );
    assert!(out.stderr.contains(&expected), "{out}");
    // A repository that does not exist at all.
    let reference = format!("{}/fixtures/absent:v1", registry.host);
    let out = docker.run(&["pull", &reference]).failed();
    assert!(out.stderr.contains("Error response from daemon:"), "{out}");
    assert!(docker
        .image_ids(&[])
        .iter()
        .all(|id| id.starts_with("sha256:")));
    assert!(docker
        .images(&[&format!("{}/fixtures/present", registry.host)])
        .is_empty());
}

#[test]
fn pull_of_a_corrupted_blob_fails_verification_and_leaves_no_image() {
    let registry = Registry::start();
    let n = name("corrupt");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::schema2(&n),
        "fixtures/corrupt",
        "v1",
        PushFormat::DockerV2S2,
    );
    // Same length, other bytes: the registry serves it under the old digest.
    let victim = registry.blob_path(&pushed.layer_blobs[1]);
    let len = std::fs::metadata(&victim).unwrap().len() as usize;
    std::fs::write(&victim, fixtures::noise(999, len, 0)).unwrap();

    let stack = Stack::start();
    let docker = stack.docker();
    let out = docker.run(&["pull", &pushed.reference()]).failed();
    assert!(
        out.stderr.contains(&format!(
            "filesystem layer verification failed for digest {}",
            pushed.layer_blobs[1]
        )),
        "{out}"
    );
    assert!(
        docker.images(&[&pushed.repository]).is_empty(),
        "no image after a failed pull"
    );
    let inspect = docker.run(&["image", "inspect", &pushed.id]).failed();
    assert!(inspect.stderr.contains("No such image"), "{inspect}");
}

#[test]
fn pull_through_a_registry_mirror_without_internet() {
    if support::skip_on_reference("needs --registry-mirror on the engine") {
        return;
    }
    let mirror = Registry::start();
    let n = name("mirror");
    let pushed = fixtures::push_image(
        &mirror,
        &fixtures::schema2(&n),
        "library/busybox",
        "latest",
        PushFormat::DockerV2S2,
    );
    let stack = Stack::start_with(StackOptions {
        registry_mirrors: vec![format!("http://{}", mirror.host)],
        ..Default::default()
    });
    let docker = stack.docker();
    let out = docker.ok(&["pull", "busybox"]);
    assert!(out.stdout.contains("Using default tag: latest"), "{out}");
    assert!(
        out.stdout
            .contains("Status: Downloaded newer image for busybox:latest"),
        "{out}"
    );
    assert_eq!(
        out.stdout.lines().last(),
        Some("docker.io/library/busybox:latest"),
        "{out}"
    );
    let v = assert_inspect_matches(&docker, "busybox", &pushed);
    assert_eq!(
        strings(&v["RepoTags"], false),
        vec!["busybox:latest".to_string()]
    );
    assert_eq!(
        strings(&v["RepoDigests"], false),
        vec![format!("busybox@{}", pushed.manifest_digest)]
    );
    let rows = docker.images(&["busybox"]);
    assert_eq!(
        rows,
        vec![(
            "busybox".into(),
            "latest".into(),
            pushed.id.clone(),
            human_size(pushed.size)
        )]
    );
}

#[test]
fn pull_from_a_basic_auth_registry_uses_the_cli_credentials() {
    let registry = Registry::start_basic("wharf", "s3cret-pass");
    let n = name("basic");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::oci(&n),
        "private/app",
        "v1",
        PushFormat::Oci,
    );
    let stack = Stack::start();
    let anonymous = stack.docker();
    let out = anonymous
        .run_timeout(&["pull", &pushed.reference()], Duration::from_secs(30))
        .failed();
    // dockerd answers 500 here; a 401 would make the CLI prompt for a login instead.
    assert!(
        !out.stdout.contains("Login prior to pull"),
        "the engine answered 401: {out}"
    );
    assert!(out.stderr.contains("no basic auth credentials"), "{out}");
    assert!(anonymous.images(&[&pushed.repository]).is_empty());

    let wrong = stack.docker();
    wrong.login(&registry.host, "wharf", "wrong");
    let out = wrong
        .run_timeout(&["pull", &pushed.reference()], Duration::from_secs(30))
        .failed();
    assert!(
        !out.stdout.contains("Login prior to pull"),
        "the engine answered 401: {out}"
    );
    assert!(out.stderr.contains("unauthorized"), "{out}");

    let user = stack.docker();
    user.login(&registry.host, "wharf", "s3cret-pass");
    user.ok(&["pull", &pushed.reference()]);
    assert_inspect_matches(&user, &pushed.reference(), &pushed);
}

#[test]
fn pull_from_a_token_auth_registry() {
    let registry = Registry::start_token("tokenuser", "t0ken-pass");
    let n = name("token");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::schema2(&n),
        "private/tokened",
        "v1",
        PushFormat::DockerV2S2,
    );
    let support::RegistryAuth::Token(server) = &registry.auth else {
        unreachable!()
    };
    let issued_by_push = server.issued();
    assert!(issued_by_push > 0, "skopeo went through the token server");

    let stack = Stack::start();
    let anonymous = stack.docker();
    let out = anonymous
        .run_timeout(&["pull", &pushed.reference()], Duration::from_secs(30))
        .failed();
    assert!(
        !out.stdout.contains("Login prior to pull"),
        "the engine answered 401: {out}"
    );
    assert!(anonymous.images(&[&pushed.repository]).is_empty());

    let user = stack.docker();
    user.login(&registry.host, "tokenuser", "t0ken-pass");
    user.ok(&["pull", &pushed.reference()]);
    assert!(
        server.issued() > issued_by_push,
        "the engine asked the token server"
    );
    assert_inspect_matches(&user, &pushed.reference(), &pushed);
}

#[test]
fn tag_and_rmi_untag_then_delete() {
    let registry = Registry::start();
    let n = name("rmi");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::oci(&n),
        "fixtures/rmi",
        "v1",
        PushFormat::Oci,
    );
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &pushed.reference()]);
    let other = format!("wharf-test/{n}:renamed");
    docker.ok(&["tag", &pushed.reference(), &other]);
    docker.ok(&[
        "tag",
        &pushed.reference(),
        &format!("{}:v2", pushed.repository),
    ]);
    let v = docker.inspect(&other);
    assert_eq!(v["Id"], pushed.id.as_str());
    let mut tags = strings(&v["RepoTags"], true);
    let mut expected = vec![
        pushed.reference(),
        format!("{}:v2", pushed.repository),
        other.clone(),
    ];
    expected.sort();
    tags.sort();
    assert_eq!(tags, expected);

    // Referenced in two repositories: deleting by ID needs -f.
    let short = &pushed.id["sha256:".len().."sha256:".len() + 12];
    let out = docker.run(&["rmi", short]).failed();
    assert!(
        out.stderr.contains(&format!(
            "Error response from daemon: conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
        )),
        "{out}"
    );

    // By name: only untags while other tags remain.
    let out = docker.ok(&["rmi", &other]);
    assert_eq!(out.stdout.trim(), format!("Untagged: {other}"));
    let out = docker.ok(&["rmi", &format!("{}:v2", pushed.repository)]);
    assert_eq!(
        out.stdout.trim(),
        format!("Untagged: {}:v2", pushed.repository)
    );
    assert_eq!(docker.inspect(&pushed.id)["Id"], pushed.id.as_str());

    // The last tag goes: the digest reference and the image go with it.
    let out = docker.ok(&["rmi", &pushed.reference()]);
    let lines = out.lines();
    assert_eq!(
        lines[0],
        format!("Untagged: {}", pushed.reference()),
        "{out}"
    );
    assert_eq!(
        lines[1],
        format!("Untagged: {}", pushed.by_digest()),
        "{out}"
    );
    assert!(lines.contains(&format!("Deleted: {}", pushed.id)), "{out}");
    let out = docker.run(&["image", "inspect", &pushed.id]).failed();
    assert!(
        out.stderr
            .contains(&format!("No such image: {}", pushed.id)),
        "{out}"
    );
    let out = docker.run(&["rmi", &pushed.reference()]).failed();
    assert!(
        out.stderr.contains(&format!(
            "Error response from daemon: No such image: {}",
            pushed.reference()
        )),
        "{out}"
    );
}

#[test]
fn save_then_load_keeps_the_image_id() {
    let registry = Registry::start();
    let n = name("save");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::schema2(&n),
        "fixtures/save",
        "v1",
        PushFormat::DockerV2S2,
    );
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &pushed.reference()]);
    let archive = stack.dir.path().join("saved.tar");
    docker.ok(&["save", "-o", archive.to_str().unwrap(), &pushed.reference()]);
    // The archive is a docker-save tar: manifest.json names the config and the tags.
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let mut manifest = None;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("manifest.json") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
            manifest = Some(serde_json::from_str::<serde_json::Value>(&s).unwrap());
        }
    }
    let manifest = manifest.expect("manifest.json in the saved archive");
    assert_eq!(
        strings(&manifest[0]["RepoTags"], false),
        vec![pushed.reference()]
    );
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 3);

    docker.ok(&["rmi", &pushed.reference()]);
    assert!(docker.images(&[&pushed.repository]).is_empty());
    let out = docker.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.stdout
            .contains(&format!("Loaded image: {}", pushed.reference())),
        "{out}"
    );
    let v = assert_inspect_matches(&docker, &pushed.reference(), &pushed);
    assert_eq!(strings(&v["RepoTags"], false), vec![pushed.reference()]);
    assert_history_matches(&docker, &pushed.reference(), &pushed);

    // Through a pipe too: docker save | docker load.
    let saved = docker
        .command(&["save", &pushed.reference()])
        .output()
        .unwrap();
    assert!(saved.status.success());
    docker.ok(&["rmi", &pushed.reference()]);
    let out = docker.run_stdin(&["load"], saved.stdout).ok();
    assert!(
        out.stdout
            .contains(&format!("Loaded image: {}", pushed.reference())),
        "{out}"
    );
    assert_eq!(
        docker.inspect(&pushed.reference())["Id"],
        pushed.id.as_str()
    );
}

#[test]
fn import_of_a_tar_applies_changes() {
    let stack = Stack::start();
    let docker = stack.docker();
    let n = name("import");
    let tar = fixtures::import_tar(&n);
    let path = stack.dir.path().join("rootfs.tar");
    std::fs::write(&path, &tar).unwrap();
    let reference = format!("wharf-test/{n}:imported");
    let out = docker.ok(&[
        "import",
        "--change",
        "CMD [\"sh\"]",
        "--change",
        "ENV IMPORTED=yes",
        "--change",
        "LABEL origin=import",
        "-m",
        "imported by a test",
        path.to_str().unwrap(),
        &reference,
    ]);
    let id = out.stdout.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    let v = docker.inspect(&reference);
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(strings(&v["Config"]["Cmd"], false), vec!["sh".to_string()]);
    assert_eq!(
        strings(&v["Config"]["Env"], false),
        vec!["IMPORTED=yes".to_string()]
    );
    assert_eq!(v["Config"]["Labels"]["origin"], "import", "{v}");
    assert_eq!(v["Comment"], "imported by a test", "{v}");
    assert_eq!(
        strings(&v["RootFS"]["Layers"], false),
        vec![support::sha256(&tar)]
    );
    assert_eq!(v["Architecture"], fixtures::host_arch());
    assert_eq!(v["Os"], "linux");
    // etc/imported (n + 1 bytes) + the symlink's target "imported" (8 bytes).
    assert_eq!(v["Size"].as_u64(), Some(n.len() as u64 + 1 + 8), "{v}");
    assert_eq!(strings(&v["RepoTags"], false), vec![reference.clone()]);
    assert!(strings(&v["RepoDigests"], false).is_empty());

    // From stdin, without a tag.
    let out = docker
        .run_stdin(
            &["import", "-"],
            fixtures::import_tar(&format!("{n}-stdin")),
        )
        .ok();
    let untagged = out.stdout.trim().to_string();
    assert!(docker
        .image_ids(&["--filter", "dangling=true"])
        .contains(&untagged));
}

#[test]
fn filters_and_prune() {
    let registry = Registry::start();
    let n = name("filters");
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::oci(&n),
        "fixtures/filters",
        "v1",
        PushFormat::Oci,
    );
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &pushed.reference()]);

    // Two imports under one tag: the first loses its tag and dangles.
    let dir = stack.dir.path();
    std::fs::write(dir.join("a.tar"), fixtures::import_tar(&format!("{n}-a"))).unwrap();
    std::fs::write(dir.join("b.tar"), fixtures::import_tar(&format!("{n}-b"))).unwrap();
    let repo = format!("wharf-test/{n}");
    let first = docker
        .ok(&[
            "import",
            dir.join("a.tar").to_str().unwrap(),
            &format!("{repo}:same"),
        ])
        .stdout
        .trim()
        .to_string();
    let second = docker
        .ok(&[
            "import",
            dir.join("b.tar").to_str().unwrap(),
            &format!("{repo}:same"),
        ])
        .stdout
        .trim()
        .to_string();
    assert_ne!(first, second);

    let dangling = docker.image_ids(&["--filter", "dangling=true"]);
    assert!(dangling.contains(&first), "{dangling:?}");
    assert!(!dangling.contains(&second), "{dangling:?}");
    assert!(!dangling.contains(&pushed.id), "{dangling:?}");
    let not_dangling = docker.image_ids(&["--filter", "dangling=false"]);
    assert!(
        not_dangling.contains(&second) && not_dangling.contains(&pushed.id),
        "{not_dangling:?}"
    );
    assert!(!not_dangling.contains(&first), "{not_dangling:?}");

    assert_eq!(
        docker.image_ids(&["--filter", &format!("reference={repo}:same")]),
        strings_of(&[&second])
    );
    assert_eq!(
        docker.image_ids(&["--filter", &format!("reference={repo}:*")]),
        strings_of(&[&second])
    );
    assert_eq!(
        docker.image_ids(&["--filter", &format!("reference={}", pushed.reference())]),
        strings_of(&[&pushed.id])
    );
    assert_eq!(
        docker.image_ids(&["--filter", &format!("label=org.wharf.fixture={n}")]),
        strings_of(&[&pushed.id])
    );
    assert!(docker
        .image_ids(&["--filter", "label=org.wharf.arch"])
        .contains(&pushed.id));
    assert!(docker
        .image_ids(&["--filter", "label=org.wharf.fixture=nope"])
        .is_empty());
    let out = docker.run(&["images", "--filter", "color=blue"]).failed();
    let expected = "Error response from daemon: invalid filter 'color'";
    if support::reference_host().is_some() {
        // dockerd 20.10 capitalised it.
        assert!(
            out.stderr.to_lowercase().contains(&expected.to_lowercase()),
            "{out}"
        );
    } else {
        assert!(out.stderr.contains(expected), "{out}");
    }

    // `docker images` shows the dangling one as <none> <none>.
    let rows = docker.images(&[]);
    assert!(
        rows.contains(&(
            "<none>".into(),
            "<none>".into(),
            first.clone(),
            human_size(n.len() as u64 + 3 + 8)
        )),
        "{rows:?}"
    );

    let out = docker.ok(&["image", "prune", "-f"]);
    assert!(out.stdout.contains("Deleted Images:"), "{out}");
    assert!(out.stdout.contains(&format!("deleted: {first}")), "{out}");
    assert!(out.stdout.contains("Total reclaimed space:"), "{out}");
    docker.run(&["image", "inspect", &first]).failed();
    assert_eq!(docker.inspect(&second)["Id"], second.as_str());
    assert_eq!(
        docker.inspect(&pushed.reference())["Id"],
        pushed.id.as_str()
    );
    assert!(docker
        .image_ids(&["--filter", "dangling=true"])
        .iter()
        .all(|id| id != &first));
}

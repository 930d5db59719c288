//! Wharf next to dockerd itself: an image *built by dockerd* (`docker build`, legacy builder) and
//! pushed to a real registry, then pulled by both engines, must read the same through the docker
//! CLI: same ID, same inspect JSON (sizes within a percent), same history rows, same `docker images`
//! row; and `docker save` archives move between the two engines keeping the image ID.
//!
//! dockerd comes from Debian's docker.io package (deploy/test.sh installs it); the test runs its own
//! private instance (own data root, exec root, socket; no bridge, no iptables) and stops it by PID.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::dockerd::Dockerd;
use support::fixtures::{self, PushFormat};
use support::{DockerCli, Registry, Stack};

/// A CLI pinned to API 1.41 (dockerd 20.10's), so both engines answer in the same API version.
fn cli(host: &str) -> DockerCli {
    DockerCli::new(host)
}

fn run(docker: &DockerCli, args: &[&str]) -> support::Output {
    let mut cmd = docker.command(args);
    cmd.env("DOCKER_API_VERSION", "1.41")
        .env("DOCKER_BUILDKIT", "0");
    support::run(cmd, None, support::DOCKER_TIMEOUT).ok()
}

fn inspect(docker: &DockerCli, image: &str) -> Value {
    let out = run(docker, &["image", "inspect", image]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v[0].clone()
}

/// Writes a build context whose Dockerfile makes a multi-layer image without running anything.
fn build_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("links")).unwrap();
    std::fs::write(ctx.join("busybox"), fixtures::busybox()).unwrap();
    for l in ["sh", "ls", "cat"] {
        std::os::unix::fs::symlink("busybox", ctx.join("links").join(l)).unwrap();
    }
    std::fs::write(ctx.join("data.bin"), fixtures::noise(7, 1 << 20, 50)).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         COPY links/ /bin/\n\
         ENV GREETING=hello PATH=/bin\n\
         LABEL org.wharf.test=parity\n\
         COPY data.bin /data/data.bin\n\
         WORKDIR /data\n\
         EXPOSE 8080\n\
         CMD [\"/bin/sh\"]\n",
    )
    .unwrap();
    ctx
}

fn within_a_percent(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= b.abs() / 100.0,
        _ => false,
    }
}

/// Compares two inspect documents field by field; sizes may differ by a percent, and the storage
/// details (GraphDriver paths, LastTagTime) are engine-local.
#[track_caller]
fn assert_same_inspect(wharf: &Value, dockerd: &Value) {
    let (w, d) = (wharf.as_object().unwrap(), dockerd.as_object().unwrap());
    for (key, dv) in d {
        let wv = w.get(key).unwrap_or(&Value::Null);
        match key.as_str() {
            "GraphDriver" | "Metadata" => {}
            "Size" | "VirtualSize" => assert!(
                within_a_percent(wv, dv),
                "{key}: wharf {wv} vs dockerd {dv}"
            ),
            _ => assert_eq!(wv, dv, "{key} differs:\nwharf:   {wv}\ndockerd: {dv}"),
        }
    }
}

fn history_rows(docker: &DockerCli, image: &str) -> Vec<(String, String, String, u64)> {
    run(
        docker,
        &[
            "history",
            "--no-trunc",
            "--human=false",
            "--format",
            "{{.ID}}\t{{.CreatedBy}}\t{{.Comment}}\t{{.Size}}",
            image,
        ],
    )
    .lines()
    .iter()
    .map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        (
            f[0].to_string(),
            f[1].to_string(),
            f[2].to_string(),
            f[3].parse().unwrap_or(u64::MAX),
        )
    })
    .collect()
}

#[track_caller]
fn assert_same_history(wharf: &DockerCli, dockerd: &DockerCli, image: &str) {
    let (w, d) = (history_rows(wharf, image), history_rows(dockerd, image));
    assert_eq!(
        w.len(),
        d.len(),
        "history rows:\nwharf:   {w:#?}\ndockerd: {d:#?}"
    );
    for (wr, dr) in w.iter().zip(&d) {
        assert_eq!((&wr.0, &wr.1, &wr.2), (&dr.0, &dr.1, &dr.2), "history row");
        let (a, b) = (wr.3 as f64, dr.3 as f64);
        assert!(
            (a - b).abs() <= b / 100.0,
            "history size {} vs dockerd {}",
            wr.3,
            dr.3
        );
    }
}

fn images_row(docker: &DockerCli, image: &str) -> String {
    run(
        docker,
        &[
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}} {{.Tag}} {{.ID}} {{.Digest}}",
            image,
        ],
    )
    .stdout
}

#[test]
fn images_built_by_dockerd_read_the_same_in_wharf() {
    if support::skip_on_reference("compares Wharf with a dockerd of its own") {
        return;
    }
    let registry = Registry::start();
    let dockerd = Dockerd::start();
    let stack = Stack::start();
    let (d, w) = (cli(&dockerd.host), cli(&stack.host));
    let tmp = tempfile::tempdir().unwrap();
    let image = format!("{}/parity/built:v1", registry.host);

    // dockerd builds and pushes; then both engines pull the pushed image.
    run(
        &d,
        &[
            "build",
            "-q",
            "-t",
            &image,
            build_context(tmp.path()).to_str().unwrap(),
        ],
    );
    run(&d, &["push", &image]);
    run(&d, &["rmi", &image]);
    run(&d, &["pull", &image]);
    run(&w, &["pull", &image]);
    let (wi, di) = (inspect(&w, &image), inspect(&d, &image));
    assert_eq!(
        di["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(3),
        "three layers: {di}"
    );
    assert_same_inspect(&wi, &di);
    assert_same_history(&w, &d, &image);
    assert_eq!(images_row(&w, &image), images_row(&d, &image));

    // An image this project's tests made (skopeo, zstd-free OCI) pulled by both.
    let spec = fixtures::ImageSpec::busybox_like(
        "parity",
        fixtures::host_arch(),
        vec![(fixtures::app_layer("parity", 3, 300_000), "COPY app /app")],
    );
    let pushed = fixtures::push_image(
        &registry,
        &spec,
        "parity/skopeo",
        "v1",
        PushFormat::DockerV2S2,
    );
    run(&d, &["pull", &pushed.reference()]);
    run(&w, &["pull", &pushed.reference()]);
    assert_same_inspect(
        &inspect(&w, &pushed.reference()),
        &inspect(&d, &pushed.reference()),
    );
    assert_same_history(&w, &d, &pushed.reference());

    // docker save from one engine loads into the other under the same ID, and back.
    let from_wharf = tmp.path().join("wharf.tar");
    run(&w, &["save", "-o", from_wharf.to_str().unwrap(), &image]);
    run(&d, &["rmi", &image]);
    run(&d, &["load", "-i", from_wharf.to_str().unwrap()]);
    assert_eq!(
        inspect(&d, &image)["Id"],
        wi["Id"],
        "dockerd loads Wharf's save under the same ID"
    );
    let from_dockerd = tmp.path().join("dockerd.tar");
    run(
        &d,
        &[
            "save",
            "-o",
            from_dockerd.to_str().unwrap(),
            &pushed.reference(),
        ],
    );
    run(&w, &["rmi", &pushed.reference()]);
    run(&w, &["load", "-i", from_dockerd.to_str().unwrap()]);
    let loaded = inspect(&w, &pushed.reference());
    assert_eq!(
        loaded["Id"],
        pushed.id.as_str(),
        "Wharf loads dockerd's save under the same ID"
    );
    assert_eq!(loaded["Config"], inspect(&d, &pushed.reference())["Config"]);
}

/// Lists every file of the container's own file system with its type, mode, owner, size and
/// link count (not /proc, /sys, /dev or /etc, whose content each engine makes itself).
const LIST_FILES: &str = "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /etc \\) -prune -o -print | sort | while read f; do stat -c '%n %A %u %g %s %h %F' \"$f\"; done";

#[test]
fn tricky_layers_look_the_same_inside_containers_of_both_engines() {
    if support::skip_on_reference("compares Wharf with a dockerd of its own") {
        return;
    }
    let registry = Registry::start();
    let dockerd = Dockerd::start();
    let stack = Stack::start();
    let (d, w) = (cli(&dockerd.host), cli(&stack.host));
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("busybox"), fixtures::busybox()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ctx.join("busybox"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    // Layer 2 makes hardlinks, a symlink, a fifo, a setuid file, foreign owners and a directory
    // with content; layer 3 deletes a file (whiteout), replaces that directory (opaque), and
    // changes modes and owners of what layer 2 made.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN mkdir -p /d/keep /d/opq && echo a > /d/opq/old && echo x > /d/gone \
             && echo hello > /d/h1 && ln /d/h1 /d/h2 && ln -s h1 /d/sym && mkfifo /d/fifo \
             && echo s > /d/suid && chmod 4755 /d/suid && chown 1234:5678 /d/h1 && touch /d/keep/k\n\
         RUN rm /d/gone && rm -rf /d/opq && mkdir /d/opq && echo new > /d/opq/new \
             && chmod 2700 /d/keep && chown 42:43 /d/keep/k && chmod 600 /d/h2\n\
         CMD [\"sh\"]\n",
    )
    .unwrap();
    let image = format!("{}/parity/tricky:v1", registry.host);
    run(
        &d,
        &[
            "build",
            "-q",
            "--network",
            "none",
            "-t",
            &image,
            ctx.to_str().unwrap(),
        ],
    );
    run(&d, &["push", &image]);
    run(&w, &["pull", &image]);
    let listing = |docker: &DockerCli| {
        run(
            docker,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                &image,
                "sh",
                "-c",
                LIST_FILES,
            ],
        )
        .stdout
    };
    let (in_wharf, in_dockerd) = (listing(&w), listing(&d));
    for want in [
        // chmod in a later layer copies h2 up and so splits it from h1 (overlayfs).
        "/d/h1 -rw-r--r-- 1234 5678 6 2 regular file",
        "/d/h2 -rw------- 1234 5678 6 1 regular file",
        "/.dockerenv -rwxr-xr-x 0 0 0 1 regular empty file",
        "/d/fifo prw-r--r-- 0 0 0 1 fifo",
        "/d/suid -rwsr-xr-x 0 0 2 1 regular file",
        "/d/keep drwx--S--- 0 0",
        "/d/keep/k -rw-r--r-- 42 43 0 1 regular empty file",
        "/d/opq/new ",
        "/d/sym lrwxrwxrwx 0 0 2 1 symbolic link",
    ] {
        assert!(
            in_dockerd.contains(want),
            "dockerd shows {want:?}:\n{in_dockerd}"
        );
    }
    assert!(!in_dockerd.contains("/d/gone") && !in_dockerd.contains("/d/opq/old"));
    assert_eq!(
        in_wharf, in_dockerd,
        "the same files, modes, owners and links in both engines"
    );
}

//! Wharf next to dockerd itself: an image *built by dockerd* (`docker build`, legacy builder) and
//! pushed to a real registry, then pulled by both engines, must read the same through the docker
//! CLI: same ID, same inspect JSON (sizes within a percent), same history rows, same `docker images`
//! row; and `docker save` archives move between the two engines keeping the image ID.
//!
//! dockerd comes from Debian's docker.io package (deploy/test.sh installs it); the test runs its own
//! private instance (own data root, exec root, socket; no bridge, no iptables) and stops it by PID.

mod support;

use std::collections::BTreeSet;
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

/// What a default container prints about its confinement, section by section.
const CONFINEMENT: &str = "echo '== status'; cat /proc/self/status; \
     echo '== mountinfo'; cat /proc/self/mountinfo; \
     echo '== dev'; ls -la /dev; \
     echo '== devices'; cat /sys/fs/cgroup/devices/devices.list 2>/dev/null; \
     echo '== end'";

/// The lines of one `== name` section of [`CONFINEMENT`]'s output.
fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("== {name}");
    out.lines()
        .skip_while(|l| *l != head)
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

/// The capability sets, no_new_privs and seccomp mode from /proc/self/status.
fn confinement_status(out: &str) -> Vec<String> {
    let keys = [
        "CapInh:",
        "CapPrm:",
        "CapEff:",
        "CapBnd:",
        "CapAmb:",
        "NoNewPrivs:",
        "Seccomp:",
    ];
    section(out, "status")
        .into_iter()
        .filter(|l| keys.iter().any(|k| l.starts_with(k)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The mounts on /proc, /sys and below, as `point fstype root options - source super-options`:
/// no mount IDs or device numbers, and a cgroup's own directory (`/docker/<id>` in dockerd,
/// `/wharf/<id>` in Wharf) as `<container>`.
fn proc_and_sys_mounts(out: &str) -> BTreeSet<String> {
    let mut mounts = BTreeSet::new();
    for line in section(out, "mountinfo") {
        let (left, right) = line.split_once(" - ").expect("mountinfo line");
        let left: Vec<&str> = left.split(' ').collect();
        let (root, point, options) = (left[3], left[4], left[5]);
        let right: Vec<&str> = right.split(' ').collect();
        let (fstype, source, super_options) = (right[0], right[1], right[2]);
        let under = |top: &str| point == top || point.starts_with(&format!("{top}/"));
        if !under("/proc") && !under("/sys") {
            continue;
        }
        let root = match fstype {
            "cgroup" | "cgroup2" if root.starts_with("/docker/") || root.starts_with("/wharf/") => {
                "<container>"
            }
            _ => root,
        };
        mounts.insert(format!(
            "{point} {fstype} {root} {options} - {source} {super_options}"
        ));
    }
    mounts
}

/// Masked paths: a file under a bind of /dev/null (root `/null`), a directory under a tmpfs.
fn masked(mounts: &BTreeSet<String>) -> Vec<String> {
    mounts
        .iter()
        .filter(|m| {
            let f: Vec<&str> = m.split(' ').collect();
            f[0] != "/sys/fs/cgroup" && (f[2] == "/null" || f[1] == "tmpfs")
        })
        .cloned()
        .collect()
}

/// Read-only paths: parts of /proc bound over themselves read-only.
fn read_only(mounts: &BTreeSet<String>) -> Vec<String> {
    mounts
        .iter()
        .filter(|m| {
            let f: Vec<&str> = m.split(' ').collect();
            f[0].starts_with("/proc/") && f[1] == "proc" && f[3].split(',').any(|o| o == "ro")
        })
        .cloned()
        .collect()
}

/// `ls -la /dev` (busybox) as `name mode owner:group major:minor-or-link-target`, without the
/// sizes, link counts and times.
fn dev_listing(out: &str) -> BTreeSet<String> {
    let mut rows = BTreeSet::new();
    for line in section(out, "dev") {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 {
            continue; // "total 4"
        }
        let (mode, owner) = (f[0], format!("{}:{}", f[2], f[3]));
        let (rest, what) = if mode.starts_with('c') || mode.starts_with('b') {
            (&f[9..], format!("{}:{}", f[4].trim_end_matches(','), f[5]))
        } else {
            (&f[8..], String::new())
        };
        let name = rest[0];
        if name == ".." {
            continue;
        }
        let target = rest.get(2).map(|t| format!("-> {t}")).unwrap_or(what);
        rows.insert(format!("{name} {mode} {owner} {target}"));
    }
    rows
}

/// A default container of each engine, from the same image, is confined the same way: the
/// same capability sets (and no_new_privs and seccomp mode), the same masked and read-only
/// /proc and /sys paths (the same mounts: type, options, what is bound), the same /dev, and
/// the same device cgroup rules. The differences left are listed and explained below.
#[test]
fn default_containers_are_confined_as_dockerds_are() {
    if support::skip_on_reference("compares Wharf with a dockerd of its own") {
        return;
    }
    let registry = Registry::start();
    let dockerd = Dockerd::start();
    let stack = Stack::start();
    let (d, w) = (cli(&dockerd.host), cli(&stack.host));
    let spec = fixtures::ImageSpec::busybox_like("confined", fixtures::host_arch(), vec![]);
    let image = fixtures::push_image(
        &registry,
        &spec,
        "parity/confined",
        "v1",
        PushFormat::DockerV2S2,
    )
    .reference();
    run(&d, &["pull", &image]);
    run(&w, &["pull", &image]);
    let report = |docker: &DockerCli| {
        let out = run(docker, &["run", "--rm", &image, "sh", "-c", CONFINEMENT]).stdout;
        assert!(out.contains("== end"), "{out}");
        out
    };
    let (in_wharf, in_dockerd) = (report(&w), report(&d));
    let both = format!("--- wharf ---\n{in_wharf}\n--- dockerd ---\n{in_dockerd}");

    // Capabilities: dockerd's 14 in the permitted, effective and bounding sets, none
    // inheritable or ambient; no_new_privs off; seccomp filtering.
    let status = confinement_status(&in_dockerd);
    assert_eq!(status.len(), 7, "{both}");
    assert!(
        status.contains(&"CapEff: 00000000a80425fb".to_string()),
        "{both}"
    );
    assert_eq!(confinement_status(&in_wharf), status, "{both}");

    // /proc and /sys mounts.
    let (mut wharf_mounts, dockerd_mounts) = (
        proc_and_sys_mounts(&in_wharf),
        proc_and_sys_mounts(&in_dockerd),
    );
    let (masked_d, read_only_d) = (masked(&dockerd_mounts), read_only(&dockerd_mounts));
    assert!(
        masked_d.iter().any(|m| m.starts_with("/proc/keys "))
            && read_only_d.iter().any(|m| m.starts_with("/proc/sys ")),
        "{both}"
    );
    assert_eq!(masked(&wharf_mounts), masked_d, "masked paths\n{both}");
    assert_eq!(
        read_only(&wharf_mounts),
        read_only_d,
        "read-only paths\n{both}"
    );
    // Deliberate: the tmpfs holding the cgroup hierarchies at /sys/fs/cgroup is read-only in
    // Wharf, as the spec's mount asks; runc leaves that tmpfs writable (only the hierarchies
    // bound in it are read-only), a runc detail nothing relies on.
    let tmpfs = |mounts: &BTreeSet<String>| {
        mounts
            .iter()
            .find(|m| m.starts_with("/sys/fs/cgroup tmpfs "))
            .cloned()
            .unwrap_or_else(|| panic!("no tmpfs on /sys/fs/cgroup\n{both}"))
    };
    let wharf_tmpfs = tmpfs(&wharf_mounts);
    assert_eq!(
        wharf_tmpfs,
        tmpfs(&dockerd_mounts).replace(" rw,", " ro,"),
        "{both}"
    );
    wharf_mounts.remove(&wharf_tmpfs);
    wharf_mounts.insert(tmpfs(&dockerd_mounts));
    // Known, not fixed here: on a hybrid host Wharf also binds the container's own group of
    // the controller-less cgroup2 hierarchy (read-only) at /sys/fs/cgroup/unified, where runc
    // binds only the v1 hierarchies (both put the container in that group). It shows the
    // container nothing of the host's; the launcher's `mount_cgroup`
    // (services/runtime/src/container/mounts.rs) would skip cgroup2 hierarchies on v1 to match.
    wharf_mounts.retain(|m| {
        let own_unified = m.starts_with("/sys/fs/cgroup/unified cgroup2 <container> ro,");
        !own_unified || dockerd_mounts.contains(m)
    });
    assert_eq!(
        wharf_mounts.iter().collect::<Vec<_>>(),
        dockerd_mounts.iter().collect::<Vec<_>>(),
        "/proc and /sys mounts\n{both}"
    );

    // /dev: the same nodes (type, mode, owner, numbers) and links.
    let (wharf_dev, dockerd_dev) = (dev_listing(&in_wharf), dev_listing(&in_dockerd));
    assert!(
        dockerd_dev.contains("null crw-rw-rw- root:root 1:3"),
        "{both}"
    );
    assert_eq!(
        wharf_dev.iter().collect::<Vec<_>>(),
        dockerd_dev.iter().collect::<Vec<_>>(),
        "/dev\n{both}"
    );

    // Device cgroup rules (v1 hosts show them), compared as sets: runc writes them sorted.
    let rules = |out: &str| -> BTreeSet<String> {
        section(out, "devices")
            .into_iter()
            .map(str::to_string)
            .collect()
    };
    let (wharf_rules, mut dockerd_rules) = (rules(&in_wharf), rules(&in_dockerd));
    if !dockerd_rules.is_empty() {
        // Debian's runc for dockerd 20.10 still allows tun/tap (`c 10:200 rwm`); runc 1.2
        // dropped it from its defaults, and Wharf follows runc's current defaults. Apart from
        // that the rules are the same.
        dockerd_rules.remove("c 10:200 rwm");
        assert!(wharf_rules.contains("c 136:* rwm"), "{both}");
        assert_eq!(wharf_rules, dockerd_rules, "devices.list\n{both}");
    }
}

/// `docker create` of the same image with the same flags in each engine gives the same
/// `HostConfig` in `docker inspect`: every key dockerd shows, in its order, with its values
/// (its zero values where the CLI sent nothing: `null`, `[]`, `0`, `""`, and what dockerd fills
/// in at create: `ShmSize`, `IpcMode`, `Runtime`, `OomKillDisable`, the masked paths).
#[test]
fn created_containers_inspect_with_dockerds_host_config() {
    if support::skip_on_reference("compares Wharf with a dockerd of its own") {
        return;
    }
    let registry = Registry::start();
    let dockerd = Dockerd::start();
    let stack = Stack::start();
    let (d, w) = (cli(&dockerd.host), cli(&stack.host));
    let spec = fixtures::ImageSpec::busybox_like("hostconfig", fixtures::host_arch(), vec![]);
    let image = fixtures::push_image(
        &registry,
        &spec,
        "parity/hostconfig",
        "v1",
        PushFormat::DockerV2S2,
    )
    .reference();
    run(&d, &["pull", &image]);
    run(&w, &["pull", &image]);
    // Wharf never gives a container a cgroup namespace of its own: `host`, which is dockerd's
    // default on a cgroup v1 host only.
    let cgroup_v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "));
    let cases: [&[&str]; 4] = [
        &[],
        &[
            "--memory",
            "64m",
            "--log-opt",
            "max-size=1m",
            "--cap-add",
            "NET_ADMIN",
            "--dns",
            "192.0.2.53",
            "--ulimit",
            "nofile=1024:2048",
            "--pids-limit",
            "50",
            "--tmpfs",
            "/run",
            "--restart",
            "on-failure:3",
        ],
        &["--privileged", "--network", "none", "--init"],
        &[
            "--ipc",
            "host",
            "--pid",
            "host",
            "--memory",
            "32m",
            "--memory-swappiness",
            "60",
            "--oom-kill-disable",
            "--cpuset-mems",
            "0",
            "--device-cgroup-rule",
            "c 1:3 rwm",
        ],
    ];
    for (n, flags) in cases.iter().enumerate() {
        let name = format!("hc{n}");
        let host_config = |docker: &DockerCli| {
            let mut args = vec!["create", "--name", name.as_str()];
            args.extend_from_slice(flags);
            args.extend_from_slice(&[image.as_str(), "true"]);
            run(docker, &args);
            let out = run(docker, &["inspect", &name]);
            let v: Value = serde_json::from_str(&out.stdout).unwrap();
            v[0]["HostConfig"].clone()
        };
        let (mut wharf, dockerd) = (host_config(&w), host_config(&d));
        if cgroup_v2 {
            assert_eq!(dockerd["CgroupnsMode"], "private");
            wharf["CgroupnsMode"] = "private".into();
        }
        // Deliberate: Wharf masks /sys/devices/virtual/powercap too (CVE-2020-8694), as
        // moby's current defaults do; Debian's dockerd 20.10 does not list it.
        const POWERCAP: &str = "/sys/devices/virtual/powercap";
        if let Some(masked) = wharf["MaskedPaths"].as_array_mut() {
            assert_eq!(masked.last().and_then(Value::as_str), Some(POWERCAP));
            if !dockerd["MaskedPaths"]
                .as_array()
                .is_some_and(|m| m.contains(&POWERCAP.into()))
            {
                masked.pop();
            }
        }
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&wharf),
            keys(&dockerd),
            "flags {flags:?}: HostConfig keys\nwharf:   {wharf:#}\ndockerd: {dockerd:#}"
        );
        assert_eq!(
            wharf, dockerd,
            "flags {flags:?}: HostConfig\nwharf:   {wharf:#}\ndockerd: {dockerd:#}"
        );
    }
}

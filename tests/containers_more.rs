//! Security options, interactive TTYs, events and two runtime nodes, through the real docker
//! CLI. Expected texts are dockerd's.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::fixtures::{self, Entry, ImageSpec, Layer, PushFormat};
use support::{DockerCli, Proc, Registry, Stack, StackNet, StackOptions};

fn image_spec(name: &str) -> ImageSpec {
    let mut entries = vec![Entry::Dir("bin", 0o755)];
    for applet in [
        "id", "grep", "touch", "head", "tr", "stty", "tty", "hostname",
    ] {
        entries.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
    }
    ImageSpec::busybox_like(
        name,
        fixtures::host_arch(),
        vec![(Layer::new(&entries), "/bin/sh -c #(nop) COPY dir:bin in / ")],
    )
}

fn pushed(registry: &Registry, name: &str) -> String {
    fixtures::push_image(
        registry,
        &image_spec(name),
        "more",
        "v1",
        PushFormat::DockerV2S2,
    )
    .reference()
}

fn status_field(docker: &DockerCli, image: &str, args: &[&str], field: &str) -> String {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[image, "grep", field, "/proc/self/status"]);
    let out = docker.ok(&all);
    out.stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{field} in {out}"))
        .to_string()
}

#[test]
fn security_options_and_limits_apply() {
    let stack = Stack::start();
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "security");
    d.ok(&["pull", &image]);

    // Docker's default capability set (none inheritable or ambient), then
    // --cap-drop/--cap-add/--privileged.
    assert_eq!(status_field(&d, &image, &[], "CapEff"), "00000000a80425fb");
    assert_eq!(status_field(&d, &image, &[], "CapInh"), "0000000000000000");
    assert_eq!(status_field(&d, &image, &[], "CapAmb"), "0000000000000000");
    assert_eq!(
        status_field(&d, &image, &["--cap-drop", "ALL"], "CapEff"),
        "0000000000000000"
    );
    assert_eq!(
        status_field(
            &d,
            &image,
            &["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"],
            "CapEff"
        ),
        "0000000000001000"
    );
    let privileged = status_field(&d, &image, &["--privileged"], "CapEff");
    // Every capability this host still allows (its bounding set).
    let host_bounding = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        .unwrap();
    assert_eq!(privileged, host_bounding);
    assert_eq!(status_field(&d, &image, &[], "NoNewPrivs"), "0");
    assert_eq!(
        status_field(
            &d,
            &image,
            &["--security-opt", "no-new-privileges"],
            "NoNewPrivs"
        ),
        "1"
    );

    // --read-only: the root is read-only, tmpfs and volumes are not.
    let out = d.run(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        &image,
        "sh",
        "-c",
        "touch /scratch/ok && echo tmpfs-ok; touch /nope",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "tmpfs-ok\n");
    assert!(out.stderr.contains("Read-only file system"), "{out}");

    // --ulimit, never above the host's hard limit.
    let out = d.ok(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=123:456",
        &image,
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    assert_eq!(out.stdout, "123\n456\n", "{out}");

    // --pids-limit: forks beyond the limit fail.
    let out = d.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "8",
        &image,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done; wait",
    ]);
    assert!(
        out.stderr.contains("Resource temporarily unavailable")
            || out.stderr.contains("can't fork"),
        "{out}"
    );

    // --cpus and --memory are recorded and applied.
    let id = d
        .ok(&[
            "run", "-d", "--cpus", "0.5", "-m", "64m", &image, "sleep", "30",
        ])
        .stdout
        .trim()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", &id]).stdout).unwrap();
    assert_eq!(v[0]["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(v[0]["HostConfig"]["Memory"], 64 * 1024 * 1024);
    if support::reference_host().is_none() {
        let quota = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/cpu,cpuacct/wharf/{id}/cpu.cfs_quota_us"
        ))
        .or_else(|_| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/wharf/{id}/cpu.cfs_quota_us"))
        })
        .expect("the container's cpu cgroup");
        assert_eq!(quota.trim(), "50000");
        let memory = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory/wharf/{id}/memory.limit_in_bytes"
        ))
        .unwrap();
        assert_eq!(memory.trim(), (64 * 1024 * 1024).to_string());
    }
    // Inside, /sys/fs/cgroup shows the container's own cgroups, as under dockerd on cgroup v1
    // (what JVMs and other runtimes read their limits from).
    if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        let inside = d.ok(&[
            "exec",
            &id,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/cgroup.procs",
        ]);
        let lines: Vec<&str> = inside.stdout.lines().collect();
        assert_eq!(lines[0], (64 * 1024 * 1024).to_string(), "{inside}");
        // Its own processes only: its init (PID 1), this exec's shell and cat.
        let pids = &lines[1..];
        assert!(pids.contains(&"1") && pids.len() <= 3, "{inside}");
    }
    d.ok(&["rm", "-f", &id]);
}

/// Runs `docker ARGS` under `script`, which gives the CLI a pseudo-terminal, feeding `input`
/// one second later (once the CLI has put its terminal in raw mode; before that the line
/// discipline would interpret control characters).
fn in_a_terminal(docker: &DockerCli, args: &str, input: &str) -> support::Output {
    let dir = tempfile::tempdir().unwrap();
    // Parts separated by NUL are fed a second apart.
    let mut feeding = String::from("sleep 1");
    for (i, part) in input.split('\0').enumerate() {
        let feed = dir.path().join(format!("input{i}"));
        std::fs::write(&feed, part).unwrap();
        feeding.push_str(&format!("; cat {}; sleep 1", feed.display()));
    }
    let cmdline = format!("{} {args}", docker.bin.display());
    let pipeline = format!("({feeding}; sleep 4) | script -qfec \"{cmdline}\" /dev/null");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &pipeline])
        .env("DOCKER_HOST", &docker.host)
        .env("DOCKER_CONFIG", docker.config.path())
        .env("DOCKER_CLI_HINTS", "false");
    support::run(cmd, None, Duration::from_secs(60))
}

#[test]
fn run_it_gives_an_interactive_shell() {
    let stack = Stack::start();
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "tty");
    d.ok(&["pull", &image]);
    let out = in_a_terminal(
        &d,
        &format!("run -it --rm {image} sh"),
        "tty; stty size; echo $((6*7)); exit 5\n",
    );
    assert_eq!(out.code, Some(5), "{out}");
    assert!(out.stdout.contains("/dev/pts/0"), "{out}");
    assert!(out.stdout.contains("42"), "{out}");

    // Detach keys leave it running; attach again and end it.
    let id = d
        .ok(&["run", "-dit", "--name", "shell", &image, "sh"])
        .stdout
        .trim()
        .to_string();
    let out = in_a_terminal(&d, "attach shell", "echo attached-$((1+1))\n\0\x10\x11");
    assert!(
        out.stdout.contains("read escape sequence") || out.success(),
        "{out}"
    );
    assert!(out.stdout.contains("attached-2"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", &id]).stdout).unwrap();
    assert_eq!(
        v[0]["State"]["Status"], "running",
        "detaching keeps it running"
    );
    let out = in_a_terminal(&d, "exec -it shell sh -c 'tty; exit 4'", "");
    assert_eq!(out.code, Some(4), "{out}");
    d.ok(&["rm", "-f", "shell"]);
}

/// The detach keys of the CLI's config file (`detachKeys`), which the CLI sends with attach
/// and exec: they detach, and dockerd's default ctrl-p ctrl-q then goes to the container.
#[test]
fn detach_keys_from_the_cli_config_file_detach() {
    let stack = Stack::start();
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "keys");
    d.ok(&["pull", &image]);
    std::fs::write(
        d.config.path().join("config.json"),
        r#"{"detachKeys": "ctrl-x,x"}"#,
    )
    .unwrap();
    let id = d
        .ok(&["run", "-dit", "--name", "keys", &image, "sh"])
        .stdout
        .trim()
        .to_string();
    // ctrl-p ctrl-q are plain input now; ctrl-x x detaches.
    let out = in_a_terminal(&d, "attach keys", "\x10\x11echo still-$((2+2))\n\0\x18x");
    assert!(out.stdout.contains("still-4"), "{out}");
    assert!(out.stdout.contains("read escape sequence"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", &id]).stdout).unwrap();
    assert_eq!(
        v[0]["State"]["Status"], "running",
        "detaching keeps it running"
    );
    // exec -it takes them too.
    let out = in_a_terminal(&d, "exec -it keys sh", "echo in-exec\n\0\x18x");
    assert!(out.stdout.contains("in-exec"), "{out}");
    assert!(out.code.is_some(), "the CLI did not detach: {out}");
    d.ok(&["rm", "-f", "keys"]);
}

#[test]
fn events_report_the_container_lifecycle() {
    let stack = Stack::start();
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "events");
    d.ok(&["pull", &image]);
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let out = d.run(&[
        "run",
        "--name",
        "evt",
        "--label",
        "team=blue",
        &image,
        "sh",
        "-c",
        "exit 2",
    ]);
    assert_eq!(out.code, Some(2), "{out}");
    d.ok(&["rm", "evt"]);
    d.ok(&["volume", "create", "evtvol"]);
    d.ok(&["volume", "rm", "evtvol"]);
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let out = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    ]);
    let lines = out.lines();
    for want in [
        "container create evt ",
        "container attach evt ",
        "container start evt ",
        "container die evt 2",
        "container destroy evt ",
        "volume create  ",
        "volume destroy  ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want.trim_end())),
            "{want:?} in {out}"
        );
    }
    let out = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "label=team=blue",
        "--format",
        "{{.Action}}",
    ]);
    assert!(out.lines().contains(&"die".to_string()), "{out}");
}

/// With the same-host shortcuts off (as when image-store runs on another host), pulled blobs
/// stream over the bus into image-store, and layers stream from it to the runtime.
#[test]
fn pull_and_first_run_work_over_the_bus_alone() {
    if support::skip_on_reference("sets Wharf's environment") {
        return;
    }
    let stack = Stack::start_with(StackOptions {
        env: vec![("WHARF_SAME_HOST_SHORTCUTS".into(), "0".into())],
        ..Default::default()
    });
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "bus-only");
    let out = d.ok(&["pull", &image]);
    assert!(out.stdout.contains("Downloaded newer image"), "{out}");
    let out = d.ok(&[
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "ls /bin/grep && echo over-the-bus",
    ]);
    assert_eq!(out.stdout, "/bin/grep\nover-the-bus\n", "{out}");
}

#[test]
fn two_runtime_nodes_share_one_api() {
    if support::skip_on_reference("runs a second Wharf runtime node") {
        return;
    }
    let stack = Stack::start_with(StackOptions {
        extra_args: vec!["--node-name".into(), "n1".into()],
        ..Default::default()
    });
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "nodes");
    d.ok(&["pull", &image]);

    // A second node with its own data root, bridge, subnet and firewall table.
    let net = StackNet::claim();
    let data2 = stack.dir.path().join("node2");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("runtime")
        .args([
            "--node-name",
            "n2",
            "--nats-url",
            &stack.nats_url(),
            "--nats-user",
            "runtime",
        ])
        .arg("--data-root")
        .arg(&data2)
        .args(net.args())
        .env("WHARF_NATS_PASSWORD", stack.nats_password("runtime"))
        .env("WHARF_CONFIG_FILE", stack.dir.path().join("daemon.json"));
    let node2 = Proc::start(
        "wharf runtime n2",
        cmd,
        Some(&stack.dir.path().join("node2.log")),
        libc::SIGTERM,
        Duration::from_secs(10),
        true,
    );

    // Pinned by label: the container lives on n2 (its files are under n2's data root).
    let deadline = Instant::now() + Duration::from_secs(20);
    let on2 = loop {
        let out = d.run(&[
            "run",
            "-d",
            "--name",
            "on2",
            "--label",
            "wharf.node=n2",
            &image,
            "sh",
            "-c",
            "echo from-n2; sleep 300",
        ]);
        if out.success() {
            break out.stdout.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "n2 never took a container: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(data2.join("runtime/containers").join(&on2).is_dir());
    let on1 = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "on1",
            "--label",
            "wharf.node=n1",
            &image,
            "sleep",
            "300",
        ])
        .stdout
        .trim()
        .to_string();
    assert!(stack
        .data_root
        .join("runtime/containers")
        .join(&on1)
        .is_dir());

    // One API over both: ps, prefixes, logs, exec, stop, rm reach the right node.
    let ps = d.ok(&["ps", "--format", "{{.Names}}"]);
    let mut names = ps.lines();
    names.sort();
    assert_eq!(names, ["on1", "on2"], "{ps}");
    // A filter every node refuses, with a line break in it: the refusal comes back from
    // both at once (not after the gather's deadline, not a partial list), and both nodes
    // still answer afterwards.
    let started = Instant::now();
    let out = d.run(&["ps", "--filter", "status=bad\nvalue"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("invalid filter 'status=bad value'"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_millis(1500), "{out}");
    let ps = d.ok(&["ps", "--format", "{{.Names}}"]);
    assert_eq!(ps.lines().len(), 2, "{ps}");
    let logs = d.ok(&["logs", &on2[..8]]);
    assert_eq!(logs.stdout, "from-n2\n");

    // A name is one container's across the nodes: two creates of one name, at once, on two
    // nodes, give one container and dockerd's conflict; removed, the name is free on either.
    for round in 0..4 {
        let name = format!("race{round}");
        let runs: Vec<_> = ["n1", "n2"]
            .into_iter()
            .map(|node| {
                let cmd = d.command(&[
                    "create",
                    "--name",
                    &name,
                    "--label",
                    &format!("wharf.node={node}"),
                    &image,
                    "true",
                ]);
                std::thread::spawn(move || support::run(cmd, None, support::DOCKER_TIMEOUT))
            })
            .collect();
        let outs: Vec<_> = runs.into_iter().map(|t| t.join().unwrap()).collect();
        let won: Vec<_> = outs.iter().filter(|o| o.success()).collect();
        assert_eq!(won.len(), 1, "{outs:?}");
        let winner = won[0].stdout.trim();
        let lost = outs.iter().find(|o| !o.success()).unwrap();
        assert!(
            lost.stderr.contains(&format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{winner}\""
            )),
            "{lost}"
        );
        d.ok(&["rm", &name]);
        let other = if round % 2 == 0 { "n2" } else { "n1" };
        d.ok(&[
            "create",
            "--name",
            &name,
            "--label",
            &format!("wharf.node={other}"),
            &image,
            "true",
        ]);
        d.ok(&["rm", &name]);
    }
    // Renaming to a name another node's container holds is refused too.
    let out = d.run(&["rename", "on2", "on1"]);
    assert!(
        out.stderr
            .contains("Conflict. The container name \"/on1\" is already in use"),
        "{out}"
    );
    let out = d.ok(&["exec", "on2", "hostname"]);
    assert_eq!(out.stdout.trim(), &on2[..12]);

    // Least loaded: n1 runs one container, n2 one; a third goes by container count and name,
    // a fourth to the other node.
    let third = d
        .ok(&["run", "-d", &image, "sleep", "300"])
        .stdout
        .trim()
        .to_string();
    let fourth = d
        .ok(&["run", "-d", &image, "sleep", "300"])
        .stdout
        .trim()
        .to_string();
    let where_is = |id: &str| {
        if data2.join("runtime/containers").join(id).is_dir() {
            "n2"
        } else {
            "n1"
        }
    };
    assert_ne!(
        where_is(&third),
        where_is(&fourth),
        "placement spreads containers"
    );

    d.ok(&["stop", "-t", "1", &on2[..6]]);
    d.ok(&["rm", "-f", "on2", "on1", &third, &fourth]);
    let ps = d.ok(&["ps", "-aq"]);
    assert_eq!(ps.stdout.trim(), "", "{ps}");
    drop(node2);
    net.clean();
}

#[test]
fn an_image_in_use_by_a_container_is_not_removed() {
    let stack = Stack::start();
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "inuse");
    d.ok(&["pull", &image]);
    let id = d.ok(&["create", &image]).stdout.trim().to_string();
    let out = d.run(&["rmi", &image]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("conflict: unable to remove repository reference")
            && out.stderr.contains(&format!("container {}", &id[..12])),
        "{out}"
    );
    d.ok(&["rm", &id]);
    d.ok(&["rmi", &image]);
}

#[test]
fn health_checks_report_healthy_and_unhealthy() {
    let stack = Stack::start();
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "health");
    d.ok(&["pull", &image]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "good",
        "--health-cmd",
        "test -f /tmp/ready",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        &image,
        "sh",
        "-c",
        "touch /tmp/ready; sleep 300",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--health-cmd",
        "echo sick; exit 1",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        &image,
        "sleep",
        "300",
    ]);
    let state = |name: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", name]).stdout).unwrap();
        v[0]["State"]["Health"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (good, bad) = (state("good"), state("bad"));
        if good["Status"] == "healthy" && bad["Status"] == "unhealthy" {
            assert!(bad["FailingStreak"].as_i64().unwrap() >= 2, "{bad}");
            let last = &bad["Log"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["ExitCode"], 1, "{bad}");
            assert_eq!(last["Output"], "sick\n", "{bad}");
            break;
        }
        assert!(Instant::now() < deadline, "good: {good}\nbad: {bad}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ps = d.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.lines()
            .iter()
            .any(|l| l.starts_with("good Up") && l.ends_with("(healthy)")),
        "{ps}"
    );
    assert!(
        ps.lines()
            .iter()
            .any(|l| l.starts_with("bad Up") && l.ends_with("(unhealthy)")),
        "{ps}"
    );
    d.ok(&["rm", "-f", "good", "bad"]);
}

#[test]
fn init_and_volumes_from() {
    let stack = Stack::start();
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "init");
    d.ok(&["pull", &image]);
    // --init: PID 1 is Docker's init, the command its child.
    let out = d.ok(&[
        "run",
        "--rm",
        "--init",
        &image,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
    ]);
    let lines = out.lines();
    assert!(lines[0].starts_with("/dev/init -- sh -c"), "{out}");
    assert_ne!(lines[1], "1", "{out}");
    // --volumes-from: the same volume at the same place.
    d.ok(&["create", "--name", "data", "-v", "shared:/shared", &image]);
    d.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "data",
        &image,
        "sh",
        "-c",
        "echo hello > /shared/f",
    ]);
    let out = d.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "data:ro",
        &image,
        "sh",
        "-c",
        "cat /shared/f; touch /shared/g",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "hello\n", "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    d.ok(&["rm", "data"]);
}

#[test]
fn logs_tail_timestamps_follow_and_update() {
    let stack = Stack::start();
    let d = stack.docker();
    let registry = Registry::start();
    let image = pushed(&registry, "logs");
    d.ok(&["pull", &image]);
    let id = d
        .ok(&[
            "run",
            "-d",
            &image,
            "sh",
            "-c",
            "for i in 1 2 3 4; do echo line$i; echo err$i >&2; done; sleep 1; echo last",
        ])
        .stdout
        .trim()
        .to_string();
    // -f follows until the container ends, with both streams apart.
    let out = d.ok(&["logs", "-f", &id]);
    assert_eq!(out.stdout, "line1\nline2\nline3\nline4\nlast\n", "{out}");
    assert_eq!(out.stderr, "err1\nerr2\nerr3\nerr4\n", "{out}");
    let out = d.ok(&["logs", "--tail", "1", &id]);
    assert_eq!(out.stdout, "last\n", "{out}");
    assert_eq!(out.stderr, "", "{out}");
    let out = d.ok(&["logs", "--tail", "3", &id]);
    assert_eq!(out.stdout.lines().last(), Some("last"), "{out}");
    assert_eq!(
        out.stdout.lines().count() + out.stderr.lines().count(),
        3,
        "{out}"
    );
    let out = d.ok(&["logs", "-t", "--tail", "1", &id]);
    let (stamp, text) = out
        .stdout
        .trim_end()
        .split_once(' ')
        .expect("timestamp prefix");
    assert_eq!(text, "last");
    assert!(
        stamp.ends_with('Z') && stamp.contains('T') && stamp.len() >= 20,
        "{stamp}"
    );

    // docker update changes the running container's cgroup limits.
    let id = d
        .ok(&["run", "-d", "-m", "64m", &image, "sleep", "30"])
        .stdout
        .trim()
        .to_string();
    d.ok(&["update", "-m", "96m", "--memory-swap", "192m", &id]);
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", &id]).stdout).unwrap();
    assert_eq!(v[0]["HostConfig"]["Memory"], 96 * 1024 * 1024);
    if support::reference_host().is_none() {
        let limit = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory/wharf/{id}/memory.limit_in_bytes"
        ))
        .unwrap();
        assert_eq!(limit.trim(), (96 * 1024 * 1024).to_string());
    }
    d.ok(&["rm", "-f", &id]);
}

//! The rest of the container API through the real docker CLI: exec, user networks and name
//! resolution, -P and port, stats, top, pause, rename, restart policies, prune, ps filters.
//! Expected texts are dockerd's.

mod support;

use std::time::{Duration, Instant};

use support::fixtures::{self, Entry, ImageSpec, Layer, PushFormat};
use support::{DockerCli, Registry, Stack};

const APPLETS: &[&str] = &[
    "httpd", "id", "pwd", "tr", "head", "tail", "tty", "hostname", "touch", "wget", "grep", "wc",
];

/// A busybox image serving /www on 8080 (EXPOSE 8080/tcp), with an `app` user.
fn image_spec(name: &str) -> ImageSpec {
    let mut entries = vec![
        Entry::Dir("bin", 0o755),
        Entry::Dir("www", 0o755),
        Entry::File(
            "www/index.html".into(),
            0o644,
            format!("<h1>{name}</h1>\n").into_bytes(),
        ),
        Entry::Dir("etc", 0o755),
        Entry::File(
            "etc/passwd".into(),
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n".to_vec(),
        ),
        Entry::File(
            "etc/group".into(),
            0o644,
            b"root:x:0:\napp:x:1000:\n".to_vec(),
        ),
    ];
    for applet in APPLETS {
        if *applet != "wget" {
            entries.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
        }
    }
    let mut spec = ImageSpec::busybox_like(
        name,
        fixtures::host_arch(),
        vec![(Layer::new(&entries), "/bin/sh -c #(nop) COPY dir:www in / ")],
    );
    spec.cmd = ["httpd", "-f", "-p", "8080", "-h", "/www"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    spec.extra_config
        .insert("ExposedPorts".into(), serde_json::json!({"8080/tcp": {}}));
    spec
}

struct World {
    stack: Stack,
    docker: DockerCli,
    _registry: Registry,
    image: String,
}

fn world(name: &str) -> World {
    let stack = Stack::start();
    let docker = stack.docker();
    let registry = Registry::start();
    let pushed = fixtures::push_image(
        &registry,
        &image_spec(name),
        "ops",
        "v1",
        PushFormat::DockerV2S2,
    );
    let image = pushed.reference();
    docker.ok(&["pull", &image]);
    World {
        stack,
        docker,
        _registry: registry,
        image,
    }
}

fn inspect(docker: &DockerCli, what: &str) -> serde_json::Value {
    let out = docker.ok(&["inspect", what]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect JSON");
    v[0].clone()
}

fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn exec_runs_in_the_container_with_its_options() {
    let w = world("exec");
    let d = &w.docker;
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "box",
            "-e",
            "FROM_RUN=1",
            &w.image,
            "sleep",
            "300",
        ])
        .stdout
        .trim()
        .to_string();
    d.ok(&["exec", "box", "touch", "/tmp/made-by-exec"]);
    let out = d.run(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    let out = d.ok(&[
        "exec",
        "-e",
        "X=42",
        "-u",
        "app",
        "-w",
        "/tmp",
        "box",
        "sh",
        "-c",
        "echo $X $FROM_RUN; id -u; pwd; ls /tmp/made-by-exec; hostname",
    ]);
    assert_eq!(
        out.lines(),
        ["42 1", "1000", "/tmp", "/tmp/made-by-exec", &id[..12]],
        "{out}"
    );
    let out = d.run_stdin(
        &["exec", "-i", "box", "tr", "a-z", "A-Z"],
        b"piped\n".to_vec(),
    );
    assert_eq!(out.stdout, "PIPED\n", "{out}");
    d.ok(&["exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d"]);
    eventually("the detached exec", Duration::from_secs(5), || {
        d.run(&["exec", "box", "cat", "/tmp/d"]).stdout == "detached\n"
    });
    // PID 1 is the container's command; exec'd processes are in its PID namespace.
    let out = d.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert_eq!(out.stdout.trim(), "sleep 300", "{out}");
    let out = d.run(&["exec", "box", "no-such-thing"]);
    assert_eq!(out.code, Some(126), "{out}");
    assert!(
        out.stdout.contains("OCI runtime exec failed")
            && out
                .stdout
                .contains("exec: \"no-such-thing\": executable file not found in $PATH"),
        "{out}"
    );
    let top = d.ok(&["top", "box"]);
    assert!(top.stdout.contains("sleep 300"), "{top}");
    d.ok(&["stop", "-t", "1", "box"]);
    let out = d.run(&["exec", "box", "true"]);
    assert!(!out.success());
    assert!(out.stderr.contains("is not running"), "{out}");
}

#[test]
fn containers_on_a_user_network_find_each_other_by_name() {
    let w = world("net");
    let d = &w.docker;
    let net_id = d
        .ok(&["network", "create", "appnet"])
        .stdout
        .trim()
        .to_string();
    assert_eq!(net_id.len(), 64);
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for row in ["bridge bridge", "host host", "none null", "appnet bridge"] {
        assert!(ls.lines().contains(&row.to_string()), "{row}: {ls}");
    }
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "appnet",
        "--network-alias",
        "www",
        &w.image,
    ]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        &w.image,
        "sh",
        "-c",
        "wget -qO- http://web:8080/ && wget -qO- http://www:8080/",
    ]);
    assert_eq!(out.stdout, "<h1>net</h1>\n<h1>net</h1>\n", "{out}");
    let v = inspect(d, "web");
    let ip = v["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!ip.is_empty(), "{v}");
    let net = d.ok(&["network", "inspect", "appnet"]);
    assert!(net.stdout.contains(&ip), "{net}");
    // A container on the default bridge does not see names of the user network: the name
    // does not resolve there. (Not `wget -T`: busybox 1.35's wget crashes with it.)
    let out = d.run(&[
        "run",
        "--rm",
        &w.image,
        "sh",
        "-c",
        "busybox timeout 5 busybox wget -qO- http://web:8080/; echo exit=$?",
    ]);
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("bad address 'web:8080'")
            || out.stderr.contains("bad address 'web:8080'"),
        "{out}"
    );
    assert!(out.stdout.contains("exit=1"), "{out}");
    // In use: dockerd refuses to remove it.
    let out = d.run(&["network", "rm", "appnet"]);
    assert!(!out.success());
    assert!(out.stderr.contains("has active endpoints"), "{out}");
    d.ok(&["rm", "-f", "web"]);
    d.ok(&["network", "rm", "appnet"]);
    let out = d.run(&["network", "inspect", "appnet"]);
    assert!(!out.success());
    let out = d.run(&["network", "rm", "bridge"]);
    assert!(out.stderr.contains("pre-defined network"), "{out}");
}

#[test]
fn publish_all_port_stats_pause_rename_and_restart() {
    let w = world("misc");
    let d = &w.docker;
    let id = d
        .ok(&["run", "-d", "-P", "--name", "svc", &w.image])
        .stdout
        .trim()
        .to_string();
    let port = d.ok(&["port", "svc", "8080/tcp"]);
    let host_port: u16 = port
        .lines()
        .first()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("docker port: {port}"));
    eventually("the published port", Duration::from_secs(10), || {
        http_get(host_port).is_some_and(|p| p.contains("<h1>misc</h1>"))
    });

    let stats = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        "svc",
    ]);
    assert!(stats.stdout.starts_with("svc "), "{stats}");
    assert!(stats.stdout.contains("iB"), "{stats}");

    d.ok(&["pause", "svc"]);
    assert_eq!(inspect(d, "svc")["State"]["Status"], "paused");
    let ps = d.ok(&["ps", "--format", "{{.Status}}", "--filter", "name=svc"]);
    assert!(ps.stdout.contains("(Paused)"), "{ps}");
    d.ok(&["unpause", "svc"]);
    assert_eq!(inspect(d, "svc")["State"]["Status"], "running");

    d.ok(&["rename", "svc", "svc2"]);
    assert_eq!(inspect(d, &id)["Name"], "/svc2");
    let started = inspect(d, "svc2")["State"]["StartedAt"].clone();
    d.ok(&["restart", "-t", "1", "svc2"]);
    let v = inspect(d, "svc2");
    assert_eq!(v["State"]["Status"], "running");
    assert_ne!(v["State"]["StartedAt"], started);

    // A PID 1 without a handler ignores SIGTERM (the kernel protects a namespace's init);
    // one with a trap exits as it says.
    d.ok(&["kill", "-s", "TERM", "svc2"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(inspect(d, "svc2")["State"]["Status"], "running");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "trapper",
        &w.image,
        "sh",
        "-c",
        "trap 'exit 143' TERM; while :; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    d.ok(&["kill", "-s", "TERM", "trapper"]);
    let code = d.ok(&["wait", "trapper"]);
    assert_eq!(code.stdout.trim(), "143", "{code}");
    d.ok(&["rm", "trapper"]);
    d.ok(&["stop", "-t", "1", "svc2"]);
    assert_eq!(inspect(d, "svc2")["State"]["ExitCode"], 137);

    // ps filters and formats.
    d.ok(&["create", "--name", "made", "--label", "tier=db", &w.image]);
    let ps = d.ok(&[
        "ps",
        "-a",
        "--filter",
        "label=tier=db",
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    assert_eq!(ps.stdout, "made created\n", "{ps}");
    let ps = d.ok(&[
        "ps",
        "-a",
        "--filter",
        "status=exited",
        "--filter",
        "name=svc2",
        "-q",
    ]);
    assert_eq!(ps.stdout.trim(), &id[..12], "{ps}");
    let ps = d.ok(&["ps", "-n", "1", "--format", "{{.Names}}"]);
    assert_eq!(ps.stdout, "made\n", "{ps}");

    let pruned = d.ok(&["container", "prune", "-f"]);
    assert!(pruned.stdout.contains(&id), "{pruned}");
    let ps = d.ok(&["ps", "-aq"]);
    assert_eq!(ps.stdout.trim(), "", "{ps}");
}

#[test]
fn restart_policies_restart_failed_containers() {
    let w = world("restart");
    let d = &w.docker;
    d.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        &w.image,
        "sh",
        "-c",
        "exit 1",
    ]);
    eventually("two restarts", Duration::from_secs(20), || {
        let v = inspect(d, "flaky");
        v["RestartCount"] == 2 && v["State"]["Status"] == "exited"
    });
    d.ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        &w.image,
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    eventually("a restart", Duration::from_secs(10), || {
        inspect(d, "always")["RestartCount"].as_i64().unwrap_or(0) >= 1
    });
    d.ok(&["stop", "-t", "1", "always"]);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(inspect(d, "always")["State"]["Status"], "exited");
    let _ = &w.stack;
}

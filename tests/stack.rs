//! The stack as an operator sees it: services riding out a NATS restart, services run one by one
//! on a shared bus (the multi-host shape), and `docker events` as a view of the event stream.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::fixtures::{self, PushFormat};
use support::{DockerCli, Nats, Proc, Registry, Stack};

fn small_image(registry: &Registry, name: &str) -> fixtures::Pushed {
    let spec = fixtures::ImageSpec::busybox_like(name, fixtures::host_arch(), vec![]);
    fixtures::push_image(
        registry,
        &spec,
        &format!("stack/{name}"),
        "v1",
        PushFormat::DockerV2S2,
    )
}

/// Retries `docker` until it succeeds or `timeout` passes; returns the last output.
fn eventually(docker: &DockerCli, args: &[&str], timeout: Duration) -> support::Output {
    let deadline = Instant::now() + timeout;
    loop {
        let out = docker.run(args);
        if out.success() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn services_reconnect_after_nats_restarts() {
    if support::skip_on_reference("kills Wharf's nats-server") {
        return;
    }
    let registry = Registry::start();
    let first = small_image(&registry, "before-restart");
    let second = small_image(&registry, "after-restart");
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &first.reference()]);

    let nats = stack
        .service_pid("nats-server")
        .expect("wharf up runs a private nats-server");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(nats as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = stack.wait_service_restarted("nats-server", nats, Duration::from_secs(20));
    assert_ne!(restarted, nats);

    // The same service processes (no restart of theirs needed) answer again once reconnected.
    let image_store = stack.service_pid("image-store").unwrap();
    let out = eventually(
        &docker,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &first.reference(),
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.success(),
        "image-store answers after the NATS restart: {out}"
    );
    assert_eq!(out.stdout.trim(), first.id);
    let pulled = eventually(
        &docker,
        &["pull", &second.reference()],
        Duration::from_secs(30),
    );
    assert!(
        pulled.success(),
        "a pull works after the NATS restart: {pulled}"
    );
    assert_eq!(docker.inspect(&second.reference())["Id"], second.id);
    assert_eq!(
        stack.service_pid("image-store"),
        Some(image_store),
        "image-store reconnected instead of restarting"
    );
}

#[test]
fn services_run_alone_share_a_bus_and_serve_the_cli() {
    if support::skip_on_reference("runs Wharf's services one by one") {
        return;
    }
    let registry = Registry::start();
    let pushed = small_image(&registry, "split");
    let nats = Nats::start(Some(("svc", "secret")));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let host = format!("unix://{}", socket.display());
    let config = dir.path().join("daemon.json");
    std::fs::write(&config, "{}").unwrap();
    // The runtime's default network is a test network of its own (cleaned when the test
    // ends, after the services stop).
    let net = support::StackNet::claim();
    let mut runtime_args = vec!["--node-name".to_string(), "node-a".to_string()];
    runtime_args.extend(net.args());
    // Each service as its own process with its own data root, as on separate hosts; two
    // registry-sync workers share the queue group.
    let services: Vec<(&str, Vec<String>)> = vec![
        ("image-store", vec![]),
        ("registry-sync", vec![]),
        ("registry-sync", vec![]),
        ("builder", vec![]),
        ("runtime", runtime_args),
        ("gateway", vec!["-H".into(), host.clone()]),
    ];
    let mut procs: Vec<Proc> = Vec::new();
    for (i, (service, extra)) in services.iter().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg(service)
            .args(extra)
            .arg("--data-root")
            .arg(dir.path().join(format!("host{i}")))
            .arg("--config-file")
            .arg(&config)
            .env("WHARF_NATS_URL", &nats.url)
            .env("WHARF_NATS_USER", "svc")
            .env("WHARF_NATS_PASSWORD", "secret");
        let log = dir.path().join(format!("{service}-{i}.log"));
        procs.push(Proc::start(
            service,
            cmd,
            Some(&log),
            libc::SIGTERM,
            Duration::from_secs(10),
            false,
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !support::ping(&socket) {
        assert!(
            Instant::now() < deadline,
            "the gateway did not answer on {host}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let docker = DockerCli::new(&host);
    let out = eventually(
        &docker,
        &["pull", &pushed.reference()],
        Duration::from_secs(20),
    );
    assert!(out.success(), "pull through separately run services: {out}");
    assert_eq!(docker.inspect(&pushed.reference())["Id"], pushed.id);
    let ids = docker.image_ids(&[]);
    assert_eq!(ids.len(), 1, "{ids:?}");

    // Stopping the image store makes image calls fail with a clear 'not running' error.
    procs[0].stop();
    let out = docker.run(&["images"]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("image-store service is not running"),
        "{out}"
    );
}

fn events(docker: &DockerCli, since: &str, until: &str, filters: &[&str]) -> Vec<String> {
    let mut args = vec![
        "events",
        "--since",
        since,
        "--until",
        until,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"name\"}}",
    ];
    for f in filters {
        args.push("--filter");
        args.push(f);
    }
    docker.ok(&args).lines()
}

#[test]
fn docker_events_replays_and_filters_image_events() {
    if support::skip_on_reference("compares Wharf's event stream") {
        return;
    }
    let registry = Registry::start();
    let pushed = small_image(&registry, "events");
    let stack = Stack::start();
    let docker = stack.docker();
    let since = chrono_like_now();
    docker.ok(&["pull", &pushed.reference()]);
    docker.ok(&["tag", &pushed.reference(), "events-copy:1"]);
    docker.ok(&["rmi", "events-copy:1"]);
    std::thread::sleep(Duration::from_millis(300));
    let until = chrono_like_now();

    let all = events(&docker, &since, &until, &[]);
    let pulled = format!("image pull {} {}", pushed.reference(), pushed.repository);
    assert!(all.contains(&pulled), "{pulled:?} in {all:#?}");
    assert!(
        all.contains(&format!("image tag {} events-copy:1", pushed.id)),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|l| l.starts_with(&format!("image untag {}", pushed.id))),
        "{all:#?}"
    );
    let tag_pos = all
        .iter()
        .position(|l| l.contains("events-copy:1"))
        .unwrap();
    let untag_pos = all
        .iter()
        .position(|l| l.starts_with("image untag"))
        .unwrap();
    assert!(tag_pos < untag_pos, "events keep their order: {all:#?}");

    let only_untag = events(&docker, &since, &until, &["event=untag"]);
    assert!(
        !only_untag.is_empty() && only_untag.iter().all(|l| l.starts_with("image untag")),
        "{only_untag:#?}"
    );
    let containers = events(&docker, &since, &until, &["type=container"]);
    assert!(containers.is_empty(), "{containers:#?}");
    let bad = docker.run(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "colour=red",
    ]);
    assert!(!bad.success());
    assert!(bad.stderr.contains("invalid filter 'colour'"), "{bad}");
}

#[test]
fn docker_events_streams_live_events() {
    if support::skip_on_reference("compares Wharf's event stream") {
        return;
    }
    let registry = Registry::start();
    let pushed = small_image(&registry, "live");
    let stack = Stack::start();
    let docker = stack.docker();
    docker.ok(&["pull", &pushed.reference()]);
    // --since now (and no --until): replay from now on, then follow live, so the watcher cannot
    // miss the tag whatever the moment its request reaches the gateway.
    let since = chrono_like_now();
    let mut watch = docker.command(&[
        "events",
        "--since",
        &since,
        "--filter",
        "event=tag",
        "--format",
        "{{.Action}} {{index .Actor.Attributes \"name\"}}",
    ]);
    watch
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .stdin(std::process::Stdio::null());
    let mut child = support::spawn(watch, libc::SIGKILL).unwrap();
    docker.ok(&["tag", &pushed.reference(), "live-copy:7"]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line.expect("a live tag event"), "tag live-copy:7");
}

/// Now as unix seconds with nanoseconds, the form the CLI sends for --since/--until.
fn chrono_like_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Two engines on one host, neither told where its private nats-server listens: while another
/// server has the default port (4222; held here by a plain listener when it is free), each
/// `wharf up` takes a free port of its own and records it, and both serve the CLI; one told to
/// use a taken address stops at once, saying so, instead of talking to the other's server.
#[test]
fn a_second_engine_on_the_host_gets_its_own_nats_port() {
    if support::skip_on_reference("starts Wharf stacks") {
        return;
    }
    // Whoever holds the default port (this listener, or a server already there) stays for the
    // whole test.
    let _default = std::net::TcpListener::bind("127.0.0.1:4222");
    assert!(
        std::net::TcpListener::bind("127.0.0.1:4222").is_err(),
        "the default port is held"
    );
    let options = support::StackOptions {
        default_nats_listen: true,
        ..Default::default()
    };
    let first = Stack::start_with(options.clone());
    let second = Stack::start_with(options);
    assert_ne!(first.nats_port, 4222);
    assert_ne!(second.nats_port, 4222);
    assert_ne!(first.nats_port, second.nats_port);
    for stack in [&first, &second] {
        let url = std::fs::read_to_string(stack.data_root.join("nats/url")).unwrap();
        assert_eq!(url.trim(), format!("nats://127.0.0.1:{}", stack.nats_port));
        let out = stack.docker().run(&["info", "--format", "{{.Name}}"]);
        assert!(out.success(), "{out}");
        let out = stack.docker().run(&["volume", "create", "data1"]);
        assert!(out.success(), "{out}");
    }

    // An address given and taken: a clear error within seconds, nothing left running.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.json");
    std::fs::write(&config, "{}").unwrap();
    let taken = format!("127.0.0.1:{}", first.nats_port);
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("up")
        .arg("--data-root")
        .arg(dir.path().join("data"))
        .arg("-H")
        .arg(format!(
            "unix://{}",
            dir.path().join("docker.sock").display()
        ))
        .arg("--nats-listen")
        .arg(&taken)
        .arg("--config-file")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("--nats-listen {taken}: the address is in use")),
        "{stderr}"
    );
    assert!(!dir.path().join("docker.sock").exists());
}

/// An install of `wharf` alone (what `cargo install` gives: no `wharf-shim` beside it or on
/// `PATH`) runs containers: the runtime starts `wharf` itself as each container's shim.
#[test]
fn wharf_alone_serves_as_the_shim_when_wharf_shim_is_not_installed() {
    if support::skip_on_reference("starts a Wharf stack") {
        return;
    }
    let bin = tempfile::tempdir().unwrap();
    let wharf = bin.path().join("wharf");
    std::fs::copy(env!("CARGO_BIN_EXE_wharf"), &wharf).unwrap();
    // The machine's PATH without any directory holding a wharf-shim.
    let path: Vec<std::path::PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([
                "/usr/sbin".into(),
                "/usr/bin".into(),
                "/sbin".into(),
                "/bin".into(),
            ])
            .filter(|dir| !dir.join("wharf-shim").exists())
            .collect();
    let path = std::env::join_paths(path).unwrap().into_string().unwrap();
    let stack = Stack::start_with(support::StackOptions {
        binary: Some(wharf.clone()),
        env: vec![("PATH".into(), path)],
        ..Default::default()
    });
    let registry = Registry::start();
    let image = small_image(&registry, "alone").reference();
    let docker = stack.docker();
    docker.ok(&["pull", &image]);
    let out = docker.ok(&["run", "--rm", &image, "echo", "served"]);
    assert_eq!(out.stdout, "served\n");
    let id = docker.ok(&["run", "-d", &image, "sleep", "60"]).stdout;
    let pid = docker
        .ok(&["inspect", "-f", "{{.State.Pid}}", id.trim()])
        .stdout;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let shim = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .to_string();
    let exe = std::fs::read_link(format!("/proc/{shim}/exe")).unwrap();
    assert_eq!(exe, wharf, "the container's shim is the installed wharf");
    let cmdline = std::fs::read(format!("/proc/{shim}/cmdline")).unwrap();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap();
    assert_eq!(argv0, b"wharf-shim", "started under the shim's name");
    docker.ok(&["rm", "-f", id.trim()]);
}

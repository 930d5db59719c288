//! docker compose against Wharf, as a user runs it: Debian's `docker-compose` 1.29.2 (docker-py
//! underneath) brings up a two-service app with a built image, a named volume, two networks, an
//! alias, a healthcheck, `depends_on` and a published port; the services reach each other by
//! service name, alias and container name, the published port answers, and `down -v` leaves
//! nothing behind.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::fixtures::{self, ImageSpec, PushFormat};
use support::{Output, Registry, Stack};

const COMPOSE: &str = "/usr/bin/docker-compose";

/// `docker-compose -p <project> <args>` in `dir`, against `host`.
fn compose(dir: &Path, host: &str, project: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(COMPOSE);
    cmd.current_dir(dir)
        .env("DOCKER_HOST", host)
        .arg("-p")
        .arg(project)
        .args(args);
    support::run(cmd, None, Duration::from_secs(180))
}

/// Runs `args` until it succeeds or `timeout` passes; the last output.
fn until_ok(dir: &Path, host: &str, project: &str, args: &[&str], timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        let out = compose(dir, host, project, args);
        if out.success() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `docker container inspect` of `name`.
fn inspect(stack: &Stack, name: &str) -> serde_json::Value {
    let out = stack.docker().ok(&["container", "inspect", name]);
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

#[test]
fn a_compose_app_comes_up_talks_by_name_and_goes_away() {
    assert!(
        Path::new(COMPOSE).exists(),
        "{COMPOSE} is missing: deploy/test.sh installs Debian's docker-compose"
    );
    let stack = Stack::start();
    let registry = Registry::start();
    let spec = ImageSpec::busybox_like("compose", fixtures::host_arch(), vec![]);
    let base = fixtures::push_image(
        &registry,
        &spec,
        "compose/base",
        "v1",
        PushFormat::DockerV2S2,
    )
    .reference();
    stack.docker().ok(&["pull", &base]);
    let port = support::free_port();

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("web")).unwrap();
    std::fs::write(
        dir.path().join("web/Dockerfile"),
        format!(
            "FROM {base}\n\
             RUN busybox mkdir -p /www && echo hello-from-web > /www/index.html\n\
             CMD [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            r#"version: "3.8"
services:
  web:
    build: ./web
    stop_grace_period: 1s
    ports:
      - "127.0.0.1:{port}:8080"
    networks:
      front:
      back:
        aliases: [webalias]
    healthcheck:
      test: ["CMD", "busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
    volumes:
      - data:/data
  client:
    image: {base}
    command: ["sleep", "3600"]
    depends_on: [web]
    stop_grace_period: 1s
    networks: [back]
volumes:
  data:
networks:
  front:
  back:
"#
        ),
    )
    .unwrap();
    let (d, host, project) = (dir.path(), stack.host.as_str(), "capp");

    let out = compose(d, host, project, &["up", "-d"]);
    assert!(out.success(), "docker-compose up: {out}");

    // The published port.
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                Some(text)
            });
        match page {
            Some(text) if text.contains("hello-from-web") => break text,
            _ if Instant::now() > deadline => panic!("port {port} did not serve the page"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(page.starts_with("HTTP/1."), "{page}");

    // From the other service, by service name, alias and container name.
    for name in ["web", "webalias", "capp_web_1"] {
        let url = format!("http://{name}:8080/");
        let args = [
            "exec", "-T", "client", "busybox", "wget", "-q", "-O", "-", &url,
        ];
        let out = until_ok(d, host, project, &args, Duration::from_secs(15));
        assert!(out.success(), "{name}: {out}");
        assert_eq!(out.stdout.trim(), "hello-from-web", "{name}");
    }

    // Both networks joined, with compose's aliases; healthy; ps and logs as compose shows them.
    let web = inspect(&stack, "capp_web_1");
    let networks = web["NetworkSettings"]["Networks"].as_object().unwrap();
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    assert_eq!(names, ["capp_back", "capp_front"], "{networks:?}");
    let aliases = networks["capp_back"]["Aliases"].to_string();
    assert!(
        aliases.contains("\"webalias\"") && aliases.contains("\"web\""),
        "{aliases}"
    );
    assert!(!networks["capp_front"]["IPAddress"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(web["HostConfig"]["NetworkMode"], "capp_back");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = inspect(&stack, "capp_web_1")["State"]["Health"]["Status"].clone();
        if status == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "health: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ps = compose(d, host, project, &["ps"]);
    assert!(ps.success(), "{ps}");
    assert!(ps.stdout.contains("Up (healthy)"), "{ps}");
    assert!(
        ps.stdout.contains(&format!("127.0.0.1:{port}->8080/tcp")),
        "{ps}"
    );
    let logs = compose(d, host, project, &["logs", "--no-color", "web"]);
    assert!(logs.success(), "{logs}");

    // down -v: containers, networks and the named volume are gone.
    let out = compose(d, host, project, &["down", "-v"]);
    assert!(out.success(), "docker-compose down: {out}");
    let all = stack.docker().ok(&["ps", "-aq"]).stdout;
    assert!(all.trim().is_empty(), "{all}");
    let nets = stack
        .docker()
        .ok(&["network", "ls", "--format", "{{.Name}}"])
        .stdout;
    assert!(!nets.contains("capp_"), "{nets}");
    let vols = stack
        .docker()
        .ok(&["volume", "ls", "--format", "{{.Name}}"])
        .stdout;
    assert!(!vols.contains("capp_data"), "{vols}");
}

/// docker-py (Debian's python3-docker, under docker-compose) starts an exec with
/// `exec_start(socket=True)`: it reads the 101's head through a buffer, then reads the raw socket,
/// so output that came with the head is lost. As dockerd does, Wharf starts the process only
/// once the connection is taken over, so a quick command's output is all there, every time
/// (before, about one run in three came back empty).
#[test]
fn docker_py_exec_sockets_get_all_of_a_quick_commands_output() {
    let stack = Stack::start();
    let registry = Registry::start();
    let spec = ImageSpec::busybox_like("dockerpy", fixtures::host_arch(), vec![]);
    let image = fixtures::push_image(&registry, &spec, "compose/py", "v1", PushFormat::DockerV2S2)
        .reference();
    let d = stack.docker();
    d.ok(&["pull", &image]);
    d.ok(&["run", "-d", "--name", "box", &image, "sleep", "3600"]);
    let script = r#"
import socket, sys, docker
c = docker.APIClient(base_url=sys.argv[1])
for i in range(12):
    e = c.exec_create("box", ["echo", "hello-%d" % i], stdin=True, tty=False)
    s = c.exec_start(e["Id"], socket=True, tty=False)
    raw = s._sock
    raw.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        d = raw.recv(4096)
        if not d:
            break
        data += d
    print(i, data[8:].decode().strip() if len(data) > 8 else "")
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).arg(&stack.host);
    let out = support::run(cmd, None, Duration::from_secs(120));
    assert!(out.success(), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 12, "{out}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("{i} hello-{i}"), "{out}");
    }
}

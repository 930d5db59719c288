//! docker compose against Wharf, as a user runs it, side by side with a private dockerd:
//! Debian's `docker-compose` 1.29.2 (docker-py underneath) brings up a two-service app with a
//! built image, a named volume, two networks, an alias, a healthcheck, `depends_on` and a
//! published port on each engine; the services reach each other by service name, alias and
//! container name, the published port answers, `ps`, `logs` and `exec` show the same, and
//! `down -v` leaves nothing behind.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::dockerd::Dockerd;
use support::fixtures::{self, ImageSpec, PushFormat};
use support::{DockerCli, Output, Registry, Stack};

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
fn inspect(docker: &DockerCli, name: &str) -> serde_json::Value {
    let out = docker.ok(&["container", "inspect", name]);
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

/// The app: a built web server on two networks (an alias on one), a named volume, a health
/// check and a published port, and a client that depends on it.
fn write_app(dir: &Path, base: &str, port: u16) {
    std::fs::create_dir_all(dir.join("web")).unwrap();
    std::fs::write(
        dir.join("web/Dockerfile"),
        format!(
            "FROM {base}\n\
             RUN busybox mkdir -p /www && echo hello-from-web > /www/index.html\n\
             CMD [\"busybox\", \"httpd\", \"-f\", \"-v\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
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
}

/// The page the published port serves, once it serves one.
fn published_page(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
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
            Some(text) if text.contains("hello-from-web") => return text,
            _ if Instant::now() > deadline => panic!("port {port} did not serve the page"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Brings the app up on the engine at `host`, exercises it and takes it down; what a user
/// sees on the way, with the port replaced by `PORT`.
fn exercise(host: &str, base: &str) -> BTreeMap<&'static str, String> {
    let docker = DockerCli::new(host);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    write_app(dir.path(), base, port);
    let (d, project) = (dir.path(), "capp");
    let mut seen = BTreeMap::new();

    let out = compose(d, host, project, &["up", "-d"]);
    assert!(out.success(), "docker-compose up on {host}: {out}");
    let page = published_page(port);
    seen.insert("page", page.lines().last().unwrap_or_default().to_string());

    // From the other service, by service name, alias and container name.
    for (what, name) in [
        ("by service name", "web"),
        ("by alias", "webalias"),
        ("by container name", "capp_web_1"),
    ] {
        let url = format!("http://{name}:8080/");
        let args = [
            "exec", "-T", "client", "busybox", "wget", "-q", "-O", "-", &url,
        ];
        let out = until_ok(d, host, project, &args, Duration::from_secs(15));
        seen.insert(what, format!("{} {}", out.success(), out.stdout.trim()));
    }

    // Both networks joined, with compose's aliases.
    let web = inspect(&docker, "capp_web_1");
    let networks = web["NetworkSettings"]["Networks"].as_object().unwrap();
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    seen.insert("networks", format!("{names:?}"));
    let mut aliases: Vec<String> = networks["capp_back"]["Aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .filter(|a| ["web", "webalias"].contains(a))
        .map(String::from)
        .collect();
    // docker-compose sends them from a Python set: in no fixed order.
    aliases.sort();
    seen.insert("aliases on back", format!("{aliases:?}"));
    seen.insert("network mode", web["HostConfig"]["NetworkMode"].to_string());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = inspect(&docker, "capp_web_1")["State"]["Health"]["Status"].clone();
        if status == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "health on {host}: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // ps, exec and logs as compose shows them.
    let ps = compose(d, host, project, &["ps"]);
    assert!(ps.success(), "{ps}");
    let rows: Vec<String> = ps
        .stdout
        .lines()
        .skip(2)
        .map(|l| {
            let cols: Vec<&str> = l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            cols.join(" | ").replace(&port.to_string(), "PORT")
        })
        .collect();
    seen.insert("ps", rows.join("\n"));
    let out = compose(
        d,
        host,
        project,
        &["exec", "-T", "web", "busybox", "cat", "/www/index.html"],
    );
    seen.insert(
        "exec",
        format!("{} {}", out.code.unwrap_or(-1), out.stdout.trim()),
    );
    let out = compose(
        d,
        host,
        project,
        &["exec", "-T", "web", "sh", "-c", "exit 3"],
    );
    seen.insert("exec exit code", format!("{:?}", out.code));
    let logs = compose(d, host, project, &["logs", "--no-color", "web"]);
    assert!(logs.success(), "{logs}");
    seen.insert(
        "logs name the container",
        logs.stdout
            .lines()
            .all(|l| {
                l.is_empty()
                    || l.starts_with("Attaching")
                    || l.starts_with("web_1")
                    || l.starts_with("capp_web_1")
            })
            .to_string(),
    );

    // down -v: containers, networks and the named volume are gone.
    let out = compose(d, host, project, &["down", "-v"]);
    assert!(out.success(), "docker-compose down on {host}: {out}");
    let left = |args: &[&str]| {
        let out = docker.ok(args).stdout;
        out.lines()
            .filter(|l| l.contains("capp"))
            .count()
            .to_string()
    };
    seen.insert(
        "containers left",
        docker.ok(&["ps", "-aq"]).stdout.trim().to_string(),
    );
    seen.insert(
        "networks left",
        left(&["network", "ls", "--format", "{{.Name}}"]),
    );
    seen.insert(
        "volumes left",
        left(&["volume", "ls", "--format", "{{.Name}}"]),
    );
    seen
}

#[test]
fn a_compose_app_behaves_as_on_dockerd() {
    assert!(
        Path::new(COMPOSE).exists(),
        "{COMPOSE} is missing: deploy/test.sh installs Debian's docker-compose"
    );
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
    let theirs = {
        let dockerd = Dockerd::start();
        DockerCli::new(&dockerd.host).ok(&["pull", &base]);
        exercise(&dockerd.host, &base)
    };
    let stack = Stack::start();
    stack.docker().ok(&["pull", &base]);
    let ours = exercise(&stack.host, &base);
    assert_eq!(ours, theirs);
    // What the comparison stands on.
    assert_eq!(ours["page"], "hello-from-web");
    for how in ["by service name", "by alias", "by container name"] {
        assert_eq!(ours[how], "true hello-from-web", "{how}");
    }
    assert_eq!(ours["networks"], r#"["capp_back", "capp_front"]"#);
    assert!(ours["ps"].contains("Up (healthy)"), "{ours:?}");
    assert_eq!(ours["exec exit code"], "Some(3)");
    assert_eq!(ours["containers left"], "");
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

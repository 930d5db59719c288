//! The embedded DNS server of user networks (127.0.0.11), tried from inside containers with
//! busybox's `nslookup`, side by side with a private dockerd where the answer can be observed:
//! resolv.conf, names of containers started before and after, aliases, short IDs,
//! `name.network`, new addresses after a restart; names of the world forwarded from the
//! container's own network, and not from an `--internal` one.

mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::dockerd::side_by_side;
use support::fixtures::{self, ImageSpec, PushFormat};
use support::{DockerCli, Registry, Stack};

fn cli(host: &str) -> DockerCli {
    DockerCli::new(host)
}

/// The IPv4 addresses busybox's `nslookup NAME` finds in container `asker` (none when it
/// finds nothing).
fn lookup(d: &DockerCli, asker: &str, name: &str) -> Vec<String> {
    let out = d.run(&["exec", asker, "busybox", "nslookup", "-type=a", name]);
    let mut found = Vec::new();
    let mut answer = false;
    for line in out.stdout.lines() {
        if line.starts_with("Name:") {
            answer = true;
        } else if let Some(a) = line.strip_prefix("Address:").filter(|_| answer) {
            found.push(a.trim().to_string());
        }
    }
    found.sort();
    found
}

/// What one engine shows: resolv.conf, hosts lines naming `web`, and the lookups.
fn observe(d: &DockerCli, image: &str) -> BTreeMap<&'static str, String> {
    let mut seen = BTreeMap::new();
    d.ok(&["network", "create", "dnsnet"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "asker",
        "--network",
        "dnsnet",
        image,
        "sleep",
        "600",
    ]);
    // Started after the asker: found all the same.
    let web = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "dnsnet",
            "--network-alias",
            "www",
            image,
            "sleep",
            "600",
        ])
        .stdout
        .trim()
        .to_string();
    let ip = d.ip_on("web", "dnsnet");
    let resolv = d.ok(&["exec", "asker", "cat", "/etc/resolv.conf"]).stdout;
    seen.insert("resolv.conf", resolv);
    let hosts = d.ok(&["exec", "asker", "cat", "/etc/hosts"]).stdout;
    let peers = hosts.lines().filter(|l| l.contains(&ip)).count();
    seen.insert("hosts lines naming web", peers.to_string());
    for name in ["web", "WWW", "web.dnsnet", &web[..12]] {
        let found = lookup(d, "asker", name);
        assert_eq!(found, vec![ip.clone()], "{name} on {}", d.host);
    }
    // Not on the network: not found, from a container of the default bridge either.
    d.ok(&["run", "-d", "--name", "outsider", image, "sleep", "600"]);
    assert!(lookup(d, "asker", "outsider").is_empty(), "{}", d.host);
    assert!(lookup(d, "outsider", "web").is_empty(), "{}", d.host);
    // A restart with another address in between: the new address is answered.
    d.ok(&["stop", "-t", "0", "web"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "filler",
        "--network",
        "dnsnet",
        image,
        "sleep",
        "600",
    ]);
    assert!(lookup(d, "asker", "web").is_empty(), "stopped: {}", d.host);
    d.ok(&["start", "web"]);
    let new_ip = d.ip_on("web", "dnsnet");
    assert_eq!(lookup(d, "asker", "web"), vec![new_ip], "{}", d.host);
    d.ok(&["rm", "-f", "asker", "web", "outsider", "filler"]);
    d.ok(&["network", "rm", "dnsnet"]);
    seen
}

fn pushed_image(registry: &Registry, name: &str) -> String {
    let spec = ImageSpec::busybox_like(name, fixtures::host_arch(), vec![]);
    fixtures::push_image(registry, &spec, "dns/box", "v1", PushFormat::DockerV2S2).reference()
}

#[test]
fn user_networks_answer_container_names_at_127_0_0_11_as_dockerd_does() {
    let (theirs, ours) = side_by_side("dns", observe);
    assert_eq!(ours, theirs);
    assert!(
        ours["resolv.conf"].contains("nameserver 127.0.0.11\n"),
        "{ours:?}"
    );
    assert_eq!(ours["hosts lines naming web"], "0");
}

/// A DNS server on `address:53` that answers every A query with 192.0.2.7 and counts the
/// queries it gets.
fn fake_upstream(address: Ipv4Addr) -> Arc<AtomicUsize> {
    let socket = UdpSocket::bind((address, 53)).expect("bind the fake upstream");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            seen.fetch_add(1, Ordering::SeqCst);
            if n < 12 {
                continue;
            }
            // The query's header and question, then one A record pointing at the question.
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // response
            reply[3] = 0x80; // recursion available, NOERROR
            reply[6..8].copy_from_slice(&1u16.to_be_bytes()); // one answer
            reply[8..12].fill(0);
            reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
            let _ = socket.send_to(&reply, peer);
        }
    });
    count
}

#[test]
fn other_names_are_forwarded_from_the_containers_network_but_not_from_an_internal_one() {
    let registry = Registry::start();
    let image = pushed_image(&registry, "dnsfwd");
    let stack = Stack::start();
    let d = cli(&stack.host);
    d.ok(&["pull", &image]);
    // Subnets of their own for this test (the gateway is the first address).
    let third = 100 + (std::process::id() % 100) as u8;
    let (open, closed) = (
        format!("10.237.{third}.0/24"),
        format!("10.238.{third}.0/24"),
    );
    d.ok(&["network", "create", "--subnet", &open, "open"]);
    d.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        &closed,
        "closed",
    ]);
    let gateway = Ipv4Addr::new(10, 237, third, 1);
    let upstream = fake_upstream(gateway);
    let server = gateway.to_string();

    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "open",
        "--dns",
        &server,
        &image,
        "busybox",
        "nslookup",
        "-type=a",
        "outside.test",
    ]);
    assert!(out.stdout.contains("192.0.2.7"), "{out}");
    assert!(
        out.stdout.contains("127.0.0.11"),
        "asked the embedded server: {out}"
    );
    assert!(upstream.load(Ordering::SeqCst) >= 1);

    // From an internal network the same question never leaves: no answer, nothing upstream.
    let before = upstream.load(Ordering::SeqCst);
    let out = d.run(&[
        "run",
        "--rm",
        "--network",
        "closed",
        "--dns",
        &server,
        &image,
        "busybox",
        "nslookup",
        "-type=a",
        "outside.test",
    ]);
    assert!(!out.stdout.contains("192.0.2.7"), "{out}");
    assert!(
        out.stdout.contains("127.0.0.11"),
        "asked the embedded server: {out}"
    );
    assert_eq!(upstream.load(Ordering::SeqCst), before, "{out}");
    // Names of its own network are still answered there.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "inner",
        "--network",
        "closed",
        &image,
        "sleep",
        "600",
    ]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "closed",
        &image,
        "busybox",
        "nslookup",
        "-type=a",
        "inner",
    ]);
    let ip = d.ip_on("inner", "closed");
    assert!(out.stdout.contains(&ip), "{out}");
    d.ok(&["rm", "-f", "inner"]);
    d.ok(&["network", "rm", "open", "closed"]);
}

#[test]
fn names_are_served_again_after_the_runtime_restarts_and_after_a_connect() {
    let registry = Registry::start();
    let image = pushed_image(&registry, "dnsrestart");
    let stack = Stack::start();
    let d = cli(&stack.host);
    d.ok(&["pull", &image]);
    d.ok(&["network", "create", "back"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "asker",
        "--network",
        "back",
        &image,
        "sleep",
        "600",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "back",
        &image,
        "sleep",
        "600",
    ]);
    let ip = d.ip_on("db", "back");
    assert_eq!(lookup(&d, "asker", "db"), vec![ip.clone()]);

    let old = stack.service_pid("runtime").expect("runtime pid");
    // SAFETY: SIGKILL to the runtime process the stack started.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };
    stack.wait_service_restarted("runtime", old, Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lookup(&d, "asker", "db") != vec![ip.clone()] {
        assert!(std::time::Instant::now() < deadline, "{}", stack.log());
        std::thread::sleep(Duration::from_millis(200));
    }

    // A container of the default bridge connected to the network gets the server.
    d.ok(&["run", "-d", "--name", "late", &image, "sleep", "600"]);
    assert!(lookup(&d, "late", "db").is_empty());
    d.ok(&["network", "connect", "back", "late"]);
    assert_eq!(lookup(&d, "late", "db"), vec![ip]);
    let resolv = d.ok(&["exec", "late", "cat", "/etc/resolv.conf"]).stdout;
    assert!(resolv.contains("nameserver 127.0.0.11\n"), "{resolv}");
    d.ok(&["rm", "-f", "asker", "db", "late"]);
    d.ok(&["network", "rm", "back"]);
}

/// `docker build --network NET` of a user network: a RUN step finds a container of that network
/// by name through the embedded server, as it would on dockerd.
#[test]
fn a_build_step_on_a_user_network_finds_its_containers_by_name() {
    let registry = Registry::start();
    let image = pushed_image(&registry, "dnsbuild");
    let stack = Stack::start();
    let d = cli(&stack.host);
    d.ok(&["pull", &image]);
    d.ok(&["network", "create", "buildnet"]);
    d.ok(&[
        "run", "-d", "--name", "srv", "--network", "buildnet", &image, "sh", "-c",
        "busybox mkdir /www && echo page-from-srv > /www/index.html && busybox httpd -f -p 8080 -h /www",
    ]);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {image}\nRUN busybox wget -q -O /got http://srv:8080/ && cat /etc/resolv.conf /got\n"
        ),
    )
    .unwrap();
    let mut cmd = d.command(&[
        "build",
        "--network",
        "buildnet",
        "--no-cache",
        "-t",
        "fetched",
        ".",
    ]);
    cmd.current_dir(ctx.path()).env("DOCKER_BUILDKIT", "0");
    let out = support::run(cmd, None, Duration::from_secs(120));
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("nameserver 127.0.0.11"), "{out}");
    assert!(out.stdout.contains("page-from-srv"), "{out}");
    let got = d.ok(&["run", "--rm", "fetched", "cat", "/got"]);
    assert_eq!(got.stdout, "page-from-srv\n");
    d.ok(&["rm", "-f", "srv"]);
    d.ok(&["network", "rm", "buildnet"]);
}

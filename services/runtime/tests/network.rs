//! Container networking against the real kernel, iproute2 and nftables (we run as root).
//!
//! Each test gets its own bridge (`wt<random>`), nftables table (`wharf_test_<random>`), subnet
//! (172.31.<n>.0/24) and IPAM state dir; container network namespaces are `unshare --net sleep`
//! processes. Guards tear the network down and kill the processes by PID even when a test
//! fails, and check that nothing is left. Traffic goes only to addresses inside these
//! namespaces and to loopback.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use wharf_runtime::network::{
    host_interface_name, BridgeNetwork, IpRoute2, NetworkConfig, NetworkError, PortMapping,
};

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    u32::from_ne_bytes(bytes)
}

/// Distinct third octets for the tests of this run, from a random start.
/// A /24 of 172.31.0.0/16 that no other test process holds: each octet has a lock file in
/// /tmp, held (flock) for the life of the returned file, so tests running side by side in
/// separate processes never route one subnet to two bridges (a random pick, as before,
/// could collide, and a published port's packets would go to the other test's bridge).
fn test_subnet() -> (String, nix::fcntl::Flock<std::fs::File>) {
    let start = random_u32();
    for i in 0..256u32 {
        let octet = (start + i) % 256;
        let path = format!("/tmp/wharf-runtime-test-net-{octet}.lock");
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if let Ok(held) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            return (format!("172.31.{octet}.0/24"), held);
        }
    }
    panic!("every test subnet of 172.31.0.0/16 is held");
}

fn random_id() -> String {
    format!("{:08x}{:08x}", random_u32(), random_u32())
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

fn link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name]).status.success()
}

fn nft_table_exists(table: &str) -> bool {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == format!("table ip {table}"))
}

/// A test network; dropping it tears it down and checks that no bridge or table is left.
struct TestNetwork {
    network: BridgeNetwork,
    bridge: String,
    table: String,
    _state: tempfile::TempDir,
    _subnet: nix::fcntl::Flock<std::fs::File>,
}

impl TestNetwork {
    fn new() -> TestNetwork {
        let suffix = format!("{:06x}", random_u32() & 0xff_ffff);
        let state = tempfile::tempdir().unwrap();
        let mut config = NetworkConfig::new(state.path());
        config.bridge = format!("wt{suffix}");
        config.table = format!("wharf_test_{suffix}");
        let (subnet, held) = test_subnet();
        config.subnet = subnet.parse().unwrap();
        let bridge = config.bridge.clone();
        let table = config.table.clone();
        let network = BridgeNetwork::open(config).expect("open network");
        let net = TestNetwork {
            network,
            bridge,
            table,
            _state: state,
            _subnet: held,
        };
        net.network.setup().expect("setup");
        net
    }

    fn gateway(&self) -> Ipv4Addr {
        self.network.config().subnet.gateway()
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let torn_down = self.network.teardown();
        // Whatever teardown did, leave nothing behind.
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(Stdio::null())
            .status();
        let _ = ip(&["link", "delete", "dev", &self.bridge]);
        if !std::thread::panicking() {
            torn_down.expect("teardown");
        }
    }
}

/// A process in a new network namespace (a container's, for these tests); killed and reaped
/// by PID on drop, which destroys the namespace and the veth end inside it.
struct Netns {
    child: Child,
}

impl Netns {
    fn new() -> Netns {
        let child = Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .spawn()
            .expect("unshare");
        let netns = Netns { child };
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(netns.path()).ok().as_ref() == Some(&ours)
            || std::fs::read_link(netns.path()).is_err()
        {
            assert!(Instant::now() < deadline, "unshare did not make a netns");
            std::thread::sleep(Duration::from_millis(10));
        }
        netns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .arg("--")
            .args(args)
            .output()
            .expect("nsenter")
    }

    fn ping(&self, address: Ipv4Addr) -> bool {
        self.run(&["busybox", "ping", "-c1", "-W1", &address.to_string()])
            .status
            .success()
    }

    /// A TCP server inside the namespace on `port` that answers each connection with `reply`,
    /// until `connections` were served or 20 s passed.
    fn serve(&self, port: u16, reply: &'static str, connections: usize) {
        let namespace = File::open(self.path()).unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: setns takes a descriptor we own; it changes only this thread's network
            // namespace.
            let rc = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind in netns");
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut served = 0;
            while served < connections && Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.write_all(reply.as_bytes());
                        served += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("listener ready");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fetch(address: Ipv4Addr, port: u16) -> std::io::Result<String> {
    let target = SocketAddr::V4(SocketAddrV4::new(address, port));
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

fn host_port() -> u16 {
    20000 + (random_u32() % 20000) as u16
}

#[test]
fn setup_creates_the_bridge_with_the_gateway_and_is_idempotent() {
    let net = TestNetwork::new();
    net.network.setup().expect("second setup");
    let out = ip(&["-br", "addr", "show", "dev", &net.bridge]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{}/24", net.gateway())), "{text}");
    let flags = String::from_utf8_lossy(&ip(&["-o", "link", "show", "dev", &net.bridge]).stdout)
        .into_owned();
    assert!(
        flags.contains(",UP") || flags.contains("<UP"),
        "bridge not up: {flags}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    let rules = Command::new("nft")
        .args(["list", "table", "ip", &net.table])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    let subnet = net.network.config().subnet.to_string();
    assert_eq!(
        rules.matches("masquerade").count(),
        2,
        "setup twice must not duplicate rules:\n{rules}"
    );
    assert!(
        rules.contains(&format!(
            "ip saddr {subnet} oifname != \"{}\" masquerade",
            net.bridge
        )),
        "{rules}"
    );
}

#[test]
fn attached_container_gets_eth0_with_its_address_and_pings_the_gateway() {
    let net = TestNetwork::new();
    let ctr = Netns::new();
    let id = random_id();
    let attachment = net.network.attach(&id, &ctr.path(), &[]).expect("attach");
    assert_eq!(attachment.gateway, net.gateway());
    assert_eq!(net.network.address_of(&id), Some(attachment.address));

    let addr = ctr.run(&["ip", "-br", "addr", "show", "dev", "eth0"]);
    let addr = String::from_utf8_lossy(&addr.stdout);
    assert!(
        addr.contains(&format!("{}/24", attachment.address)),
        "{addr}"
    );
    let lo = String::from_utf8_lossy(&ctr.run(&["ip", "-br", "link", "show", "dev", "lo"]).stdout)
        .into_owned();
    assert!(
        lo.contains("UNKNOWN") || lo.contains("UP"),
        "lo not up: {lo}"
    );
    let route =
        String::from_utf8_lossy(&ctr.run(&["ip", "route", "show", "default"]).stdout).into_owned();
    assert!(
        route.contains(&format!("default via {} dev eth0", net.gateway())),
        "{route}"
    );
    let master = String::from_utf8_lossy(
        &ip(&["-o", "link", "show", "dev", &attachment.host_interface]).stdout,
    )
    .into_owned();
    assert!(
        master.contains(&format!("master {}", net.bridge)),
        "{master}"
    );

    assert!(ctr.ping(net.gateway()), "container cannot ping the gateway");
    net.network.detach(&id).unwrap();
}

#[test]
fn two_attached_containers_reach_each_other() {
    let net = TestNetwork::new();
    let (a, b) = (Netns::new(), Netns::new());
    let (id_a, id_b) = (random_id(), random_id());
    let at_a = net.network.attach(&id_a, &a.path(), &[]).expect("attach a");
    let at_b = net.network.attach(&id_b, &b.path(), &[]).expect("attach b");
    assert_ne!(at_a.address, at_b.address);
    assert!(a.ping(at_b.address), "a cannot reach b");
    assert!(b.ping(at_a.address), "b cannot reach a");
    net.network.detach(&id_a).unwrap();
    net.network.detach(&id_b).unwrap();
}

#[test]
fn published_port_answers_on_localhost_and_on_the_bridge_address() {
    let net = TestNetwork::new();
    let ctr = Netns::new();
    let id = random_id();
    let port = host_port();
    let mapping: PortMapping = format!("{port}:8080/tcp").parse().unwrap();
    ctr.serve(8080, "hello from the container\n", 2);
    net.network
        .attach(&id, &ctr.path(), &[mapping])
        .expect("attach");

    let local = fetch(Ipv4Addr::LOCALHOST, port).expect("127.0.0.1:hostPort");
    assert_eq!(local, "hello from the container\n");
    let bridge = fetch(net.gateway(), port).expect("gateway:hostPort");
    assert_eq!(bridge, "hello from the container\n");
    net.network.detach(&id).unwrap();
}

#[test]
fn port_published_on_one_host_ip_matches_only_that_address() {
    let net = TestNetwork::new();
    let ctr = Netns::new();
    let id = random_id();
    let port = host_port();
    let mapping: PortMapping = format!("127.0.0.1:{port}:8080").parse().unwrap();
    ctr.serve(8080, "only on localhost\n", 1);
    net.network
        .attach(&id, &ctr.path(), &[mapping])
        .expect("attach");
    assert_eq!(
        fetch(Ipv4Addr::LOCALHOST, port).unwrap(),
        "only on localhost\n"
    );
    // Nothing listens on the gateway itself, so without a DNAT rule for it the host refuses.
    assert!(fetch(net.gateway(), port).is_err());
    net.network.detach(&id).unwrap();
}

#[test]
fn detach_removes_the_veth_and_dnat_rules_and_releases_the_address() {
    let net = TestNetwork::new();
    let ctr = Netns::new();
    let id = random_id();
    let port = host_port();
    let mapping: PortMapping = format!("{port}:80").parse().unwrap();
    let attachment = net
        .network
        .attach(&id, &ctr.path(), &[mapping])
        .expect("attach");
    assert!(link_exists(&attachment.host_interface));
    assert_eq!(
        net.network.firewall().published_rules(&id).unwrap().len(),
        1
    );

    net.network.detach(&id).expect("detach");
    assert!(!link_exists(&host_interface_name(&id)));
    assert!(net
        .network
        .firewall()
        .published_rules(&id)
        .unwrap()
        .is_empty());
    assert_eq!(net.network.address_of(&id), None);
    let inside = ctr.run(&["ip", "link", "show", "dev", "eth0"]);
    assert!(!inside.status.success(), "eth0 still inside the container");
    // Detach again is harmless.
    net.network.detach(&id).expect("second detach");
}

#[test]
fn failed_attach_leaves_no_veth_and_no_allocation() {
    let net = TestNetwork::new();
    let id = random_id();
    let err = net
        .network
        .attach(&id, &PathBuf::from("/proc/999999999/ns/net"), &[])
        .unwrap_err();
    // The namespace file is opened before any link is made (netlink needs its descriptor).
    assert!(matches!(err, NetworkError::Io { .. }), "{err}");
    assert!(!link_exists(&host_interface_name(&id)));
    assert_eq!(net.network.address_of(&id), None);
}

#[test]
fn teardown_leaves_no_table_and_no_bridge() {
    let net = TestNetwork::new();
    let ctr = Netns::new();
    let id = random_id();
    net.network.attach(&id, &ctr.path(), &[]).expect("attach");
    assert!(link_exists(&net.bridge));
    assert!(nft_table_exists(&net.table));
    net.network.teardown().expect("teardown");
    assert!(!link_exists(&net.bridge));
    assert!(!nft_table_exists(&net.table));
    assert!(!link_exists(&host_interface_name(&id)));
    net.network.teardown().expect("second teardown");
}

#[test]
fn attach_and_detach_are_fast() {
    let net = TestNetwork::new();
    let mut attach_times = Vec::new();
    let mut detach_times = Vec::new();
    let mut attach_ports_times = Vec::new();
    let mut detach_ports_times = Vec::new();
    for round in 0..10 {
        let ctr = Netns::new();
        let id = random_id();
        let ports: Vec<PortMapping> = if round % 2 == 0 {
            Vec::new()
        } else {
            vec![format!("{}:80", host_port()).parse().unwrap()]
        };
        let started = Instant::now();
        net.network
            .attach(&id, &ctr.path(), &ports)
            .expect("attach");
        let attached = started.elapsed();
        let started = Instant::now();
        net.network.detach(&id).expect("detach");
        let detached = started.elapsed();
        if ports.is_empty() {
            attach_times.push(attached);
            detach_times.push(detached);
        } else {
            attach_ports_times.push(attached);
            detach_ports_times.push(detached);
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (a, d) = (median(&mut attach_times), median(&mut detach_times));
    let (ap, dp) = (
        median(&mut attach_ports_times),
        median(&mut detach_ports_times),
    );
    // Most of a detach is the kernel unregistering the veth (about as long as `ip link del`);
    // with the link already gone, as after the container's namespace was destroyed, what is
    // left is Wharf's own work.
    let mut detach_gone_times = Vec::new();
    for _ in 0..5 {
        let ctr = Netns::new();
        let id = random_id();
        let ports: Vec<PortMapping> = vec![format!("{}:80", host_port()).parse().unwrap()];
        let attachment = net
            .network
            .attach(&id, &ctr.path(), &ports)
            .expect("attach");
        assert!(ip(&["link", "delete", "dev", &attachment.host_interface])
            .status
            .success());
        let started = Instant::now();
        net.network.detach(&id).expect("detach");
        detach_gone_times.push(started.elapsed());
    }
    let dg = median(&mut detach_gone_times);
    println!(
        "median attach {a:?}, detach {d:?}; with a published port: attach {ap:?}, detach {dp:?}; \
         detach (published port) with the veth already gone {dg:?}"
    );
    for t in [a, ap, dg] {
        assert!(t < Duration::from_millis(50), "{t:?}");
    }
    // The kernel's veth unregistration waits for RCU grace periods: 20-40 ms on a busy host.
    for t in [d, dp] {
        assert!(t < Duration::from_millis(100), "{t:?}");
    }
}

fn nft_table_text(table: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ports_of_bridge(bridge: &str) -> String {
    String::from_utf8_lossy(&ip(&["-o", "link", "show", "master", bridge]).stdout).into_owned()
}

#[test]
fn fifty_attach_detach_cycles_leave_no_veths_or_map_elements() {
    let net = TestNetwork::new();
    let ctr = Netns::new();
    let port = host_port();
    for round in 0..50 {
        let id = random_id();
        let ports: Vec<PortMapping> = match round % 3 {
            0 => Vec::new(),
            1 => vec![format!("{port}:80").parse().unwrap()],
            _ => vec![
                format!("127.0.0.1:{port}:80").parse().unwrap(),
                format!("{}:53/udp", port + 1).parse().unwrap(),
            ],
        };
        net.network
            .attach(&id, &ctr.path(), &ports)
            .expect("attach");
        assert_eq!(
            net.network.firewall().published_rules(&id).unwrap().len(),
            ports.len()
        );
        net.network.detach(&id).expect("detach");
    }
    let bridge_ports = ports_of_bridge(&net.bridge);
    assert!(bridge_ports.trim().is_empty(), "{bridge_ports}");
    let table = nft_table_text(&net.table);
    assert!(!table.contains("elements"), "map elements left:\n{table}");
    let inside = ctr.run(&["ip", "-o", "link", "show"]);
    let inside = String::from_utf8_lossy(&inside.stdout);
    assert_eq!(inside.lines().count(), 1, "links left inside:\n{inside}");
}

#[test]
fn a_restarted_runtime_unpublishes_ports_published_before_the_restart() {
    let net = TestNetwork::new();
    let ctr = Netns::new();
    let id = random_id();
    let port = host_port();
    let mapping: PortMapping = format!("{port}:8080").parse().unwrap();
    ctr.serve(8080, "before the restart\n", 1);
    net.network
        .attach(&id, &ctr.path(), &[mapping])
        .expect("attach");
    assert_eq!(
        fetch(Ipv4Addr::LOCALHOST, port).unwrap(),
        "before the restart\n"
    );

    // A new process: a fresh BridgeNetwork over the same state directory and table.
    let restarted = BridgeNetwork::open(net.network.config().clone()).expect("reopen");
    restarted.setup().expect("setup after restart");
    assert_eq!(restarted.firewall().published_rules(&id).unwrap().len(), 1);
    restarted.detach(&id).expect("detach after restart");
    assert!(restarted
        .firewall()
        .published_rules(&id)
        .unwrap()
        .is_empty());
    let table = nft_table_text(&net.table);
    assert!(!table.contains("elements"), "{table}");
    assert!(!link_exists(&host_interface_name(&id)));
    assert!(fetch(Ipv4Addr::LOCALHOST, port).is_err());
}

#[test]
fn a_port_taken_by_another_container_fails_the_attach_cleanly() {
    let net = TestNetwork::new();
    let (a, b) = (Netns::new(), Netns::new());
    let (id_a, id_b) = (random_id(), random_id());
    let mapping: PortMapping = format!("{}:80", host_port()).parse().unwrap();
    net.network.attach(&id_a, &a.path(), &[mapping]).expect("a");
    assert!(net.network.attach(&id_b, &b.path(), &[mapping]).is_err());
    assert!(!link_exists(&host_interface_name(&id_b)));
    assert_eq!(net.network.address_of(&id_b), None);
    // The failed attach must not have touched a's rules.
    assert_eq!(
        net.network.firewall().published_rules(&id_a).unwrap().len(),
        1
    );
    net.network.detach(&id_b).expect("detach b");
    net.network.detach(&id_a).expect("detach a");
    assert!(!nft_table_text(&net.table).contains("elements"));
}

#[test]
fn the_iproute2_links_still_attach_and_detach() {
    let net = TestNetwork::new();
    let with_ip = BridgeNetwork::with_links(net.network.config().clone(), IpRoute2).unwrap();
    let ctr = Netns::new();
    let id = random_id();
    let attachment = with_ip.attach(&id, &ctr.path(), &[]).expect("attach");
    let addr = ctr.run(&["ip", "-br", "addr", "show", "dev", "eth0"]);
    let addr = String::from_utf8_lossy(&addr.stdout);
    assert!(
        addr.contains(&format!("{}/24", attachment.address)),
        "{addr}"
    );
    assert!(ctr.ping(net.gateway()), "container cannot ping the gateway");
    with_ip.detach(&id).expect("detach");
    assert!(!link_exists(&attachment.host_interface));
}

#[test]
fn attach_and_detach_cost_does_not_grow_with_the_number_of_containers() {
    const CONTAINERS: usize = 200;
    let net = TestNetwork::new();
    let base_port = 20000 + (random_u32() % 20000) as u16;
    let namespaces: Vec<Netns> = (0..CONTAINERS).map(|_| Netns::new()).collect();
    let ids: Vec<String> = (0..CONTAINERS).map(|_| random_id()).collect();
    let mut attach_times = Vec::new();
    for (n, (ctr, id)) in namespaces.iter().zip(&ids).enumerate() {
        let ports = [format!("{}:80", base_port + n as u16).parse().unwrap()];
        let started = Instant::now();
        net.network.attach(id, &ctr.path(), &ports).expect("attach");
        attach_times.push(started.elapsed());
    }
    let mut detach_times = Vec::new();
    for id in &ids {
        let started = Instant::now();
        net.network.detach(id).expect("detach");
        detach_times.push(started.elapsed());
    }
    let median = |times: &[Duration]| {
        let mut times = times.to_vec();
        times.sort();
        times[times.len() / 2]
    };
    let tenth = CONTAINERS / 10;
    let (first_attach, last_attach) = (
        median(&attach_times[..tenth]),
        median(&attach_times[CONTAINERS - tenth..]),
    );
    // Detach runs from full to empty: the first ones see the most containers.
    let (full_detach, empty_detach) = (
        median(&detach_times[..tenth]),
        median(&detach_times[CONTAINERS - tenth..]),
    );
    println!(
        "median attach with 0-{tenth} others {first_attach:?}, with {}+ others {last_attach:?}; \
         median detach with {}+ others {full_detach:?}, with <{tenth} others {empty_detach:?}",
        CONTAINERS - tenth,
        CONTAINERS - tenth,
    );
    // Sanity bounds only (other tests run in parallel): the point is the printed comparison.
    assert!(last_attach < Duration::from_millis(100), "{last_attach:?}");
    assert!(full_detach < Duration::from_millis(200), "{full_detach:?}");
    assert!(ports_of_bridge(&net.bridge).trim().is_empty());
    assert!(!nft_table_text(&net.table).contains("elements"));
}

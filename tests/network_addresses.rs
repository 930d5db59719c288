//! Addresses on networks as dockerd gives them, side by side with a private dockerd:
//! `--subnet`, `--gateway` and `--ip-range` at create, `--ip` at run and connect with
//! dockerd's refusals, MAC addresses derived from the address (what the container's interface
//! really has), `--mac-address`, and the drivers and pools dockerd refuses.

mod support;

use std::collections::BTreeMap;

use support::dockerd::side_by_side;
use support::fixtures::{self, ImageSpec, PushFormat};
use support::{DockerCli, Registry, Stack};

/// What one engine shows, with this run's third octet replaced by `X`.
fn observe(d: &DockerCli, image: &str, x: u8) -> BTreeMap<&'static str, String> {
    let mut seen = BTreeMap::new();
    let net = |last: &str| format!("10.241.{x}.{last}");
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &net("0/24"),
        "--gateway",
        &net("254"),
        "--ip-range",
        &net("128/25"),
        "st",
    ]);
    d.ok(&["network", "create", "auto"]);
    seen.insert(
        "ipam",
        d.field("{{json .IPAM.Config}}", "st")
            .replace(&format!(".{x}."), ".X."),
    );
    let ip = net("9");
    seen.insert(
        "ip on the default bridge",
        d.refusal(&["run", "--rm", "--ip", &ip, image, "true"]),
    );
    seen.insert(
        "ip on an automatic subnet",
        d.refusal(&[
            "run",
            "--rm",
            "--network",
            "auto",
            "--ip",
            &ip,
            image,
            "true",
        ]),
    );
    seen.insert(
        "ip outside the subnet",
        d.refusal(&[
            "run",
            "--rm",
            "--network",
            "st",
            "--ip",
            "10.242.0.9",
            image,
            "true",
        ]),
    );
    d.ok(&[
        "run",
        "-d",
        "--name",
        "s1",
        "--network",
        "st",
        "--ip",
        &ip,
        image,
        "sleep",
        "600",
    ]);
    for (what, taken) in [("ip in use", ip.clone()), ("the gateway's ip", net("254"))] {
        seen.insert(
            what,
            d.refusal(&[
                "run",
                "--rm",
                "--network",
                "st",
                "--ip",
                &taken,
                image,
                "true",
            ]),
        );
    }
    let s1 = d.field("{{with index .NetworkSettings.Networks \"st\"}}{{json .IPAMConfig}} {{.IPAddress}} {{.Gateway}} {{.MacAddress}}{{end}}",
        "s1",
    );
    seen.insert("inspect with --ip", s1.replace(&format!(".{x}."), ".X."));
    let mac = d
        .ok(&["exec", "s1", "cat", "/sys/class/net/eth0/address"])
        .stdout;
    seen.insert(
        "interface mac",
        mac.trim().replace(&format!("{x:02x}"), "XX"),
    );
    // The first automatic address is the range's first; the route goes by the gateway.
    let inside = d
        .ok(&[
            "run", "--rm", "--network", "st", image, "sh", "-c",
            "busybox ip -4 -o addr show eth0 | busybox awk '{print $4}'; busybox ip route | busybox head -1",
        ])
        .stdout;
    seen.insert("inside", inside.replace(&format!(".{x}."), ".X."));
    d.ok(&["run", "-d", "--name", "c2", image, "sleep", "600"]);
    d.ok(&["network", "connect", "--ip", &net("50"), "st", "c2"]);
    seen.insert(
        "connect --ip",
        d.field(
            "{{(index .NetworkSettings.Networks \"st\").IPAddress}}",
            "c2",
        )
        .replace(&format!(".{x}."), ".X."),
    );
    seen.insert(
        "two subnets",
        d.refusal(&[
            "network",
            "create",
            "--subnet",
            "10.243.1.0/24",
            "--subnet",
            "10.243.2.0/24",
            "two",
        ]),
    );
    seen.insert(
        "overlapping pool",
        d.refusal(&["network", "create", "--subnet", &net("0/25"), "dup"]),
    );
    seen.insert("same name", d.refusal(&["network", "create", "st"]));
    seen.insert(
        "unknown driver",
        d.refusal(&["network", "create", "-d", "foo", "f"]),
    );
    seen.insert(
        "overlay",
        d.refusal(&["network", "create", "-d", "overlay", "ov"]),
    );
    d.ok(&["rm", "-f", "s1", "c2"]);
    d.ok(&["network", "rm", "st", "auto"]);
    seen
}

#[test]
fn addresses_gateways_ranges_and_macs_as_dockerd_gives_them() {
    let x = 100 + (std::process::id() % 100) as u8;
    let (theirs, ours) = side_by_side("addresses", |d, image| observe(d, image, x));
    assert_eq!(ours, theirs);
    assert_eq!(ours["interface mac"], "02:42:0a:f1:XX:09", "{ours:?}");
    assert_eq!(
        ours["inside"],
        "10.241.X.128/24\ndefault via 10.241.X.254 dev eth0 \n"
    );
}

/// `--mac-address` per network, as API 1.44 and later send it (the private dockerd speaks
/// 1.41, so Wharf alone): the interface has it, inspect shows it; on the default bridge too.
/// `--ip6` is refused: these networks are IPv4 only.
#[test]
fn a_mac_address_asked_for_is_the_interfaces() {
    let registry = Registry::start();
    let spec = ImageSpec::busybox_like("macs", fixtures::host_arch(), vec![]);
    let image = fixtures::push_image(&registry, &spec, "addr/macs", "v1", PushFormat::DockerV2S2)
        .reference();
    let x = 100 + (std::process::id() % 100) as u8;
    let stack = Stack::start();
    let w = stack.docker();
    w.ok(&["pull", &image]);
    let out = w.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("10.241.{x}.0/24"),
        "macs",
    ]);
    assert!(!out.stdout.trim().is_empty());
    for (net, mac) in [
        ("macs", "02:aa:bb:cc:dd:ee"),
        ("bridge", "02:aa:bb:cc:dd:01"),
    ] {
        w.ok(&[
            "run",
            "-d",
            "--name",
            "mc",
            "--network",
            net,
            "--mac-address",
            mac,
            &image,
            "sleep",
            "600",
        ]);
        let inside = w
            .ok(&["exec", "mc", "cat", "/sys/class/net/eth0/address"])
            .stdout;
        assert_eq!(inside.trim(), mac);
        let shown = w.field(
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").MacAddress}}}}"),
            "mc",
        );
        assert_eq!(shown, mac);
        w.ok(&["rm", "-f", "mc"]);
    }
    let bad = w.refusal(&[
        "run",
        "--rm",
        "--network",
        "macs",
        "--ip6",
        "fd00::9",
        &image,
        "true",
    ]);
    assert!(bad.contains("IPv6"), "{bad}");
    w.ok(&["network", "rm", "macs"]);
}

/// Bridge driver options that are observable without a firewall, side by side with dockerd:
/// the bridge's own name, the MTU of the container's interface, and
/// dockerd's refusals of bad values.
fn observe_options(d: &DockerCli, image: &str, bridge: &str) -> BTreeMap<&'static str, String> {
    let mut seen = BTreeMap::new();
    let name = format!("com.docker.network.bridge.name={bridge}");
    d.ok(&[
        "network",
        "create",
        "-o",
        &name,
        "-o",
        "com.docker.network.driver.mtu=1400",
        "optnet",
    ]);
    let mtu = d.ok(&[
        "run",
        "--rm",
        "--network",
        "optnet",
        image,
        "cat",
        "/sys/class/net/eth0/mtu",
    ]);
    seen.insert("container mtu", mtu.stdout.trim().to_string());
    let options = d
        .field("{{json .Options}}", "optnet")
        .replace(bridge, "BRIDGE");
    seen.insert("options", options);
    seen.insert(
        "bad mtu",
        d.refusal(&[
            "network",
            "create",
            "-o",
            "com.docker.network.driver.mtu=abc",
            "bad1",
        ]),
    );
    d.ok(&["network", "rm", "optnet"]);
    seen.insert(
        "bridge gone",
        std::path::Path::new("/sys/class/net")
            .join(bridge)
            .exists()
            .to_string(),
    );
    seen
}

#[test]
fn a_networks_bridge_name_and_mtu_are_dockerds() {
    let bridge = format!("wbn{}", std::process::id() % 100_000);
    let (theirs, ours) = side_by_side("options", |d, image| observe_options(d, image, &bridge));
    assert_eq!(ours, theirs);
    assert_eq!(ours["container mtu"], "1400");
    assert_eq!(ours["bridge gone"], "false");
}

/// `com.docker.network.bridge.enable_icc=false`: containers of the network cannot reach each
/// other (a server next to the client does not answer it), while its published port still
/// answers the host; the same pair talks on a network without the option.
/// `enable_ip_masquerade=false` leaves the masquerade rule out of the network's table.
#[test]
fn without_icc_containers_of_a_network_cannot_reach_each_other() {
    let registry = Registry::start();
    let spec = ImageSpec::busybox_like("icc", fixtures::host_arch(), vec![]);
    let image = fixtures::push_image(&registry, &spec, "addr/icc", "v1", PushFormat::DockerV2S2)
        .reference();
    let stack = Stack::start();
    let w = stack.docker();
    w.ok(&["pull", &image]);
    let serve =
        "busybox mkdir /www && echo from-srv > /www/index.html && busybox httpd -f -p 8080 -h /www";
    for (net, icc) in [("talk", "true"), ("apart", "false")] {
        let opt = format!("com.docker.network.bridge.enable_icc={icc}");
        w.ok(&[
            "network",
            "create",
            "-o",
            &opt,
            "-o",
            "com.docker.network.bridge.enable_ip_masquerade=false",
            net,
        ]);
        let port = support::free_port();
        let publish = format!("127.0.0.1:{port}:8080");
        let srv = format!("srv-{net}");
        w.ok(&[
            "run",
            "-d",
            "--name",
            &srv,
            "--network",
            net,
            "-p",
            &publish,
            &image,
            "sh",
            "-c",
            serve,
        ]);
        let url = format!("http://{srv}:8080/");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !support::wait_for_tcp(
            &format!("127.0.0.1:{port}"),
            std::time::Duration::from_millis(200),
        ) {
            assert!(std::time::Instant::now() < deadline, "{srv} did not listen");
        }
        let got = w.run(&[
            "run",
            "--rm",
            "--network",
            net,
            &image,
            "busybox",
            "timeout",
            "3",
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            &url,
        ]);
        assert_eq!(
            got.success(),
            icc == "true",
            "{net}: icc={icc}, the neighbour answered: {got}"
        );
        let (_, _, body) = support::http_get(&format!("127.0.0.1:{port}"), "/", &[]).unwrap();
        assert!(String::from_utf8_lossy(&body).contains("from-srv"));
        w.ok(&["rm", "-f", &srv]);
    }
    // No masquerade rule for the network without it.
    let id = w.field("{{.Id}}", "apart");
    let base = &stack.net.as_ref().expect("a test network").table;
    let table = format!("{base}_{}", &id[..12]);
    let rules = std::process::Command::new("/usr/sbin/nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    let subnet = w.field("{{(index .IPAM.Config 0).Subnet}}", "apart");
    assert!(rules.contains("postrouting"), "{rules}");
    assert!(
        !rules.contains(&format!("ip saddr {subnet} ")),
        "no masquerade of {subnet}: {rules}"
    );
    w.ok(&["network", "rm", "talk", "apart"]);
}

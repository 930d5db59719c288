//! A private dockerd to compare Wharf with: Debian's docker.io (deploy/test.sh installs it), with
//! its own data root, exec root, socket and bridge (a test network's: never `--bridge=none`,
//! with which dockerd deletes the host's `docker0`), no iptables, stopped by its PID.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{find_program, ping, Proc, StackNet};

/// A private dockerd.
pub struct Dockerd {
    // Fields drop in order: the daemon goes before its bridge and its directory.
    proc: Proc,
    _bridge: Bridge,
    /// `unix:///.../d.sock`
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let bin = find_program("dockerd", &["/usr/sbin/dockerd", "/usr/bin/dockerd"])
            .expect("dockerd is missing: deploy/test.sh installs Debian's docker.io");
        // Short paths: containerd's sockets under the exec root must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("wd-")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("d.sock");
        let bridge = Bridge::new();
        let mut cmd = Command::new(bin);
        cmd.arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("x"))
            .arg("--pidfile")
            .arg(dir.path().join("d.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg(format!("--bridge={}", bridge.net.bridge))
            .args(["--iptables=false", "--ip6tables=false"]);
        let log = dir.path().join("dockerd.log");
        let proc = Proc::start(
            "dockerd",
            cmd,
            Some(&log),
            libc::SIGTERM,
            Duration::from_secs(20),
            true,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ping(&socket) {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start:\n{}",
                proc.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Dockerd {
            host: format!("unix://{}", socket.display()),
            proc,
            _bridge: bridge,
            _dir: dir,
        }
    }

    /// The last `lines` lines of dockerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

/// The bridge of a private dockerd: a test network's name and subnet, the gateway address on it.
struct Bridge {
    net: StackNet,
}

impl Bridge {
    fn new() -> Bridge {
        let net = StackNet::claim();
        let ip = find_program("ip", &["/usr/sbin/ip", "/sbin/ip"]).expect("iproute2");
        let gateway = net.subnet.replace(".0/24", ".1/24");
        for args in [
            vec!["link", "add", net.bridge.as_str(), "type", "bridge"],
            vec!["addr", "add", gateway.as_str(), "dev", net.bridge.as_str()],
            vec!["link", "set", net.bridge.as_str(), "up"],
        ] {
            let status = Command::new(&ip).args(&args).status().unwrap();
            assert!(status.success(), "ip {}", args.join(" "));
        }
        Bridge { net }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.net.clean();
    }
}

/// What `observe` sees on a private dockerd and then on a Wharf stack (each started for it and
/// gone before the other starts, so both may use the same names and subnets), each with a
/// busybox-like image called `name` pulled from a loopback registry: `(dockerd's, Wharf's)`.
pub fn side_by_side<T>(name: &str, observe: impl Fn(&super::DockerCli, &str) -> T) -> (T, T) {
    use super::fixtures::{self, ImageSpec, PushFormat};
    let registry = super::Registry::start();
    let spec = ImageSpec::busybox_like(name, fixtures::host_arch(), vec![]);
    let image = fixtures::push_image(
        &registry,
        &spec,
        &format!("side/{name}"),
        "v1",
        PushFormat::DockerV2S2,
    )
    .reference();
    let theirs = {
        let dockerd = Dockerd::start();
        let d = super::DockerCli::new(&dockerd.host);
        d.ok(&["pull", &image]);
        observe(&d, &image)
    };
    let ours = {
        let stack = super::Stack::start();
        let w = stack.docker();
        w.ok(&["pull", &image]);
        observe(&w, &image)
    };
    (theirs, ours)
}

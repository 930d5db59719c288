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

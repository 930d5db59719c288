//! A private dockerd to compare Wharf with: Debian's docker.io (deploy/test.sh installs it), with
//! its own data root, exec root and socket, no bridge and no iptables, stopped by its PID.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{find_program, ping, Proc};

/// A private dockerd.
pub struct Dockerd {
    // Fields drop in order: the daemon goes before its directory.
    proc: Proc,
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
        let mut cmd = Command::new(bin);
        cmd.arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("x"))
            .arg("--pidfile")
            .arg(dir.path().join("d.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"]);
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
            _dir: dir,
        }
    }

    /// The last `lines` lines of dockerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

//! A real nats-server for tests of every crate: started on a free loopback port, stopped (by its
//! PID, never by name) when dropped. Needs the `nats-server` binary (deploy/test.sh installs it).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `nats-server` from PATH, or where Debian installs it (PATH may lack the sbin directories).
fn nats_server_binary() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/bin".into(),
            "/usr/local/bin".into(),
        ])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "nats-server".into())
}

pub struct NatsServer {
    child: Child,
    pub port: u16,
    pub url: String,
    _dir: std::path::PathBuf,
}

impl NatsServer {
    /// Starts a nats-server with JetStream (its store in a fresh temporary directory).
    pub fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let dir = std::env::temp_dir().join(format!("wharf-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (deploy/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        NatsServer {
            child,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// A client connection to this server.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url)
            .await
            .expect("connect to the test nats-server")
    }

    /// Kills the server (SIGKILL to its PID) without waiting for a restart.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

pub mod hostile_tar;

/// How many cases a property test runs: `PROPTEST_CASES` when set (to run longer), else
/// `default` (kept small so the whole suite stays quick on a 2-core machine).
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

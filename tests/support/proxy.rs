//! A TCP relay between Wharf and a registry that counts (and can slow down) what the registry
//! sends, so a test knows a pull is under way before it kills a service.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Relays 127.0.0.1:`port` to `upstream`; stops accepting on drop.
pub struct SlowProxy {
    pub port: u16,
    /// Bytes relayed from the upstream to clients so far.
    pub downstream: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowProxy {
    /// `bytes_per_sec` caps each connection's upstream-to-client rate (0: no cap).
    pub fn start(upstream: &str, bytes_per_sec: u64) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let downstream = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let (count, halt) = (downstream.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        client.set_nonblocking(false).unwrap();
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        std::thread::spawn(move || pump(c2, s2, None, 0));
                        let count = count.clone();
                        std::thread::spawn(move || {
                            pump(server, client, Some(count), bytes_per_sec)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SlowProxy {
            port,
            downstream,
            stop,
            thread: Some(thread),
        }
    }

    pub fn relayed(&self) -> u64 {
        self.downstream.load(Ordering::SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>, rate: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if let Some(c) = &count {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! The API's guards against clients it should not serve, end to end with `wharf up`: JSON routes
//! refuse bodies that are not JSON (dockerd's `CheckForJSON`, which keeps a web page's "simple"
//! cross-origin POST out); idle connections do not exhaust the gateway (it raises its open-file
//! limit and caps connections per listener, and new ones wait for a slot); a request header that
//! stalls and a TLS handshake that stalls are cut off, while long-lived streams are not.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{skip_on_reference, unix_request, wait_for_tcp, HttpAnswer, Stack, StackOptions};

/// What a browser page may POST cross-origin without a CORS preflight, as browsers spell it.
const SIMPLE_CONTENT_TYPES: [&str; 4] = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----x",
];

fn refusal(content_type: &str) -> Value {
    json!({
        "message": format!("unsupported Content-Type header ({content_type}): must be 'application/json'")
    })
}

fn post(stack: &Stack, path: &str, content_type: Option<&str>, body: Option<&[u8]>) -> HttpAnswer {
    let mut headers = vec![("Origin", "http://attacker.example")];
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct));
    }
    unix_request(&stack.socket, "POST", path, &headers, body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn get_json(stack: &Stack, path: &str) -> Value {
    let (status, _, body) = unix_request(&stack.socket, "GET", path, &[], None)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn body_json(path: &str, (status, _, body): &HttpAnswer) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{path}: HTTP {status}, not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

/// Names of the networks, sorted.
fn network_names(stack: &Stack) -> Vec<String> {
    let mut names: Vec<String> = get_json(stack, "/networks")
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Names of the volumes.
fn volume_names(stack: &Stack) -> Vec<String> {
    get_json(stack, "/volumes")["Volumes"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|v| v["Name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn json_endpoints_refuse_bodies_that_are_not_json() {
    if skip_on_reference("dockerd 20.10 words the refusal differently (`Content-Type specified`)") {
        return;
    }
    let stack = Stack::start();
    let networks_before = network_names(&stack);
    let create = br#"{"Image":"busybox","Cmd":["sh","-c","echo pwned > /host/etc/x"],"HostConfig":{"Binds":["/:/host"],"Privileged":true}}"#;

    // What a page on any web site could send to a Docker API on a loopback TCP port.
    for path in ["/containers/create", "/v1.45/containers/create?name=pwned"] {
        for ct in SIMPLE_CONTENT_TYPES {
            let answer = post(&stack, path, Some(ct), Some(create));
            assert_eq!(answer.0, 400, "{path} {ct}");
            assert_eq!(body_json(path, &answer), refusal(ct), "{path} {ct}");
        }
    }
    // A body without a content type is refused too (Go's `mime: no media type`).
    let answer = post(&stack, "/containers/create", None, Some(create));
    assert_eq!(answer.0, 400);
    assert_eq!(
        body_json("/containers/create", &answer),
        json!({"message": "malformed Content-Type header (): mime: no media type"})
    );
    assert_eq!(
        get_json(&stack, "/containers/json?all=1"),
        json!([]),
        "a refused create created a container"
    );

    // The same body as JSON gets past the check (to the image lookup: nothing is pulled here).
    let missing = br#"{"Image":"wharf-e2e-absent-image:none","Cmd":["true"]}"#;
    for ct in ["application/json", "Application/JSON; charset=utf-8"] {
        let answer = post(&stack, "/containers/create", Some(ct), Some(missing));
        let message = body_json("/containers/create", &answer)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            answer.0 == 404 && message.contains("wharf-e2e-absent-image"),
            "{ct}: HTTP {}: {message}",
            answer.0
        );
    }
    assert_eq!(get_json(&stack, "/containers/json?all=1"), json!([]));

    // Every other route that takes JSON, versioned or not, refuses it before looking at anything
    // (the container, exec and network named here do not exist).
    let routes = [
        "/containers/nothing/update",
        "/containers/nothing/exec",
        "/exec/nothing/start",
        "/commit?container=nothing",
        "/networks/create",
        "/networks/nothing/connect",
        "/networks/nothing/disconnect",
        "/volumes/create",
        "/auth",
        "/wharf/sync",
    ];
    let body = br#"{"Name":"pwned","Cmd":["true"],"Container":"nothing","Memory":1,"username":"u","password":"p","Source":"a/b","Destination":"c/d"}"#;
    for route in routes {
        for path in [route.to_string(), format!("/v1.41{route}")] {
            let answer = post(&stack, &path, Some("text/plain"), Some(body));
            assert_eq!(answer.0, 400, "{path}");
            assert_eq!(body_json(&path, &answer), refusal("text/plain"), "{path}");
        }
    }
    assert_eq!(volume_names(&stack), Vec::<String>::new());
    assert_eq!(network_names(&stack), networks_before);

    // No body and no content type is still fine where an empty body means something: an
    // anonymous volume.
    let answer = post(&stack, "/volumes/create", None, None);
    assert_eq!(answer.0, 201, "{}", String::from_utf8_lossy(&answer.2));
    let name = body_json("/volumes/create", &answer)["Name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(volume_names(&stack), vec![name.clone()]);
    let (status, _, body) = unix_request(
        &stack.socket,
        "DELETE",
        &format!("/volumes/{name}"),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    // And a route that takes no JSON is not touched by the check.
    let answer = post(&stack, "/containers/prune", None, None);
    assert_eq!(answer.0, 200, "{}", String::from_utf8_lossy(&answer.2));
}

// ---------------------------------------------------------------------------------------------
// Descriptors, processes and raw connections

fn open_file_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit struct it is given, which lives on this stack.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

/// Sets this process's soft open-file limit (its children inherit it).
fn set_soft_open_file_limit(soft: u64) {
    let limit = libc::rlimit {
        rlim_cur: soft.min(open_file_limit().rlim_max),
        rlim_max: open_file_limit().rlim_max,
    };
    // SAFETY: setrlimit only reads the struct it is given; the soft limit is at most the hard
    // one, which stays as it is.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// (soft, hard) "Max open files" of process `pid`.
fn open_file_limits_of(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

fn open_files_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn gateway_pid(stack: &Stack) -> u32 {
    stack
        .service_pid("gateway")
        .expect("the gateway runs under wharf up")
}

/// Waits until `check` holds, for at most `timeout`.
fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Reads until the server closes `stream` (EOF or reset), until `limit` after `since`. Returns
/// how long after `since` that was and what came, or None when it was still open at `limit`.
fn time_until_closed<S: Read>(
    stream: &mut S,
    since: Instant,
    limit: Duration,
) -> Option<(Duration, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some((since.elapsed(), got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Some((since.elapsed(), got))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if since.elapsed() >= limit {
                    return None;
                }
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Whether the server still holds `s` open (no EOF, nothing sent).
fn still_open(s: &UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let open = matches!((&*s).read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

/// `docker version` against the stack: (success, how long it took).
fn timed_docker_version(stack: &Stack) -> (support::Output, Duration) {
    let started = Instant::now();
    let out = stack.docker().run(&["version"]);
    (out, started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Idle connections

const IDLE_CONNECTIONS: usize = 1500;

#[test]
fn idle_connections_do_not_starve_the_api() {
    if skip_on_reference("checks the gateway's process limits") {
        return;
    }
    let hard = open_file_limit().rlim_max;
    assert!(
        hard >= 4096,
        "this test needs a hard open-file limit of at least 4096 (it holds {IDLE_CONNECTIONS} sockets); it is {hard}"
    );
    // Start the stack with the usual default soft limit of 1024, which 1,500 connections exceed:
    // the gateway must raise its own. (Each test runs in its own process under nextest.)
    set_soft_open_file_limit(1024);
    let stack = Stack::start();
    set_soft_open_file_limit(hard);
    let up = stack.proc.as_ref().expect("wharf up").pid();
    assert_eq!(
        open_file_limits_of(up),
        (1024, hard),
        "wharf up inherits 1024"
    );
    let gateway = gateway_pid(&stack);
    let (gateway_soft, gateway_hard) = open_file_limits_of(gateway);
    assert_eq!(
        (gateway_soft, gateway_hard),
        (hard, hard),
        "the gateway raises its soft open-file limit to the hard one"
    );
    let (out, _) = timed_docker_version(&stack);
    assert!(out.success(), "{out}");
    let baseline = open_files_of(gateway);

    let idle: Vec<UnixStream> = (0..IDLE_CONNECTIONS)
        .map(|_| connect(&stack.socket))
        .collect();
    assert!(
        // (Less a few: the CLI's own connection may still have been counted in the baseline.)
        wait_until(Duration::from_secs(10), || open_files_of(gateway)
            >= baseline + IDLE_CONNECTIONS - 10),
        "the gateway did not take all {IDLE_CONNECTIONS} connections: it holds {} descriptors (was {baseline})",
        open_files_of(gateway)
    );

    let held = open_files_of(gateway);
    let (out, took) = timed_docker_version(&stack);
    eprintln!(
        "gateway open-file limit {gateway_soft}/{gateway_hard}; descriptors {baseline} before, \
         {held} with {IDLE_CONNECTIONS} idle connections; docker version took {took:?}"
    );
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("Server:"),
        "docker version did not reach the server: {out}"
    );
    assert!(
        took < Duration::from_secs(1),
        "docker version took {took:?} with {IDLE_CONNECTIONS} idle connections open"
    );
    let closed = idle.iter().filter(|s| !still_open(s)).count();
    assert_eq!(closed, 0, "{closed} idle connections were closed early");

    drop(idle);
    assert!(
        wait_until(Duration::from_secs(10), || open_files_of(gateway)
            < baseline + 50),
        "the gateway still holds {} descriptors after the clients left (was {baseline})",
        open_files_of(gateway)
    );
    let (out, _) = timed_docker_version(&stack);
    assert!(out.success(), "{out}");
    assert_eq!(gateway_pid(&stack), gateway, "the gateway restarted");
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    if skip_on_reference("sets the gateway's connection cap") {
        return;
    }
    const CAP: usize = 16;
    let stack = Stack::start_with(StackOptions {
        env: vec![("WHARF_MAX_CONNECTIONS".into(), CAP.to_string())],
        ..Default::default()
    });
    let gateway = gateway_pid(&stack);
    let mut idle: Vec<UnixStream> = (0..CAP).map(|_| connect(&stack.socket)).collect();

    // One more: the kernel queues it (FIFO, after the others), the gateway does not take it.
    let mut waiting = connect(&stack.socket);
    waiting
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .unwrap();
    let cpu_before = cpu_ticks_of(gateway);
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        match waiting.read(&mut buf) {
            Ok(0) => panic!("the waiting connection was closed"),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(
        answer.is_empty(),
        "a connection beyond the cap of {CAP} was served: {}",
        String::from_utf8_lossy(&answer)
    );
    // Waiting is not spinning: the gateway used (almost) no CPU meanwhile (ticks are 10 ms).
    let cpu = cpu_ticks_of(gateway) - cpu_before;
    assert!(
        cpu <= 20,
        "the gateway used {cpu} ticks of CPU in 2 s at its cap"
    );

    // A slot frees: the waiting request is answered.
    drop(idle.pop());
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    waiting.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.ends_with("OK"), "{text}");
    assert!(
        stack
            .log()
            .contains(&format!("holds its maximum of {CAP} connections")),
        "the gateway did not log that it reached its cap:\n{}",
        stack.log()
    );

    drop(idle);
    let (out, took) = timed_docker_version(&stack);
    assert!(out.success(), "{out}");
    assert!(
        took < Duration::from_secs(5),
        "docker version took {took:?}"
    );
    assert_eq!(gateway_pid(&stack), gateway, "the gateway restarted");
}

// ---------------------------------------------------------------------------------------------
// Stalled clients

const HEADER_TIMEOUT: Duration = Duration::from_millis(1500);
/// How much later than its deadline the server may close a connection.
const CLOSE_SLACK: Duration = Duration::from_secs(5);

#[test]
fn a_stalled_request_header_is_cut_off_but_streams_are_not() {
    if skip_on_reference("sets the gateway's header timeout") {
        return;
    }
    let stack = Stack::start_with(StackOptions {
        env: vec![(
            "WHARF_HEADER_TIMEOUT_MS".into(),
            HEADER_TIMEOUT.as_millis().to_string(),
        )],
        ..Default::default()
    });

    // A stream opened first must outlive the header timeout.
    let mut events = connect(&stack.socket);
    events
        .write_all(b"GET /events HTTP/1.1\r\nHost: docker\r\n\r\n")
        .unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        events.read_exact(&mut byte).expect("the events head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let socket = stack.socket.clone();
    let stalled = |first: &'static [u8]| {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let mut s = connect(&socket);
            s.write_all(first).unwrap();
            time_until_closed(&mut s, Instant::now(), HEADER_TIMEOUT + CLOSE_SLACK)
        })
    };
    // Half a header, then nothing.
    let half = stalled(b"POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: appl");
    // Nothing at all.
    let silent = stalled(b"");
    // A byte every 100 ms: trickling does not push the deadline back.
    let trickle = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let mut s = connect(&socket);
            let since = Instant::now();
            let mut writer = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let line = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Slow: ";
                let mut bytes = line.iter().chain(std::iter::repeat(&b'a'));
                while writer.write_all(&[*bytes.next().unwrap()]).is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            time_until_closed(&mut s, since, HEADER_TIMEOUT + CLOSE_SLACK)
        })
    };
    // A whole request sent well within the timeout is answered.
    let mut prompt = connect(&stack.socket);
    std::thread::sleep(HEADER_TIMEOUT / 3);
    prompt
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .unwrap();
    prompt
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    prompt.read_to_end(&mut answer).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    for (what, handle) in [
        ("half a header", half),
        ("no header", silent),
        ("a trickled header", trickle),
    ] {
        let (took, got) = handle
            .join()
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: still open {CLOSE_SLACK:?} after the timeout"));
        // The deadline counts from when the server started waiting, a little before the client
        // wrote, so allow some earliness.
        assert!(
            took >= HEADER_TIMEOUT.mul_f32(0.66),
            "{what}: closed after {took:?}, before the {HEADER_TIMEOUT:?} timeout"
        );
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{what}: {}",
            String::from_utf8_lossy(&got)
        );
    }

    // The events stream has now been open for more than twice the header timeout and still
    // delivers: create a volume and look for its event.
    let name = format!("e2e-limits-{}", std::process::id());
    let out = stack.docker().run(&["volume", "create", &name]);
    assert!(out.success(), "{out}");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains(&name) {
        assert!(
            Instant::now() < deadline,
            "no volume event on the stream: {}",
            String::from_utf8_lossy(&seen)
        );
        match events.read(&mut buf) {
            Ok(0) => panic!(
                "the events stream ended: {}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("events: {e}"),
        }
    }
    assert!(stack.docker().run(&["volume", "rm", &name]).success());
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert path, key path).
fn server_certificate(dir: &Path) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = dir.join("server.pem");
    let key = dir.join("server-key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn a_stalled_tls_handshake_is_cut_off() {
    if skip_on_reference("sets the gateway's TLS handshake timeout") {
        return;
    }
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1000);
    let pki = tempfile::tempdir().unwrap();
    let (cert, key) = server_certificate(pki.path());
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _stack = Stack::start_with(StackOptions {
        extra_args: vec![
            "-H".into(),
            format!("tcp://{addr}"),
            "--tls".into(),
            "--tlscert".into(),
            cert.clone(),
            "--tlskey".into(),
            key,
        ],
        env: vec![(
            "WHARF_TLS_HANDSHAKE_TIMEOUT_MS".into(),
            HANDSHAKE_TIMEOUT.as_millis().to_string(),
        )],
        ..Default::default()
    });
    assert!(wait_for_tcp(&addr, Duration::from_secs(10)), "{addr}");

    // Connected, no ClientHello.
    let since = Instant::now();
    let mut silent = std::net::TcpStream::connect(&addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Half a ClientHello: a TLS record header announcing 512 bytes, then 5 of them.
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .unwrap();
    for (what, stream) in [("silent", &mut silent), ("half a hello", &mut half)] {
        let (took, _) = time_until_closed(stream, since, HANDSHAKE_TIMEOUT + CLOSE_SLACK)
            .unwrap_or_else(|| panic!("{what}: still open {CLOSE_SLACK:?} after the timeout"));
        assert!(
            took >= HANDSHAKE_TIMEOUT.mul_f32(0.5),
            "{what}: closed after {took:?}, before the {HANDSHAKE_TIMEOUT:?} timeout"
        );
    }

    // A client that completes its handshake is served.
    let docker = support::DockerCli::new(&format!("tcp://{addr}"));
    let out = docker.run(&["--tls", "--tlscacert", &cert, "version"]);
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("Server:"), "{out}");
}

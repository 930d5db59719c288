//! Blob uploads (`Session::upload`) against a real distribution registry, through a relay that
//! records every request and injects faults: monolithic and chunked uploads, resuming a chunk
//! that failed (cut, 503, 401), starting over when the registry forgot the upload, lost answers,
//! the registry's minimum chunk, a digest the bytes do not match, and a registry that keeps
//! failing.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use wharf_registry_sync::auth::Credentials;
use wharf_registry_sync::client::{
    Endpoint, MemorySource, ProgressFn, Registries, RegistryError, Session,
};

use support::{noise, sha256, Registry};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
const REPO: &str = "up/blob";

/// What the relay does with one request.
#[derive(Clone, Debug, PartialEq)]
enum Fault {
    /// Forward it to the registry.
    Pass,
    /// Read half the body, then drop the connection: nothing reaches the registry.
    Cut,
    /// Read the whole body and answer this status without asking the registry.
    Answer(u16),
    /// Forward it and add this header to the registry's answer.
    AddHeader(&'static str, &'static str),
    /// Read the whole body and give this answer without asking the registry.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Send half the body on to the registry, then drop both connections.
    ForwardHalfThenCut,
    /// Forward it, then drop the connection instead of passing the answer on.
    ForwardThenCut,
}

/// One request as the relay saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    content_range: Option<String>,
    content_length: Option<u64>,
    authorization: Option<String>,
    /// Body bytes read from the client.
    body: u64,
    fault: Fault,
}

/// The request a policy decides about: its method, target, and which request of its method it
/// is (1-based); and the relay's own `host:port`.
struct Head<'a> {
    own: &'a str,
    method: &'a str,
    target: &'a str,
    nth: usize,
}

type Policy = dyn Fn(&Head) -> Fault + Send + Sync;

struct Shared {
    upstream: String,
    own: String,
    http: reqwest::Client,
    policy: Box<Policy>,
    counts: Mutex<HashMap<String, usize>>,
    seen: Mutex<Vec<Seen>>,
    /// Body bytes read from clients.
    received: AtomicU64,
    /// Body bytes sent on to the registry.
    forwarded: AtomicU64,
}

/// An HTTP/1.1 relay between the session and the registry.
struct Relay {
    host: String,
    shared: Arc<Shared>,
}

impl Relay {
    async fn start(
        upstream: &str,
        policy: impl Fn(&Head) -> Fault + Send + Sync + 'static,
    ) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            upstream: format!("http://{upstream}"),
            own: format!("http://{host}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            policy: Box::new(policy),
            counts: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            received: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, s.clone()));
            }
        });
        Relay { host, shared }
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    fn of(&self, method: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method)
            .collect()
    }

    fn received(&self) -> u64 {
        self.shared.received.load(Ordering::SeqCst)
    }

    fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// A push session for `REPO` through the relay (plain HTTP).
    fn session(&self, registries: &Registries) -> Session {
        registries.push_session(
            Endpoint {
                base: format!("http://{}", self.host),
                insecure_tls: true,
                mirror: false,
            },
            REPO,
            Credentials::default(),
        )
    }
}

/// Reads up to `n` bytes of a body (fewer when the client stops sending).
async fn read_n<R: AsyncRead + Unpin>(r: &mut R, n: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(n).read_to_end(&mut out).await?;
    Ok(out)
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A chunked request body, decoded.
async fn read_chunked<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await?;
        let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        out.extend(read_n(r, size).await?);
        let mut crlf = String::new();
        r.read_line(&mut crlf).await?;
        if size == 0 {
            return Ok(out);
        }
    }
}

async fn connection(stream: TcpStream, s: Arc<Shared>) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            stream.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let content_length = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let nth = {
            let mut counts = s.counts.lock().unwrap();
            let n = counts.entry(method.clone()).or_default();
            *n += 1;
            *n
        };
        let fault = (s.policy)(&Head {
            own: s.own.trim_start_matches("http://"),
            method: &method,
            target: &target,
            nth,
        });
        let mut seen = Seen {
            method: method.clone(),
            target: target.clone(),
            content_range: header("content-range"),
            content_length,
            authorization: header("authorization"),
            body: 0,
            fault: fault.clone(),
        };
        if fault == Fault::ForwardHalfThenCut {
            let n = content_length.unwrap_or(0);
            let half = read_n(&mut stream, n / 2).await?;
            seen.body = half.len() as u64;
            s.received.fetch_add(seen.body, Ordering::SeqCst);
            s.forwarded.fetch_add(seen.body, Ordering::SeqCst);
            s.seen.lock().unwrap().push(seen);
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = s.http.request(m, format!("{}{target}", s.upstream));
            for (k, v) in &headers {
                if !["host", "transfer-encoding", "connection"].contains(&k.as_str()) {
                    req = req.header(k, v);
                }
            }
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
            tx.send(Ok(Bytes::from(half))).await.unwrap();
            let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
            let sending = tokio::spawn(req.body(body).send());
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = tx
                .send(Err(std::io::Error::other("relay cut the request")))
                .await;
            let r = sending.await.unwrap();
            eprintln!("relay: half-forwarded request ended with {r:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
            return Ok(());
        }
        if fault == Fault::Cut {
            let half = read_n(&mut stream, content_length.unwrap_or(0) / 2).await?;
            seen.body = half.len() as u64;
            s.received.fetch_add(seen.body, Ordering::SeqCst);
            s.seen.lock().unwrap().push(seen);
            // Dropping the socket with the rest of the body unread resets the connection.
            return Ok(());
        }
        let body = match (content_length, chunked) {
            (_, true) => Some(read_chunked(&mut stream).await?),
            (Some(n), false) => Some(read_n(&mut stream, n).await?),
            (None, false) => None,
        };
        seen.body = body.as_ref().map_or(0, |b| b.len() as u64);
        s.received.fetch_add(seen.body, Ordering::SeqCst);
        s.seen.lock().unwrap().push(seen);

        let mut out;
        if let Fault::Reply {
            status,
            headers,
            body,
        } = &fault
        {
            let mut text = format!("HTTP/1.1 {status} Injected\r\n");
            for (k, v) in headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
            out = text.into_bytes();
        } else if let Fault::Answer(status) = fault {
            let body = if status == 404 {
                r#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}"#
            } else {
                ""
            };
            out = format!(
                "HTTP/1.1 {status} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes();
        } else {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let head = m == reqwest::Method::HEAD;
            let mut req = s.http.request(m, format!("{}{target}", s.upstream));
            for (k, v) in &headers {
                if !["host", "content-length", "transfer-encoding", "connection"]
                    .contains(&k.as_str())
                {
                    req = req.header(k, v);
                }
            }
            if let Some(body) = body {
                s.forwarded.fetch_add(body.len() as u64, Ordering::SeqCst);
                req = req.body(body);
            }
            let response = match req.send().await {
                Ok(r) => r,
                Err(e) => panic!("relay: the registry did not answer {method} {target}: {e}"),
            };
            let status = response.status();
            if fault == Fault::ForwardThenCut {
                eprintln!("relay: dropping the registry's answer {status}");
                return Ok(());
            }
            let mut text = format!(
                "HTTP/1.1 {} {}\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            for (k, v) in response.headers() {
                let k = k.as_str();
                if ["transfer-encoding", "connection"].contains(&k)
                    || (k == "content-length" && !head)
                {
                    continue;
                }
                let v = v.to_str().unwrap_or("");
                let v = if k == "location" {
                    v.replace(&s.upstream, &s.own)
                } else {
                    v.to_string()
                };
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            if let Fault::AddHeader(k, v) = fault {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            let body = if head {
                Bytes::new()
            } else {
                response.bytes().await.unwrap_or_default()
            };
            if !head && status != reqwest::StatusCode::NO_CONTENT {
                text.push_str(&format!("content-length: {}\r\n", body.len()));
            }
            text.push_str("\r\n");
            out = text.into_bytes();
            out.extend_from_slice(&body);
        }
        stream.get_mut().write_all(&out).await?;
    }
}

/// A registry, a relay to it with `policy`, and the HTTP clients.
async fn setup(
    policy: impl Fn(&Head) -> Fault + Send + Sync + 'static,
) -> (Registry, Relay, Registries) {
    let registry = Registry::start(None);
    let relay = Relay::start(&registry.host(), policy).await;
    (registry, relay, Registries::new(&[], &[]).unwrap())
}

/// The blob's bytes as the registry serves them (straight from it, not through the relay).
async fn registry_blob(registry: &Registry, digest: &str) -> Option<Bytes> {
    let url = format!("http://{}/v2/{REPO}/blobs/{digest}", registry.host());
    let response = reqwest::get(url).await.unwrap();
    if !response.status().is_success() {
        return None;
    }
    Some(response.bytes().await.unwrap())
}

/// A progress callback and everything it heard.
fn recorder() -> (ProgressFn, Arc<Mutex<Vec<u64>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    (
        Arc::new(move |n| h.lock().unwrap().push(n)) as ProgressFn,
        heard,
    )
}

/// `from-to` of consecutive chunks of `chunk` bytes covering `size` bytes from `start`.
fn ranges(start: u64, size: u64, chunk: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = start;
    while at < size {
        let end = (at + chunk).min(size);
        out.push(format!("{at}-{}", end - 1));
        at = end;
    }
    out
}

/// The methods of the requests seen, the HEADs of the checks left out.
fn methods(seen: &[Seen]) -> Vec<&str> {
    seen.iter()
        .map(|s| s.method.as_str())
        .filter(|m| *m != "HEAD")
        .collect()
}

fn patch_ranges(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| s.method == "PATCH")
        .map(|s| s.content_range.clone().unwrap_or_default())
        .collect()
}

/// Asserts the registry serves exactly `data` for `digest`, and HEAD through `session` finds it.
async fn assert_stored(registry: &Registry, session: &Session, digest: &str, data: &[u8]) {
    assert!(session.has_blob(digest).await.unwrap(), "HEAD {digest}");
    let stored = registry_blob(registry, digest)
        .await
        .expect("GET of the blob");
    assert_eq!(stored.len(), data.len());
    assert!(stored == data, "the registry holds other bytes");
}

/// A blob `upload_ok` sent up, and the progress it reported.
struct Uploaded {
    data: Vec<u8>,
    digest: String,
    heard: Vec<u64>,
    /// How long the upload itself took.
    took: Duration,
}

/// Uploads `size` bytes of noise from `seed` through the relay, in chunks of `chunk` (`None`:
/// the session's default); asserts the upload succeeds and the registry stores exactly the
/// bytes.
async fn upload_ok(
    registry: &Registry,
    relay: &Relay,
    registries: &Registries,
    chunk: Option<u64>,
    size: u64,
    seed: u64,
) -> Uploaded {
    let data = noise(size as usize, seed);
    let digest = sha256(&data);
    let session = relay.session(registries);
    let session = match chunk {
        Some(chunk) => session.with_chunk_size(chunk),
        None => session,
    };
    let (progress, heard) = recorder();
    let started = Instant::now();
    session
        .upload(&digest, &MemorySource(Bytes::from(data.clone())), &progress)
        .await
        .unwrap_or_else(|e| panic!("{e}; relay saw {:#?}", relay.seen()));
    let took = started.elapsed();
    assert_stored(registry, &session, &digest, &data).await;
    let heard = heard.lock().unwrap().clone();
    Uploaded {
        data,
        digest,
        heard,
        took,
    }
}

#[tokio::test]
async fn small_blob_goes_up_in_one_put() {
    let (registry, relay, registries) = setup(|_| Fault::Pass).await;
    let Uploaded {
        data,
        digest,
        heard,
        ..
    } = upload_ok(&registry, &relay, &registries, None, 300 * KIB, 1).await;

    let seen = relay.seen();
    assert!(relay.of("PATCH").is_empty(), "{seen:#?}");
    assert_eq!(relay.of("POST").len(), 1, "{seen:#?}");
    let puts = relay.of("PUT");
    assert_eq!(puts.len(), 1, "{seen:#?}");
    assert_eq!(puts[0].body, data.len() as u64);
    assert_eq!(puts[0].content_length, Some(data.len() as u64));
    assert!(
        puts[0].target.contains(&format!("digest={digest}")),
        "{}",
        puts[0].target
    );
    assert_eq!(heard.last(), Some(&(data.len() as u64)));
    assert!(heard.windows(2).all(|w| w[0] <= w[1]), "{heard:?}");
}

#[tokio::test]
async fn large_blob_goes_up_in_consecutive_patches_then_a_bodiless_put() {
    let (registry, relay, registries) = setup(|_| Fault::Pass).await;
    let size = 5 * MIB - 12345;
    let Uploaded { digest, heard, .. } =
        upload_ok(&registry, &relay, &registries, Some(MIB), size, 2).await;

    let seen = relay.seen();
    assert_eq!(
        methods(&seen),
        ["POST", "PATCH", "PATCH", "PATCH", "PATCH", "PATCH", "PUT"]
    );
    assert_eq!(patch_ranges(&seen), ranges(0, size, MIB));
    for p in relay.of("PATCH") {
        let (from, to) = p.content_range.as_deref().unwrap().split_once('-').unwrap();
        let len = to.parse::<u64>().unwrap() + 1 - from.parse::<u64>().unwrap();
        assert_eq!(p.content_length, Some(len), "{p:?}");
        assert_eq!(p.body, len, "{p:?}");
    }
    // Each PATCH went to the Location the previous answer gave (distribution's `_state` changes).
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert!(
        targets[1..6].windows(2).all(|w| w[0] != w[1]),
        "{targets:#?}"
    );
    let put = &seen[6];
    assert_eq!(put.body, 0, "{put:?}");
    assert!(put.target.contains(&format!("digest={digest}")), "{put:?}");
    assert_eq!(relay.forwarded(), size);

    assert_eq!(heard.last(), Some(&size), "{heard:?}");
    assert!(heard.windows(2).all(|w| w[0] <= w[1]), "{heard:?}");
}

/// 5 MiB in 1 MiB chunks where the third PATCH fails once as `fault`.
async fn third_patch_fails_once(fault: Fault) -> (Registry, Relay, Vec<u8>, Vec<u64>) {
    let once = AtomicBool::new(false);
    let f = fault.clone();
    let (registry, relay, registries) = setup(move |h| {
        if h.method == "PATCH" && h.nth == 3 && !once.swap(true, Ordering::SeqCst) {
            f.clone()
        } else {
            Fault::Pass
        }
    })
    .await;
    let size = 5 * MIB;
    let Uploaded {
        data, heard, took, ..
    } = upload_ok(&registry, &relay, &registries, Some(MIB), size, 3).await;
    assert!(took < Duration::from_secs(10));
    assert_eq!(heard.last(), Some(&size), "{heard:?}");
    (registry, relay, data, heard)
}

/// The requests after the failed PATCH: a status GET, then PATCHes from where the registry is.
fn assert_resumed_at_third_chunk(relay: &Relay, size: u64) {
    let seen = relay.seen();
    assert_eq!(
        methods(&seen),
        ["POST", "PATCH", "PATCH", "PATCH", "GET", "PATCH", "PATCH", "PATCH", "PUT"],
        "{seen:#?}"
    );
    let mut expected = ranges(0, 3 * MIB, MIB);
    expected.extend(ranges(2 * MIB, size, MIB));
    assert_eq!(patch_ranges(&seen), expected);
    // The status request asks the upload's location, the one the third PATCH went to.
    assert_eq!(seen[4].target, seen[3].target);
    assert_eq!(relay.of("POST").len(), 1, "it did not start over");
}

#[tokio::test]
async fn a_connection_cut_in_a_chunk_resumes_where_the_registry_is() {
    let (_registry, relay, data, _) = third_patch_fails_once(Fault::Cut).await;
    let size = data.len() as u64;
    assert_resumed_at_third_chunk(&relay, size);
    assert_eq!(relay.seen()[3].fault, Fault::Cut);
    // Half of the cut chunk was sent twice; nothing of it reached the registry.
    assert!(relay.received() < size + MIB, "{}", relay.received());
    assert_eq!(relay.received(), size + MIB / 2);
    assert_eq!(relay.forwarded(), size);
}

#[tokio::test]
async fn a_chunk_answered_503_resumes_where_the_registry_is() {
    let (_registry, relay, data, heard) = third_patch_fails_once(Fault::Answer(503)).await;
    let size = data.len() as u64;
    assert_resumed_at_third_chunk(&relay, size);
    assert!(relay.forwarded() < size + MIB, "{}", relay.forwarded());
    assert_eq!(relay.forwarded(), size);
    // After the failure progress goes back to what the registry holds, then on to the end.
    let back = heard.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(back <= 1, "{heard:?}");
    assert!(heard.contains(&(2 * MIB)), "{heard:?}");
}

#[tokio::test]
async fn an_upload_the_registry_forgot_starts_over() {
    let failed = AtomicBool::new(false);
    let forgot = AtomicBool::new(false);
    let (registry, relay, registries) = setup(move |h| {
        if h.method == "PATCH" && h.nth == 3 && !failed.swap(true, Ordering::SeqCst) {
            Fault::Answer(503)
        } else if h.method == "GET"
            && h.target.contains("/blobs/uploads/")
            && !forgot.swap(true, Ordering::SeqCst)
        {
            Fault::Answer(404)
        } else {
            Fault::Pass
        }
    })
    .await;
    let size = 5 * MIB;
    let Uploaded { heard, .. } =
        upload_ok(&registry, &relay, &registries, Some(MIB), size, 4).await;

    let seen = relay.seen();
    assert_eq!(
        methods(&seen),
        [
            "POST", "PATCH", "PATCH", "PATCH", "GET", "POST", "PATCH", "PATCH", "PATCH", "PATCH",
            "PATCH", "PUT"
        ],
        "{seen:#?}"
    );
    let mut expected = ranges(0, 3 * MIB, MIB);
    expected.extend(ranges(0, size, MIB));
    assert_eq!(patch_ranges(&seen), expected);
    // The new upload has a location of its own.
    assert_ne!(
        seen[6].target.split('?').next(),
        seen[1].target.split('?').next()
    );
    assert_eq!(relay.forwarded(), size + 2 * MIB);
    assert_eq!(heard.last(), Some(&size));
}

#[tokio::test]
async fn the_registrys_minimum_chunk_length_raises_the_chunk_size() {
    let (registry, relay, registries) = setup(|h| {
        if h.method == "POST" {
            Fault::AddHeader("OCI-Chunk-Min-Length", "2097152")
        } else {
            Fault::Pass
        }
    })
    .await;
    upload_ok(&registry, &relay, &registries, Some(MIB), 5 * MIB, 5).await;
    let seen = relay.seen();
    assert_eq!(
        patch_ranges(&seen),
        ["0-2097151", "2097152-4194303", "4194304-5242879"],
        "{seen:#?}"
    );
    assert_eq!(relay.of("PUT").len(), 1);
    assert_eq!(relay.of("PUT")[0].body, 0);
}

#[tokio::test]
async fn a_minimum_chunk_length_above_the_blob_size_makes_it_monolithic() {
    // A 3 MiB blob with 1 MiB chunks, but the registry wants chunks of at least 4 MiB.
    let (registry, relay, registries) = setup(|h| {
        if h.method == "POST" {
            Fault::AddHeader("OCI-Chunk-Min-Length", "4194304")
        } else {
            Fault::Pass
        }
    })
    .await;
    upload_ok(&registry, &relay, &registries, Some(MIB), 3 * MIB, 6).await;
    assert!(relay.of("PATCH").is_empty(), "{:#?}", relay.seen());
    assert_eq!(relay.of("PUT").len(), 1);
    assert_eq!(relay.of("PUT")[0].body, 3 * MIB);
}

/// Uploads `data` under the digest of other bytes; asserts the refusal and that nothing is
/// stored.
async fn assert_mismatch_refused(chunk: Option<u64>, size: u64) {
    let (registry, relay, registries) = setup(|_| Fault::Pass).await;
    let data = noise(size as usize, 7);
    let claimed = sha256(&noise(size as usize, 8));
    let mut session = relay.session(&registries);
    if let Some(chunk) = chunk {
        session = session.with_chunk_size(chunk);
    }
    let (progress, _) = recorder();
    let err = session
        .upload(&claimed, &MemorySource(Bytes::from(data)), &progress)
        .await
        .expect_err("the registry must refuse bytes that do not match the digest");
    let text = err.to_string();
    assert!(
        text.contains(&claimed) || text.to_lowercase().contains("digest invalid"),
        "{text}"
    );
    match &err {
        RegistryError::Code { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (400, "DIGEST_INVALID"), "{err:?}")
        }
        other => panic!("{other:?}"),
    }
    // Refused at the closing PUT, and not retried.
    let seen = relay.seen();
    assert_eq!(relay.of("PUT").len(), 1, "{seen:#?}");
    assert_eq!(relay.of("POST").len(), 1, "{seen:#?}");
    assert!(!session.has_blob(&claimed).await.unwrap());
    assert!(registry_blob(&registry, &claimed).await.is_none());
}

#[tokio::test]
async fn bytes_that_do_not_match_the_digest_are_refused_monolithic() {
    assert_mismatch_refused(None, 300 * KIB).await;
}

#[tokio::test]
async fn bytes_that_do_not_match_the_digest_are_refused_chunked() {
    assert_mismatch_refused(Some(MIB), 3 * MIB).await;
}

#[tokio::test]
async fn a_registry_failing_every_chunk_makes_the_upload_give_up() {
    let (registry, relay, registries) = setup(|h| {
        if h.method == "PATCH" {
            Fault::Answer(500)
        } else {
            Fault::Pass
        }
    })
    .await;
    let data = noise((3 * MIB) as usize, 9);
    let digest = sha256(&data);
    let session = relay.session(&registries).with_chunk_size(MIB);
    let (progress, _) = recorder();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        session.upload(&digest, &MemorySource(Bytes::from(data)), &progress),
    )
    .await
    .expect("the upload must give up, not hang");
    let elapsed = started.elapsed();
    let err = result.expect_err("every PATCH fails");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(err.to_string().contains("500"), "{err}");
    // The first try and four retries, each asking the registry where the upload is.
    let seen = relay.seen();
    assert_eq!(relay.of("PATCH").len(), 5, "{seen:#?}");
    assert_eq!(relay.of("GET").len(), 4, "{seen:#?}");
    assert!(relay.of("PUT").is_empty(), "{seen:#?}");
    assert!(!session.has_blob(&digest).await.unwrap());
    assert!(registry_blob(&registry, &digest).await.is_none());
}

#[tokio::test]
async fn a_chunk_answered_401_reauthorizes_and_resumes() {
    // The challenge's realm is the relay itself, which hands out the token `renewed`.
    let once = AtomicBool::new(false);
    let (registry, relay, registries) = setup(move |h| {
        if h.method == "PATCH" && h.nth == 3 && !once.swap(true, Ordering::SeqCst) {
            Fault::Reply {
                status: 401,
                headers: vec![(
                    "www-authenticate".into(),
                    format!(r#"Bearer realm="http://{}/token",service="relay""#, h.own),
                )],
                body: String::new(),
            }
        } else if h.method == "GET" && h.target.starts_with("/token") {
            Fault::Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: r#"{"token":"renewed"}"#.into(),
            }
        } else {
            Fault::Pass
        }
    })
    .await;
    let size = 5 * MIB;
    upload_ok(&registry, &relay, &registries, Some(MIB), size, 12).await;

    let (token, seen): (Vec<Seen>, Vec<Seen>) = relay
        .seen()
        .into_iter()
        .partition(|s| s.target.starts_with("/token"));
    assert_eq!(token.len(), 1, "{token:#?}");
    assert!(
        token[0]
            .target
            .contains("scope=repository%3Aup%2Fblob%3Apush%2Cpull"),
        "{}",
        token[0].target
    );
    assert_eq!(
        methods(&seen),
        ["POST", "PATCH", "PATCH", "PATCH", "GET", "PATCH", "PATCH", "PATCH", "PUT"],
        "{seen:#?}"
    );
    let mut expected = ranges(0, 3 * MIB, MIB);
    expected.extend(ranges(2 * MIB, size, MIB));
    assert_eq!(patch_ranges(&seen), expected);
    // Everything after the challenge carries the new token.
    assert_eq!(seen[3].authorization, None);
    for s in &seen[4..] {
        assert_eq!(s.authorization.as_deref(), Some("Bearer renewed"), "{s:?}");
    }
}

#[tokio::test]
async fn a_chunk_cut_after_part_of_it_reached_the_registry_still_completes() {
    // distribution refuses an upload whose size no longer matches the `_state` of the location
    // asked about, so the session may start over; either way the blob arrives intact.
    completes_after_third_patch_fails(Fault::ForwardHalfThenCut).await;
}

#[tokio::test]
async fn a_chunk_whose_answer_was_lost_still_completes() {
    completes_after_third_patch_fails(Fault::ForwardThenCut).await;
}

/// The third PATCH fails once as `fault` after reaching the registry: the session asks where
/// the upload is, and at worst starts over once; the blob arrives intact either way.
async fn completes_after_third_patch_fails(fault: Fault) {
    let (_registry, relay, _, _) = third_patch_fails_once(fault.clone()).await;
    let seen = relay.seen();
    assert_eq!(seen[3].fault, fault);
    assert_eq!(seen[4].method, "GET", "{seen:#?}");
    assert!(relay.of("POST").len() <= 2, "{seen:#?}");
}

#[tokio::test]
async fn a_monolithic_put_cut_once_starts_over() {
    let once = AtomicBool::new(false);
    let (registry, relay, registries) = setup(move |h| {
        if h.method == "PUT" && !once.swap(true, Ordering::SeqCst) {
            Fault::Cut
        } else {
            Fault::Pass
        }
    })
    .await;
    let Uploaded { data, heard, .. } =
        upload_ok(&registry, &relay, &registries, None, 300 * KIB, 11).await;
    assert_eq!(methods(&relay.seen()), ["POST", "PUT", "POST", "PUT"]);
    assert_eq!(relay.forwarded(), data.len() as u64);
    assert_eq!(heard.last(), Some(&(data.len() as u64)));
}

#[tokio::test]
async fn a_closing_put_answered_503_once_is_retried() {
    let once = AtomicBool::new(false);
    let (registry, relay, registries) = setup(move |h| {
        if h.method == "PUT" && !once.swap(true, Ordering::SeqCst) {
            Fault::Answer(503)
        } else {
            Fault::Pass
        }
    })
    .await;
    let Uploaded { data, .. } =
        upload_ok(&registry, &relay, &registries, Some(MIB), 3 * MIB, 10).await;
    // Nothing was lost: the three chunks went up once.
    assert_eq!(relay.forwarded(), data.len() as u64);
}

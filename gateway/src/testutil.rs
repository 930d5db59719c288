//! Test fixtures shared by the gateway's tests: image and build cache records as the services
//! send them, a gateway on a loopback port, one HTTP exchange with it, and a fake runtime node
//! that answers the node and broadcast operations a test gives it.

use serde_json::{json, Value};
use wharf_bus::build::CacheRecord;
use wharf_bus::image::ImageRecord;

pub(crate) fn image(
    id: char,
    layers: &[(char, u64)],
    tags: &[&str],
    parent: Option<char>,
) -> ImageRecord {
    let hex = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, size)| {
            json!({"digest": hex(*d), "media_type": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                   "size": size / 2, "diff_id": format!("sha256:diff{d}"), "unpacked_size": size})
        })
        .collect();
    let size: u64 = layers
        .iter()
        .map(|l| l["unpacked_size"].as_u64().unwrap())
        .sum();
    serde_json::from_value(json!({
        "id": hex(id), "repo_tags": tags, "repo_digests": [], "layers": layers,
        "config": {"created": "2024-05-01T10:00:00Z"}, "config_size": 100, "size": size,
        "stored_at": "2024-05-01T10:00:00Z", "parent": parent.map(hex),
    }))
    .unwrap()
}

/// Four images as image-store lists them: `base` (layer a), a build step on it (hidden from
/// `docker images`), the tagged result `app` with the step's layers (a, b), and `other`, whose
/// layer b has the same diff ID on another base (c).
pub(crate) struct FourImages {
    pub base: ImageRecord,
    pub step: ImageRecord,
    pub app: ImageRecord,
    pub other: ImageRecord,
}

pub(crate) fn four_images() -> FourImages {
    FourImages {
        base: image(
            '1',
            &[('a', 1000)],
            &["docker.io/library/base:latest"],
            None,
        ),
        step: image('2', &[('a', 1000), ('b', 200)], &[], Some('1')),
        app: image(
            '3',
            &[('a', 1000), ('b', 200)],
            &["docker.io/library/app:v1"],
            Some('2'),
        ),
        other: image(
            '4',
            &[('c', 50), ('b', 200)],
            &["docker.io/library/other:v1"],
            None,
        ),
    }
}

pub(crate) fn cache_record(id: &str, parent: &str, size: u64) -> CacheRecord {
    CacheRecord {
        id: id.into(),
        parent: parent.into(),
        kind: "regular".into(),
        description: "/bin/sh -c echo hi > /f".into(),
        in_use: false,
        shared: false,
        size,
        created_at: "2024-05-01T10:00:00.500+00:00".into(),
        last_used_at: None,
        usage_count: 0,
    }
}

/// A gateway on the bus `client`, listening on a loopback TCP port: its `host:port`.
pub(crate) async fn gateway(client: async_nats::Client) -> String {
    let listener = crate::listen::bind("tcp://127.0.0.1:0", None, None)
        .await
        .unwrap();
    let addr = listener.describe().trim_start_matches("tcp://").to_string();
    let state = crate::state::AppState::new(client, crate::Options::default()).await;
    let app = crate::routes::router(state);
    tokio::spawn(crate::listen::serve(
        listener,
        app,
        tokio_util::sync::CancellationToken::new(),
        crate::limits::Limits::default(),
    ));
    addr
}

/// One HTTP/1.1 exchange (a JSON body when `body` is not empty): the head (status line and
/// headers) and the raw body (chunked if the server chose to).
pub(crate) async fn exchange(addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// [`exchange`], with only the status line of the head.
pub(crate) async fn http(addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
    let (head, body) = exchange(addr, method, path, body).await;
    (head.lines().next().unwrap().to_string(), body)
}

/// A body parsed as JSON, or a panic that shows it.
pub(crate) fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A fake runtime node: it hears its own subjects and every broadcast, answers `node.ping`
/// with `info`, and passes every other operation (`volume.list`, `network.create`, ...) with
/// its JSON payload to `answer`; `None` means no answer at all. Errors go back as a node's
/// do (`BusError::to_headers`).
pub(crate) async fn fake_node<F>(
    client: &async_nats::Client,
    info: wharf_bus::container::NodeInfo,
    answer: F,
) where
    F: Fn(&str, &[u8]) -> Option<Result<Value, wharf_bus::BusError>> + Send + 'static,
{
    use futures::StreamExt;
    use wharf_bus::container::{all_subject, node_subject, op};
    let mut all = client.subscribe(all_subject(">")).await.unwrap();
    let mut own = client
        .subscribe(node_subject(&info.name, ">"))
        .await
        .unwrap();
    let bus = client.clone();
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                Some(m) = all.next() => m,
                Some(m) = own.next() => m,
                else => break,
            };
            // Operations are the subject's last two tokens: `volume.list`, `node.ping`.
            let subject = message.subject.to_string();
            let operation = subject
                .rsplit_once('.')
                .map(|(rest, last)| {
                    let kind = rest.rsplit('.').next().unwrap_or("");
                    format!("{kind}.{last}")
                })
                .unwrap_or_default();
            let reply = match operation.as_str() {
                op::PING => Some(Ok(serde_json::to_value(&info).unwrap())),
                other => answer(other, &message.payload),
            };
            let (Some(reply), Some(to)) = (reply, message.reply.clone()) else {
                continue;
            };
            match reply {
                Ok(v) => bus
                    .publish(to, bytes::Bytes::from(serde_json::to_vec(&v).unwrap()))
                    .await
                    .unwrap(),
                Err(err) => bus
                    .publish_with_headers(to, err.to_headers(), bytes::Bytes::new())
                    .await
                    .unwrap(),
            }
        }
    });
}

//! The container routes against a real nats-server and a stand-in runtime node that answers
//! the contract: create, resolve, list, wait, and an attach hijacked like dockerd's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_bus::container::*;
use wharf_bus::service::Reply;
use wharf_bus::stream::{Receiver, Sender};
use wharf_bus::testkit::NatsServer;
use wharf_bus::BusError;

const ID: &str = "abcdef0123456789";

async fn fake_node(client: &async_nats::Client) -> wharf_bus::service::Running {
    let mut svc = wharf_bus::service::start(client, "fake-runtime", "test", "wharf.v1.runtime.all")
        .await
        .unwrap();
    let info = NodeInfo {
        name: "n1".into(),
        containers: 1,
        running: 1,
        ..Default::default()
    };
    let all = "wharf.v1.runtime.all";
    let node = "wharf.v1.runtime.node.n1";
    svc.serve(all, op::PING, move |_| {
        let info = info.clone();
        async move { Reply::json(&info) }
    })
    .await
    .unwrap();
    svc.serve(all, op::RESOLVE, |req| async move {
        let r: ResolveRequest = wharf_bus::rpc::decode(&req.message.payload)?;
        let q = r.name_or_id;
        let how = if q == ID {
            Some(MatchKind::Id)
        } else if q == "web" {
            Some(MatchKind::Name)
        } else if ID.starts_with(&q) {
            Some(MatchKind::Prefix)
        } else {
            None
        };
        let matches = how
            .map(|how| ResolveMatch {
                id: ID.into(),
                name: "/web".into(),
                node: "n1".into(),
                how,
            })
            .into_iter()
            .collect();
        Reply::json(&ResolveResponse {
            node: "n1".into(),
            matches,
        })
    })
    .await
    .unwrap();
    svc.serve(all, op::LIST, |_| async move {
        Reply::json(&ListResponse {
            node: "n1".into(),
            containers: vec![
                json!({"Id": "old", "Created": 1}),
                json!({"Id": ID, "Created": 2, "_created_nanos": 5}),
            ],
        })
    })
    .await
    .unwrap();
    svc.serve(node, op::CREATE, |req| async move {
        let r: CreateRequest = wharf_bus::rpc::decode(&req.message.payload)?;
        if r.body.config.image == "missing" {
            return Err(BusError::not_found("No such image: missing:latest"));
        }
        Reply::json(&CreateResponse {
            id: "new".into(),
            warnings: vec![],
        })
    })
    .await
    .unwrap();
    svc.serve(node, op::START, |_| async move {
        Reply::json(&Changed { changed: false })
    })
    .await
    .unwrap();
    svc.serve(node, op::WAIT, |_| async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Reply::json(&WaitResponse {
            status_code: 7,
            error: None,
        })
    })
    .await
    .unwrap();
    let bus = client.clone();
    svc.serve(
        node,
        op::ATTACH,
        move |req: Arc<async_nats::service::Request>| {
            let bus = bus.clone();
            async move {
                let accept = wharf_bus::rpc::encode(&StreamInfo { tty: false })?;
                let mut tx = Sender::accept(&bus, &req, accept).await?;
                tokio::spawn(async move {
                    tx.send(Bytes::from_static(b"\x01\0\0\0\0\0\0\x06hello\n"))
                        .await
                        .unwrap();
                    // Give the stdin upload time to arrive and be echoed.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let _ = tx.finish().await;
                });
                Ok(Reply::Streamed)
            }
        },
    )
    .await
    .unwrap();
    let bus = client.clone();
    svc.serve(
        node,
        op::STDIN,
        move |req: Arc<async_nats::service::Request>| {
            let bus = bus.clone();
            async move {
                let mut rx = Receiver::accept(&bus, &req, Bytes::new()).await?;
                tokio::spawn(async move {
                    let data = rx.collect().await.unwrap();
                    assert_eq!(data, b"typed");
                    rx.respond(Ok(Bytes::from_static(b"{}"))).await.unwrap();
                });
                Ok(Reply::Streamed)
            }
        },
    )
    .await
    .unwrap();
    svc
}

async fn gateway(client: async_nats::Client) -> String {
    let listener = crate::listen::bind("tcp://127.0.0.1:0", None, None)
        .await
        .unwrap();
    let addr = listener.describe().trim_start_matches("tcp://").to_string();
    let state = crate::state::AppState::new(client, crate::Options::default()).await;
    let app = super::super::router(state);
    tokio::spawn(crate::listen::serve(
        listener,
        app,
        tokio_util::sync::CancellationToken::new(),
    ));
    addr
}

/// One HTTP/1.1 exchange; returns the head and the raw (possibly chunked) body.
async fn http(addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[tokio::test]
async fn container_routes_follow_the_contract_end_to_end() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let _node = fake_node(&client).await;
    let addr = gateway(client.clone()).await;

    let (head, body) = http(
        &addr,
        "POST",
        "/v1.45/containers/create?name=ok1",
        r#"{"Image":"busybox"}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created, json!({"Id": "new", "Warnings": []}));

    let (head, body) = http(
        &addr,
        "POST",
        "/containers/create?name=web",
        r#"{"Image":"busybox"}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 409"), "{head}");
    assert!(
        body.contains(
            r#"The container name \"/web\" is already in use by container \"abcdef0123456789\""#
        ),
        "{body}"
    );

    let (head, body) = http(
        &addr,
        "POST",
        "/containers/create",
        r#"{"Image":"missing"}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("No such image: missing:latest"), "{body}");

    let (head, _) = http(
        &addr,
        "POST",
        "/containers/create?name=a",
        r#"{"Image":"x"}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    let (head, _) = http(&addr, "POST", "/containers/abc/start", "").await;
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
    let (head, body) = http(&addr, "POST", "/containers/zzz/start", "").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("No such container: zzz"), "{body}");

    let (head, body) = http(&addr, "GET", "/containers/json?limit=1", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list, json!([{"Id": ID, "Created": 2}]));

    let (head, body) = http(
        &addr,
        "POST",
        "/containers/web/wait?condition=next-exit",
        "",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("{\"StatusCode\":7}\n"), "{body}");

    let (_, body) = http(&addr, "GET", "/info", "").await;
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["ContainersRunning"], 1);

    // Attach: 101 UPGRADED, the output frames, stdin delivered, then the connection closes.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /v1.45/containers/web/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n\
          Host: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/vnd.docker.multiplexed-stream"),
        "{head}"
    );
    s.write_all(b"typed").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, b"\x01\0\0\0\0\0\0\x06hello\n");
}

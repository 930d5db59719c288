//! The container routes against a real nats-server and a stand-in runtime node that answers
//! the contract: create, resolve, list, wait, and an attach hijacked like dockerd's; then exec
//! (create, hijacked start with stdin, inspect, resize), stats, top, update and a prune merged
//! over two nodes.

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

use crate::testutil::{exchange, fake_node, gateway};

const ID: &str = "abcdef0123456789";

/// One stand-in node, `n1`, holding container [`ID`] (named `web`) and an older one: the
/// broadcasts through [`fake_node`], its own operations (create, start, wait, attach with
/// stdin) as a service.
async fn one_node(client: &async_nats::Client) -> wharf_bus::service::Running {
    let info = NodeInfo {
        name: "n1".into(),
        containers: 1,
        running: 1,
        ..Default::default()
    };
    fake_node(client, info, |operation, payload| {
        let answer = match operation {
            op::RESOLVE => {
                let r: ResolveRequest = serde_json::from_slice(payload).unwrap();
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
                serde_json::to_value(ResolveResponse {
                    node: "n1".into(),
                    matches,
                })
            }
            op::LIST => serde_json::to_value(ListResponse {
                node: "n1".into(),
                containers: vec![
                    ContainerSummary {
                        id: "old".into(),
                        created: 1,
                        ..Default::default()
                    },
                    ContainerSummary {
                        id: ID.into(),
                        created: 2,
                        created_nanos: 5,
                        ..Default::default()
                    },
                ],
            }),
            _ => return None,
        };
        Some(Ok(answer.unwrap()))
    })
    .await;
    let node = "wharf.v1.runtime.node.n1";
    let mut svc = wharf_bus::service::start(client, "fake-runtime", "test", node)
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

#[tokio::test]
async fn container_routes_follow_the_contract_end_to_end() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let _node = one_node(&client).await;
    let addr = gateway(client.clone()).await;

    let (head, body) = exchange(
        &addr,
        "POST",
        "/v1.45/containers/create?name=ok1",
        r#"{"Image":"busybox"}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created, json!({"Id": "new", "Warnings": []}));

    let (head, body) = exchange(
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

    let (head, body) = exchange(
        &addr,
        "POST",
        "/containers/create",
        r#"{"Image":"missing"}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("No such image: missing:latest"), "{body}");

    let (head, _) = exchange(
        &addr,
        "POST",
        "/containers/create?name=a",
        r#"{"Image":"x"}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    let (head, _) = exchange(&addr, "POST", "/containers/abc/start", "").await;
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
    let (head, body) = exchange(&addr, "POST", "/containers/zzz/start", "").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("No such container: zzz"), "{body}");

    let (head, body) = exchange(&addr, "GET", "/containers/json?limit=1", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let list: Value = serde_json::from_str(&body).unwrap();
    // The newest only, as Docker renders a row: the nanoseconds ordered it and are not shown.
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        (list[0]["Id"].as_str(), list[0]["Created"].as_i64()),
        (Some(ID), Some(2))
    );
    assert!(list[0]["Names"].is_array() && list[0]["HostConfig"]["NetworkMode"].is_string());
    assert!(!body.contains("nanos"), "{body}");

    let (head, body) = exchange(
        &addr,
        "POST",
        "/containers/web/wait?condition=next-exit",
        "",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("{\"StatusCode\":7}\n"), "{body}");

    let (_, body) = exchange(&addr, "GET", "/info", "").await;
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

/// Two stand-in nodes for exec, stats, top, update and prune: `n1` holds container [`ID`] and
/// execs `e1` (reads stdin, echoes it), `e2` (no stdin) and `ran` (already run); `n2` holds
/// nothing. Broadcasts go to plain subscriptions, as the runtime takes them, so both answer.
async fn exec_nodes(client: &async_nats::Client) -> wharf_bus::service::Running {
    for name in ["n1", "n2"] {
        let info = NodeInfo {
            name: name.into(),
            ..Default::default()
        };
        let holds = name == "n1";
        fake_node(client, info, move |operation, payload| {
            let answer = match operation {
                op::RESOLVE => {
                    let r: ResolveRequest = serde_json::from_slice(payload).unwrap();
                    let found = holds && (r.name_or_id == "web" || r.name_or_id == ID);
                    let matches: Vec<ResolveMatch> = found
                        .then(|| ResolveMatch {
                            id: ID.into(),
                            name: "/web".into(),
                            node: name.into(),
                            how: if r.name_or_id == ID {
                                MatchKind::Id
                            } else {
                                MatchKind::Name
                            },
                        })
                        .into_iter()
                        .collect();
                    json!({"node": name, "matches": matches})
                }
                op::EXEC_LOCATE => {
                    let r: ExecRef = serde_json::from_slice(payload).unwrap();
                    let found = holds && ["e1", "e2", "ran", "tty1"].contains(&r.exec_id.as_str());
                    serde_json::to_value(ExecLocation {
                        node: name.into(),
                        found,
                    })
                    .unwrap()
                }
                op::PRUNE => {
                    let r: ListRequest = serde_json::from_slice(payload).unwrap();
                    assert_eq!(r.filters["label"], ["gone=yes"]);
                    let (id, space) = if holds { ("c1", 10) } else { ("c2", 5) };
                    serde_json::to_value(ContainerPruneResponse {
                        containers_deleted: vec![id.into()],
                        space_reclaimed: space,
                    })
                    .unwrap()
                }
                _ => return None,
            };
            Some(Ok(answer))
        })
        .await;
    }

    // An attach's stdin pipe, made by whichever of the start and the stdin upload comes first
    // (the gateway opens the upload before the start, as a node takes them in either order).
    type Pipe = (
        Option<tokio::sync::mpsc::Sender<Bytes>>,
        Option<tokio::sync::mpsc::Receiver<Bytes>>,
    );
    type StdinPipes = Arc<std::sync::Mutex<std::collections::HashMap<String, Pipe>>>;
    let pipes: StdinPipes = Arc::default();
    fn pipe_of<'a>(
        pipes: &'a mut std::collections::HashMap<String, Pipe>,
        attach_id: &str,
    ) -> &'a mut Pipe {
        pipes.entry(attach_id.to_string()).or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
            (Some(tx), Some(rx))
        })
    }
    let node = "wharf.v1.runtime.node.n1";
    let mut svc = wharf_bus::service::start(client, "fake-exec-runtime", "test", node)
        .await
        .unwrap();
    svc.serve(node, op::EXEC_CREATE, |req| async move {
        let r: ExecCreateRequest = wharf_bus::rpc::decode(&req.message.payload)?;
        assert_eq!(r.id, ID);
        if r.config.cmd[0] == "paused" {
            return Err(BusError::conflict(format!(
                "Container {ID} is paused, unpause the container before exec"
            )));
        }
        Reply::json(&ExecCreated { id: "e1".into() })
    })
    .await
    .unwrap();
    svc.serve(node, op::EXEC_INSPECT, |req| async move {
        let r: ExecRef = wharf_bus::rpc::decode(&req.message.payload)?;
        Reply::json(&json!({
            "ID": r.exec_id,
            "ContainerID": ID,
            "OpenStdin": r.exec_id == "e1",
            "Running": false,
            "ExitCode": 0,
        }))
    })
    .await
    .unwrap();
    // A start checks the exec's container first, as dockerd does before the hijack.
    svc.serve(node, op::INSPECT, |req| async move {
        let r: InspectRequest = wharf_bus::rpc::decode(&req.message.payload)?;
        assert_eq!(r.id, ID);
        Reply::json(&InspectResponse {
            id: ID.into(),
            state: ContainerState {
                status: "running".into(),
                running: true,
                ..Default::default()
            },
            ..Default::default()
        })
    })
    .await
    .unwrap();
    svc.serve(node, op::EXEC_RESIZE, |req| async move {
        let r: ExecResizeRequest = wharf_bus::rpc::decode(&req.message.payload)?;
        assert_eq!((r.height, r.width), (24, 80));
        Reply::json(&json!({}))
    })
    .await
    .unwrap();
    svc.serve(node, op::EXEC_START_DETACHED, |req| async move {
        let r: ExecStartRequest = wharf_bus::rpc::decode(&req.message.payload)?;
        assert_eq!(r.exec_id, "e2");
        Reply::json(&json!({}))
    })
    .await
    .unwrap();
    let bus = client.clone();
    let starts = pipes.clone();
    svc.serve(
        node,
        op::EXEC_START,
        move |req: Arc<async_nats::service::Request>| {
            let (bus, pipes) = (bus.clone(), starts.clone());
            async move {
                let r: ExecStartRequest = wharf_bus::rpc::decode(&req.message.payload)?;
                if r.exec_id == "ran" {
                    return Err(BusError::conflict("exec command ran has already run"));
                }
                assert!(!r.attach_id.is_empty());
                if r.exec_id == "tty1" {
                    // Created with a TTY: the node sends the TTY's raw output.
                    let accept = wharf_bus::rpc::encode(&StreamInfo { tty: true })?;
                    let mut tx = Sender::accept(&bus, &req, accept).await?;
                    tokio::spawn(async move {
                        tx.send(Bytes::from_static(b"hi\r\n")).await.unwrap();
                        let _ = tx.finish().await;
                    });
                    return Ok(Reply::Streamed);
                }
                let mut stdin = if r.exec_id == "e1" {
                    let mut pipes = pipes.lock().unwrap();
                    pipe_of(&mut pipes, &r.attach_id).1.take().unwrap()
                } else {
                    // No stdin: it ends at once.
                    tokio::sync::mpsc::channel::<Bytes>(1).1
                };
                let accept = wharf_bus::rpc::encode(&StreamInfo { tty: false })?;
                let mut tx = Sender::accept(&bus, &req, accept).await?;
                tokio::spawn(async move {
                    tx.send(mux(b"hello\n")).await.unwrap();
                    // Echo stdin until it ends (a process without stdin sees it end at once).
                    while let Some(data) = stdin.recv().await {
                        tx.send(mux(&data)).await.unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    tx.send(mux(b"bye\n")).await.unwrap();
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
            let (bus, pipes) = (bus.clone(), pipes.clone());
            async move {
                let r: StdinRequest = wharf_bus::rpc::decode(&req.message.payload)?;
                assert_eq!(r.id, "e1", "the upload names the exec");
                let pipe = {
                    let mut pipes = pipes.lock().unwrap();
                    pipe_of(&mut pipes, &r.attach_id).0.take()
                }
                .ok_or_else(|| BusError::not_found("no such attach"))?;
                let mut rx = Receiver::accept(&bus, &req, Bytes::new()).await?;
                tokio::spawn(async move {
                    while let Some(Ok(data)) = rx.next().await {
                        pipe.send(data).await.unwrap();
                    }
                    drop(pipe);
                    let _ = rx.respond(Ok(Bytes::from_static(b"{}"))).await;
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
        op::STATS,
        move |req: Arc<async_nats::service::Request>| {
            let bus = bus.clone();
            async move {
                let r: StatsRequest = wharf_bus::rpc::decode(&req.message.payload)?;
                assert!(!r.stream);
                let mut tx = Sender::accept(&bus, &req, Bytes::new()).await?;
                tokio::spawn(async move {
                    tx.send(Bytes::from(
                        serde_json::to_vec(&json!({"id": r.id, "pids_stats": {"current": 3}}))
                            .unwrap(),
                    ))
                    .await
                    .unwrap();
                    let _ = tx.finish().await;
                });
                Ok(Reply::Streamed)
            }
        },
    )
    .await
    .unwrap();
    svc.serve(node, op::TOP, |req| async move {
        let r: TopRequest = wharf_bus::rpc::decode(&req.message.payload)?;
        Reply::json(&json!({"Titles": [r.ps_args], "Processes": [["1"]]}))
    })
    .await
    .unwrap();
    svc.serve(node, op::UPDATE, |req| async move {
        let r: UpdateRequest = wharf_bus::rpc::decode(&req.message.payload)?;
        assert_eq!(r.body, json!({"Memory": 1024, "PidsLimit": 0}));
        Reply::json(&json!({"Warnings": []}))
    })
    .await
    .unwrap();
    svc
}

fn mux(data: &[u8]) -> Bytes {
    super::logs::mux_frame(1, data)
}

const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
const RAW: &str = "application/vnd.docker.raw-stream";

/// Sends a hijacking request, checks the 101 (multiplexed), writes `input`, half-closes and
/// returns all output.
async fn hijacked(addr: &str, path: &str, body: &str, input: &[u8]) -> Vec<u8> {
    hijacked_as(addr, path, body, input, MULTIPLEXED).await
}

/// [`hijacked`] with the stream's content type `content_type`.
async fn hijacked_as(
    addr: &str,
    path: &str,
    body: &str,
    input: &[u8],
    content_type: &str,
) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
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
            .contains(&format!("content-type: {content_type}")),
        "{head}"
    );
    s.write_all(input).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn exec_stats_top_update_and_prune_follow_the_contract_end_to_end() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let _node = exec_nodes(&client).await;
    let addr = gateway(client.clone()).await;

    // Exec create: the command is checked first, then the container, then the node decides.
    let (head, body) = exchange(&addr, "POST", "/v1.45/containers/web/exec", r#"{"Cmd":[]}"#).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(body.contains("No exec command specified"), "{body}");
    let (head, body) = exchange(&addr, "POST", "/containers/zzz/exec", r#"{"Cmd":["sh"]}"#).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("No such container: zzz"), "{body}");
    let (head, body) = exchange(
        &addr,
        "POST",
        "/containers/web/exec",
        r#"{"Cmd":["paused"]}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 409"), "{head}");
    assert!(
        body.contains("is paused, unpause the container before exec"),
        "{body}"
    );
    let (head, body) = exchange(
        &addr,
        "POST",
        "/v1.45/containers/web/exec",
        r#"{"AttachStdin":true,"AttachStdout":true,"Cmd":["cat"]}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"Id": "e1"})
    );

    // Attached start with stdin (`docker exec -i`): output, the echoed input, then the end.
    let out = hijacked(
        &addr,
        "/v1.45/exec/e1/start",
        r#"{"Detach":false,"Tty":false}"#,
        b"typed",
    )
    .await;
    assert_eq!(
        out,
        [mux(b"hello\n"), mux(b"typed"), mux(b"bye\n")].concat()
    );
    // Without stdin the CLI half-closes at once; the output still comes in full.
    let out = hijacked(&addr, "/v1.45/exec/e2/start", r#"{"Tty":false}"#, b"").await;
    assert_eq!(out, [mux(b"hello\n"), mux(b"bye\n")].concat());
    // An exec created with a TTY and started without one: the node sends raw output, the
    // client gets what dockerd sends (it frames by the start): stdout frames, multiplexed.
    let out = hijacked(&addr, "/v1.45/exec/tty1/start", r#"{"Tty":false}"#, b"").await;
    assert_eq!(out, mux(b"hi\r\n"));
    let start = r#"{"Tty":true}"#;
    let out = hijacked_as(&addr, "/v1.45/exec/tty1/start", start, b"", RAW).await;
    assert_eq!(out, b"hi\r\n");
    // Multiplexed output started with a TTY: the payloads, raw.
    let out = hijacked_as(&addr, "/v1.45/exec/e2/start", start, b"", RAW).await;
    assert_eq!(out, b"hello\nbye\n");
    // A start that fails once running is told in the stream, as dockerd does.
    let out = hijacked(&addr, "/v1.45/exec/ran/start", "{}", b"").await;
    assert_eq!(out, mux(b"exec command ran has already run\r\n"));

    let (head, body) = exchange(&addr, "POST", "/exec/nope/start", r#"{"Detach":false}"#).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("No such exec instance: nope"), "{body}");
    let (head, body) = exchange(&addr, "POST", "/exec/e2/start", r#"{"Detach":true}"#).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.is_empty(), "{body}");

    let (head, body) = exchange(&addr, "GET", "/exec/e1/json", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let inspect: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (inspect["ID"].as_str(), inspect["ExitCode"].as_i64()),
        (Some("e1"), Some(0))
    );
    let (head, _) = exchange(&addr, "POST", "/exec/e1/resize?h=24&w=80", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, _) = exchange(&addr, "POST", "/exec/e1/resize?h=x&w=80", "").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (head, _) = exchange(&addr, "GET", "/exec/nope/json", "").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Stats without streaming: one JSON document and a newline.
    let (head, body) = exchange(&addr, "GET", "/containers/web/stats?stream=0", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let line = format!("{}\n", json!({"id": ID, "pids_stats": {"current": 3}}));
    assert!(body.contains(&line), "{body}");

    let (head, body) = exchange(&addr, "GET", "/containers/web/top", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"Titles": ["-ef"], "Processes": [["1"]]})
    );

    let (head, body) = exchange(
        &addr,
        "POST",
        "/v1.45/containers/web/update",
        r#"{"Memory":1024,"PidsLimit":-1,"BlkioDeviceReadBps":[]}"#,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"Warnings": []})
    );

    // Prune: both nodes' reports as one.
    let (head, body) = exchange(
        &addr,
        "POST",
        "/containers/prune?filters=%7B%22label%22%3A%7B%22gone%3Dyes%22%3Atrue%7D%7D",
        "",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"ContainersDeleted": ["c1", "c2"], "SpaceReclaimed": 15})
    );
}

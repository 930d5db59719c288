//! Attached streams at the edges of their contracts: a stdin upload to a real runtime node ends
//! with the node's declared answer, and `POST /exec/{id}/start` frames an exec's output as
//! dockerd does when the exec and its start disagree about the TTY.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use support::fixtures::{self, ImageSpec, PushFormat};
use support::{Registry, Stack};

/// A stack with a pulled busybox-like image (`cat`, `echo`, `sleep`); the registry must live
/// as long as the test.
fn stack_with_image(name: &str) -> (Stack, Registry, String) {
    let stack = Stack::start();
    let registry = Registry::start();
    let spec = ImageSpec::busybox_like(name, fixtures::host_arch(), vec![]);
    let image =
        fixtures::push_image(&registry, &spec, "streams", "v1", PushFormat::DockerV2S2).reference();
    stack.docker().ok(&["pull", &image]);
    (stack, registry, image)
}

/// The container.stdin upload against the real runtime: bytes go to the container (`cat`
/// echoes them on the attach), and finishing the upload returns the node's `{}` at once,
/// not when the attach ends or the node goes silent.
#[test]
fn a_stdin_upload_ends_with_the_nodes_answer() {
    use wharf_bus::api::{ContainerAttach, ContainerResolve, ContainerStdin};
    use wharf_bus::container::{AttachRequest, ResolveRequest, StdinRequest};
    use wharf_bus::endpoint::{self, Empty};

    if support::skip_on_reference("needs Wharf's bus") {
        return;
    }
    let (stack, _registry, image) = stack_with_image("stdin");
    let d = stack.docker();
    let id = d
        .ok(&["run", "-d", "-i", "--name", "echoer", &image, "cat"])
        .stdout
        .trim()
        .to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // As the gateway calls nodes: its NATS user and inbox prefix.
        let options = wharf_bus::NatsOptions {
            url: stack.nats_url(),
            user: Some("gateway".into()),
            password: Some(stack.nats_password("gateway")),
            ..Default::default()
        };
        let client = wharf_bus::connect(&options, "wharf-gateway").await.unwrap();
        let roster = wharf_bus::nodes::Roster::start(client.clone())
            .await
            .unwrap();
        roster.nodes_or_discover().await;
        let answers = roster
            .gather::<ContainerResolve>(&ResolveRequest {
                name_or_id: id.clone(),
            })
            .await
            .unwrap();
        let node = answers
            .into_iter()
            .find(|a| !a.matches.is_empty())
            .map(|a| a.node)
            .expect("a node holds the container");

        let attach_id = "e2e-stdin-attach".to_string();
        let attach = AttachRequest {
            id: id.clone(),
            attach_id: attach_id.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
            logs: false,
            detach_keys: String::new(),
        };
        let (mut output, info) =
            endpoint::download_from_node::<ContainerAttach>(&client, &node, &attach)
                .await
                .unwrap();
        assert!(!info.tty);
        let stdin = StdinRequest {
            id: id.clone(),
            attach_id,
        };
        let (mut upload, Empty) =
            endpoint::upload_to_node::<ContainerStdin>(&client, &node, &stdin)
                .await
                .unwrap();
        upload
            .send(axum::body::Bytes::from_static(b"hello\n"))
            .await
            .unwrap();
        // `cat` echoes the line: one multiplexed stdout frame.
        let mut echoed = Vec::new();
        while !echoed.ends_with(b"hello\n") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), output.next())
                .await
                .expect("the echo comes back")
                .expect("the attach goes on")
                .unwrap();
            echoed.extend_from_slice(&chunk);
        }
        assert_eq!(echoed, b"\x01\0\0\0\0\0\0\x06hello\n");
        let answer = tokio::time::timeout(Duration::from_secs(3), upload.finish_json::<Empty>())
            .await
            .expect("the node answers the end of the upload at once");
        assert_eq!(answer.unwrap(), Empty);
    });
    d.ok(&["rm", "-f", "echoer"]);
}

/// `POST /v1.45/containers/{container}/exec` with `body`: the exec's ID.
fn exec_create(socket: &Path, container: &str, body: &str) -> String {
    let (status, _, answer) = support::unix_request(
        socket,
        "POST",
        &format!("/v1.45/containers/{container}/exec"),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
    .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert_eq!(status, 201, "{answer}");
    let created: serde_json::Value = serde_json::from_str(&answer).unwrap();
    created["Id"].as_str().unwrap().to_string()
}

/// `POST /v1.45/exec/{id}/start` with `body`, upgraded as the CLI does: the stream's content
/// type and all of its output.
fn exec_start(socket: &Path, id: &str, body: &str) -> (String, Vec<u8>) {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "POST /v1.45/exec/{id}/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n\
         Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    // Nothing to send: the CLI half-closes at once too.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    (content_type, out)
}

/// The frames of a multiplexed stream: (stream, payload).
fn frames(mut muxed: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !muxed.is_empty() {
        assert!(muxed.len() >= 8, "a cut frame header: {muxed:?}");
        let len = u32::from_be_bytes([muxed[4], muxed[5], muxed[6], muxed[7]]) as usize;
        assert!(muxed.len() >= 8 + len, "a cut frame: {muxed:?}");
        out.push((muxed[0], muxed[8..8 + len].to_vec()));
        muxed = &muxed[8 + len..];
    }
    out
}

/// An exec's output is framed by its start's `Tty`, as dockerd frames it (its router wraps
/// stdout and stderr in multiplexing writers unless the start asks for a TTY): an exec created
/// with a TTY but started without one is multiplexed, its TTY's output all on stdout.
#[test]
fn an_exec_is_framed_as_its_start_asks() {
    if support::skip_on_reference("dockerd 20.10 predates API 1.42's multiplexed content type") {
        return;
    }
    let (stack, _registry, image) = stack_with_image("exec");
    let d = stack.docker();
    d.ok(&["run", "-d", "--name", "idle", &image, "sleep", "600"]);
    let with_tty = r#"{"Cmd":["echo","hi"],"AttachStdout":true,"AttachStderr":true,"Tty":true}"#;

    let id = exec_create(&stack.socket, "idle", with_tty);
    let (content_type, out) = exec_start(&stack.socket, &id, r#"{"Detach":false,"Tty":false}"#);
    assert_eq!(content_type, "application/vnd.docker.multiplexed-stream");
    let stdout = frames(&out);
    assert!(stdout.iter().all(|(stream, _)| *stream == 1), "{stdout:?}");
    let text: Vec<u8> = stdout
        .into_iter()
        .flat_map(|(_, payload)| payload)
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&text),
        "hi\r\n",
        "a TTY's line ending"
    );

    let id = exec_create(&stack.socket, "idle", with_tty);
    let (content_type, out) = exec_start(&stack.socket, &id, r#"{"Detach":false,"Tty":true}"#);
    assert_eq!(content_type, "application/vnd.docker.raw-stream");
    assert_eq!(String::from_utf8_lossy(&out), "hi\r\n");

    let without =
        r#"{"Cmd":["sh","-c","echo out; echo err >&2"],"AttachStdout":true,"AttachStderr":true}"#;
    let id = exec_create(&stack.socket, "idle", without);
    let (content_type, out) = exec_start(&stack.socket, &id, r#"{"Detach":false}"#);
    assert_eq!(content_type, "application/vnd.docker.multiplexed-stream");
    let mut both = frames(&out);
    both.sort();
    assert_eq!(
        both,
        [(1, b"out\n".to_vec()), (2, b"err\n".to_vec())],
        "one frame per stream"
    );
    // Whether the process gets a terminal is the exec's own Tty, as in dockerd: started with a
    // TTY, an exec created without one has none (no \r\n), its output sent unframed.
    let id = exec_create(&stack.socket, "idle", without);
    let (content_type, out) = exec_start(&stack.socket, &id, r#"{"Detach":false,"Tty":true}"#);
    assert_eq!(content_type, "application/vnd.docker.raw-stream");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("out\n") && text.contains("err\n"), "{text:?}");
    assert!(!text.contains('\r'), "no terminal: {text:?}");
    d.ok(&["rm", "-f", "idle"]);
}

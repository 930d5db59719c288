//! Attached streams at the edges of their contracts: a stdin upload to a real runtime node ends
//! with the node's declared answer, and `POST /exec/{id}/start` frames an exec's output as
//! dockerd does when the exec and its start disagree about the TTY.

mod support;

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

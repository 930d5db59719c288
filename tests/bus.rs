//! The stack seen from its bus and its processes: service discovery as `nats micro ls` does it,
//! and services dying in the middle of a pull.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use support::fixtures::{self, PushFormat};
use support::proxy::SlowProxy;
use support::{Nats, Registry, Stack};

const SERVICES: [&str; 5] = [
    "wharf-gateway",
    "wharf-image-store",
    "wharf-registry-sync",
    "wharf-builder",
    "wharf-runtime",
];

/// Sends `$SRV.<verb>` and gathers every reply for `window`, as `nats micro ls` does.
async fn discover(
    client: &async_nats::Client,
    verb: &str,
    window: Duration,
) -> Vec<serde_json::Value> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(format!("$SRV.{verb}"), inbox, "".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
        out.push(serde_json::from_slice(&msg.payload).expect("service API replies are JSON"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_five_services_answer_service_api_discovery() {
    if support::skip_on_reference("needs Wharf's bus") {
        return;
    }
    let stack = tokio::task::spawn_blocking(Stack::start).await.unwrap();
    let client = stack.nats().await;
    // Services may register a moment after the gateway answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let infos = loop {
        let infos = discover(&client, "INFO", Duration::from_millis(500)).await;
        let names: Vec<&str> = infos.iter().filter_map(|i| i["name"].as_str()).collect();
        if SERVICES.iter().all(|s| names.contains(s)) || Instant::now() > deadline {
            break infos;
        }
    };
    let mut names: Vec<String> = infos
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    let mut expected: Vec<String> = SERVICES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "{infos:#?}");
    for info in &infos {
        assert_eq!(info["type"], "io.nats.micro.v1.info_response", "{info}");
        assert!(!info["id"].as_str().unwrap_or("").is_empty(), "{info}");
        let subjects: Vec<&str> = info["endpoints"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["subject"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            subjects
                .iter()
                .any(|s| s.starts_with("wharf.v1.") && s.ends_with(".health")),
            "every service has a health endpoint under wharf.v1: {info}"
        );
    }
    // PING answers too (`nats micro ls` starts with it).
    let pings = discover(&client, "PING", Duration::from_millis(500)).await;
    for s in SERVICES {
        assert!(
            pings.iter().any(|p| p["name"] == s),
            "{s} answers $SRV.PING: {pings:?}"
        );
    }
    tokio::task::spawn_blocking(move || drop(stack))
        .await
        .unwrap();
}

#[tokio::test]
async fn private_nats_refuses_clients_without_the_password() {
    if support::skip_on_reference("needs Wharf's bus") {
        return;
    }
    let stack = tokio::task::spawn_blocking(Stack::start).await.unwrap();
    // A wrong password, another user's password, and the single user of earlier versions.
    let builder = stack.nats_password("builder");
    for (user, password) in [
        ("gateway", "wrong".to_string()),
        ("gateway", builder),
        ("wharf", "wrong".to_string()),
    ] {
        let wrong = async_nats::ConnectOptions::with_user_and_password(user.into(), password)
            .connect(stack.nats_url());
        let refused = tokio::time::timeout(Duration::from_secs(5), wrong).await;
        assert!(
            !matches!(refused, Ok(Ok(_))),
            "{user}: a wrong password is refused"
        );
    }
    let client = stack.nats().await;
    client.flush().await.unwrap();
    tokio::task::spawn_blocking(move || drop(stack))
        .await
        .unwrap();
}

/// Publishes `refused` as `publisher`, then the marker `allowed` as `marker_by`, and returns
/// the subjects `spy` heard up to the marker (the server has handled the first publish when
/// its flush returns, so what is not there by the marker never came).
async fn heard_through(
    publisher: &async_nats::Client,
    marker_by: &async_nats::Client,
    spy: &mut async_nats::Subscriber,
    refused: &str,
    allowed: &str,
) -> Vec<String> {
    publisher
        .publish(refused.to_string(), "probe".into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    marker_by
        .publish(allowed.to_string(), "probe".into())
        .await
        .unwrap();
    marker_by.flush().await.unwrap();
    let mut heard = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), spy.next())
            .await
            .unwrap_or_else(|_| panic!("{allowed} never arrived (heard {heard:?})"))
            .unwrap();
        heard.push(msg.subject.to_string());
        if msg.subject.as_str() == allowed {
            return heard;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_user_may_drive_only_the_endpoints_it_uses() {
    if support::skip_on_reference("needs Wharf's bus") {
        return;
    }
    let stack = tokio::task::spawn_blocking(Stack::start).await.unwrap();
    // Spies: users that may subscribe to the subjects the probes go to, on a node nobody runs.
    let runtime = stack.nats_as("runtime").await;
    let mut node = runtime
        .subscribe("wharf.v1.runtime.node.spy.>")
        .await
        .unwrap();
    let registry_sync = stack.nats_as("registry-sync").await;
    let mut registry = registry_sync
        .subscribe("wharf.v1.registry-sync.>")
        .await
        .unwrap();
    runtime.flush().await.unwrap();
    registry_sync.flush().await.unwrap();

    let builder = stack.nats_as("builder").await;
    for refused in [
        "wharf.v1.runtime.node.spy.container.create",
        "wharf.v1.runtime.node.spy.exec.create",
        "wharf.v1.runtime.node.spy.container.archive.put",
    ] {
        let heard = heard_through(
            &builder,
            &builder,
            &mut node,
            refused,
            "wharf.v1.runtime.node.spy.build.run",
        )
        .await;
        assert_eq!(heard, ["wharf.v1.runtime.node.spy.build.run"], "{refused}");
    }
    let heard = heard_through(
        &builder,
        &builder,
        &mut registry,
        "wharf.v1.registry-sync.login",
        "wharf.v1.registry-sync.pull",
    )
    .await;
    assert_eq!(heard, ["wharf.v1.registry-sync.pull"]);

    // registry-sync, image-store and `wharf sync` drive no runtime node; the gateway does.
    let image_store = stack.nats_as("image-store").await;
    let gateway = stack.nats_as("gateway").await;
    let sync = stack.nats_as("sync").await;
    for (name, other) in [
        ("registry-sync", &registry_sync),
        ("image-store", &image_store),
        ("sync", &sync),
    ] {
        let heard = heard_through(
            other,
            &gateway,
            &mut node,
            "wharf.v1.runtime.node.spy.container.create",
            "wharf.v1.runtime.node.spy.container.start",
        )
        .await;
        assert_eq!(
            heard,
            ["wharf.v1.runtime.node.spy.container.start"],
            "{name}"
        );
    }
    let heard = heard_through(
        &gateway,
        &gateway,
        &mut node,
        "wharf.v1.runtime.node.spy.container.create",
        "wharf.v1.runtime.node.spy.container.start",
    )
    .await;
    assert_eq!(
        heard,
        [
            "wharf.v1.runtime.node.spy.container.create",
            "wharf.v1.runtime.node.spy.container.start"
        ]
    );
    let heard = heard_through(
        &sync,
        &sync,
        &mut registry,
        "wharf.v1.registry-sync.push",
        "wharf.v1.registry-sync.sync",
    )
    .await;
    assert_eq!(heard, ["wharf.v1.registry-sync.sync"]);

    // A service reads its own inboxes only.
    let ops = stack.nats().await;
    let mut theirs = builder
        .subscribe("_INBOX.wharf-gateway.probe")
        .await
        .unwrap();
    let mut mine = builder
        .subscribe("_INBOX.wharf-builder.probe")
        .await
        .unwrap();
    builder.flush().await.unwrap();
    ops.publish("_INBOX.wharf-gateway.probe", "secret".into())
        .await
        .unwrap();
    // Published again until it arrives: under load the server may still be handling the
    // refused subscription's error when the first one goes out.
    let mut got = None;
    for _ in 0..25 {
        ops.publish("_INBOX.wharf-builder.probe", "mine".into())
            .await
            .unwrap();
        ops.flush().await.unwrap();
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(400), mine.next()).await {
            got = m;
            break;
        }
    }
    let got = got.expect("the builder's own inbox message");
    assert_eq!(&got.payload[..], b"mine");
    assert!(
        futures::FutureExt::now_or_never(theirs.next()).is_none(),
        "the builder read the gateway's inbox"
    );
    tokio::task::spawn_blocking(move || drop(stack))
        .await
        .unwrap();
}

#[test]
fn harness_nats_server_runs_and_stops() {
    // The harness's own nats-server, used by tests that need a bare bus.
    let nats = Nats::start(Some(("tester", "pw")));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = support::nats_connect(&nats.url, "tester", "pw").await;
        let mut sub = c.subscribe("probe").await.unwrap();
        c.publish("probe", "hi".into()).await.unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&msg.payload[..], b"hi");
    });
}

/// Kills `service` while a large pull is under way, then checks that no half image is left, that
/// the stack restarted the service, and that the pull works again.
fn kill_mid_pull(service: &str) {
    if support::skip_on_reference("kills Wharf's processes") {
        return;
    }
    let registry = Registry::start();
    let n = format!("kill-{service}-{}", std::process::id());
    // About 64 MiB of random layers.
    let pushed = fixtures::push_image(
        &registry,
        &fixtures::large(&n, 2, 32),
        "fixtures/large",
        "v1",
        PushFormat::Oci,
    );
    // Pull through a relay that caps the rate, so the pull lasts several seconds.
    let proxy = SlowProxy::start(&registry.host, 16 << 20);
    let reference = format!("127.0.0.1:{}/fixtures/large:v1", proxy.port);

    let stack = Stack::start();
    let docker = stack.docker();
    let old = stack
        .service_pid(service)
        .unwrap_or_else(|| panic!("{service} runs as a child of wharf up"));
    let mut pull = docker.command(&["pull", &reference]);
    pull.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut pull = support::spawn(pull, libc::SIGKILL).unwrap();

    // Mid-pull: a good part of the layers has gone through the relay, not all.
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.relayed() < 12 << 20 {
        assert!(
            Instant::now() < deadline,
            "the pull did not start: {}",
            stack.log()
        );
        assert!(pull.try_wait().unwrap().is_none(), "the pull ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    let relayed_at_kill = proxy.relayed();
    assert!(relayed_at_kill < 60 << 20, "still mid-pull");
    // SAFETY: kill(2) on the PID of a child of the wharf up we started, found via /proc.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };

    // The pull fails or, if the engine retried on a restarted service, completes: never half.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = pull.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(pull.id() as i32, libc::SIGKILL) };
            panic!("docker pull hung after {service} was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "killed {service} (pid {old}) after {} MiB of {} MiB; the pull then {}",
        relayed_at_kill >> 20,
        pushed.layer_sizes.iter().sum::<u64>() >> 20,
        if status.success() {
            "succeeded"
        } else {
            "failed"
        }
    );
    let new = stack.wait_service_restarted(service, old, Duration::from_secs(30));
    assert_ne!(new, old);

    let listed = docker.images(&[]);
    if status.success() {
        assert_eq!(docker.inspect(&reference)["Id"], pushed.id.as_str());
    } else {
        assert!(
            listed
                .iter()
                .all(|(repo, _, id, _)| id != &pushed.id && !repo.ends_with("fixtures/large")),
            "no half image after the failed pull: {listed:?}"
        );
        let inspect = docker.run(&["image", "inspect", &pushed.id]);
        assert!(!inspect.success(), "{inspect}");
    }

    // The stack answers again, and a retried pull succeeds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = docker.run(&["pull", &reference]);
        if out.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(out.success(), "retried pull: {out}\n{}", stack.log());
    let v = docker.inspect(&reference);
    assert_eq!(v["Id"], pushed.id.as_str());
    assert_eq!(v["Size"].as_u64(), Some(pushed.size));
    assert_eq!(
        support::strings(&v["RootFS"]["Layers"], false),
        pushed.diff_ids
    );
}

#[test]
fn killing_registry_sync_mid_pull_leaves_no_half_image() {
    kill_mid_pull("registry-sync");
}

#[test]
fn killing_image_store_mid_pull_leaves_no_half_image() {
    kill_mid_pull("image-store");
}

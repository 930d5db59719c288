//! The container lifecycle's decisions, on a node whose host is a recording double
//! ([`testkit::RecordingHost`]): what start sets up and in which order, what is undone after a
//! failed launch or an exit, when a container restarts or is removed, what stop, kill, pause
//! and remove ask of the host, and what the node does with the containers it finds at start.
//! No root, no shim and no bus server are needed.

use std::sync::Arc;
use std::time::Duration;

use wharf_bus::container::{HostConfig, RestartPolicy};
use wharf_bus::ErrorKind;

use super::record::{ContainerPaths, Status};
use super::testkit::{self, until, RecordingHost};
use super::{remove, restore, start, stop, Container, Node};

/// A node on a fresh recording host in a fresh directory (kept for the test's length).
fn setup() -> (tempfile::TempDir, Arc<RecordingHost>, Arc<Node>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let host = RecordingHost::new();
    let node = testkit::node(dir.path(), host.clone());
    (dir, host, node)
}

fn with_policy(name: &str, maximum_retry_count: i64) -> HostConfig {
    HostConfig {
        restart_policy: RestartPolicy {
            name: name.into(),
            maximum_retry_count,
        },
        ..Default::default()
    }
}

/// How many exits the node has recorded for `c`.
fn exits(c: &Container) -> u64 {
    c.phase.borrow().exits
}

/// What a start asks of the host, in order, for the container `web` on the default bridge.
const START: [&str; 11] = [
    "shim_spawn web",
    "mount_rootfs web/rootfs",
    "write_file web/hostname",
    "write_file web/resolv.conf",
    "create_netns web/netns",
    "attach wharf-test web eth0",
    "write_file web/hosts",
    "cgroup_create wharf/web",
    "cgroup.apply wharf/web",
    "shim_launch web",
    "shim_start web",
];

/// What undoing a start asks of the host once its cgroup exists: the address and ports, the
/// namespace (its veth goes with it), then the group's processes and the group.
const TEARDOWN: [&str; 5] = [
    "release wharf-test web",
    "remove_netns web/netns",
    "cgroup_open wharf/web",
    "cgroup.kill_all wharf/web SIGKILL",
    "cgroup.destroy wharf/web",
];

/// What an exit asks of the host: whether the OOM killer struck, then [`TEARDOWN`].
const EXIT: [&str; 7] = [
    "cgroup_open wharf/web",
    "cgroup.oom_killed wharf/web",
    "release wharf-test web",
    "remove_netns web/netns",
    "cgroup_open wharf/web",
    "cgroup.kill_all wharf/web SIGKILL",
    "cgroup.destroy wharf/web",
];

#[tokio::test]
async fn a_start_prepares_the_host_in_order_then_launches_and_watches_the_shim() {
    let (_dir, host, node) = setup();
    let c = testkit::container(&node, "web", HostConfig::default());
    let changed = start::start(&node, &c).await.expect("started");
    assert!(changed.changed);
    let rec = c.snapshot();
    assert_eq!(rec.state.status, Status::Running);
    assert!(rec.has_been_started);
    assert_eq!(rec.state.pid, 4001);
    assert_eq!(rec.network.expect("on the bridge").network_name, "bridge");
    // The exit is watched from now on.
    until("the shim is waited for", || host.count("shim_wait") == 1).await;
    let mut expected = START.to_vec();
    expected.push("shim_wait web");
    assert_eq!(host.calls(), expected);
    // A second start of a running container changes nothing.
    assert!(!start::start(&node, &c).await.unwrap().changed);
    assert_eq!(host.calls(), expected);
}

#[tokio::test]
async fn a_failed_launch_undoes_what_the_start_set_up() {
    let (_dir, host, node) = setup();
    host.fail("shim_launch");
    let c = testkit::container(&node, "web", HostConfig::default());
    let err = start::start(&node, &c).await.unwrap_err();
    assert!(
        err.message.starts_with("cannot start the container's shim"),
        "{}",
        err.message
    );
    let mut expected = START[..10].to_vec();
    expected.extend(TEARDOWN);
    assert_eq!(host.calls(), expected);
    let rec = c.snapshot();
    assert_eq!(rec.state.status, Status::Created);
    assert_eq!(rec.state.exit_code, 128);
    assert_eq!(rec.state.error, err.message);
    assert!(rec.network.is_none());
    assert_eq!(exits(&c), 0);
}

#[tokio::test]
async fn a_start_that_fails_early_undoes_only_what_exists() {
    let (_dir, host, node) = setup();
    host.fail("create_netns");
    let c = testkit::container(&node, "web", HostConfig::default());
    let err = start::start(&node, &c).await.unwrap_err();
    assert!(
        err.message
            .starts_with("cannot create the network namespace"),
        "{}",
        err.message
    );
    // No bridge, no cgroup and no launch after the namespace failed; the teardown finds no
    // group to kill or remove.
    let mut expected = START[..5].to_vec();
    expected.extend(&TEARDOWN[..3]);
    assert_eq!(host.calls(), expected);
    assert_eq!(c.status(), Status::Created);
}

#[tokio::test]
async fn a_container_whose_start_failed_with_rm_is_removed() {
    let (_dir, host, node) = setup();
    host.fail("shim_start");
    let c = testkit::container(
        &node,
        "web",
        HostConfig {
            auto_remove: true,
            ..Default::default()
        },
    );
    let err = start::start(&node, &c).await.unwrap_err();
    assert!(
        err.message
            .starts_with("failed to create task for container"),
        "{}",
        err.message
    );
    assert!(node.get("web").is_err());
    assert!(c.phase.borrow().removed);
    assert!(remove::drain_removals(Duration::from_secs(10)));
    assert!(!c.paths.dir.exists());
    let calls = host.calls();
    assert!(calls.contains(&"unmount_rootfs web/rootfs".to_string()));
}

#[tokio::test]
async fn a_container_with_rm_is_removed_after_its_exit() {
    let (_dir, host, node) = setup();
    host.exit_codes(&[0]);
    let c = testkit::container(
        &node,
        "web",
        HostConfig {
            auto_remove: true,
            ..Default::default()
        },
    );
    start::start(&node, &c).await.expect("started");
    until("the container is removed", || node.get("web").is_err()).await;
    assert!(c.phase.borrow().removed);
    assert_eq!(c.phase.borrow().exit_code, 0);
    assert!(remove::drain_removals(Duration::from_secs(10)));
    assert!(!c.paths.dir.exists());
    // The exit: the OOM killer asked about, then the start undone. The removal: the same
    // teardown again (it finds the group gone), then the root unmounted and the namespace's
    // file removed, with the container's directory.
    let mut expected = EXIT.to_vec();
    expected.extend(&TEARDOWN[..3]);
    expected.extend(["unmount_rootfs web/rootfs", "remove_netns web/netns"]);
    assert_eq!(host.calls_since(START.len() + 1), expected);
    assert_eq!(host.count("shim_start"), 1);
}

#[tokio::test]
async fn on_failure_2_restarts_twice_then_stays_exited() {
    let (_dir, host, node) = setup();
    host.exit_codes(&[1, 1, 1]);
    let c = testkit::container(&node, "web", with_policy("on-failure", 2));
    start::start(&node, &c).await.expect("started");
    until("the third exit", || exits(&c) == 3).await;
    // Longer than the pause before a third restart (400 ms) would be.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(host.count("shim_start"), 3);
    let rec = c.snapshot();
    assert_eq!(rec.state.status, Status::Exited);
    assert_eq!(rec.state.exit_code, 1);
    assert_eq!(rec.restart_count, 2);
    // Each run's namespace is made, then removed at its exit before the next one's.
    let netns: Vec<String> = host
        .calls()
        .into_iter()
        .filter(|c| c.contains("_netns") || c.starts_with("shim_start"))
        .collect();
    let run = [
        "create_netns web/netns",
        "shim_start web",
        "remove_netns web/netns",
    ];
    assert_eq!(netns, run.repeat(3));
}

#[tokio::test]
async fn on_failure_does_not_restart_after_a_clean_exit() {
    let (_dir, host, node) = setup();
    host.exit_codes(&[0]);
    let c = testkit::container(&node, "web", with_policy("on-failure", 2));
    start::start(&node, &c).await.expect("started");
    until("the exit", || exits(&c) == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host.count("shim_start"), 1);
    assert_eq!(c.snapshot().restart_count, 0);
    assert_eq!(c.status(), Status::Exited);
}

#[tokio::test]
async fn unless_stopped_restarts_after_an_exit_but_not_after_a_stop() {
    let (_dir, host, node) = setup();
    // Its own exit: started again.
    host.exit_codes(&[3]);
    let c = testkit::container(&node, "web", with_policy("unless-stopped", 0));
    start::start(&node, &c).await.expect("started");
    until("the restart", || host.count("shim_start") == 2).await;
    until("running again", || c.status() == Status::Running).await;
    assert_eq!(c.snapshot().restart_count, 1);

    // An explicit stop: SIGTERM through the shim, the exit recorded, and no restart.
    let changed = stop::stop(&node, &c, None, Some(10))
        .await
        .expect("stopped");
    assert!(changed.changed);
    let rec = c.snapshot();
    assert_eq!(rec.state.status, Status::Exited);
    assert!(rec.state.stopped_by_user);
    assert_eq!(rec.state.exit_code, 143);
    assert!(host.calls().contains(&"shim_kill web 15".to_string()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(host.count("shim_start"), 2);
    assert_eq!(c.status(), Status::Exited);
}

#[tokio::test]
async fn a_stop_the_process_ignores_ends_with_sigkill() {
    let (_dir, host, node) = setup();
    host.ignore_signal(15);
    let c = testkit::container(&node, "web", HostConfig::default());
    start::start(&node, &c).await.expect("started");
    stop::stop(&node, &c, None, Some(0)).await.expect("stopped");
    let kills: Vec<String> = host
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("shim_kill"))
        .collect();
    assert_eq!(kills, ["shim_kill web 15", "shim_kill web 9"]);
    assert_eq!(c.snapshot().state.exit_code, 137);
    // A stopped container is not running: kill says so in dockerd's words.
    let err = stop::kill(&node, &c, "").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(
        err.message,
        "Cannot kill container: web: Container web is not running"
    );
}

#[tokio::test]
async fn pause_freezes_the_cgroup_and_a_stop_thaws_it_before_signalling() {
    let (_dir, host, node) = setup();
    let c = testkit::container(&node, "web", HostConfig::default());
    start::start(&node, &c).await.expect("started");
    until("the shim is waited for", || host.count("shim_wait") == 1).await;
    let from = host.calls().len();
    stop::pause(&node, &c, true).await.expect("paused");
    assert_eq!(c.status(), Status::Paused);
    assert_eq!(
        host.calls_since(from),
        ["cgroup_open wharf/web", "cgroup.freeze wharf/web"]
    );
    let from = host.calls().len();
    stop::stop(&node, &c, None, None).await.expect("stopped");
    assert_eq!(
        host.calls_since(from)[..3],
        [
            "cgroup_open wharf/web",
            "cgroup.thaw wharf/web",
            "shim_kill web 15"
        ]
    );
    assert_eq!(c.status(), Status::Exited);
}

#[tokio::test]
async fn removing_a_running_container_without_force_is_refused_and_touches_nothing() {
    let (_dir, host, node) = setup();
    let c = testkit::container(&node, "web", HostConfig::default());
    start::start(&node, &c).await.expect("started");
    until("the shim is waited for", || host.count("shim_wait") == 1).await;
    let before = host.calls();
    let err = remove::remove(&node, &c, false, false).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(
        err.message,
        "You cannot remove a running container web. Stop the container before attempting removal or force remove"
    );
    assert_eq!(host.calls(), before);
    assert_eq!(c.status(), Status::Running);
    assert!(node.get("web").is_ok());
    assert!(c.paths.dir.exists());
}

#[tokio::test]
async fn a_forced_remove_kills_the_container_then_tears_it_down() {
    let (_dir, host, node) = setup();
    let c = testkit::container(&node, "web", HostConfig::default());
    start::start(&node, &c).await.expect("started");
    until("the shim is waited for", || host.count("shim_wait") == 1).await;
    let from = host.calls().len();
    remove::remove(&node, &c, true, false)
        .await
        .expect("removed");
    assert!(node.get("web").is_err());
    assert!(c.phase.borrow().removed);
    assert_eq!(c.phase.borrow().exit_code, 137);
    assert!(remove::drain_removals(Duration::from_secs(10)));
    assert!(!c.paths.dir.exists());
    let calls = host.calls_since(from);
    assert_eq!(calls[0], "shim_kill web 9");
    let position = |call: &str| calls.iter().position(|c| c == call);
    for undo in [
        "remove_netns web/netns",
        "cgroup.destroy wharf/web",
        "unmount_rootfs web/rootfs",
    ] {
        assert!(position(undo).is_some(), "{undo} missing from {calls:?}");
    }
    // The root goes last, after the start's teardown.
    assert!(position("unmount_rootfs web/rootfs") > position("cgroup.destroy wharf/web"));
}

#[tokio::test]
async fn restore_records_the_exit_of_a_container_whose_shim_is_gone() {
    let (_dir, host, node) = setup();
    let mut rec = testkit::record("web", HostConfig::default());
    rec.state.status = Status::Running;
    rec.state.pid = 4321;
    rec.has_been_started = true;
    testkit::save(&node, &rec);
    host.existing_cgroup("wharf/web");
    restore::restore(&node).await;
    let c = node.get("web").expect("restored");
    until("the exit is recorded", || exits(&c) == 1).await;
    let rec = c.snapshot();
    assert_eq!(rec.state.status, Status::Exited);
    assert_eq!(rec.state.exit_code, 137);
    assert_eq!(rec.state.pid, 0);
    // What is left of the container is killed through its cgroup, then the exit as any other.
    let mut expected = vec![
        "shim_state web",
        "cgroup_open wharf/web",
        "cgroup.kill_all wharf/web SIGKILL",
    ];
    expected.extend(EXIT);
    assert_eq!(host.calls(), expected);
}

#[tokio::test]
async fn restore_adopts_a_running_container_and_restarts_an_always_one() {
    let (_dir, host, node) = setup();
    // Still running under its shim.
    let mut rec = testkit::record("web", HostConfig::default());
    rec.state.status = Status::Running;
    rec.has_been_started = true;
    testkit::save(&node, &rec);
    // Exited while no runtime watched, and `always`.
    let mut rec = testkit::record("db", with_policy("always", 0));
    rec.state.status = Status::Exited;
    rec.has_been_started = true;
    testkit::save(&node, &rec);
    // Started once by hand, then stopped: `unless-stopped` leaves it.
    let mut rec = testkit::record("job", with_policy("unless-stopped", 0));
    rec.state.status = Status::Exited;
    rec.state.stopped_by_user = true;
    rec.has_been_started = true;
    testkit::save(&node, &rec);
    host.running(&ContainerPaths::new(&node.containers_dir, "web").dir);

    restore::restore(&node).await;
    until("web is watched", || host.count("shim_wait") >= 1).await;
    until("db runs again", || {
        node.get("db").is_ok_and(|c| c.status() == Status::Running)
    })
    .await;
    assert_eq!(node.get("web").unwrap().status(), Status::Running);
    assert_eq!(node.get("job").unwrap().status(), Status::Exited);
    assert!(host.calls().contains(&"shim_wait web".to_string()));
    let starts: Vec<String> = host
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("shim_start"))
        .collect();
    assert_eq!(starts, ["shim_start db"]);
}

#[tokio::test]
async fn restore_finishes_an_interrupted_remove() {
    let (_dir, host, node) = setup();
    let mut rec = testkit::record("web", HostConfig::default());
    rec.state.status = Status::Removing;
    let paths = testkit::save(&node, &rec);
    restore::restore(&node).await;
    assert!(node.get("web").is_err());
    assert!(!paths.dir.exists());
    assert_eq!(
        host.calls(),
        [
            "release wharf-test web",
            "remove_netns web/netns",
            "cgroup_open wharf/web",
            "unmount_rootfs web/rootfs",
            "remove_netns web/netns",
        ]
    );
}

//! A build's RUN and COPY steps (`build.run`, `build.copy`) on a real runtime node: a real
//! nats-server, the real image-store, real containers on the real kernel (we run as root).
//!
//! Each test starts its own node with its own data root, bridge (`wb<random>`), nftables
//! table (`wharf_bt_<random>`) and subnet (10.232.<n>.0/24). The base image is made here: one
//! layer with the host's static busybox, a passwd and group file, and an ENTRYPOINT and CMD a
//! step must not run. A guard unmounts what the node left, deletes its bridge and table and
//! waits for background removals, even when a test fails.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use support::Layer;
use wharf_bus::build::{StepCopy, StepDone, StepEvent, StepRun};
use wharf_bus::container::{self as bus, op, ContainerConfig};
use wharf_bus::digest::sha256_of;
use wharf_bus::image::{BlobIngest, BlobIngested, BlobRef, ImageCommit, ImageRecord, LayerRef};
use wharf_bus::stream::{Receiver, Sender};
use wharf_bus::subjects::{group, image_store as ep, subject};
use wharf_bus::testkit::NatsServer;
use wharf_bus::{BusError, ErrorKind};

const TAR_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "touch", "rm", "mkdir", "id", "pwd", "cat", "true",
];

fn random_u32() -> u32 {
    let mut x = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut x))
        .unwrap();
    u32::from_ne_bytes(x)
}

/// A runtime node with its image-store and nats-server.
struct TestNode {
    client: async_nats::Client,
    name: String,
    bridge: String,
    table: String,
    data: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _nats: NatsServer,
}

impl TestNode {
    async fn start() -> TestNode {
        let nats = NatsServer::start();
        let data = tempfile::tempdir().unwrap();
        let suffix = format!("{:06x}", random_u32() & 0xff_ffff);
        let name = format!("bt{suffix}");
        let bridge = format!("wb{suffix}");
        let table = format!("wharf_bt_{suffix}");
        let store = {
            let client = nats.client().await;
            let data_root = data.path().to_path_buf();
            tokio::spawn(async move {
                let _ =
                    wharf_image_store::run(client, wharf_image_store::Options { data_root }).await;
            })
        };
        let runtime = {
            let client = nats.client().await;
            let options = wharf_runtime::Options {
                data_root: data.path().to_path_buf(),
                node_name: name.clone(),
                labels: BTreeMap::new(),
                bridge: Some(bridge.clone()),
                subnet: Some(format!("10.232.{}.0/24", random_u32() % 256)),
                firewall_table: Some(table.clone()),
                shim_binary: Some(env!("CARGO_BIN_EXE_wharf-shim").into()),
                userns_remap: None,
            };
            tokio::spawn(async move {
                if let Err(e) = wharf_runtime::run(client, options).await {
                    panic!("runtime node: {e:#}");
                }
            })
        };
        let node = TestNode {
            client: nats.client().await,
            name,
            bridge,
            table,
            data,
            tasks: vec![store, runtime],
            _nats: nats,
        };
        node.wait_ready().await;
        node
    }

    /// Waits until image-store and the node answer.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let store = wharf_bus::call::<_, serde_json::Value>(
                &self.client,
                &subject(group::IMAGE_STORE, ep::BLOB_STAT),
                &BlobRef {
                    digest: format!("sha256:{}", "0".repeat(64)),
                },
            )
            .await;
            let node = self.inspect("0000").await;
            let answers = |r: &Result<serde_json::Value, BusError>| matches!(r, Err(e) if e.kind == ErrorKind::NotFound);
            if answers(&store) && answers(&node) {
                return;
            }
            assert!(Instant::now() < deadline, "the node did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn subject(&self, op: &str) -> String {
        bus::node_subject(&self.name, op)
    }

    async fn inspect(&self, id: &str) -> Result<serde_json::Value, BusError> {
        wharf_bus::call(
            &self.client,
            &self.subject(op::INSPECT),
            &bus::InspectRequest {
                id: id.to_string(),
                size: false,
            },
        )
        .await
    }

    async fn remove(&self, id: &str) {
        let _: serde_json::Value = wharf_bus::call(
            &self.client,
            &self.subject(op::REMOVE),
            &bus::RemoveRequest {
                id: id.to_string(),
                force: true,
                volumes: true,
                link: None,
            },
        )
        .await
        .unwrap();
    }

    async fn ingest(&self, blob: &[u8], media_type: &str) -> BlobIngested {
        let request = BlobIngest {
            digest: sha256_of(blob),
            size: Some(blob.len() as u64),
            media_type: Some(media_type.to_string()),
        };
        let (mut tx, _) = Sender::open(
            &self.client,
            &subject(group::IMAGE_STORE, ep::BLOB_INGEST),
            serde_json::to_vec(&request).unwrap().into(),
        )
        .await
        .unwrap();
        tx.send(Bytes::copy_from_slice(blob)).await.unwrap();
        tx.finish_json().await.unwrap()
    }

    /// The base image: busybox, users, a file and a directory to delete, a symlink that
    /// climbs, and an entrypoint and command that steps must not run. Returns its ID.
    async fn base_image(&self) -> String {
        let busybox = std::fs::read("/bin/busybox").expect("a static busybox at /bin/busybox");
        let mut l = Layer::new();
        l.dir("bin", 0o755).file("bin/busybox", &busybox, 0o755);
        for applet in APPLETS {
            l.symlink(&format!("bin/{applet}"), "busybox");
        }
        l.dir("etc", 0o755)
            .file(
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
                0o644,
            )
            .file(
                "etc/group",
                b"root:x:0:\nwww:x:33:\napp:x:1001:\nstaff:x:50:\n",
                0o644,
            )
            .file("etc/x", b"x\n", 0o644)
            .dir("dir", 0o755)
            .file("dir/old", b"old\n", 0o644)
            .dir("srv", 0o755)
            .dir("tmp", 0o1777)
            .symlink("link", "/../../etc");
        let tar = l.tar();
        let layer = self.ingest(&tar, TAR_LAYER).await;
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin", "FROM_IMAGE=1"],
                "Entrypoint": ["/bin/echo", "ENTRY"],
                "Cmd": ["image-cmd"],
            },
            "rootfs": {"type": "layers", "diff_ids": [sha256_of(&tar)]},
        }))
        .unwrap();
        let config = self.ingest(&config, CONFIG).await.blob.digest;
        let image: ImageRecord = wharf_bus::call(
            &self.client,
            &subject(group::IMAGE_STORE, ep::IMAGE_COMMIT),
            &ImageCommit {
                config,
                layers: vec![LayerRef {
                    digest: layer.blob.digest,
                    media_type: TAR_LAYER.into(),
                }],
                manifest: None,
                tags: vec![],
                repo_digests: vec![],
                parent: None,
            },
        )
        .await
        .unwrap();
        image.id
    }

    /// Opens a `build.run` stream.
    async fn open_run(&self, req: &StepRun) -> Receiver {
        Receiver::open_json(&self.client, &self.subject(op::BUILD_RUN), req)
            .await
            .unwrap()
            .0
    }

    /// Runs a step to its end; every event in order.
    async fn run(&self, req: &StepRun) -> Vec<StepEvent> {
        let mut rx = self.open_run(req).await;
        let mut events = Vec::new();
        while let Some(event) = rx.next_json::<StepEvent>().await {
            events.push(event.unwrap());
        }
        events
    }

    async fn copy(&self, req: &StepCopy, tar: Vec<u8>) -> Result<StepDone, BusError> {
        let (mut tx, _) = Sender::open(
            &self.client,
            &self.subject(op::BUILD_COPY),
            serde_json::to_vec(req).unwrap().into(),
        )
        .await?;
        tx.send(Bytes::from(tar)).await?;
        tx.finish_json().await
    }

    /// The entries of a stored layer: name → (kind, mode, uid, gid).
    async fn layer_entries(&self, digest: &str) -> BTreeMap<String, (char, u32, u64, u64)> {
        let mut blob = Vec::new();
        let mut s = wharf_bus::blob::open(&self.client, digest, false)
            .await
            .unwrap();
        while let Some(chunk) = s.next().await {
            blob.extend_from_slice(&chunk.unwrap());
        }
        let mut out = BTreeMap::new();
        let mut archive = tar::Archive::new(&blob[..]);
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                _ => 'f',
            };
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            out.insert(
                name.trim_end_matches('/').to_string(),
                (
                    kind,
                    h.mode().unwrap() & 0o7777,
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                ),
            );
        }
        out
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // What a failed test left: container roots and network namespaces.
        let containers = self.data.path().join("runtime/containers");
        if let Ok(dirs) = std::fs::read_dir(&containers) {
            for d in dirs.flatten() {
                for m in ["rootfs", "netns"] {
                    let _ =
                        nix::mount::umount2(&d.path().join(m), nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
        wharf_runtime::service::drain_removals(Duration::from_secs(10));
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", "dev", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = wharf_runtime::network::forward::remove(&self.bridge);
    }
}

fn sh(script: &str) -> ContainerConfig {
    ContainerConfig {
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
        entrypoint: Some(vec![String::new()]),
        ..Default::default()
    }
}

fn output(events: &[StepEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StepEvent::Output { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn done(events: &[StepEvent]) -> StepDone {
    match events.last() {
        Some(StepEvent::Done(d)) => d.clone(),
        other => panic!("the stream did not end with Done: {other:?} ({events:?})"),
    }
}

fn started(events: &[StepEvent]) -> String {
    match events.first() {
        Some(StepEvent::Started { id }) => id.clone(),
        other => panic!("the stream did not start with Started: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_streams_output_in_order_and_stores_its_diff_with_whiteouts() {
    let node = TestNode::start().await;
    let image = node.base_image().await;
    let events = node
        .run(&StepRun {
            image,
            config: sh("echo a; sleep 0.2; echo b >&2; touch /new; rm /etc/x; rm -rf /dir; mkdir /dir; touch /dir/y"),
            remove: true,
            ..Default::default()
        })
        .await;
    let id = started(&events);
    assert_eq!(output(&events), "a\nb\n");
    // `a` went out on its own before `b` was written, each marked with its stream.
    assert_eq!(
        events[1..3],
        [
            StepEvent::Output {
                text: "a\n".into(),
                stderr: false
            },
            StepEvent::Output {
                text: "b\n".into(),
                stderr: true
            },
        ],
        "{events:?}"
    );
    let d = done(&events);
    assert_eq!(
        (d.id.as_str(), d.exit_code, d.removed),
        (id.as_str(), 0, true)
    );
    let layer = d.layer.expect("a layer");
    let entries = node.layer_entries(&layer.digest).await;
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    for name in ["new", "etc/.wh.x", "dir", "dir/.wh..wh..opq", "dir/y"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("old") || n.contains("hosts")),
        "{names:?}"
    );
    let err = node.inspect(&id).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_gives_done_without_a_layer_and_keeps_the_container_unless_forced() {
    let node = TestNode::start().await;
    let image = node.base_image().await;
    let kept = done(
        &node
            .run(&StepRun {
                image: image.clone(),
                config: sh("touch /f; exit 3"),
                remove: true,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        (kept.exit_code, kept.layer.is_none(), kept.removed),
        (3, true, false)
    );
    let inspect = node.inspect(&kept.id).await.unwrap();
    assert_eq!(inspect["State"]["ExitCode"], 3);
    assert_eq!(inspect["State"]["Status"], "exited");
    node.remove(&kept.id).await;

    let forced = done(
        &node
            .run(&StepRun {
                image,
                config: sh("exit 1"),
                force_remove: true,
                ..Default::default()
            })
            .await,
    );
    assert_eq!((forced.exit_code, forced.removed), (1, true));
    assert_eq!(
        node.inspect(&forced.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ignores_the_images_entrypoint_and_honours_env_user_and_workdir() {
    let node = TestNode::start().await;
    let image = node.base_image().await;
    let mut config = sh("echo $FROM_IMAGE $STEP; id -u; pwd");
    // No entrypoint at all: the image's must not come in, nor its Cmd.
    config.entrypoint = None;
    config.env = vec!["STEP=2".into()];
    config.user = "www".into();
    config.working_dir = "/work".into();
    let events = node
        .run(&StepRun {
            image: image.clone(),
            config,
            remove: true,
            ..Default::default()
        })
        .await;
    assert_eq!(output(&events), "1 2\n33\n/work\n");
    let d = done(&events);
    assert_eq!((d.exit_code, d.removed), (0, true));
    // The working directory dockerd's create makes is part of the diff.
    let entries = node.layer_entries(&d.layer.unwrap().digest).await;
    assert!(entries.contains_key("work"), "{entries:?}");

    // A step without changes has no layer.
    let quiet = done(
        &node
            .run(&StepRun {
                image,
                config: sh("true"),
                remove: true,
                ..Default::default()
            })
            .await,
    );
    assert_eq!((quiet.exit_code, quiet.layer), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_receiver_mid_run_kills_and_removes_the_container() {
    let node = TestNode::start().await;
    let image = node.base_image().await;
    let mut rx = node
        .open_run(&StepRun {
            image,
            config: sh("echo started; sleep 60"),
            ..Default::default()
        })
        .await;
    let id = match rx.next_json::<StepEvent>().await.unwrap().unwrap() {
        StepEvent::Started { id } => id,
        other => panic!("{other:?}"),
    };
    let first = rx.next_json::<StepEvent>().await.unwrap().unwrap();
    assert_eq!(
        first,
        StepEvent::Output {
            text: "started\n".into(),
            stderr: false
        }
    );
    let inspect = node.inspect(&id).await.unwrap();
    assert_eq!(inspect["State"]["Running"], true);
    rx.cancel(&BusError::cancelled("the build was cancelled"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match node.inspect(&id).await {
            Err(e) if e.kind == ErrorKind::NotFound => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the container is still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn copy_req(image: &str, dest: &str) -> StepCopy {
    StepCopy {
        image: image.to_string(),
        config: sh("#(nop) COPY"),
        dest: dest.to_string(),
        remove: true,
        ..Default::default()
    }
}

fn one_file(name: &str) -> Vec<u8> {
    let mut l = Layer::new();
    l.uid = 0;
    l.file(name, b"content\n", 0o640);
    l.tar()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_puts_a_file_into_an_existing_directory_or_makes_it_the_destination() {
    let node = TestNode::start().await;
    let image = node.base_image().await;
    // `/srv` exists: the file goes into it.
    let mut req = copy_req(&image, "/srv");
    req.file_name = Some("f.txt".into());
    let d = node.copy(&req, one_file("f.txt")).await.unwrap();
    assert_eq!((d.exit_code, d.removed), (0, true));
    let entries = node.layer_entries(&d.layer.unwrap().digest).await;
    assert_eq!(
        entries.get("srv/f.txt"),
        Some(&('f', 0o640, 0, 0)),
        "{entries:?}"
    );
    assert_eq!(
        node.inspect(&d.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );

    // `opt/new.txt` (relative to the working directory) does not exist: the file becomes it.
    let mut req = copy_req(&image, "new.txt");
    req.working_dir = "/opt".into();
    req.file_name = Some("f.txt".into());
    let d = node.copy(&req, one_file("f.txt")).await.unwrap();
    let entries = node.layer_entries(&d.layer.unwrap().digest).await;
    assert_eq!(entries.get("opt"), Some(&('d', 0o755, 0, 0)), "{entries:?}");
    assert_eq!(
        entries.get("opt/new.txt"),
        Some(&('f', 0o640, 0, 0)),
        "{entries:?}"
    );
    assert!(!entries.contains_key("opt/f.txt"), "{entries:?}");

    // `FROM scratch`: an empty root.
    let mut req = copy_req("", "/");
    req.file_name = Some("f.txt".into());
    let d = node.copy(&req, one_file("f.txt")).await.unwrap();
    let entries = node.layer_entries(&d.layer.unwrap().digest).await;
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["f.txt"], "{entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_makes_missing_parents_for_the_chown_user_looked_up_by_name() {
    let node = TestNode::start().await;
    let image = node.base_image().await;
    let mut l = Layer::new();
    l.uid = 7;
    l.gid = 7;
    l.dir("sub", 0o750)
        .file("sub/f", b"f\n", 0o600)
        .file(".wh.g", b"", 0o644);
    let tree = l.tar();
    // `app` is uid 1000 in passwd; the group is the group named `app` (1001), as dockerd does.
    let mut req = copy_req(&image, "/a/b/");
    req.chown = "app".into();
    let d = node.copy(&req, tree.clone()).await.unwrap();
    let entries = node.layer_entries(&d.layer.unwrap().digest).await;
    assert_eq!(
        entries.get("a"),
        Some(&('d', 0o755, 1000, 1001)),
        "{entries:?}"
    );
    assert_eq!(
        entries.get("a/b"),
        Some(&('d', 0o755, 1000, 1001)),
        "{entries:?}"
    );
    assert_eq!(
        entries.get("a/b/sub"),
        Some(&('d', 0o750, 1000, 1001)),
        "{entries:?}"
    );
    assert_eq!(
        entries.get("a/b/sub/f"),
        Some(&('f', 0o600, 1000, 1001)),
        "{entries:?}"
    );
    // A whiteout-looking name is just a file.
    assert_eq!(
        entries.get("a/b/.wh.g"),
        Some(&('f', 0o644, 1000, 1001)),
        "{entries:?}"
    );

    // Without --chown the tar's owners stay; `user:group` by names.
    let mut req = copy_req(&image, "/c");
    req.chown = "www:staff".into();
    let d = node.copy(&req, one_file("f")).await.unwrap();
    let entries = node.layer_entries(&d.layer.unwrap().digest).await;
    assert_eq!(
        entries.get("c/f"),
        Some(&('f', 0o640, 33, 50)),
        "{entries:?}"
    );
    let d = node.copy(&copy_req(&image, "/e"), tree).await.unwrap();
    let entries = node.layer_entries(&d.layer.unwrap().digest).await;
    assert_eq!(
        entries.get("e/sub/f"),
        Some(&('f', 0o600, 7, 7)),
        "{entries:?}"
    );

    let mut req = copy_req(&image, "/x");
    req.chown = "ghost".into();
    let err = node.copy(&req, one_file("f")).await.unwrap_err();
    assert_eq!(
        err.message,
        "unable to convert uid/gid chown string to host mapping: can't find uid for user ghost: no such user: ghost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_refuses_climbing_names_and_follows_a_symlinked_destination_inside_the_root() {
    let node = TestNode::start().await;
    let image = node.base_image().await;
    for hostile in ["../x", "a/../../x", "/abs"] {
        let err = node
            .copy(&copy_req(&image, "/srv/"), one_file(hostile))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid, "{hostile}: {err}");
        assert!(err.message.contains("is outside of"), "{hostile}: {err}");
    }
    // `/link` -> `/../../etc`: the root's /etc, never the host's.
    let name = format!("wharf-copy-test-{:08x}", random_u32());
    let d = node
        .copy(&copy_req(&image, "/link/"), one_file(&name))
        .await
        .unwrap();
    let entries = node.layer_entries(&d.layer.unwrap().digest).await;
    assert!(entries.contains_key(&format!("etc/{name}")), "{entries:?}");
    assert!(!std::path::Path::new("/etc").join(&name).exists());
    // The same through a file name: `/link` is an existing directory.
    let mut req = copy_req(&image, "/link");
    req.file_name = Some(name.clone());
    let d = node.copy(&req, one_file(&name)).await.unwrap();
    let entries = node.layer_entries(&d.layer.unwrap().digest).await;
    assert!(entries.contains_key(&format!("etc/{name}")), "{entries:?}");
    assert!(!std::path::Path::new("/etc").join(&name).exists());
}

/// The containers the node holds (all of them, stopped ones too).
async fn containers(node: &TestNode) -> usize {
    let answers = wharf_bus::nodes::gather_raw(
        &node.client,
        &bus::all_subject(op::LIST),
        serde_json::to_vec(&bus::ListRequest {
            all: true,
            ..Default::default()
        })
        .unwrap(),
        1,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let list: bus::ListResponse = serde_json::from_slice(&answers[0]).unwrap();
    list.containers.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_step_asking_for_the_host_is_refused_before_anything_runs() {
    let node = TestNode::start().await;
    let image = node.base_image().await;
    // Would write to the host's root, if any of these were honoured.
    let marker = format!("/wharf-hostile-step-{:08x}", random_u32());
    let hostile: Vec<(&str, bus::HostConfig)> = vec![
        (
            "Privileged",
            bus::HostConfig {
                privileged: true,
                ..Default::default()
            },
        ),
        (
            "CapAdd",
            bus::HostConfig {
                cap_add: Some(vec!["ALL".into()]),
                ..Default::default()
            },
        ),
        (
            "Binds",
            bus::HostConfig {
                binds: Some(vec!["/:/host".into()]),
                ..Default::default()
            },
        ),
        (
            "Mounts",
            bus::HostConfig {
                mounts: vec![bus::MountSpec {
                    r#type: "bind".into(),
                    source: "/".into(),
                    target: "/host".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ),
        (
            "PidMode",
            bus::HostConfig {
                pid_mode: "host".into(),
                ..Default::default()
            },
        ),
        (
            "IpcMode",
            bus::HostConfig {
                ipc_mode: "host".into(),
                ..Default::default()
            },
        ),
        (
            "UTSMode",
            bus::HostConfig {
                uts_mode: "host".into(),
                ..Default::default()
            },
        ),
        (
            "SecurityOpt",
            bus::HostConfig {
                security_opt: Some(vec![
                    "seccomp=unconfined".into(),
                    "apparmor=unconfined".into(),
                ]),
                ..Default::default()
            },
        ),
        (
            "Devices",
            bus::HostConfig {
                devices: Some(vec![bus::DeviceMapping {
                    path_on_host: "/dev/mem".into(),
                    path_in_container: "/dev/mem".into(),
                    cgroup_permissions: "rwm".into(),
                }]),
                ..Default::default()
            },
        ),
        (
            "NetworkMode",
            bus::HostConfig {
                network_mode: "container:anything".into(),
                ..Default::default()
            },
        ),
    ];
    for (field, host_config) in hostile {
        let req = StepRun {
            image: image.clone(),
            config: sh(&format!("touch /host{marker}; touch {marker}")),
            host_config,
            remove: true,
            ..Default::default()
        };
        let err = match Receiver::open_json(&node.client, &node.subject(op::BUILD_RUN), &req).await
        {
            Ok(_) => panic!("{field}: a hostile step was accepted"),
            Err(e) => e,
        };
        assert_eq!(err.kind, ErrorKind::Forbidden, "{field}: {err}");
        assert!(
            err.message.contains(field) || err.message.contains("network mode"),
            "{field}: {err}"
        );
    }
    assert!(!std::path::Path::new(&marker).exists());
    assert_eq!(containers(&node).await, 0, "no container was made");

    // What `docker build` itself sets still runs.
    let events = node
        .run(&StepRun {
            image,
            config: sh("echo ok"),
            host_config: bus::HostConfig {
                network_mode: "none".into(),
                extra_hosts: Some(vec!["db:10.0.0.2".into()]),
                memory: 64 << 20,
                ..Default::default()
            },
            remove: true,
            ..Default::default()
        })
        .await;
    assert_eq!(output(&events), "ok\n");
    assert_eq!(done(&events).exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_sends_a_path_of_an_image_and_leaves_no_container() {
    let node = TestNode::start().await;
    let image = node.base_image().await;
    let (mut rx, _) = Receiver::open_json(
        &node.client,
        &node.subject(op::BUILD_EXPORT),
        &wharf_bus::build::StepExport {
            image: image.clone(),
            path: "/etc/passwd".into(),
        },
    )
    .await
    .unwrap();
    let stat: bus::PathStat = rx.next_json().await.unwrap().unwrap();
    assert_eq!(stat.name, "passwd");
    let tar = rx.collect().await.unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut entries = archive.entries().unwrap();
    let mut first = entries.next().unwrap().unwrap();
    assert_eq!(first.path().unwrap().to_str(), Some("passwd"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut first, &mut text).unwrap();
    assert!(text.starts_with("root:x:0:0:"), "{text}");

    // A missing path fails the stream with not_found.
    let (mut rx, _) = Receiver::open_json(
        &node.client,
        &node.subject(op::BUILD_EXPORT),
        &wharf_bus::build::StepExport {
            image,
            path: "/nowhere".into(),
        },
    )
    .await
    .unwrap();
    let err = rx.next_json::<bus::PathStat>().await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    // The containers made for the exports go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while containers(&node).await > 0 {
        assert!(Instant::now() < deadline, "an export's container stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

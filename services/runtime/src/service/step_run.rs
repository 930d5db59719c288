//! `build.run`: a Dockerfile RUN step, as dockerd's classic builder runs one. A container is
//! created from the step's image and config (an ordinary container: `docker ps -a` lists it,
//! its events are published), attached before it starts (stdout and stderr, no TTY, stdin
//! /dev/null), started; its output goes to the builder as it comes; once it exits 0 its
//! upper directory becomes a layer in image-store.
//!
//! The answer is a download stream of `StepEvent`s, so a long step never waits on one
//! request's deadline: heartbeats keep it alive. When the builder goes away (cancelled,
//! crashed), the container is killed and removed and nothing is stored.
//!
//! The builder is not trusted with the host: a step's host config may hold only what
//! `docker build` can set (`STEP_HOST_CONFIG_FIELDS`: network mode, extra hosts, memory and
//! CPU limits, ulimits), and its network mode only default, bridge, host, none or a user
//! network. Anything else (privileged, capabilities, binds or mounts, host PID/IPC/UTS
//! namespaces, devices, security options, `container:<id>` networking, ...) is refused before
//! the stream is accepted, whatever the builder sends.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use wharf_bus::api;
use wharf_bus::build::{StepDone, StepEvent, StepRun, STEP_HOST_CONFIG_FIELDS};
use wharf_bus::container::HostConfig;
use wharf_bus::endpoint::{Empty, StreamRequest};
use wharf_bus::stream::Sender;
use wharf_bus::BusError;

use super::{commit, create, start, streams, Container, Node};

/// Output is sent once this much has gathered...
const BATCH_BYTES: usize = 32 * 1024;
/// ...or this long after its first byte came.
const BATCH_DELAY: Duration = Duration::from_millis(20);

/// How a step ended: as the command ended, or because the builder went away.
enum Ending {
    Done(StepDone),
    Abandoned(BusError),
}

/// Serves one `build.run` request: accepts the stream and runs the step behind it.
pub async fn run(
    node: &Arc<Node>,
    mut req: StepRun,
    request: &StreamRequest<api::BuildRun>,
) -> Result<(), BusError> {
    // Refused as a plain error reply, before any stream or container exists.
    req.host_config = step_host_config(&req.host_config)?;
    // Accepted before the work: unpacking the image may take longer than a request may wait.
    let mut sender = request.accept_download(&node.client, &Empty).await?;
    let node = node.clone();
    tokio::spawn(async move {
        match step(&node, req, &mut sender).await {
            Ok(Ending::Done(done)) => {
                if sender.send_json(&StepEvent::Done(done)).await.is_ok() {
                    let _ = sender.finish().await;
                }
            }
            Ok(Ending::Abandoned(why)) => {
                tracing::info!("build step abandoned: {}", why.message);
            }
            Err(e) => sender.fail(&e).await,
        }
    });
    Ok(())
}

async fn step(node: &Arc<Node>, req: StepRun, sender: &mut Sender) -> Result<Ending, BusError> {
    let mut config = req.config;
    config.attach_stdin = false;
    config.attach_stdout = true;
    config.attach_stderr = true;
    config.open_stdin = false;
    config.stdin_once = false;
    config.tty = false;
    let mut host_config = req.host_config;
    // The step decides when its container goes, not an exit policy.
    host_config.auto_remove = false;
    host_config.restart_policy = Default::default();
    let c = create::create_for_step(node, &req.image, config, host_config).await?;
    let outcome = match sender
        .send_json(&StepEvent::Started { id: c.id.clone() })
        .await
    {
        Ok(()) => attend(node, &c, sender).await,
        Err(e) => Ok(Ending::Abandoned(e)),
    };
    let remove = match &outcome {
        Ok(Ending::Done(done)) if done.exit_code == 0 => req.remove || req.force_remove,
        Ok(Ending::Done(_)) | Err(_) => req.force_remove,
        Ok(Ending::Abandoned(_)) => true,
    };
    let removed = remove
        && {
            match super::remove::remove(node, &c, true, true).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(container = %c.id, "cannot remove a build step's container: {}", e.message);
                    false
                }
            }
        };
    match outcome? {
        Ending::Done(done) => Ok(Ending::Done(StepDone { removed, ..done })),
        abandoned => Ok(abandoned),
    }
}

/// The host config a build step runs with: the fields `docker build` can set, taken from
/// `asked`. A step asking for anything else, or for a network mode `docker build --network`
/// does not take (`container:<id>`), is refused with `forbidden`: the builder never sends such
/// a step, so one that does is not to be obeyed, not even in part.
pub(super) fn step_host_config(asked: &HostConfig) -> Result<HostConfig, BusError> {
    let encode = |h: &HostConfig| {
        serde_json::to_value(h).map_err(|e| BusError::internal(format!("host config: {e}")))
    };
    let asked_json = encode(asked)?;
    let default_json = encode(&HostConfig::default())?;
    let mut kept = serde_json::Map::new();
    let mut refused = Vec::new();
    for (key, value) in asked_json.as_object().into_iter().flatten() {
        if STEP_HOST_CONFIG_FIELDS.contains(&key.as_str()) {
            kept.insert(key.clone(), value.clone());
        } else if default_json.get(key) != Some(value) {
            refused.push(key.as_str());
        }
    }
    if !refused.is_empty() {
        return Err(BusError::forbidden(format!(
            "a build step may not set {} (only what docker build sets: {})",
            refused.join(", "),
            STEP_HOST_CONFIG_FIELDS.join(", ")
        )));
    }
    let allowed: HostConfig = serde_json::from_value(serde_json::Value::Object(kept))
        .map_err(|e| BusError::invalid(format!("build step host config: {e}")))?;
    let mode = allowed.network_mode.as_str();
    let classic = matches!(mode, "" | "default" | "bridge" | "host" | "none");
    // A user network is a name or an ID: one word, never `container:<id>` or another prefix.
    let user_network = !mode.contains(':') && !mode.contains('/') && mode != "container";
    if !classic && !user_network {
        return Err(BusError::forbidden(format!(
            "a build step may not use network mode {mode:?} (docker build --network takes \
             default, bridge, host, none or a user network)"
        )));
    }
    Ok(allowed)
}

/// Starts the container, relays its output and waits for it; stores its diff after a 0 exit.
async fn attend(
    node: &Arc<Node>,
    c: &Arc<Container>,
    sender: &mut Sender,
) -> Result<Ending, BusError> {
    let attached = streams::attach_before_start(c, true, true);
    node.publish_event(&c.snapshot(), "attach", &[]).await;
    start::start(node, c).await?;
    let output = tokio::select! {
        stream = attached => stream.ok(),
        why = sender.gone() => return Ok(Ending::Abandoned(why)),
    };
    if let Some(stream) = output {
        if let Some(why) = relay(stream, sender).await {
            return Ok(Ending::Abandoned(why));
        }
    }
    let exit_code = tokio::select! {
        code = exited(c) => code?,
        why = sender.gone() => return Ok(Ending::Abandoned(why)),
    };
    let layer = if exit_code == 0 {
        tokio::select! {
            layer = commit::store_layer(node, c) => layer?,
            why = sender.gone() => return Ok(Ending::Abandoned(why)),
        }
    } else {
        None
    };
    Ok(Ending::Done(StepDone {
        id: c.id.clone(),
        exit_code,
        layer,
        removed: false,
    }))
}

/// The exit code, once the node has recorded the container's exit.
async fn exited(c: &Container) -> Result<i64, BusError> {
    let mut phase = c.phase.subscribe();
    loop {
        {
            let p = phase.borrow_and_update();
            if p.removed {
                return Err(BusError::conflict(format!(
                    "the container {} of the step was removed while it ran",
                    c.id
                )));
            }
            if p.exits > 0 {
                return Ok(p.exit_code);
            }
        }
        if phase.changed().await.is_err() {
            return Err(BusError::internal("the step's container is gone"));
        }
    }
}

/// Sends the container's output (the shim's multiplexed frames) as `Output` events until it
/// ends, a batch per stream; returns why when the builder went away instead.
async fn relay(mut stream: UnixStream, sender: &mut Sender) -> Option<BusError> {
    let mut frames = Demux::default();
    // Per stream: a character may be split across two of its writes.
    let mut text = [Utf8Carry::default(), Utf8Carry::default()];
    let mut batch = Batch::default();
    let mut due: Option<tokio::time::Instant> = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            n = stream.read(&mut buf) => {
                let n = match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for (stderr, payload) in frames.push(&buf[..n]) {
                    if stderr != batch.stderr && !batch.text.is_empty() {
                        if let Err(e) = batch.flush(sender).await {
                            return Some(e);
                        }
                    }
                    batch.stderr = stderr;
                    text[stderr as usize].decode(&payload, &mut batch.text);
                }
                if batch.text.len() >= BATCH_BYTES {
                    due = None;
                    if let Err(e) = batch.flush(sender).await {
                        return Some(e);
                    }
                } else if batch.text.is_empty() {
                    due = None;
                } else if due.is_none() {
                    due = Some(tokio::time::Instant::now() + BATCH_DELAY);
                }
            }
            _ = async { tokio::time::sleep_until(due.expect("armed")).await }, if due.is_some() => {
                due = None;
                if let Err(e) = batch.flush(sender).await {
                    return Some(e);
                }
            }
            why = sender.gone() => return Some(why),
        }
    }
    // The end: unfinished characters are replaced, the current stream's first.
    for stderr in [batch.stderr, !batch.stderr] {
        if stderr != batch.stderr {
            if let Err(e) = batch.flush(sender).await {
                return Some(e);
            }
            batch.stderr = stderr;
        }
        text[stderr as usize].finish(&mut batch.text);
    }
    batch.flush(sender).await.err()
}

/// Output of one stream gathered for one `Output` event.
#[derive(Default)]
struct Batch {
    stderr: bool,
    text: String,
}

impl Batch {
    async fn flush(&mut self, sender: &mut Sender) -> Result<(), BusError> {
        if self.text.is_empty() {
            return Ok(());
        }
        let text = std::mem::take(&mut self.text);
        sender
            .send_json(&StepEvent::Output {
                text,
                stderr: self.stderr,
            })
            .await
    }
}

/// Splits Docker's multiplexed stream (`[kind, 0, 0, 0, size as big-endian u32]` + payload)
/// into payloads, across reads.
#[derive(Default)]
struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    /// The payloads `data` completes, with whether they are stderr's; a part of a long frame
    /// is passed on as soon as it comes.
    fn push(&mut self, data: &[u8]) -> Vec<(bool, Vec<u8>)> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while self.buf.len() >= 8 {
            let stderr = self.buf[0] == 2;
            let size =
                u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            let have = self.buf.len() - 8;
            if have >= size {
                out.push((stderr, self.buf[8..8 + size].to_vec()));
                self.buf.drain(..8 + size);
                continue;
            }
            if have > 0 {
                // Pass what came on, keep the header for the rest.
                out.push((stderr, self.buf[8..].to_vec()));
                self.buf.truncate(8);
                self.buf[4..8].copy_from_slice(&((size - have) as u32).to_be_bytes());
            }
            break;
        }
        out
    }
}

/// Bytes to UTF-8 text across reads: a character split between two reads waits for its
/// end; bytes that can never be UTF-8 become U+FFFD.
#[derive(Default)]
struct Utf8Carry {
    carry: Vec<u8>,
}

impl Utf8Carry {
    fn decode(&mut self, data: &[u8], out: &mut String) {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(data);
        let mut rest = &bytes[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    return;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).expect("valid prefix"));
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        None => {
                            // An unfinished character at the end: wait for the next read.
                            self.carry = bad.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The end of the output: an unfinished character is replaced.
    fn finish(&mut self, out: &mut String) {
        if !self.carry.is_empty() {
            out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.carry)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_keeps_what_docker_build_sets() {
        let asked = HostConfig {
            network_mode: "host".into(),
            extra_hosts: Some(vec!["db:10.0.0.2".into()]),
            shm_size: 64 << 20,
            memory: 256 << 20,
            memory_swap: -1,
            cpu_shares: 512,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpuset_cpus: "0".into(),
            ulimits: Some(vec![wharf_bus::container::Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 1024,
            }]),
            ..Default::default()
        };
        let kept = step_host_config(&asked).unwrap();
        assert_eq!(
            serde_json::to_value(&kept).unwrap(),
            serde_json::to_value(&asked).unwrap()
        );
        for mode in ["", "default", "bridge", "none", "my-net", "0123456789ab"] {
            let h = HostConfig {
                network_mode: mode.into(),
                ..Default::default()
            };
            assert_eq!(step_host_config(&h).unwrap().network_mode, mode);
        }
    }

    #[test]
    fn a_step_asking_for_the_host_is_refused() {
        let hostile: Vec<(&str, HostConfig)> = vec![
            (
                "Privileged",
                HostConfig {
                    privileged: true,
                    ..Default::default()
                },
            ),
            (
                "CapAdd",
                HostConfig {
                    cap_add: Some(vec!["SYS_ADMIN".into()]),
                    ..Default::default()
                },
            ),
            (
                "Binds",
                HostConfig {
                    binds: Some(vec!["/:/host".into()]),
                    ..Default::default()
                },
            ),
            (
                "Mounts",
                HostConfig {
                    mounts: vec![wharf_bus::container::MountSpec {
                        r#type: "bind".into(),
                        source: "/etc".into(),
                        target: "/x".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ),
            (
                "PidMode",
                HostConfig {
                    pid_mode: "host".into(),
                    ..Default::default()
                },
            ),
            (
                "IpcMode",
                HostConfig {
                    ipc_mode: "host".into(),
                    ..Default::default()
                },
            ),
            (
                "UTSMode",
                HostConfig {
                    uts_mode: "host".into(),
                    ..Default::default()
                },
            ),
            (
                "SecurityOpt",
                HostConfig {
                    security_opt: Some(vec!["seccomp=unconfined".into()]),
                    ..Default::default()
                },
            ),
            (
                "Devices",
                HostConfig {
                    devices: Some(vec![wharf_bus::container::DeviceMapping {
                        path_on_host: "/dev/sda".into(),
                        path_in_container: "/dev/sda".into(),
                        cgroup_permissions: "rwm".into(),
                    }]),
                    ..Default::default()
                },
            ),
            (
                "DeviceCgroupRules",
                HostConfig {
                    device_cgroup_rules: Some(vec!["b *:* rwm".into()]),
                    ..Default::default()
                },
            ),
            (
                "MaskedPaths",
                HostConfig {
                    masked_paths: Some(Vec::new()),
                    ..Default::default()
                },
            ),
            (
                "VolumesFrom",
                HostConfig {
                    volumes_from: Some(vec!["other".into()]),
                    ..Default::default()
                },
            ),
            (
                "UsernsMode",
                HostConfig {
                    userns_mode: "host".into(),
                    ..Default::default()
                },
            ),
            (
                "Cgroup",
                HostConfig {
                    cgroup: "host".into(),
                    ..Default::default()
                },
            ),
        ];
        for (field, h) in hostile {
            let err = step_host_config(&h).unwrap_err();
            assert_eq!(err.kind, wharf_bus::ErrorKind::Forbidden, "{field}");
            assert!(err.message.contains(field), "{field}: {}", err.message);
        }
        for mode in ["container:abc", "container", "ns:/proc/1/ns/net"] {
            let h = HostConfig {
                network_mode: mode.into(),
                ..Default::default()
            };
            let err = step_host_config(&h).unwrap_err();
            assert_eq!(err.kind, wharf_bus::ErrorKind::Forbidden, "{mode}");
        }
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_split_anywhere_give_the_payloads_in_order() {
        let mut all = frame(1, b"hello ");
        all.extend(frame(2, b"world\n"));
        all.extend(frame(1, b""));
        all.extend(frame(1, b"!"));
        for cut in 0..all.len() {
            let mut d = Demux::default();
            let mut got = Vec::new();
            let mut errs = Vec::new();
            for (stderr, p) in d.push(&all[..cut]).into_iter().chain(d.push(&all[cut..])) {
                if stderr {
                    errs.extend(p);
                } else {
                    got.extend(p);
                }
            }
            assert_eq!(
                (&got[..], &errs[..]),
                (&b"hello !"[..], &b"world\n"[..]),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_character_split_across_reads_is_kept_whole() {
        let text = "a€b😀";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut u = Utf8Carry::default();
            let mut out = String::new();
            u.decode(&bytes[..cut], &mut out);
            u.decode(&bytes[cut..], &mut out);
            u.finish(&mut out);
            assert_eq!(out, text, "cut at {cut}");
        }
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut u = Utf8Carry::default();
        let mut out = String::new();
        u.decode(b"a\xffb\xe2\x82", &mut out);
        assert_eq!(out, "a\u{fffd}b");
        u.finish(&mut out);
        assert_eq!(out, "a\u{fffd}b\u{fffd}");
    }
}

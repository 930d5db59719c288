//! Streams between a container and the gateway: `docker logs`, `docker attach` (and the
//! attach `docker run` makes before it starts the container), stdin, TTY resize.
//!
//! Output of an attach comes from the shim's socket, already framed as the HTTP body wants it
//! (multiplexed without a TTY, raw with one), and goes out as a bus stream. Stdin comes as a
//! separate upload that names the attach it belongs to; the two meet in [`StdinSlots`]. The
//! node, not the shim, decides what the end of a client's stdin means: with `StdinOnce` it
//! closes the container's stdin; detaching (Docker's detach keys) never does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use wharf_bus::api;
use wharf_bus::container::{AttachRequest, LogsRequest, StdinRequest, StreamInfo};
use wharf_bus::endpoint::{Empty, StreamRequest};
use wharf_bus::stream::Sender;
use wharf_bus::BusError;

use crate::logs::{multiplex_frame, payload, LogReader, ReadOptions};
use crate::shim::ShimClient;

use super::record::Status;
use super::{internal, Container, Node};

/// An attach waiting for the container to start.
pub struct PendingAttach {
    pub token: u64,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub deliver: tokio::sync::oneshot::Sender<UnixStream>,
}

/// Where an attach leaves its stdin end for the matching upload.
#[derive(Default)]
pub struct Slot {
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    ready: tokio::sync::Notify,
    detach: CancellationToken,
    detach_keys: Mutex<Vec<u8>>,
}

#[derive(Default)]
pub struct StdinSlots(Mutex<HashMap<String, Arc<Slot>>>);

impl StdinSlots {
    fn get_or_create(&self, id: &str) -> Arc<Slot> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    fn remove(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// Docker's detach keys (`ctrl-p,ctrl-q`, `a,ctrl-b`, ...) as bytes.
pub fn parse_detach_keys(text: &str) -> Result<Vec<u8>, BusError> {
    if text.is_empty() {
        return Ok(vec![16, 17]);
    }
    let mut out = Vec::new();
    for key in text.split(',') {
        let k = key.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = c.as_bytes();
            if b.len() != 1 {
                return Err(BusError::invalid(format!("Unknown character: '{k}'")));
            }
            let code = match b[0] {
                b'a'..=b'z' => b[0] - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(BusError::invalid(format!("Unknown character: '{k}'"))),
            };
            out.push(code);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(BusError::invalid(format!("Unknown character: '{k}'")));
        }
    }
    Ok(out)
}

/// Joins the attaches made before start to the freshly started shim.
pub async fn connect_pending(c: &Container, shim: &ShimClient) {
    let pending: Vec<PendingAttach> =
        std::mem::take(&mut *c.pending_attaches.lock().unwrap_or_else(|e| e.into_inner()));
    for p in pending {
        match shim.attach(p.stdin, p.stdout, p.stderr).await {
            Ok(stream) => {
                let _ = p.deliver.send(stream);
            }
            Err(e) => tracing::warn!(container = %c.id, "attach at start: {e}"),
        }
    }
}

/// Attaches to a created container's output before it starts (no stdin): the connection is
/// delivered at start, before the command runs, so nothing is missed.
pub(super) fn attach_before_start(
    c: &Container,
    stdout: bool,
    stderr: bool,
) -> tokio::sync::oneshot::Receiver<UnixStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    c.pending_attaches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(PendingAttach {
            token: rand::random(),
            stdin: false,
            stdout,
            stderr,
            deliver: tx,
        });
    rx
}

async fn shim_stream(
    c: &Arc<Container>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<Option<UnixStream>, BusError> {
    let live = |s: Status| matches!(s, Status::Running | Status::Paused);
    if live(c.status()) {
        let stream = ShimClient::open(&c.paths.dir)
            .attach(stdin, stdout, stderr)
            .await
            .map_err(|e| internal("cannot attach", e))?;
        return Ok(Some(stream));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let token: u64 = rand::random();
    c.pending_attaches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(PendingAttach {
            token,
            stdin,
            stdout,
            stderr,
            deliver: tx,
        });
    // Started meanwhile, after start took the pending list? Then attach directly.
    if live(c.status()) {
        let taken_back = {
            let mut pending = c.pending_attaches.lock().unwrap_or_else(|e| e.into_inner());
            let before = pending.len();
            pending.retain(|p| p.token != token);
            pending.len() != before
        };
        if taken_back {
            let stream = ShimClient::open(&c.paths.dir)
                .attach(stdin, stdout, stderr)
                .await
                .map_err(|e| internal("cannot attach", e))?;
            return Ok(Some(stream));
        }
    }
    let mut phase = c.phase.subscribe();
    tokio::select! {
        stream = rx => Ok(stream.ok()),
        _ = async {
            loop {
                if phase.changed().await.is_err() || phase.borrow().removed { return; }
            }
        } => Ok(None),
    }
}

/// `POST /containers/{id}/attach`: streams the container's output until it ends.
pub async fn attach(
    node: &Arc<Node>,
    c: Arc<Container>,
    req: AttachRequest,
    request: &StreamRequest<api::ContainerAttach>,
) -> Result<(), BusError> {
    let (tty, stdin_once, open_stdin) =
        c.with(|r| (r.config.tty, r.config.stdin_once, r.config.open_stdin));
    parse_detach_keys(&req.detach_keys)?;
    let want_stdin = req.stdin && open_stdin;
    let slot = want_stdin.then(|| slot_for(node, &req.attach_id, &req.detach_keys));
    let mut sender = request
        .accept_download(&node.client, &StreamInfo { tty })
        .await?;
    // dockerd logs an `attach` event for every attach (`docker run` without -d makes one).
    node.publish_event(&c.snapshot(), "attach", &[]).await;
    let _ = stdin_once;
    if req.logs {
        let options = ReadOptions {
            stdout: req.stdout,
            stderr: req.stderr,
            ..Default::default()
        };
        let path = c.paths.log(&c.id);
        if path.exists() {
            let entries = tokio::task::spawn_blocking(move || LogReader::new(path).read(&options))
                .await
                .map_err(|e| internal("logs", e))?
                .map_err(|e| internal("logs", e))?;
            let mut out = Vec::new();
            for e in &entries {
                let bytes = payload(e, false);
                if tty {
                    out.extend_from_slice(&bytes);
                } else {
                    out.extend_from_slice(&multiplex_frame(e.stream, &bytes));
                }
            }
            if !out.is_empty() {
                sender.send(Bytes::from(out)).await?;
            }
        }
    }
    let stream = match shim_stream(&c, want_stdin, req.stdout, req.stderr).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = sender.finish().await;
            if slot.is_some() {
                node.stdin_slots.remove(&req.attach_id);
            }
            return Ok(());
        }
        Err(e) => {
            sender.fail(&e).await;
            return Ok(());
        }
    };
    pump(
        node.clone(),
        stream,
        sender,
        slot,
        req.attach_id.clone(),
        None,
    );
    Ok(())
}

/// The stdin slot of an attach (or exec start) with its detach keys.
pub fn slot_for(node: &Node, attach_id: &str, detach_keys: &str) -> Arc<Slot> {
    let slot = node.stdin_slots.get_or_create(attach_id);
    let keys = parse_detach_keys(detach_keys).unwrap_or_else(|_| vec![16, 17]);
    *slot.detach_keys.lock().unwrap_or_else(|e| e.into_inner()) = keys;
    slot
}

/// Copies a shim attach connection's output into `sender` until it ends (or the client
/// detaches); hands its write half to the stdin upload through `slot`.
pub fn pump(
    node: Arc<Node>,
    stream: UnixStream,
    mut sender: Sender,
    slot: Option<Arc<Slot>>,
    attach_id: String,
    before_end: Option<tokio::sync::watch::Receiver<bool>>,
) {
    tokio::spawn(async move {
        let mut before_end = before_end;
        let (mut read, write) = stream.into_split();
        let detach = match &slot {
            Some(slot) => {
                *slot.writer.lock().await = Some(write);
                slot.ready.notify_one();
                slot.detach.clone()
            }
            None => {
                drop(write);
                CancellationToken::new()
            }
        };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            tokio::select! {
                n = read.read(&mut buf) => match n {
                    Ok(0) | Err(_) => {
                        if let Some(done) = before_end.as_mut() {
                            let _ = tokio::time::timeout(
                                std::time::Duration::from_secs(5),
                                done.wait_for(|d| *d),
                            )
                            .await;
                        }
                        let _ = sender.finish().await;
                        break;
                    }
                    Ok(n) => {
                        if sender.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                            break;
                        }
                    }
                },
                _ = detach.cancelled() => { let _ = sender.finish().await; break; }
            }
        }
        if let Some(slot) = slot {
            // Lets a stdin upload still waiting for the writer give up.
            slot.detach.cancel();
            node.stdin_slots.remove(&attach_id);
        }
    });
}

/// The stdin upload of an attach: bytes into the container until the client's stdin ends.
pub async fn stdin(
    node: &Arc<Node>,
    req: StdinRequest,
    request: &StreamRequest<api::ContainerStdin>,
) -> Result<(), BusError> {
    // The target is an exec (its stdin ends with the client's) or a container.
    let (bundle, stdin_once) = match super::exec::stdin_target(node, &req.id) {
        Some(dir) => (dir, true),
        None => {
            let c = node.get(&req.id)?;
            (c.paths.dir.clone(), c.with(|r| r.config.stdin_once))
        }
    };
    let slot = node.stdin_slots.get_or_create(&req.attach_id);
    let mut receiver = request.accept_upload(&node.client, &Empty).await?;
    let node = node.clone();
    tokio::spawn(async move {
        // The attach hands over its writer once the shim connection exists (possibly only
        // at start).
        let mut writer = loop {
            if let Some(w) = slot.writer.lock().await.take() {
                break Some(w);
            }
            tokio::select! {
                _ = slot.ready.notified() => {}
                _ = slot.detach.cancelled() => break None,
                _ = tokio::time::sleep(Duration::from_secs(3600)) => break None,
            }
        };
        let keys = slot
            .detach_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut matched = 0usize;
        let mut ended_by_client = false;
        // The client's side failed (or went away): nobody is left to answer.
        let mut failed = false;
        while let Some(frame) = receiver.next().await {
            let Ok(bytes) = frame else {
                failed = true;
                break;
            };
            let Some(w) = writer.as_mut() else { continue };
            // Docker's detach keys: the sequence itself is never delivered.
            let mut out = Vec::with_capacity(bytes.len());
            let mut detached = false;
            for &b in bytes.iter() {
                if !keys.is_empty() && b == keys[matched] {
                    matched += 1;
                    if matched == keys.len() {
                        detached = true;
                        break;
                    }
                    continue;
                }
                if matched > 0 {
                    out.extend_from_slice(&keys[..matched]);
                    matched = 0;
                }
                out.push(b);
            }
            if !out.is_empty() && w.write_all(&out).await.is_err() {
                break;
            }
            if detached {
                slot.detach.cancel();
                writer = None;
                break;
            }
        }
        if writer.is_some() && !slot.detach.is_cancelled() {
            ended_by_client = true;
        }
        if ended_by_client && stdin_once {
            let _ = ShimClient::open(&bundle).close_stdin().await;
        }
        // The upload's declared result, `{}`: its end was taken in (or, after a detach or a
        // stdin that takes no more, nothing more is wanted, and the client's sender drops the
        // rest quietly). A client waits for it to finish its upload.
        if !failed {
            use wharf_bus::endpoint::{upload_result, Empty};
            let result = upload_result::<wharf_bus::api::ContainerStdin>(Ok(Empty));
            let _ = receiver.respond(result).await;
        }
        // Keep the writer open until the attach ends: closing it is not a stdin close.
        if let Some(w) = writer {
            slot.detach.cancelled().await;
            drop(w);
        }
        node.stdin_slots.remove(&req.attach_id);
    });
    Ok(())
}

/// `POST /containers/{id}/resize`. A container without a TTY has nothing to resize: dockerd
/// (containerd's shim) answers 200 and does nothing, and so do we.
pub async fn resize(
    _node: &Arc<Node>,
    c: &Arc<Container>,
    height: u16,
    width: u16,
) -> Result<(), BusError> {
    if !matches!(c.status(), Status::Running | Status::Paused) {
        return Err(BusError::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    if !c.with(|r| r.config.tty) {
        return Ok(());
    }
    ShimClient::open(&c.paths.dir)
        .resize(height, width)
        .await
        .map_err(|e| internal("cannot resize the TTY", e))
}

fn seconds_to_nanos(s: f64) -> Option<i64> {
    (s > 0.0).then_some((s * 1e9) as i64)
}

/// `GET /containers/{id}/logs`.
pub async fn logs(
    node: &Arc<Node>,
    c: Arc<Container>,
    req: LogsRequest,
    request: &StreamRequest<api::ContainerLogs>,
) -> Result<(), BusError> {
    let tty = c.with(|r| r.config.tty);
    let tail = match req.tail.as_str() {
        "" | "all" => None,
        n => match n.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n as usize),
            _ => None,
        },
    };
    let options = ReadOptions {
        since: seconds_to_nanos(req.since),
        until: seconds_to_nanos(req.until),
        tail,
        stdout: req.stdout,
        stderr: req.stderr,
        timestamps: req.timestamps,
    };
    let mut sender = request
        .accept_download(&node.client, &StreamInfo { tty })
        .await?;
    let path = c.paths.log(&c.id);
    let frame = move |e: &crate::logs::LogEntry| -> Vec<u8> {
        let bytes = payload(e, options.timestamps);
        if tty {
            bytes
        } else {
            multiplex_frame(e.stream, &bytes)
        }
    };
    tokio::spawn(async move {
        if !path.exists() {
            let _ = sender.finish().await;
            return;
        }
        if !req.follow {
            let read =
                tokio::task::spawn_blocking(move || LogReader::new(path).read(&options)).await;
            match read {
                Ok(Ok(entries)) => {
                    let mut out = Vec::new();
                    for e in &entries {
                        out.extend_from_slice(&frame(e));
                        if out.len() >= 256 * 1024
                            && sender
                                .send(Bytes::from(std::mem::take(&mut out)))
                                .await
                                .is_err()
                        {
                            return;
                        }
                    }
                    if !out.is_empty() && sender.send(Bytes::from(out)).await.is_err() {
                        return;
                    }
                    let _ = sender.finish().await;
                }
                Ok(Err(e)) => sender.fail(&internal("cannot read the log", e)).await,
                Err(e) => sender.fail(&internal("cannot read the log", e)).await,
            }
            return;
        }
        let follow = match tokio::task::spawn_blocking(move || {
            LogReader::new(path).follow(&options)
        })
        .await
        {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return sender.fail(&internal("cannot follow the log", e)).await,
            Err(e) => return sender.fail(&internal("cannot follow the log", e)).await,
        };
        let mut follow = follow.with_poll_interval(Duration::from_millis(50));
        let stop = follow.stopper();
        // Following ends once the container is not running (after the rest is read).
        let mut phase = c.phase.subscribe();
        let watcher = tokio::spawn(async move {
            loop {
                let p = phase.borrow_and_update().clone();
                if !p.running || p.removed {
                    stop.stop();
                    return;
                }
                if phase.changed().await.is_err() {
                    stop.stop();
                    return;
                }
            }
        });
        let _ = node;
        while let Some(entry) = follow.next_async().await {
            match entry {
                Ok(e) => {
                    if sender.send(Bytes::from(frame(&e))).await.is_err() {
                        watcher.abort();
                        return;
                    }
                }
                Err(e) => {
                    watcher.abort();
                    return sender.fail(&internal("cannot follow the log", e)).await;
                }
            }
        }
        watcher.abort();
        let _ = sender.finish().await;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker() {
        assert_eq!(parse_detach_keys("").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert!(parse_detach_keys("ctrl-aa").is_err());
    }
}

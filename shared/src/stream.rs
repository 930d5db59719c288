//! The one streaming primitive for bulk data: blobs, archives, build contexts, logs and progress.
//!
//! A stream joins a sender and a receiver through two inboxes. The sender publishes `data` frames
//! (at most [`CHUNK_SIZE`] bytes each, numbered) to the receiver's inbox; the receiver grants credit
//! (a number of frames) to the sender's inbox, so a slow reader slows the writer instead of losing
//! frames. The stream ends with one `end` frame or an `error` frame carrying a [`BusError`]. Either
//! side may `cancel`; both send heartbeats, and a side that hears nothing from its peer for
//! [`IDLE_TIMEOUT`] fails with `unavailable`, so a dead service never leaves its peer hanging.
//! Upload streams (receiver is the service) end with a `result` frame back to the sender, which
//! carries the service's answer (say, the committed digest) or its typed error.
//!
//! Opening: the side that sends the request names its own inbox in the `Wharf-Stream-Peer`
//! header; the service answers (through the NATS service API, so errors before the stream starts
//! are ordinary typed error replies) with its own inbox in the same header.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{BusError, Result};
use crate::rpc;

pub const HDR_FRAME: &str = "Wharf-Frame";
pub const HDR_SEQ: &str = "Wharf-Seq";
pub const HDR_PEER: &str = "Wharf-Stream-Peer";

/// Largest data frame; NATS caps a message (headers included) at 1 MiB by default.
pub const CHUNK_SIZE: usize = 512 * 1024;
/// Frames a receiver lets the sender have in flight.
pub const WINDOW: u64 = 16;
/// How often each side tells the other it is still there.
pub const HEARTBEAT: Duration = Duration::from_millis(1000);
/// Silence after which a peer counts as gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(6);
/// Deadline for the service to accept a stream request.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Data,
    End,
    Error,
    Credit,
    Cancel,
    Heartbeat,
    Result,
}

impl Frame {
    fn as_str(self) -> &'static str {
        match self {
            Frame::Data => "data",
            Frame::End => "end",
            Frame::Error => "error",
            Frame::Credit => "credit",
            Frame::Cancel => "cancel",
            Frame::Heartbeat => "hb",
            Frame::Result => "result",
        }
    }
    fn parse(s: &str) -> Option<Frame> {
        Some(match s {
            "data" => Frame::Data,
            "end" => Frame::End,
            "error" => Frame::Error,
            "credit" => Frame::Credit,
            "cancel" => Frame::Cancel,
            "hb" => Frame::Heartbeat,
            "result" => Frame::Result,
            _ => return None,
        })
    }
    fn of(msg: &async_nats::Message) -> Option<Frame> {
        msg.headers
            .as_ref()?
            .get(HDR_FRAME)
            .and_then(|v| Frame::parse(v.as_str()))
    }
}

fn headers(frame: Frame) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(HDR_FRAME, frame.as_str());
    h
}

fn error_payload(err: &BusError) -> Bytes {
    Bytes::from(serde_json::to_vec(err).unwrap_or_default())
}

/// Longest error message a peer's `error` or `cancel` frame may bring (the rest is cut).
const MAX_ERROR_MESSAGE: usize = 4096;

fn parse_error(payload: &[u8]) -> BusError {
    let mut err: BusError = serde_json::from_slice(payload).unwrap_or_else(|_| {
        let text = &payload[..payload.len().min(MAX_ERROR_MESSAGE)];
        BusError::internal(String::from_utf8_lossy(text).to_string())
    });
    if err.message.len() > MAX_ERROR_MESSAGE {
        let mut cut = MAX_ERROR_MESSAGE;
        while !err.message.is_char_boundary(cut) {
            cut -= 1;
        }
        err.message.truncate(cut);
    }
    err
}

/// A frame count (`credit` payload, `Wharf-Seq` value) as the peer wrote it: decimal digits
/// only, and a number that fits; anything else is `None`, never a wrapped number.
fn parse_count(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A peer broke the protocol (a malformed frame, credit beyond the window, data beyond the
/// credit): the stream ends with this error.
fn protocol_error(what: impl std::fmt::Display) -> BusError {
    BusError::internal(format!("stream protocol error: {what}"))
}

/// The sender's side of flow control: frames it may still send. The receiver's grants are
/// untrusted numbers: each must be a decimal count, and together they may never let the
/// sender hold more than [`WINDOW`] frames of credit (an honest receiver never grants more
/// than it has room for), so nothing overflows however much a peer grants.
#[derive(Debug, Default)]
struct Credit(u64);

impl Credit {
    /// Adds the grant of a `credit` frame with `payload`.
    fn grant(&mut self, payload: &[u8]) -> Result<()> {
        let n = parse_count(payload).ok_or_else(|| {
            protocol_error(format!(
                "malformed credit frame {:?}",
                String::from_utf8_lossy(&payload[..payload.len().min(32)])
            ))
        })?;
        self.0 = self
            .0
            .checked_add(n)
            .filter(|held| *held <= WINDOW)
            .ok_or_else(|| {
                protocol_error(format!(
                    "the receiving side granted {n} frames with {} still unused (the window is {WINDOW})",
                    self.0
                ))
            })?;
        Ok(())
    }

    /// Uses one frame of credit; false when there is none.
    fn take(&mut self) -> bool {
        match self.0.checked_sub(1) {
            Some(left) => {
                self.0 = left;
                true
            }
            None => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// The receiver's side of flow control. Credit is granted as the caller takes frames (the
/// window is topped up once half of it is used); frames are counted as they arrive. An honest
/// sender never has more frames arrive than it was granted (it sends only with credit in
/// hand, and grants only grow), so a data frame beyond the grants means the sender ignored
/// its credit, which ends the stream.
#[derive(Debug)]
struct Flow {
    granted: u64,
    arrived: u64,
    delivered: u64,
}

impl Flow {
    /// Starts with the first grant of a whole window.
    fn new() -> Flow {
        Flow {
            granted: WINDOW,
            arrived: 0,
            delivered: 0,
        }
    }

    /// Counts a data frame that arrived (it may wait before the caller takes it).
    fn arrive(&mut self) -> Result<()> {
        self.arrived = self
            .arrived
            .checked_add(1)
            .filter(|arrived| *arrived <= self.granted)
            .ok_or_else(|| {
                protocol_error(format!(
                    "the sending side sent more data frames than the {} it was granted",
                    self.granted
                ))
            })?;
        Ok(())
    }

    /// Counts a data frame handed to the caller; returns how many frames to grant now, if any.
    fn deliver(&mut self) -> Option<u64> {
        self.delivered = self.delivered.saturating_add(1);
        let outstanding = self.granted.saturating_sub(self.delivered);
        if outstanding <= WINDOW / 2 {
            let more = WINDOW - outstanding;
            self.granted = self.granted.saturating_add(more);
            return Some(more);
        }
        None
    }
}

async fn publish(
    client: &async_nats::Client,
    to: &str,
    frame: Frame,
    payload: Bytes,
) -> Result<()> {
    client
        .publish_with_headers(to.to_string(), headers(frame), payload)
        .await
        .map_err(|e| BusError::unavailable(format!("bus publish failed: {e}")))
}

/// Sends to `to` from a task that ends when this guard is dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(client: async_nats::Client, to: String) -> Self {
        Heartbeat(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                if publish(&client, &to, Frame::Heartbeat, Bytes::new())
                    .await
                    .is_err()
                {
                    // Disconnected: the client reconnects on its own; keep trying.
                    continue;
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Publishes a last frame when a side is dropped without ending its stream.
fn farewell(client: &async_nats::Client, to: &str, frame: Frame, payload: Bytes) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let client = client.clone();
        let to = to.to_string();
        handle.spawn(async move {
            let _ = publish(&client, &to, frame, payload).await;
        });
    }
}

fn peer_of(headers: Option<&async_nats::HeaderMap>) -> Result<String> {
    headers
        .and_then(|h| h.get(HDR_PEER))
        .map(|v| v.as_str().to_string())
        .ok_or_else(|| BusError::invalid("stream request without a Wharf-Stream-Peer header"))
}

async fn accept_reply(
    request: &async_nats::service::Request,
    inbox: &str,
    payload: Bytes,
) -> Result<()> {
    let mut h = async_nats::HeaderMap::new();
    h.insert(HDR_PEER, inbox);
    request
        .respond_with_headers(Ok(payload), h)
        .await
        .map_err(|e| BusError::unavailable(format!("cannot answer stream request: {e}")))?;
    Ok(())
}

async fn open_request(
    client: &async_nats::Client,
    subject: &str,
    inbox: &str,
    payload: Bytes,
) -> Result<(String, Bytes)> {
    let mut h = async_nats::HeaderMap::new();
    h.insert(HDR_PEER, inbox);
    let reply = rpc::raw_request(client, subject, h, payload, OPEN_TIMEOUT).await?;
    let peer = peer_of(reply.headers.as_ref())?;
    Ok((peer, reply.payload))
}

/// The writing end of a stream.
pub struct Sender {
    client: async_nats::Client,
    peer: String,
    control: async_nats::Subscriber,
    credit: Credit,
    seq: u64,
    expects_result: bool,
    finished: bool,
    /// The receiver's answer, when it came before the end of the stream (it needed no more).
    early_result: Option<Bytes>,
    _heartbeat: Heartbeat,
}

impl Sender {
    /// Service side of a download: accepts `request` and streams to the requester.
    /// `payload` goes back in the accept reply (say, the size of what follows).
    pub async fn accept(
        client: &async_nats::Client,
        request: &async_nats::service::Request,
        payload: Bytes,
    ) -> Result<Sender> {
        let peer = peer_of(request.message.headers.as_ref())?;
        let inbox = client.new_inbox();
        let control = subscribe(client, &inbox).await?;
        accept_reply(request, &inbox, payload).await?;
        Ok(Sender::new(client, peer, control, false))
    }

    /// Like [`Sender::accept`] for a stream request that came on a plain subscription (a
    /// one-off subject a client made for its peer, not a service endpoint).
    pub async fn accept_message(
        client: &async_nats::Client,
        message: &async_nats::Message,
        payload: Bytes,
    ) -> Result<Sender> {
        let peer = peer_of(message.headers.as_ref())?;
        let reply = message
            .reply
            .clone()
            .ok_or_else(|| BusError::invalid("stream request without a reply subject"))?;
        let inbox = client.new_inbox();
        let control = subscribe(client, &inbox).await?;
        let mut h = async_nats::HeaderMap::new();
        h.insert(HDR_PEER, inbox.as_str());
        client
            .publish_with_headers(reply, h, payload)
            .await
            .map_err(|e| BusError::unavailable(format!("cannot answer stream request: {e}")))?;
        Ok(Sender::new(client, peer, control, false))
    }

    /// Client side of an upload: asks `subject` to receive a stream; returns the sender and the
    /// service's accept payload. [`Sender::finish`] then returns the service's result.
    pub async fn open(
        client: &async_nats::Client,
        subject: &str,
        payload: Bytes,
    ) -> Result<(Sender, Bytes)> {
        let inbox = client.new_inbox();
        let control = subscribe(client, &inbox).await?;
        let (peer, reply) = open_request(client, subject, &inbox, payload).await?;
        Ok((Sender::new(client, peer, control, true), reply))
    }

    fn new(
        client: &async_nats::Client,
        peer: String,
        control: async_nats::Subscriber,
        expects_result: bool,
    ) -> Sender {
        Sender {
            client: client.clone(),
            _heartbeat: Heartbeat::start(client.clone(), peer.clone()),
            peer,
            control,
            credit: Credit::default(),
            seq: 0,
            expects_result,
            finished: false,
            early_result: None,
        }
    }

    /// Sends `data`, split into frames, waiting for credit as needed.
    pub async fn send(&mut self, mut data: Bytes) -> Result<()> {
        while !data.is_empty() {
            let piece = data.split_to(data.len().min(CHUNK_SIZE));
            self.send_frame(piece).await?;
        }
        Ok(())
    }

    /// Sends one JSON message as one frame (for progress and other message streams).
    pub async fn send_json<T: Serialize>(&mut self, value: &T) -> Result<()> {
        self.send_frame(rpc::encode(value)?).await
    }

    async fn send_frame(&mut self, piece: Bytes) -> Result<()> {
        while self.credit.is_empty() && self.early_result.is_none() {
            if let Some(result) = self.await_control(false).await? {
                self.early_result = Some(result);
            }
        }
        if self.early_result.is_some() {
            // The receiver already answered: what is left is not wanted; drop it quietly so the
            // caller can drain its source and collect the answer from `finish`.
            return Ok(());
        }
        if !self.credit.take() {
            return Err(BusError::internal("stream sender without credit"));
        }
        let mut h = headers(Frame::Data);
        h.insert(HDR_SEQ, self.seq.to_string().as_str());
        self.seq = self.seq.wrapping_add(1);
        self.client
            .publish_with_headers(self.peer.clone(), h, piece)
            .await
            .map_err(|e| BusError::unavailable(format!("bus publish failed: {e}")))
    }

    /// Waits for one control message; returns the result payload when one arrives.
    async fn await_control(&mut self, want_result: bool) -> Result<Option<Bytes>> {
        loop {
            let msg = match tokio::time::timeout(IDLE_TIMEOUT, self.control.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => return Err(BusError::unavailable("bus connection closed")),
                Err(_) => {
                    self.finished = true;
                    return Err(BusError::unavailable(
                        "the receiving side of the stream stopped answering",
                    ));
                }
            };
            match Frame::of(&msg) {
                Some(Frame::Credit) => {
                    if let Err(e) = self.credit.grant(&msg.payload) {
                        return Err(self.abort(e).await);
                    }
                    if !want_result {
                        return Ok(None);
                    }
                }
                Some(Frame::Heartbeat) => {}
                Some(Frame::Result) => {
                    self.finished = true;
                    return Ok(Some(msg.payload));
                }
                Some(Frame::Cancel) | Some(Frame::Error) => {
                    self.finished = true;
                    let err = if msg.payload.is_empty() {
                        BusError::cancelled("the receiving side cancelled the stream")
                    } else {
                        parse_error(&msg.payload)
                    };
                    return Err(err);
                }
                other => {
                    let what = match other {
                        Some(f) => format!("a {} frame reached the sending side", f.as_str()),
                        None => "a message without a known Wharf-Frame header".to_string(),
                    };
                    return Err(self.abort(protocol_error(what)).await);
                }
            }
        }
    }

    /// Ends the stream because the receiver broke the protocol: it hears why, and so does the
    /// caller.
    async fn abort(&mut self, err: BusError) -> BusError {
        self.finished = true;
        let _ = publish(&self.client, &self.peer, Frame::Error, error_payload(&err)).await;
        err
    }

    /// Ends the stream successfully. For uploads, waits for and returns the service's result.
    pub async fn finish(mut self) -> Result<Bytes> {
        if let Some(result) = self.early_result.take() {
            return Ok(result);
        }
        publish(&self.client, &self.peer, Frame::End, Bytes::new()).await?;
        if !self.expects_result {
            self.finished = true;
            let _ = self.client.flush().await;
            return Ok(Bytes::new());
        }
        loop {
            if let Some(result) = self.await_control(true).await? {
                return Ok(result);
            }
        }
    }

    /// Like [`Sender::finish`], decoding a JSON result.
    pub async fn finish_json<T: DeserializeOwned>(self) -> Result<T> {
        let payload = self.finish().await?;
        serde_json::from_slice(&payload)
            .map_err(|e| BusError::internal(format!("malformed stream result: {e}")))
    }

    /// Waits until the receiver of a download cancels or stops answering, keeping the credit
    /// it grants meanwhile, and returns why. For a sender that may have nothing to send for
    /// long (a build step's quiet command) yet must stop once nobody listens. Dropping the
    /// future loses nothing.
    pub async fn gone(&mut self) -> BusError {
        loop {
            match self.await_control(false).await {
                Ok(Some(result)) => self.early_result = Some(result),
                Ok(None) => {}
                Err(e) => return e,
            }
        }
    }

    /// Sends the whole file at `path`, a full frame at a time.
    pub async fn send_file(&mut self, path: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncReadExt;
        let unreadable =
            |e: std::io::Error| BusError::internal(format!("cannot read {}: {e}", path.display()));
        let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let mut sent = 0u64;
        loop {
            let mut buf = bytes::BytesMut::with_capacity(CHUNK_SIZE);
            while buf.len() < CHUNK_SIZE {
                if file.read_buf(&mut buf).await.map_err(unreadable)? == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                return Ok(sent);
            }
            sent += buf.len() as u64;
            let last = buf.len() < CHUNK_SIZE;
            self.send(buf.freeze()).await?;
            if last {
                return Ok(sent);
            }
        }
    }

    /// Ends the stream with an error the receiver will see.
    pub async fn fail(mut self, err: &BusError) {
        self.finished = true;
        let _ = publish(&self.client, &self.peer, Frame::Error, error_payload(err)).await;
        let _ = self.client.flush().await;
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if !self.finished {
            let err = BusError::cancelled("the sending side went away");
            farewell(&self.client, &self.peer, Frame::Error, error_payload(&err));
        }
    }
}

/// The reading end of a stream.
pub struct Receiver {
    client: async_nats::Client,
    peer: String,
    data: async_nats::Subscriber,
    /// Frames that arrived and wait for the caller (at most the credit granted, plus the one
    /// that ends the stream).
    queue: std::collections::VecDeque<async_nats::Message>,
    /// An ending frame (end, error, cancel, or a malformed one) is in `queue`.
    ending_queued: bool,
    next_seq: u64,
    flow: Flow,
    done: bool,
    _heartbeat: Heartbeat,
}

impl Receiver {
    /// Client side of a download: asks `subject` for a stream; returns the receiver and the
    /// service's accept payload.
    pub async fn open(
        client: &async_nats::Client,
        subject: &str,
        payload: Bytes,
    ) -> Result<(Receiver, Bytes)> {
        let inbox = client.new_inbox();
        let data = subscribe(client, &inbox).await?;
        let (peer, reply) = open_request(client, subject, &inbox, payload).await?;
        let receiver = Receiver::new(client, peer, data).await?;
        Ok((receiver, reply))
    }

    /// Like [`Receiver::open`] with a JSON request.
    pub async fn open_json<Req: Serialize>(
        client: &async_nats::Client,
        subject: &str,
        request: &Req,
    ) -> Result<(Receiver, Bytes)> {
        Receiver::open(client, subject, rpc::encode(request)?).await
    }

    /// Service side of an upload: accepts `request` and receives the requester's stream.
    pub async fn accept(
        client: &async_nats::Client,
        request: &async_nats::service::Request,
        payload: Bytes,
    ) -> Result<Receiver> {
        let peer = peer_of(request.message.headers.as_ref())?;
        let inbox = client.new_inbox();
        let data = subscribe(client, &inbox).await?;
        accept_reply(request, &inbox, payload).await?;
        Receiver::new(client, peer, data).await
    }

    async fn new(
        client: &async_nats::Client,
        peer: String,
        data: async_nats::Subscriber,
    ) -> Result<Receiver> {
        let receiver = Receiver {
            client: client.clone(),
            _heartbeat: Heartbeat::start(client.clone(), peer.clone()),
            peer,
            data,
            queue: Default::default(),
            ending_queued: false,
            next_seq: 0,
            flow: Flow::new(),
            done: false,
        };
        receiver.grant(WINDOW).await?;
        Ok(receiver)
    }

    async fn grant(&self, frames: u64) -> Result<()> {
        publish(
            &self.client,
            &self.peer,
            Frame::Credit,
            Bytes::from(frames.to_string()),
        )
        .await
    }

    /// The next chunk; `None` once the sender ended the stream successfully.
    pub async fn next(&mut self) -> Option<Result<Bytes>> {
        if self.done {
            return None;
        }
        loop {
            let Some(msg) = self.queue.pop_front() else {
                let msg = match tokio::time::timeout(IDLE_TIMEOUT, self.data.next()).await {
                    Ok(Some(msg)) => msg,
                    Ok(None) => {
                        return Some(Err(
                            self.stop(BusError::unavailable("bus connection closed"))
                        ))
                    }
                    Err(_) => {
                        return Some(Err(self.stop(BusError::unavailable(
                            "the sending side of the stream stopped answering",
                        ))))
                    }
                };
                if let Err(e) = self.admit(msg) {
                    return Some(Err(self.abort(e).await));
                }
                // Whatever else has arrived too: a sender that ignores its credit shows here.
                while !self.ending_queued {
                    match futures::FutureExt::now_or_never(self.data.next()) {
                        Some(Some(msg)) => {
                            if let Err(e) = self.admit(msg) {
                                return Some(Err(self.abort(e).await));
                            }
                        }
                        _ => break,
                    }
                }
                continue;
            };
            match Frame::of(&msg) {
                Some(Frame::Data) => {
                    let seq: Option<u64> = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(HDR_SEQ))
                        .and_then(|v| parse_count(v.as_str().as_bytes()));
                    if seq != Some(self.next_seq) {
                        let err = BusError::unavailable(format!(
                            "stream lost frames (expected frame {}, got {:?})",
                            self.next_seq, seq
                        ));
                        return Some(Err(self.abort(err).await));
                    }
                    self.next_seq = self.next_seq.wrapping_add(1);
                    if let Some(more) = self.flow.deliver() {
                        if let Err(e) = self.grant(more).await {
                            return Some(Err(self.stop(e)));
                        }
                    }
                    return Some(Ok(msg.payload));
                }
                Some(Frame::End) => {
                    self.done = true;
                    return None;
                }
                Some(Frame::Error) | Some(Frame::Cancel) => {
                    return Some(Err(self.stop(parse_error(&msg.payload))));
                }
                other => {
                    let what = match other {
                        Some(f) => format!("a {} frame reached the receiving side", f.as_str()),
                        None => "a message without a known Wharf-Frame header".to_string(),
                    };
                    return Some(Err(self.abort(protocol_error(what)).await));
                }
            }
        }
    }

    /// Takes in a message that arrived: data is counted against the credit granted and queued,
    /// a heartbeat has done its work by arriving, anything else ends the stream once the
    /// frames before it are taken.
    fn admit(&mut self, msg: async_nats::Message) -> Result<()> {
        match Frame::of(&msg) {
            Some(Frame::Heartbeat) => return Ok(()),
            Some(Frame::Data) => self.flow.arrive()?,
            _ => self.ending_queued = true,
        }
        self.queue.push_back(msg);
        Ok(())
    }

    fn stop(&mut self, err: BusError) -> BusError {
        self.done = true;
        err
    }

    /// Ends the stream because the sender broke the protocol (or lost frames): it is told to
    /// stop, and the caller hears why.
    async fn abort(&mut self, err: BusError) -> BusError {
        let _ = publish(&self.client, &self.peer, Frame::Cancel, error_payload(&err)).await;
        self.stop(err)
    }

    /// The next frame decoded as one JSON message.
    pub async fn next_json<T: DeserializeOwned>(&mut self) -> Option<Result<T>> {
        Some(self.next().await?.and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| BusError::internal(format!("malformed stream message: {e}")))
        }))
    }

    /// Reads the whole stream into memory (for small streams only).
    pub async fn collect(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// Answers the sender of an upload with the service's result (success payload or error).
    pub async fn respond(mut self, result: Result<Bytes>) -> Result<()> {
        self.done = true;
        let outcome = match result {
            Ok(payload) => publish(&self.client, &self.peer, Frame::Result, payload).await,
            Err(err) => publish(&self.client, &self.peer, Frame::Error, error_payload(&err)).await,
        };
        let _ = self.client.flush().await;
        outcome
    }

    /// Tells the sender to stop.
    pub async fn cancel(mut self, err: &BusError) {
        self.done = true;
        let _ = publish(&self.client, &self.peer, Frame::Cancel, error_payload(err)).await;
    }

    /// Turns the receiver into a `Stream` of chunks (for `StreamReader` and HTTP bodies).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes>> + Send + 'static {
        futures::stream::unfold(self, |mut rx| async move {
            rx.next().await.map(|item| (item, rx))
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if !self.done {
            let err = BusError::cancelled("the receiving side went away");
            farewell(&self.client, &self.peer, Frame::Cancel, error_payload(&err));
        }
    }
}

async fn subscribe(client: &async_nats::Client, inbox: &str) -> Result<async_nats::Subscriber> {
    client
        .subscribe(inbox.to_string())
        .await
        .map_err(|e| BusError::unavailable(format!("cannot subscribe on the bus: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_decimal_digits_that_fit() {
        assert_eq!(parse_count(b"16"), Some(16));
        assert_eq!(parse_count(b"0"), Some(0));
        assert_eq!(parse_count(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"99999999999999999999999",
            b"-1",
            b"+1",
            b" 1",
            b"1.0",
            b"0x10",
            b"\xff",
        ] {
            assert_eq!(parse_count(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn credit_never_exceeds_the_window_and_never_wraps() {
        let mut c = Credit::default();
        c.grant(WINDOW.to_string().as_bytes()).unwrap();
        assert!(
            c.grant(b"1").is_err(),
            "a window is all a receiver may grant"
        );
        for _ in 0..WINDOW / 2 {
            assert!(c.take());
        }
        c.grant((WINDOW / 2).to_string().as_bytes()).unwrap();
        let mut c = Credit::default();
        c.grant(b"1").unwrap();
        let err = c.grant(b"18446744073709551615").unwrap_err();
        assert!(err.message.contains("window"), "{}", err.message);
        assert_eq!(c.0, 1, "a refused grant changes nothing");
        for bad in [&b"lots"[..], b"", b"-5", b"99999999999999999999999"] {
            assert!(Credit::default().grant(bad).is_err());
        }
    }

    #[test]
    fn credit_runs_out_instead_of_underflowing() {
        let mut c = Credit::default();
        assert!(!c.take());
        c.grant(b"2").unwrap();
        assert!(c.take() && c.take());
        assert!(!c.take());
        assert!(c.is_empty());
    }

    #[test]
    fn the_window_tops_up_at_half_and_never_lets_more_than_a_window_arrive_ahead() {
        // An honest sender, taking every grant as soon as it is made.
        let mut f = Flow::new();
        let mut sender_credit = WINDOW;
        for _ in 0..10 * WINDOW {
            assert!(sender_credit > 0);
            sender_credit -= 1;
            f.arrive().unwrap();
            if let Some(more) = f.deliver() {
                sender_credit += more;
            }
            assert!(f.granted - f.delivered <= WINDOW);
        }
        // A slow reader: a whole window arrives before the caller takes anything; one more
        // frame is beyond the credit.
        let mut f = Flow::new();
        for _ in 0..WINDOW {
            f.arrive().unwrap();
        }
        let err = f.arrive().unwrap_err();
        assert!(
            err.message.contains("more data frames than the 16"),
            "{}",
            err.message
        );
        // Taking frames grants more, and those may then arrive.
        let mut granted = 0;
        for _ in 0..WINDOW {
            granted += f.deliver().unwrap_or(0);
        }
        assert_eq!(granted, WINDOW);
        for _ in 0..WINDOW {
            f.arrive().unwrap();
        }
        assert!(f.arrive().is_err());
    }

    #[test]
    fn peer_errors_are_cut_to_a_bounded_length() {
        let long = "x".repeat(100_000);
        let err = parse_error(long.as_bytes());
        assert_eq!(err.message.len(), MAX_ERROR_MESSAGE);
        let json = serde_json::to_vec(&BusError::invalid("é".repeat(50_000))).unwrap();
        let err = parse_error(&json);
        assert!(err.message.len() <= MAX_ERROR_MESSAGE);
        assert_eq!(err.kind, crate::ErrorKind::Invalid);
    }

    mod properties {
        use super::*;
        use crate::testkit::proptest_cases;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: proptest_cases(256),
                failure_persistence: None,
                max_shrink_time: 30_000,
                ..ProptestConfig::default()
            }
        }

        /// Credit-frame payloads and sequence numbers as a peer may write them.
        fn count_text() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                any::<u64>().prop_map(|n| n.to_string().into_bytes()),
                (0u64..=WINDOW + 2).prop_map(|n| n.to_string().into_bytes()),
                "[0-9]{0,25}".prop_map(String::into_bytes),
                "[-+ 0-9a-fx.]{0,8}".prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..24),
            ]
        }

        /// What a sender's side of flow control is told or does.
        #[derive(Debug, Clone)]
        enum CreditStep {
            Grant(Vec<u8>),
            Take,
        }

        fn kind() -> impl Strategy<Value = crate::ErrorKind> {
            prop::sample::select(vec![
                crate::ErrorKind::Invalid,
                crate::ErrorKind::Unauthorized,
                crate::ErrorKind::Forbidden,
                crate::ErrorKind::NotFound,
                crate::ErrorKind::Conflict,
                crate::ErrorKind::Cancelled,
                crate::ErrorKind::Internal,
                crate::ErrorKind::Unavailable,
            ])
        }

        proptest! {
            #![proptest_config(config())]

            /// A count is at most 20 decimal digits (`u64::MAX` has 20; longer text, even
            /// zero-padded, is refused unread) that fit in a u64, nothing else, and every u64
            /// reads back from its decimal text.
            #[test]
            fn counts_are_exactly_the_decimal_numbers_that_fit(text in count_text(), n in any::<u64>()) {
                let parsed = parse_count(&text);
                let expected = std::str::from_utf8(&text)
                    .ok()
                    .filter(|t| (1..=20).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<u64>().ok());
                prop_assert_eq!(parsed, expected);
                prop_assert_eq!(parse_count(n.to_string().as_bytes()), Some(n));
            }

            /// Whatever a receiver grants, in any order with the frames sent, the sender never
            /// holds more than a window of credit, a refused grant changes nothing, and
            /// credit is never spent below zero.
            #[test]
            fn no_sequence_of_grants_lets_a_sender_hold_more_than_a_window(
                steps in prop::collection::vec(
                    prop_oneof![
                        count_text().prop_map(CreditStep::Grant),
                        Just(CreditStep::Take),
                    ],
                    0..64,
                )
            ) {
                let mut credit = Credit::default();
                let mut model: u64 = 0;
                for step in &steps {
                    match step {
                        CreditStep::Grant(payload) => {
                            let before = credit.0;
                            match credit.grant(payload) {
                                Ok(()) => {
                                    let n = parse_count(payload).expect("a granted count parses");
                                    model += n;
                                    prop_assert!(model <= WINDOW);
                                }
                                Err(e) => {
                                    prop_assert_eq!(credit.0, before);
                                    prop_assert!(e.message.starts_with("stream protocol error"));
                                    prop_assert!(e.message.len() < 256, "{}", e.message);
                                }
                            }
                        }
                        CreditStep::Take => {
                            prop_assert_eq!(credit.take(), model > 0);
                            model = model.saturating_sub(1);
                        }
                    }
                    prop_assert_eq!(credit.0, model);
                    prop_assert!(credit.0 <= WINDOW);
                    prop_assert_eq!(credit.is_empty(), model == 0);
                }
            }

            /// A receiver with an honest sender (one that sends only with credit in hand)
            /// never refuses a frame, however the caller's reads interleave with arrivals; a
            /// frame beyond the credit is always refused.
            #[test]
            fn an_honest_sender_is_never_refused_and_an_eager_one_always_is(
                steps in prop::collection::vec(any::<bool>(), 0..200),
                eager_at in prop::option::of(0usize..200),
            ) {
                let mut flow = Flow::new();
                let mut sender_credit = WINDOW;
                let mut waiting = 0u64;
                for (i, arrive) in steps.iter().enumerate() {
                    if eager_at == Some(i) && sender_credit == 0 {
                        prop_assert!(flow.arrive().is_err(), "a frame beyond the credit");
                        return Ok(());
                    }
                    if *arrive && sender_credit > 0 {
                        sender_credit -= 1;
                        prop_assert!(flow.arrive().is_ok());
                        waiting += 1;
                    } else if waiting > 0 {
                        waiting -= 1;
                        if let Some(more) = flow.deliver() {
                            prop_assert!(more <= WINDOW);
                            sender_credit += more;
                        }
                    }
                    prop_assert!(sender_credit + waiting <= WINDOW);
                    prop_assert!(flow.granted - flow.delivered <= WINDOW);
                }
            }

            /// Any payload of an `error` or `cancel` frame becomes an error with a bounded
            /// message, and an error a peer sent comes back as it was (cut to the bound).
            #[test]
            fn peer_errors_parse_from_anything_and_round_trip(
                payload in prop::collection::vec(any::<u8>(), 0..6000),
                kind in kind(),
                message in ".{0,80}|.{4090,4100}",
            ) {
                let err = parse_error(&payload);
                prop_assert!(err.message.len() <= MAX_ERROR_MESSAGE);
                let sent = BusError::new(kind, message.clone());
                let got = parse_error(&error_payload(&sent));
                prop_assert_eq!(got.kind, kind);
                let mut cut = message.len().min(MAX_ERROR_MESSAGE);
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                prop_assert_eq!(got.message, &message[..cut]);
            }

            /// A `Wharf-Frame` header names a frame exactly by its own text, nothing else.
            #[test]
            fn frame_headers_name_exactly_the_known_frames(text in "[a-z]{0,7}|.{0,8}") {
                if let Some(frame) = Frame::parse(&text) {
                    prop_assert_eq!(frame.as_str(), text.as_str());
                }
                for frame in [
                    Frame::Data,
                    Frame::End,
                    Frame::Error,
                    Frame::Credit,
                    Frame::Cancel,
                    Frame::Heartbeat,
                    Frame::Result,
                ] {
                    prop_assert_eq!(Frame::parse(frame.as_str()), Some(frame));
                }
            }
        }
    }
}

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

fn parse_error(payload: &[u8]) -> BusError {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| BusError::internal(String::from_utf8_lossy(payload).to_string()))
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
    credit: u64,
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
            credit: 0,
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
        while self.credit == 0 && self.early_result.is_none() {
            if let Some(result) = self.await_control(false).await? {
                self.early_result = Some(result);
            }
        }
        if self.early_result.is_some() {
            // The receiver already answered: what is left is not wanted; drop it quietly so the
            // caller can drain its source and collect the answer from `finish`.
            return Ok(());
        }
        self.credit -= 1;
        let mut h = headers(Frame::Data);
        h.insert(HDR_SEQ, self.seq.to_string().as_str());
        self.seq += 1;
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
                    let n: u64 = std::str::from_utf8(&msg.payload)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    self.credit += n;
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
                _ => {}
            }
        }
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
    next_seq: u64,
    outstanding: u64,
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
            next_seq: 0,
            outstanding: WINDOW,
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
            match Frame::of(&msg) {
                Some(Frame::Data) => {
                    let seq: Option<u64> = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(HDR_SEQ))
                        .and_then(|v| v.as_str().parse().ok());
                    if seq != Some(self.next_seq) {
                        let err = BusError::unavailable(format!(
                            "stream lost frames (expected frame {}, got {:?})",
                            self.next_seq, seq
                        ));
                        let _ =
                            publish(&self.client, &self.peer, Frame::Cancel, error_payload(&err))
                                .await;
                        return Some(Err(self.stop(err)));
                    }
                    self.next_seq += 1;
                    self.outstanding = self.outstanding.saturating_sub(1);
                    if self.outstanding <= WINDOW / 2 {
                        let more = WINDOW - self.outstanding;
                        self.outstanding = WINDOW;
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
                _ => {}
            }
        }
    }

    fn stop(&mut self, err: BusError) -> BusError {
        self.done = true;
        err
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

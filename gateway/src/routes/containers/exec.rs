//! `docker exec`: `POST /containers/{name}/exec` creates an exec on the container's node;
//! `/exec/{id}/...` finds the node holding the exec (every node is asked) and starts, inspects or
//! resizes it there. An attached start takes the connection over as attach does.

use std::time::Duration;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use wharf_bus::container::{
    exec_refusal, ExecConfig, ExecCreateRequest, ExecCreated, ExecInspectResponse, ExecRef,
    ExecResizeRequest, ExecStartRequest, InspectRequest, StdinRequest,
};
use wharf_bus::rpc::DEFAULT_TIMEOUT;

use super::attach::attach_id;
use super::dimension;
use super::hijack::{self, Input, Output};
use super::logs::{mux_frame, stream_content_type};
use crate::cluster::{execs, resolve};
use crate::error::{ApiError, ApiResult};
use crate::json_body::read_json;
use crate::query::Query;
use crate::state::AppState;
use crate::version::ApiVersion;
use wharf_bus::api;

/// A detached start answers once the process runs, which may take a while on a busy node.
const DETACHED_START_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest exec start body read (it is three small fields).
const START_BODY_LIMIT: usize = 64 * 1024;

/// The body of `POST /exec/{id}/start`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartBody {
    #[serde(default)]
    detach: bool,
    #[serde(default)]
    tty: bool,
    #[serde(default)]
    console_size: Option<[u32; 2]>,
}

impl StartBody {
    /// dockerd's reading: a console size only with a TTY, and only from API 1.42 on.
    fn console_size(&self, version: ApiVersion) -> Option<[u32; 2]> {
        self.console_size
            .filter(|_| self.tty && version.at_least(1, 42))
    }
}

/// The exec a create body asks for, as dockerd checks it before looking at the container.
fn exec_config(body: &[u8], version: ApiVersion) -> ApiResult<ExecConfig> {
    let mut config: ExecConfig = read_json(body)?;
    if config.cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if !version.at_least(1, 42) {
        config.console_size = None;
    }
    Ok(config)
}

pub async fn create(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let config = exec_config(&body, version)?;
    let target = resolve::locate(&state, &name).await?;
    let request = ExecCreateRequest {
        id: target.id.clone(),
        config,
    };
    let created: ExecCreated = state
        .node(&target.node)
        .call::<api::ExecCreate>(&request, DEFAULT_TIMEOUT)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

pub async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ExecInspectResponse>> {
    let node = execs::locate(&state, &id).await?;
    let request = ExecRef { exec_id: id };
    Ok(axum::Json(
        state
            .node(&node)
            .call::<api::ExecInspect>(&request, DEFAULT_TIMEOUT)
            .await?,
    ))
}

pub async fn resize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let q = Query::parse(raw.as_deref());
    let height = dimension(&q, "h", "height")?;
    let width = dimension(&q, "w", "width")?;
    let node = execs::locate(&state, &id).await?;
    let request = ExecResizeRequest {
        exec_id: id,
        height,
        width,
    };
    state
        .node(&node)
        .call::<api::ExecResize>(&request, DEFAULT_TIMEOUT)
        .await?;
    Ok(StatusCode::OK)
}

/// A failed exec as dockerd writes it to the hijacked stream: the error and CRLF, on stdout.
fn error_chunk(message: &str, tty: bool) -> Bytes {
    let text = format!("{message}\r\n");
    if tty {
        Bytes::from(text)
    } else {
        mux_frame(1, text.as_bytes())
    }
}

/// The exec's output, an error ending it told in the stream as dockerd tells it.
fn telling_errors<S>(output: S, tty: bool) -> Output
where
    S: Stream<Item = wharf_bus::error::Result<Bytes>> + Send + 'static,
{
    futures::stream::unfold(Some(output.boxed()), move |output| async move {
        let mut output = output?;
        match output.next().await {
            Some(Ok(chunk)) => Some((Ok(chunk), Some(output))),
            Some(Err(e)) => Some((Ok(error_chunk(&e.message, tty)), None)),
            None => None,
        }
    })
    .boxed()
}

/// How the node's framing of an exec's output becomes dockerd's. dockerd frames by the start's
/// `Tty` (multiplexed without it, from its stdout and stderr writers), whatever the exec was
/// created with; the node frames as its accept says ([`StreamInfo::tty`]: raw with a TTY), and
/// gives the process a TTY when either the exec or its start asks for one.
///
/// [`StreamInfo::tty`]: wharf_bus::container::StreamInfo
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reframe {
    /// The node frames as the client asked.
    AsIs,
    /// The node sends a TTY's raw output and the client asked for a multiplexed stream: each
    /// chunk goes out as a stdout frame (a TTY has no other stream).
    Multiplex,
    /// The node multiplexes and the client asked for raw output: the frames' payloads, in
    /// order.
    Demultiplex,
}

impl Reframe {
    fn of(node_tty: bool, start_tty: bool) -> Reframe {
        match (node_tty, start_tty) {
            (true, false) => Reframe::Multiplex,
            (false, true) => Reframe::Demultiplex,
            _ => Reframe::AsIs,
        }
    }

    /// The node's output framed as the client asked.
    fn apply<S>(self, output: S) -> Output
    where
        S: Stream<Item = wharf_bus::error::Result<Bytes>> + Send + 'static,
    {
        match self {
            Reframe::AsIs => output.boxed(),
            Reframe::Multiplex => output.map(|chunk| chunk.map(|c| mux_frame(1, &c))).boxed(),
            Reframe::Demultiplex => {
                let mut frames = Demultiplexer::default();
                output
                    .map(move |chunk| chunk.map(|c| frames.push(&c)))
                    .filter(|chunk| std::future::ready(!matches!(chunk, Ok(c) if c.is_empty())))
                    .boxed()
            }
        }
    }
}

/// The payloads of a multiplexed stream (8-byte headers: stream, three zero bytes, big-endian
/// length), whatever the chunks' boundaries.
#[derive(Debug, Default)]
struct Demultiplexer {
    pending: bytes::BytesMut,
}

impl Demultiplexer {
    /// The payloads completed by `chunk`, run together.
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = bytes::BytesMut::new();
        while self.pending.len() >= 8 {
            let len = u32::from_be_bytes([
                self.pending[4],
                self.pending[5],
                self.pending[6],
                self.pending[7],
            ]) as usize;
            if self.pending.len() < 8 + len {
                break;
            }
            let frame = self.pending.split_to(8 + len);
            out.extend_from_slice(&frame[8..]);
        }
        out.freeze()
    }
}

/// What a start must know first, as dockerd checks it before it hijacks the connection: the
/// exec (whether it reads stdin) and the state of its container; a container that is not
/// running, paused or restarting is refused with an HTTP error. Anything found wrong later
/// (an exec already run, a failed start) is told inside the hijacked stream.
async fn check_start(
    state: &AppState,
    node: &str,
    exec_id: &str,
) -> ApiResult<ExecInspectResponse> {
    let exec = state
        .node(node)
        .call::<api::ExecInspect>(
            &ExecRef {
                exec_id: exec_id.to_string(),
            },
            DEFAULT_TIMEOUT,
        )
        .await?;
    let container = state
        .node(node)
        .call::<api::ContainerInspect>(
            &InspectRequest {
                id: exec.container_id.clone(),
                size: false,
            },
            DEFAULT_TIMEOUT,
        )
        .await?;
    match exec_refusal(&container.id, &container.state.status) {
        Some(refusal) => Err(refusal.into()),
        None => Ok(exec),
    }
}

pub async fn start(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, START_BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let options: StartBody = read_json(&body)?;
    let node = execs::locate(&state, &id).await?;
    let mut start = ExecStartRequest {
        exec_id: id.clone(),
        attach_id: String::new(),
        tty: options.tty,
        console_size: options.console_size(version),
    };

    if options.detach {
        state
            .node(&node)
            .call::<api::ExecStartDetached>(&start, DETACHED_START_TIMEOUT)
            .await?;
        return Ok(StatusCode::OK.into_response());
    }

    let exec = check_start(&state, &node, &id).await?;
    start.attach_id = attach_id();
    let input = if exec.open_stdin {
        open_stdin(&state, &node, &id, &start.attach_id).await
    } else {
        None
    };
    // The process starts once the connection is taken over, as dockerd starts it after the
    // 101: its output never travels with the response's head (clients such as docker-py read
    // the head through a buffer and would lose what came with it).
    let tty = options.tty;
    let opened = async move { state.node(&node).download::<api::ExecStart>(&start).await };
    let output = futures::stream::once(opened).flat_map(move |opened| match opened {
        Ok((rx, info)) => Reframe::of(info.tty, tty).apply(rx.into_stream()),
        Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
    });
    let output = telling_errors(output, options.tty);
    let request = Request::from_parts(parts, axum::body::Body::empty());
    Ok(hijack::take_over(
        request,
        stream_content_type(options.tty, version),
        output,
        input,
    ))
}

/// The stdin upload of an attached start. A refusal (the process may have ended already) leaves
/// the start without stdin rather than failing it.
async fn open_stdin(state: &AppState, node: &str, exec_id: &str, attach_id: &str) -> Option<Input> {
    let request = StdinRequest {
        id: exec_id.to_string(),
        attach_id: attach_id.to_string(),
    };
    match state
        .node(node)
        .upload::<api::ContainerStdin>(&request)
        .await
    {
        Ok((upload, _)) => Some(upload),
        Err(e) => {
            tracing::debug!("exec {exec_id}: no stdin upload: {}", e.message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_bus::BusError;
    #[test]
    fn an_exec_needs_a_command() {
        for body in [&b""[..], br#"{"Cmd":null}"#, br#"{"Cmd":[],"Tty":true}"#] {
            let err = exec_config(body, ApiVersion(1, 45)).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert_eq!(err.message, "No exec command specified");
        }
        let config = exec_config(
            br#"{"Cmd":["sh"],"AttachStdin":true,"Tty":true,"ConsoleSize":[24,80]}"#,
            ApiVersion(1, 45),
        )
        .unwrap();
        assert_eq!(config.cmd, ["sh"]);
        assert!(config.attach_stdin && config.tty);
        assert_eq!(config.console_size, Some([24, 80]));
    }

    #[test]
    fn console_sizes_count_from_api_1_42_and_only_with_a_tty() {
        let body = br#"{"Cmd":["sh"],"ConsoleSize":[24,80]}"#;
        let config = exec_config(body, ApiVersion(1, 41)).unwrap();
        assert_eq!(config.console_size, None);
        let start: StartBody =
            read_json(br#"{"Detach":false,"Tty":true,"ConsoleSize":[24,80]}"#).unwrap();
        assert_eq!(start.console_size(ApiVersion(1, 45)), Some([24, 80]));
        assert_eq!(start.console_size(ApiVersion(1, 41)), None);
        let start: StartBody = read_json(br#"{"Tty":false,"ConsoleSize":[24,80]}"#).unwrap();
        assert_eq!(start.console_size(ApiVersion(1, 45)), None);
        let start: StartBody = read_json(b"").unwrap();
        assert!(!start.detach && !start.tty);
    }

    async fn reframed(reframe: Reframe, chunks: Vec<Bytes>) -> Vec<u8> {
        let out: Vec<Bytes> = reframe
            .apply(futures::stream::iter(chunks.into_iter().map(Ok)))
            .map(|c| c.unwrap())
            .collect()
            .await;
        out.concat()
    }

    #[tokio::test]
    async fn exec_output_is_framed_as_the_start_asks_whatever_the_node_sends() {
        // The node frames as it accepted; dockerd frames by the start's Tty.
        assert_eq!(Reframe::of(true, true), Reframe::AsIs);
        assert_eq!(Reframe::of(false, false), Reframe::AsIs);
        assert_eq!(Reframe::of(true, false), Reframe::Multiplex);
        assert_eq!(Reframe::of(false, true), Reframe::Demultiplex);
        // A TTY's raw output, started without a TTY: stdout frames.
        let raw = vec![Bytes::from_static(b"hi\r\n"), Bytes::from_static(b"$ ")];
        assert_eq!(
            reframed(Reframe::Multiplex, raw).await,
            [mux_frame(1, b"hi\r\n"), mux_frame(1, b"$ ")].concat()
        );
        // Multiplexed output, started with a TTY: the payloads, however the chunks fall.
        let muxed = Bytes::from(
            [
                mux_frame(1, b"out\n"),
                mux_frame(2, b"err\n"),
                mux_frame(1, b""),
            ]
            .concat(),
        );
        let chunks = vec![muxed.slice(..3), muxed.slice(3..13), muxed.slice(13..)];
        assert_eq!(reframed(Reframe::Demultiplex, chunks).await, b"out\nerr\n");
        let same = vec![Bytes::from_static(b"as is")];
        assert_eq!(reframed(Reframe::AsIs, same).await, b"as is");
    }

    #[tokio::test]
    async fn a_failed_exec_is_told_on_stdout_in_the_stream() {
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"out")),
            Err(BusError::internal("exec failed")),
            Ok(Bytes::from_static(b"never")),
        ]);
        let told: Vec<_> = telling_errors(failing, false)
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(told.len(), 2);
        assert_eq!(&told[0][..], b"out");
        assert_eq!(told[1], mux_frame(1, b"exec failed\r\n"));
        let raw: Vec<_> = telling_errors(
            futures::stream::once(async { Err(BusError::internal("boom")) }),
            true,
        )
        .map(|c| c.unwrap())
        .collect()
        .await;
        assert_eq!(raw, [Bytes::from_static(b"boom\r\n")]);
    }
}

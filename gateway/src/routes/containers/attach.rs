//! `POST /containers/{name}/attach`: the connection is taken over, as dockerd hijacks it. The
//! container's output stream from the node is written to the socket; with `stdin=1`, what the
//! client writes goes to the node as an upload paired with the attach.

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wharf_bus::container::{
    node_subject, op, AttachRequest, LogsRequest, StdinRequest, StreamInfo,
};
use wharf_bus::stream::{Receiver, Sender};

use super::logs::{stream_content_type, RAW_STREAM};
use super::resolve;
use crate::error::ApiResult;
use crate::query::Query;
use crate::state::AppState;
use crate::version::ApiVersion;

/// How much of the client's input goes into one stdin frame at most.
const STDIN_READ: usize = 32 * 1024;

fn attach_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub async fn attach(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    mut request: Request,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let target = resolve::locate(&state, &name).await?;
    let (stdin, stdout, stderr) = (q.flag("stdin"), q.flag("stdout"), q.flag("stderr"));
    let attach_id = attach_id();
    // Output first, before answering: nothing the container writes after the client's
    // attach may be lost, even if it is started right after.
    let (rx, accept) = if q.flag("stream") {
        Receiver::open_json(
            &state.bus,
            &node_subject(&target.node, op::ATTACH),
            &AttachRequest {
                id: target.id.clone(),
                attach_id: attach_id.clone(),
                stdin,
                stdout,
                stderr,
                logs: q.flag("logs"),
                detach_keys: q.get("detachKeys").unwrap_or("").to_string(),
            },
        )
        .await?
    } else {
        // Without `stream` dockerd replays the log (when asked) and ends.
        Receiver::open_json(
            &state.bus,
            &node_subject(&target.node, op::LOGS),
            &LogsRequest {
                id: target.id.clone(),
                stdout: stdout && q.flag("logs"),
                stderr: stderr && q.flag("logs"),
                tail: "all".to_string(),
                ..Default::default()
            },
        )
        .await?
    };
    let tty = wharf_bus::rpc::decode::<StreamInfo>(&accept)
        .map(|i| i.tty)
        .unwrap_or(false);
    let tx = if stdin && q.flag("stream") {
        let (tx, _) = Sender::open(
            &state.bus,
            &node_subject(&target.node, op::STDIN),
            wharf_bus::rpc::encode(&StdinRequest {
                id: target.id.clone(),
                attach_id,
            })?,
        )
        .await?;
        Some(tx)
    } else {
        None
    };

    if !request.headers().contains_key(header::UPGRADE) {
        return Ok(duplex_response(rx, tx, request.into_body()));
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    // The connection belongs to this task from the 101 on; it ends with the streams.
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => bridge(TokioIo::new(upgraded), rx, tx).await,
            Err(e) => tracing::debug!("attach upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stream_content_type(tty, version)),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    response
        .extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
    Ok(response)
}

/// Copies the node's output to the client and the client's input to the node until the output
/// ends (then the connection is shut down) or the client goes away (then both streams are
/// cancelled, by dropping them).
async fn bridge<S>(io: S, mut rx: Receiver, tx: Option<Sender>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let output = async {
        while let Some(item) = rx.next().await {
            match item {
                Ok(chunk) => {
                    if writer.write_all(&chunk).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("attach output ended: {}", e.message);
                    break;
                }
            }
        }
        let _ = writer.shutdown().await;
    };
    tokio::pin!(output);
    tokio::select! {
        _ = &mut output => {}
        gone = copy_input(&mut reader, tx) => {
            if !gone {
                output.await;
            }
        }
    }
}

/// Sends what the client writes to the node until the client half-closes (then the upload is
/// finished, and this returns false) or the connection fails (true: the client is gone).
async fn copy_input<R: AsyncRead + Unpin>(reader: &mut R, mut tx: Option<Sender>) -> bool {
    let mut buf = vec![0u8; STDIN_READ];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => {
                if let Some(tx) = tx.take() {
                    if let Err(e) = tx.finish().await {
                        tracing::debug!("attach stdin ended: {}", e.message);
                    }
                }
                return false;
            }
            Ok(n) => {
                if let Some(sender) = tx.as_mut() {
                    if let Err(e) = sender.send(bytes::Bytes::copy_from_slice(&buf[..n])).await {
                        // The container no longer reads stdin; keep serving its output.
                        tracing::debug!("attach stdin refused: {}", e.message);
                        tx = None;
                    }
                }
            }
            Err(_) => return true,
        }
    }
}

/// A client that did not ask for an upgrade gets the output as the response body and sends its
/// input as the request body, on the same connection.
fn duplex_response(rx: Receiver, tx: Option<Sender>, input: Body) -> Response {
    let feeder = tx.map(|mut tx| {
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            let mut data = input.into_data_stream();
            while let Some(chunk) = data.next().await {
                let Ok(chunk) = chunk else { return };
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
            let _ = tx.finish().await;
        }))
    });
    // The feeder lives as long as the response body: a dropped client cancels both.
    let body = futures::stream::unfold((rx, feeder), |(mut rx, feeder)| async move {
        match rx.next().await {
            Some(Ok(chunk)) => Some((Ok::<_, std::io::Error>(chunk), (rx, feeder))),
            Some(Err(e)) => {
                tracing::debug!("attach output ended: {}", e.message);
                None
            }
            None => None,
        }
    });
    (
        [(header::CONTENT_TYPE, RAW_STREAM)],
        Body::from_stream(body),
    )
        .into_response()
}

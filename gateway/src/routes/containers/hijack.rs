//! Taking over a connection as dockerd hijacks it for attach and exec start: a `101 UPGRADED`
//! when the client asked for `Upgrade: tcp`, then the output stream goes to the socket and what
//! the client writes goes to the node as a stdin upload. A client that did not ask to upgrade
//! gets the output as a `200` response body instead.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wharf_bus::api::ContainerStdin;
use wharf_bus::endpoint::Empty;

use super::logs::RAW_STREAM;
use crate::cluster::node::Uploading;

/// How much of the client's input goes into one stdin frame at most.
const STDIN_READ: usize = 32 * 1024;

/// What goes to the client: framed output chunks, ending with the stream (an error ends it too).
pub type Output = BoxStream<'static, wharf_bus::error::Result<Bytes>>;

/// Where the client's input goes: the stdin upload paired with the output.
pub type Input = Uploading<ContainerStdin>;

/// Answers `request` by handing its connection to `output` and `input`. `content_type` is the
/// upgraded stream's (raw or multiplexed); without an upgrade dockerd always says raw.
pub fn take_over(
    mut request: Request,
    content_type: &'static str,
    output: Output,
    input: Option<Input>,
) -> Response {
    if !request.headers().contains_key(header::UPGRADE) {
        return duplex_response(output, input, request.into_body());
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    // The connection belongs to this task from the 101 on; it ends with the streams.
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => bridge(TokioIo::new(upgraded), output, input).await,
            Err(e) => tracing::debug!("connection upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    response
        .extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
    response
}

/// Copies the output to the client and the client's input to the node until the output ends
/// (then the connection is shut down) or the client goes away (then both streams are cancelled,
/// by dropping them). A client half-closing its side (the CLI does so at once when it has no
/// stdin to send) only ends the input.
async fn bridge<S>(io: S, mut output: Output, input: Option<Input>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let copy_output = async {
        while let Some(item) = output.next().await {
            match item {
                Ok(chunk) => {
                    if writer.write_all(&chunk).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("hijacked output ended: {}", e.message);
                    break;
                }
            }
        }
        let _ = writer.shutdown().await;
    };
    tokio::pin!(copy_output);
    tokio::select! {
        _ = &mut copy_output => {}
        gone = copy_input(&mut reader, input) => {
            if !gone {
                copy_output.await;
            }
        }
    }
}

/// Sends what the client writes to the node until the client half-closes (then the upload is
/// finished, and this returns false) or the connection fails (true: the client is gone).
async fn copy_input<R: AsyncRead + Unpin>(reader: &mut R, mut input: Option<Input>) -> bool {
    let mut buf = vec![0u8; STDIN_READ];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => {
                if let Some(upload) = input.take() {
                    // The node answers (`{}`) once it has taken the end of stdin in.
                    match upload.finish().await {
                        Ok(Empty) => tracing::debug!("stdin upload taken in"),
                        Err(e) => tracing::debug!("stdin upload ended: {}", e.message),
                    }
                }
                return false;
            }
            Ok(n) => {
                if let Some(sender) = input.as_mut() {
                    if let Err(e) = sender.send(Bytes::copy_from_slice(&buf[..n])).await {
                        // The process no longer reads stdin; keep serving its output.
                        tracing::debug!("stdin upload refused: {}", e.message);
                        input = None;
                    }
                }
            }
            Err(_) => return true,
        }
    }
}

/// A client that did not ask for an upgrade gets the output as the response body and sends its
/// input as the request body, on the same connection.
fn duplex_response(output: Output, input: Option<Input>, body: Body) -> Response {
    let feeder = input.map(|mut tx| {
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            let mut data = body.into_data_stream();
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
    let body = futures::stream::unfold((output, feeder), |(mut output, feeder)| async move {
        match output.next().await {
            Some(Ok(chunk)) => Some((Ok::<_, std::io::Error>(chunk), (output, feeder))),
            Some(Err(e)) => {
                tracing::debug!("streamed output ended: {}", e.message);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn chunks(parts: &[&'static [u8]]) -> Output {
        let items: Vec<wharf_bus::error::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures::stream::iter(items).boxed()
    }

    #[tokio::test]
    async fn the_output_reaches_the_client_and_then_the_connection_closes() {
        let (server, mut client) = duplex(1024);
        let task = tokio::spawn(bridge(server, chunks(&[b"one ", b"two"]), None));
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"one two");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_half_closing_at_once_still_gets_all_output() {
        let (server, mut client) = duplex(1024);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Output that only comes after the client has closed its side.
        let output = futures::stream::once(async move {
            let _ = rx.await;
            Ok(Bytes::from_static(b"late"))
        })
        .boxed();
        let task = tokio::spawn(bridge(server, output, None));
        client.shutdown().await.unwrap();
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"late");
        task.await.unwrap();
    }
}

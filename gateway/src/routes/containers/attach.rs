//! `POST /containers/{name}/attach`: the connection is taken over, as dockerd hijacks it. The
//! container's output stream from the node is written to the socket; with `stdin=1`, what the
//! client writes goes to the node as an upload paired with the attach.

use axum::extract::{Path, RawQuery, Request, State};
use axum::response::Response;
use axum::Extension;
use futures::StreamExt;
use wharf_bus::api;
use wharf_bus::container::{AttachRequest, LogsRequest, StdinRequest};

use super::hijack;
use super::logs::stream_content_type;
use crate::cluster::resolve;
use crate::error::ApiResult;
use crate::query::Query;
use crate::state::AppState;
use crate::version::ApiVersion;

/// Pairs a stdin upload with the output stream it belongs to.
pub(super) fn attach_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub async fn attach(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref());
    let target = resolve::locate(&state, &name).await?;
    let (stdin, stdout, stderr) = (q.flag("stdin"), q.flag("stdout"), q.flag("stderr"));
    let attach_id = attach_id();
    // Output first, before answering: nothing the container writes after the client's
    // attach may be lost, even if it is started right after.
    let node = state.node(&target.node);
    let (rx, info) = if q.flag("stream") {
        let request = AttachRequest {
            id: target.id.clone(),
            attach_id: attach_id.clone(),
            stdin,
            stdout,
            stderr,
            logs: q.flag("logs"),
            detach_keys: q.get("detachKeys").unwrap_or("").to_string(),
        };
        node.download::<api::ContainerAttach>(&request).await?
    } else {
        // Without `stream` dockerd replays the log (when asked) and ends.
        let request = LogsRequest {
            id: target.id.clone(),
            stdout: stdout && q.flag("logs"),
            stderr: stderr && q.flag("logs"),
            tail: "all".to_string(),
            ..Default::default()
        };
        node.download::<api::ContainerLogs>(&request).await?
    };
    let input = if stdin && q.flag("stream") {
        let request = StdinRequest {
            id: target.id.clone(),
            attach_id,
        };
        let (upload, _) = node.upload::<api::ContainerStdin>(&request).await?;
        Some(upload)
    } else {
        None
    };

    Ok(hijack::take_over(
        request,
        stream_content_type(info.tty, version),
        rx.into_stream().boxed(),
        input,
    ))
}

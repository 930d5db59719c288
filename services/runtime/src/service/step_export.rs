//! `build.export`: a path of an image as a tar, for a build's `COPY --from`. As dockerd's
//! classic builder does, the node makes a container from the image (never started), archives
//! the path as `docker cp` would, and removes the container once the tar is sent. The builder
//! names an image and a path, nothing else: it needs (and gets, in the bus permissions) no
//! container endpoint of the node.
//!
//! The stream is accepted before the work (unpacking the image may take longer than a request
//! may wait); its first message is the path's `PathStat` (JSON), the tar follows. A path that
//! does not exist fails the stream with `not_found`.

use std::sync::Arc;

use wharf_bus::api;
use wharf_bus::build::StepExport;
use wharf_bus::container::{ArchiveRequest, ContainerConfig, HostConfig};
use wharf_bus::endpoint::{Empty, StreamRequest};
use wharf_bus::stream::Sender;
use wharf_bus::BusError;

use super::{archive, create, remove, Node};

/// Serves one `build.export` request: accepts the stream and exports behind it.
pub async fn export(
    node: &Arc<Node>,
    req: StepExport,
    request: &StreamRequest<api::BuildExport>,
) -> Result<(), BusError> {
    if req.image.is_empty() {
        return Err(BusError::invalid("build.export needs an image"));
    }
    if !req.path.starts_with('/') {
        return Err(BusError::invalid(format!(
            "build.export needs an absolute path, not {:?}",
            req.path
        )));
    }
    let sender = request.accept_download(&node.client, &Empty).await?;
    let node = node.clone();
    tokio::spawn(async move {
        let config = ContainerConfig {
            // Never run, but a container needs a command.
            cmd: Some(vec!["/".to_string()]),
            entrypoint: Some(vec![String::new()]),
            ..Default::default()
        };
        let c =
            match create::create_for_step(&node, &req.image, config, HostConfig::default()).await {
                Ok(c) => c,
                Err(e) => return sender.fail(&e).await,
            };
        let request = ArchiveRequest {
            id: c.id.clone(),
            path: req.path,
            ..Default::default()
        };
        send(&node, sender, c.clone(), request).await;
        if let Err(e) = remove::remove(&node, &c, true, true).await {
            tracing::warn!(container = %c.id, "cannot remove a build export's container: {}", e.message);
        }
    });
    Ok(())
}

/// The stat, then the tar; returns once the tar is sent or the stream failed.
async fn send(
    node: &super::Node,
    mut sender: Sender,
    c: Arc<super::Container>,
    request: ArchiveRequest,
) {
    match archive::locate(node, c, request).await {
        Ok((path, stat)) => {
            // An error here means the builder went away: nothing more to send.
            if sender.send_json(&stat).await.is_ok() {
                let _ = archive::send_path(sender, path).await;
            }
        }
        Err(e) => sender.fail(&e).await,
    }
}

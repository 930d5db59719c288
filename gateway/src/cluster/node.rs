//! One runtime node as the gateway calls it: its endpoints by their api.rs declarations, each
//! answering its declared types. Errors stay [`BusError`]s, for the routes that word some of
//! them as dockerd does; `?` turns them into HTTP errors otherwise.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use wharf_bus::endpoint::{self, Download, Endpoint, NodeSubject, Upload};
use wharf_bus::error::Result;
use wharf_bus::stream::{Receiver, Sender};

/// The node named `name`, reached over `bus`.
#[derive(Clone, Copy)]
pub struct NodeClient<'a> {
    bus: &'a async_nats::Client,
    name: &'a str,
}

impl<'a> NodeClient<'a> {
    pub fn new(bus: &'a async_nats::Client, name: &'a str) -> NodeClient<'a> {
        NodeClient { bus, name }
    }

    /// Calls endpoint `E` and returns its reply; the node has `timeout` to answer.
    pub async fn call<E: Endpoint + NodeSubject>(
        &self,
        request: &E::Request,
        timeout: Duration,
    ) -> Result<E::Reply> {
        endpoint::call_node::<E>(self.bus, self.name, request, timeout).await
    }

    /// Sends a request to endpoint `E` and returns once it reached the bus, with the answer to
    /// come without a deadline (see [`endpoint::send_to_node`]).
    pub async fn send<E: Endpoint + NodeSubject>(
        &self,
        request: &E::Request,
    ) -> Result<impl Future<Output = Result<E::Reply>> + Send + 'static>
    where
        E::Reply: 'static,
    {
        endpoint::send_to_node::<E>(self.bus, self.name, request).await
    }

    /// Opens download `E`: its frames, and the accept payload that tells about them.
    pub async fn download<E: Download + NodeSubject>(
        &self,
        request: &E::Request,
    ) -> Result<(Receiver, E::Accept)> {
        endpoint::download_from_node::<E>(self.bus, self.name, request).await
    }

    /// Opens upload `E`: where its frames go, and the accept payload.
    pub async fn upload<E: Upload + NodeSubject>(
        &self,
        request: &E::Request,
    ) -> Result<(Uploading<E>, E::Accept)> {
        let (sender, accept) = endpoint::upload_to_node::<E>(self.bus, self.name, request).await?;
        Ok((Uploading::new(sender), accept))
    }
}

/// An open upload of endpoint `E`: frames go out, and it ends with `E`'s declared result.
pub struct Uploading<E: Upload> {
    sender: Sender,
    endpoint: PhantomData<fn() -> E>,
}

impl<E: Upload> Uploading<E> {
    fn new(sender: Sender) -> Uploading<E> {
        Uploading {
            sender,
            endpoint: PhantomData,
        }
    }

    /// Sends `data`, in frames, as the receiver grants room for them.
    pub async fn send(&mut self, data: Bytes) -> Result<()> {
        self.sender.send(data).await
    }

    /// Sends all of an HTTP request body in full frames (see [`crate::body::send`]) and hands
    /// the upload back with the number of bytes sent.
    pub async fn send_body(self, body: Body) -> Result<(Uploading<E>, u64)> {
        let (sender, size) = crate::body::send(self.sender, body).await?;
        Ok((Uploading::new(sender), size))
    }

    /// Ends the upload and returns the service's result.
    pub async fn finish(self) -> Result<E::Result> {
        self.sender.finish_json::<E::Result>().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use wharf_bus::api::ContainerStdin;
    use wharf_bus::container::StdinRequest;
    use wharf_bus::endpoint::{accept_upload, upload_result, Empty};
    use wharf_bus::testkit::NatsServer;

    use super::*;

    /// The stdin upload's contract: the node takes the bytes in and answers `{}` at the end of
    /// the upload, which is what the client's `finish` returns (well before a silent node
    /// would count as gone).
    #[tokio::test]
    async fn a_stdin_upload_ends_with_the_nodes_answer() {
        let nats = NatsServer::start();
        let client = nats.client().await;
        let group = "wharf.v1.runtime.node.n1";
        let mut node = wharf_bus::service::start(&client, "fake-runtime", "test", group)
            .await
            .unwrap();
        let (got_tx, got) = tokio::sync::oneshot::channel::<Vec<u8>>();
        let got_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(got_tx)));
        let bus = client.clone();
        node.serve_stream::<ContainerStdin, _, _>(group, move |incoming| {
            let (bus, got_tx) = (bus.clone(), got_tx.clone());
            async move {
                assert_eq!(incoming.request.attach_id, "a1");
                let mut rx = accept_upload(&bus, &incoming, &Empty).await?;
                tokio::spawn(async move {
                    let data = rx.collect().await.unwrap();
                    if let Some(tx) = got_tx.lock().unwrap().take() {
                        tx.send(data).unwrap();
                    }
                    rx.respond(upload_result::<ContainerStdin>(Ok(Empty)))
                        .await
                        .unwrap();
                });
                Ok(())
            }
        })
        .await
        .unwrap();

        let request = StdinRequest {
            id: "c1".into(),
            attach_id: "a1".into(),
        };
        let (mut upload, Empty) = NodeClient::new(&client, "n1")
            .upload::<ContainerStdin>(&request)
            .await
            .unwrap();
        upload.send(Bytes::from_static(b"typed")).await.unwrap();
        let Empty = tokio::time::timeout(Duration::from_secs(3), upload.finish())
            .await
            .expect("the node answers the end of the upload")
            .unwrap();
        assert_eq!(got.await.unwrap(), b"typed");
    }
}

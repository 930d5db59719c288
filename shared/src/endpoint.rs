//! Typed endpoints: each subject of the bus is declared once, with where it is addressed, the
//! request it takes and what it answers. Callers and services go through these declarations, so
//! a request of the wrong type, or a node operation sent to a queue group, does not compile.
//!
//! Four ways a subject is addressed ([`Route`]):
//! - a service's queue group, `wharf.v1.<service>.<name>`: any instance answers;
//! - one runtime node, `wharf.v1.runtime.node.<node>.<name>`;
//! - every runtime node, `wharf.v1.runtime.all.<name>`: each answers, large answers in parts
//!   (see [`crate::nodes`]);
//!
//! and three exchanges:
//! - [`Endpoint`]: one request, one JSON reply (or a [`BusError`]);
//! - [`Download`]: one request, an accept payload, then a stream of frames from the service
//!   ([`crate::stream::Receiver`] on the caller's side);
//! - [`Upload`]: one request, an accept payload, a stream of frames to the service and its
//!   result at the end ([`crate::stream::Sender`] on the caller's side).
//!
//! [`ENDPOINTS`] lists them all, as docs/architecture.md's subjects table does.
//!
//! What the declarations rule out, checked by the compiler (these examples are doctests):
//!
//! ```
//! # use wharf_bus::{api, endpoint, image::{ImageRecord, ImageResolve}};
//! async fn resolve(client: &async_nats::Client) -> wharf_bus::error::Result<ImageRecord> {
//!     let request = ImageResolve { name: "busybox".into() };
//!     endpoint::call::<api::ImageResolveName>(client, &request).await
//! }
//! ```
//!
//! A request of another type:
//!
//! ```compile_fail
//! # use wharf_bus::{api, endpoint, image::ImageTag};
//! async fn resolve(client: &async_nats::Client) {
//!     let request = ImageTag { source: "a".into(), target: "b".into() };
//!     let _ = endpoint::call::<api::ImageResolveName>(client, &request).await;
//! }
//! ```
//!
//! A reply taken as another type:
//!
//! ```compile_fail
//! # use wharf_bus::{api, endpoint, image::{ImageList, ImageResolve}};
//! async fn resolve(client: &async_nats::Client) -> wharf_bus::error::Result<ImageList> {
//!     let request = ImageResolve { name: "busybox".into() };
//!     endpoint::call::<api::ImageResolveName>(client, &request).await
//! }
//! ```
//!
//! A node's operation sent to a service's queue group:
//!
//! ```compile_fail
//! # use wharf_bus::{api, endpoint, container::InspectRequest};
//! async fn inspect(client: &async_nats::Client) {
//!     let request = InspectRequest { id: "c1".into(), size: false };
//!     let _ = endpoint::call::<api::ContainerInspect>(client, &request).await;
//! }
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::container::{all_subject, node_subject};
use crate::error::{BusError, Result};
use crate::service::{Reply, Running};
use crate::stream::{Receiver, Sender};
use crate::subjects::subject;

/// Where a subject is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A service's queue group: `<group>.<name>`.
    Service(&'static str),
    /// One runtime node: `wharf.v1.runtime.node.<node>.<name>`.
    Node,
    /// Every runtime node: `wharf.v1.runtime.all.<name>`.
    Broadcast,
}

/// What crosses the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    Reply,
    Download,
    Upload,
}

/// A subject as [`ENDPOINTS`] lists it.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    pub name: &'static str,
    pub route: Route,
    pub exchange: Exchange,
    pub request: &'static str,
    /// The reply (for [`Exchange::Reply`]) or the accept payload (streams).
    pub reply: &'static str,
    /// An upload's result.
    pub result: Option<&'static str>,
}

impl Declared {
    /// The subject, with `<node>` standing for a node's name.
    pub fn pattern(&self) -> String {
        match self.route {
            Route::Service(group) => subject(group, self.name),
            Route::Node => node_subject("<node>", self.name),
            Route::Broadcast => all_subject(self.name),
        }
    }
}

/// What every declaration has: its name, its route and its request.
pub trait Subject: 'static {
    /// The name under the group (`image.resolve`) or the node operation (`container.create`).
    const NAME: &'static str;
    const ROUTE: Route;
    type Request: Serialize + DeserializeOwned + Send + Sync;
}

/// A subject of a service's queue group.
pub trait ServiceSubject: Subject {
    fn subject() -> String {
        match Self::ROUTE {
            Route::Service(group) => subject(group, Self::NAME),
            _ => unreachable!("a service subject is routed to its group"),
        }
    }
}

/// A subject of one runtime node.
pub trait NodeSubject: Subject {
    fn subject(node: &str) -> String {
        node_subject(node, Self::NAME)
    }
}

/// A subject every runtime node answers.
pub trait BroadcastSubject: Subject {
    fn subject() -> String {
        all_subject(Self::NAME)
    }
}

/// One request, one JSON reply.
pub trait Endpoint: Subject {
    type Reply: Serialize + DeserializeOwned + Send;
}

/// One request; the service accepts with `Accept` and streams frames back.
pub trait Download: Subject {
    type Accept: Serialize + DeserializeOwned + Send;
}

/// One request; the service accepts with `Accept`, receives frames, and answers `Result`.
pub trait Upload: Subject {
    type Accept: Serialize + DeserializeOwned + Send;
    type Result: Serialize + DeserializeOwned + Send;
}

/// A payload that crosses the bus as nothing at all (an accept with no payload, a request with
/// no fields): encodes as `{}` and accepts any JSON object or an empty payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Empty;

impl Serialize for Empty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

impl<'de> serde::Deserialize<'de> for Empty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Empty, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Empty)
    }
}

/// Decodes a payload of type `T`; an empty payload reads as `{}` (streams accepted with no
/// payload).
fn decode_payload<T: DeserializeOwned>(payload: &[u8], what: &str) -> Result<T> {
    let payload = if payload.is_empty() { b"{}" } else { payload };
    serde_json::from_slice(payload)
        .map_err(|e| BusError::internal(format!("malformed {what}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Callers.

/// Calls a service endpoint with the default deadline.
pub async fn call<E: Endpoint + ServiceSubject>(
    client: &async_nats::Client,
    request: &E::Request,
) -> Result<E::Reply> {
    crate::rpc::call(client, &E::subject(), request).await
}

/// Calls a service endpoint with a deadline of its own.
pub async fn call_with_timeout<E: Endpoint + ServiceSubject>(
    client: &async_nats::Client,
    request: &E::Request,
    timeout: Duration,
) -> Result<E::Reply> {
    crate::rpc::call_with_timeout(client, &E::subject(), request, timeout).await
}

/// Calls a node's endpoint.
pub async fn call_node<E: Endpoint + NodeSubject>(
    client: &async_nats::Client,
    node: &str,
    request: &E::Request,
    timeout: Duration,
) -> Result<E::Reply> {
    crate::rpc::call_with_timeout(client, &E::subject(node), request, timeout).await
}

/// Sends a request to a node's endpoint and returns once it is on its way (flushed to the
/// server), its reply still to come and with no deadline: for a request that lasts as long as
/// its caller waits (`container.wait`), and whose caller must know it reached the node before
/// going on (the CLI starts a container only once its wait is answered with headers). Dropping
/// the returned future gives up on the reply. A node that is not there is `unavailable` at once:
/// the caller waits on that node, there is no other instance to retry on.
pub async fn send_to_node<E: Endpoint + NodeSubject>(
    client: &async_nats::Client,
    node: &str,
    request: &E::Request,
) -> Result<impl Future<Output = Result<E::Reply>> + Send + 'static>
where
    E::Reply: 'static,
{
    let subject = E::subject(node);
    let unavailable = |e: &dyn std::fmt::Display| {
        BusError::unavailable(format!("bus request to {subject} failed: {e}"))
    };
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| unavailable(&e))?;
    client
        .publish_with_reply(subject.clone(), inbox, crate::rpc::encode(request)?)
        .await
        .map_err(|e| unavailable(&e))?;
    client.flush().await.map_err(|e| unavailable(&e))?;
    Ok(async move {
        use futures::StreamExt;
        let reply = replies
            .next()
            .await
            .ok_or_else(|| BusError::unavailable("bus connection closed"))?;
        if reply.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(BusError::unavailable(format!(
                "the runtime node is not running (no responders on {subject})"
            )));
        }
        if let Some(err) = BusError::from_headers(reply.headers.as_ref()) {
            return Err(err);
        }
        serde_json::from_slice(&reply.payload)
            .map_err(|e| BusError::internal(format!("malformed reply from {subject}: {e}")))
    })
}

/// Opens a download from a node: the receiver and the accept payload.
pub async fn download_from_node<E: Download + NodeSubject>(
    client: &async_nats::Client,
    node: &str,
    request: &E::Request,
) -> Result<(Receiver, E::Accept)> {
    let subject = E::subject(node);
    let (receiver, accept) = Receiver::open_json(client, &subject, request).await?;
    Ok((receiver, decode_payload(&accept, &subject)?))
}

/// Opens a download from a service.
pub async fn download<E: Download + ServiceSubject>(
    client: &async_nats::Client,
    request: &E::Request,
) -> Result<(Receiver, E::Accept)> {
    let subject = E::subject();
    let (receiver, accept) = Receiver::open_json(client, &subject, request).await?;
    Ok((receiver, decode_payload(&accept, &subject)?))
}

/// Opens an upload to a node: the sender (whose [`Sender::finish_json`] gives `E::Result`) and
/// the accept payload.
pub async fn upload_to_node<E: Upload + NodeSubject>(
    client: &async_nats::Client,
    node: &str,
    request: &E::Request,
) -> Result<(Sender, E::Accept)> {
    let subject = E::subject(node);
    let (sender, accept) = Sender::open(client, &subject, crate::rpc::encode(request)?).await?;
    Ok((sender, decode_payload(&accept, &subject)?))
}

/// Opens an upload to a service.
pub async fn upload<E: Upload + ServiceSubject>(
    client: &async_nats::Client,
    request: &E::Request,
) -> Result<(Sender, E::Accept)> {
    let subject = E::subject();
    let (sender, accept) = Sender::open(client, &subject, crate::rpc::encode(request)?).await?;
    Ok((sender, decode_payload(&accept, &subject)?))
}

// ---------------------------------------------------------------------------------------------
// Services.

/// A request as a handler gets it: decoded, with the NATS request kept for streams.
pub struct Incoming<E: Subject> {
    pub request: E::Request,
    pub raw: Arc<async_nats::service::Request>,
}

impl<E: Subject> Incoming<E> {
    /// The request, and the stream still to accept (a download's or an upload's handler).
    pub fn split(self) -> (E::Request, StreamRequest<E>) {
        let stream = self.stream();
        (self.request, stream)
    }

    /// The stream still to accept.
    pub fn stream(&self) -> StreamRequest<E> {
        StreamRequest {
            raw: self.raw.clone(),
            endpoint: PhantomData,
        }
    }

    fn decode(raw: Arc<async_nats::service::Request>) -> Result<Incoming<E>> {
        // An empty payload is an empty object (a request with no fields).
        let payload: &[u8] = match raw.message.payload.is_empty() {
            true => b"{}",
            false => &raw.message.payload,
        };
        let request = crate::rpc::decode(payload)?;
        Ok(Incoming { request, raw })
    }
}

impl Running {
    /// Serves a request/reply endpoint under `group` (a service subject's group, or the node's
    /// own group for node subjects): `handler` gets the decoded request and answers the typed
    /// reply; a malformed request is the caller's error.
    pub async fn serve_endpoint<E, F, Fut>(&mut self, group: &str, handler: F) -> Result<()>
    where
        E: Endpoint,
        F: Fn(Incoming<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<E::Reply>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.serve(group, E::NAME, move |raw| {
            let handler = handler.clone();
            async move {
                let reply = handler(Incoming::<E>::decode(raw)?).await?;
                Reply::json(&reply)
            }
        })
        .await
    }

    /// Serves a download or upload endpoint: `handler` accepts the stream on the request
    /// itself (with [`accept_download`] or [`accept_upload`]); an error before that is the
    /// typed error reply.
    pub async fn serve_stream<E, F, Fut>(&mut self, group: &str, handler: F) -> Result<()>
    where
        E: Subject,
        F: Fn(Incoming<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.serve(group, E::NAME, move |raw| {
            let handler = handler.clone();
            async move {
                handler(Incoming::<E>::decode(raw)?).await?;
                Ok(Reply::Streamed)
            }
        })
        .await
    }
}

/// A stream request its handler has yet to accept, with the accept payload its declaration
/// names.
pub struct StreamRequest<E: Subject> {
    raw: Arc<async_nats::service::Request>,
    endpoint: PhantomData<E>,
}

impl<E: Download> StreamRequest<E> {
    /// Accepts the download: the sender of its frames.
    pub async fn accept_download(
        &self,
        client: &async_nats::Client,
        accept: &E::Accept,
    ) -> Result<Sender> {
        Sender::accept(client, &self.raw, crate::rpc::encode(accept)?).await
    }
}

impl<E: Upload> StreamRequest<E> {
    /// Accepts the upload: the receiver of its frames, which answers `E::Result` at the end
    /// ([`upload_result`]).
    pub async fn accept_upload(
        &self,
        client: &async_nats::Client,
        accept: &E::Accept,
    ) -> Result<Receiver> {
        Receiver::accept(client, &self.raw, crate::rpc::encode(accept)?).await
    }
}

/// Accepts a download with its typed accept payload (a handler that keeps its [`Incoming`]).
pub async fn accept_download<E: Download>(
    client: &async_nats::Client,
    incoming: &Incoming<E>,
    accept: &E::Accept,
) -> Result<Sender> {
    incoming.stream().accept_download(client, accept).await
}

/// Accepts an upload with its typed accept payload (a handler that keeps its [`Incoming`]).
pub async fn accept_upload<E: Upload>(
    client: &async_nats::Client,
    incoming: &Incoming<E>,
    accept: &E::Accept,
) -> Result<Receiver> {
    incoming.stream().accept_upload(client, accept).await
}

/// Encodes an upload's typed result for [`Receiver::respond`].
pub fn upload_result<E: Upload>(result: Result<E::Result>) -> Result<Bytes> {
    result.and_then(|r| crate::rpc::encode(&r))
}

// ---------------------------------------------------------------------------------------------
// Declarations.

/// Declares endpoints: a type per subject, its traits, and its row in [`ENDPOINTS`].
///
/// ```text
/// service(GROUP) Name "name": Request => Reply;          request/reply to a queue group
/// node Name "name": Request => Reply;                     request/reply to one node
/// broadcast Name "name": Request => Reply;                every node answers
/// node download Name "name": Request => Accept;           stream from a node
/// node upload Name "name": Request => Accept, Result;     stream to a node, then its result
/// service(GROUP) download / upload ...                    the same on a queue group
/// ```
macro_rules! endpoints {
    // The type, its name and route, and its route marker.
    (@subject $(#[$doc:meta])* $name:ident $sub:literal, $route:expr, $marker:ident, $req:ty) => {
        $(#[$doc])*
        pub struct $name;
        impl $crate::endpoint::Subject for $name {
            const NAME: &'static str = $sub;
            const ROUTE: $crate::endpoint::Route = $route;
            type Request = $req;
        }
        impl $crate::endpoint::$marker for $name {}
    };
    // What crosses it.
    (@exchange $name:ident, reply $rep:ty) => {
        impl $crate::endpoint::Endpoint for $name { type Reply = $rep; }
    };
    (@exchange $name:ident, download $acc:ty) => {
        impl $crate::endpoint::Download for $name { type Accept = $acc; }
    };
    (@exchange $name:ident, upload $acc:ty, $res:ty) => {
        impl $crate::endpoint::Upload for $name { type Accept = $acc; type Result = $res; }
    };
    // Its row in ENDPOINTS.
    (@row $sub:literal, $route:expr, $exchange:ident, $req:ty, $rep:ty, $res:expr) => {
        $crate::endpoint::Declared {
            name: $sub,
            route: $route,
            exchange: $crate::endpoint::Exchange::$exchange,
            request: stringify!($req),
            reply: stringify!($rep),
            result: $res,
        }
    };
    // The declaration forms.
    (@one $(#[$doc:meta])* service($group:expr) $name:ident $sub:literal: $req:ty => $rep:ty) => {
        endpoints!(@subject $(#[$doc])* $name $sub, $crate::endpoint::Route::Service($group), ServiceSubject, $req);
        endpoints!(@exchange $name, reply $rep);
    };
    (@one $(#[$doc:meta])* node $name:ident $sub:literal: $req:ty => $rep:ty) => {
        endpoints!(@subject $(#[$doc])* $name $sub, $crate::endpoint::Route::Node, NodeSubject, $req);
        endpoints!(@exchange $name, reply $rep);
    };
    (@one $(#[$doc:meta])* broadcast $name:ident $sub:literal: $req:ty => $rep:ty) => {
        endpoints!(@subject $(#[$doc])* $name $sub, $crate::endpoint::Route::Broadcast, BroadcastSubject, $req);
        endpoints!(@exchange $name, reply $rep);
    };
    (@one $(#[$doc:meta])* node download $name:ident $sub:literal: $req:ty => $acc:ty) => {
        endpoints!(@subject $(#[$doc])* $name $sub, $crate::endpoint::Route::Node, NodeSubject, $req);
        endpoints!(@exchange $name, download $acc);
    };
    (@one $(#[$doc:meta])* node upload $name:ident $sub:literal: $req:ty => $acc:ty, $res:ty) => {
        endpoints!(@subject $(#[$doc])* $name $sub, $crate::endpoint::Route::Node, NodeSubject, $req);
        endpoints!(@exchange $name, upload $acc, $res);
    };
    (@one $(#[$doc:meta])* service($group:expr) download $name:ident $sub:literal: $req:ty => $acc:ty) => {
        endpoints!(@subject $(#[$doc])* $name $sub, $crate::endpoint::Route::Service($group), ServiceSubject, $req);
        endpoints!(@exchange $name, download $acc);
    };
    (@one $(#[$doc:meta])* service($group:expr) upload $name:ident $sub:literal: $req:ty => $acc:ty, $res:ty) => {
        endpoints!(@subject $(#[$doc])* $name $sub, $crate::endpoint::Route::Service($group), ServiceSubject, $req);
        endpoints!(@exchange $name, upload $acc, $res);
    };
    (@decl service($group:expr) $name:ident $sub:literal: $req:ty => $rep:ty) => {
        endpoints!(@row $sub, $crate::endpoint::Route::Service($group), Reply, $req, $rep, None)
    };
    (@decl node $name:ident $sub:literal: $req:ty => $rep:ty) => {
        endpoints!(@row $sub, $crate::endpoint::Route::Node, Reply, $req, $rep, None)
    };
    (@decl broadcast $name:ident $sub:literal: $req:ty => $rep:ty) => {
        endpoints!(@row $sub, $crate::endpoint::Route::Broadcast, Reply, $req, $rep, None)
    };
    (@decl node download $name:ident $sub:literal: $req:ty => $acc:ty) => {
        endpoints!(@row $sub, $crate::endpoint::Route::Node, Download, $req, $acc, None)
    };
    (@decl node upload $name:ident $sub:literal: $req:ty => $acc:ty, $res:ty) => {
        endpoints!(@row $sub, $crate::endpoint::Route::Node, Upload, $req, $acc, Some(stringify!($res)))
    };
    (@decl service($group:expr) download $name:ident $sub:literal: $req:ty => $acc:ty) => {
        endpoints!(@row $sub, $crate::endpoint::Route::Service($group), Download, $req, $acc, None)
    };
    (@decl service($group:expr) upload $name:ident $sub:literal: $req:ty => $acc:ty, $res:ty) => {
        endpoints!(@row $sub, $crate::endpoint::Route::Service($group), Upload, $req, $acc, Some(stringify!($res)))
    };
    ($( $(#[$doc:meta])* [$($decl:tt)*] )*) => {
        $( endpoints!(@one $(#[$doc])* $($decl)*); )*
        /// Every declared subject, in declaration order.
        pub const ENDPOINTS: &[$crate::endpoint::Declared] = &[ $( endpoints!(@decl $($decl)*) ),* ];
    };
}
pub(crate) use endpoints;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::ContainerWait;
    use crate::container::{WaitRequest, WaitResponse};

    #[tokio::test]
    async fn a_request_sent_to_a_node_is_on_its_way_before_its_answer_comes() {
        let server = crate::testkit::NatsServer::start();
        let client = server.client().await;
        let mut requests = client
            .subscribe(ContainerWait::subject("n1"))
            .await
            .unwrap();
        client.flush().await.unwrap();
        let (seen_tx, seen) = tokio::sync::oneshot::channel();
        let (answer_tx, answer) = tokio::sync::oneshot::channel::<()>();
        let c = client.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let m = requests.next().await.unwrap();
            let r: WaitRequest = serde_json::from_slice(&m.payload).unwrap();
            seen_tx.send(r.id).unwrap();
            // The node answers whenever it likes: no deadline on this side.
            answer.await.unwrap();
            let reply = WaitResponse {
                status_code: 3,
                error: None,
            };
            c.publish(m.reply.unwrap(), crate::rpc::encode(&reply).unwrap())
                .await
                .unwrap();
        });
        let request = WaitRequest {
            id: "c1".into(),
            condition: "not-running".into(),
        };
        let pending = send_to_node::<ContainerWait>(&client, "n1", &request)
            .await
            .unwrap();
        let id = tokio::time::timeout(Duration::from_secs(5), seen)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            id, "c1",
            "the node has the request before anyone awaits the answer"
        );
        answer_tx.send(()).unwrap();
        assert_eq!(pending.await.unwrap().status_code, 3);

        let nobody = send_to_node::<ContainerWait>(&client, "n2", &request)
            .await
            .unwrap();
        let err = tokio::time::timeout(Duration::from_secs(2), nobody)
            .await
            .expect("no responders is told at once")
            .unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            "the runtime node is not running (no responders on wharf.v1.runtime.node.n2.container.wait)"
        );
    }
}

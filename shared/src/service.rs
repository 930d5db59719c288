//! Registering a service with the NATS service API and serving its endpoints.
//!
//! Handlers get the request behind an `Arc`: a streaming handler accepts the stream on it,
//! while the endpoint loop keeps it to answer with the handler's typed error.

use std::future::Future;
use std::sync::Arc;

use async_nats::service::{Service, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{BusError, Result};
use crate::subjects;

/// What a handler did with its request.
pub enum Reply {
    /// Answer with this payload.
    Payload(Bytes),
    /// The handler answered itself (it accepted a stream).
    Streamed,
}

impl Reply {
    pub fn json<T: Serialize>(value: &T) -> Result<Reply> {
        crate::rpc::encode(value).map(Reply::Payload)
    }
}

/// Health answer every service gives on its `health` endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub service: String,
    pub version: String,
    pub instance: String,
    pub status: String,
}

/// A started service: its NATS service handle and the tasks serving its endpoints.
pub struct Running {
    pub service: Service,
    pub client: async_nats::Client,
    tasks: tokio::task::JoinSet<()>,
}

/// Registers `name` with the NATS service API (queue group [`subjects::QUEUE_GROUP`]) and serves a
/// `health` endpoint under `group`.
pub async fn start(
    client: &async_nats::Client,
    name: &str,
    description: &str,
    group: &str,
) -> Result<Running> {
    let service = client
        .service_builder()
        .description(description)
        .queue_group(subjects::QUEUE_GROUP)
        .start(name, crate::VERSION)
        .await
        .map_err(|e| BusError::unavailable(format!("cannot register service {name}: {e}")))?;
    let instance = service.info().await.id;
    let mut running = Running {
        service,
        client: client.clone(),
        tasks: tokio::task::JoinSet::new(),
    };
    let health = Health {
        service: name.to_string(),
        version: crate::VERSION.to_string(),
        instance,
        status: "ok".to_string(),
    };
    running
        .serve(group, "health", move |_req| {
            let health = health.clone();
            async move { Reply::json(&health) }
        })
        .await?;
    Ok(running)
}

impl Running {
    /// Serves `endpoint` (under `group`): each request runs `handler` in its own task and a returned
    /// error goes back as a typed error reply.
    pub async fn serve<F, Fut>(&mut self, group: &str, endpoint: &str, handler: F) -> Result<()>
    where
        F: Fn(Arc<async_nats::service::Request>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Reply>> + Send + 'static,
    {
        let mut requests = self
            .service
            .group(group)
            .endpoint_builder()
            .name(endpoint.replace('.', "-"))
            .add(endpoint)
            .await
            .map_err(|e| {
                BusError::unavailable(format!("cannot add endpoint {group}.{endpoint}: {e}"))
            })?;
        let handler = Arc::new(handler);
        self.tasks.spawn(async move {
            let mut inflight = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    request = requests.next() => {
                        let Some(request) = request else { break };
                        let handler = handler.clone();
                        inflight.spawn(async move {
                            let request = Arc::new(request);
                            let outcome = handler(request.clone()).await;
                            let answer = match outcome {
                                Ok(Reply::Streamed) => return,
                                Ok(Reply::Payload(payload)) => Ok(payload),
                                Err(err) => Err(err.to_service_error()),
                            };
                            if let Err(e) = request.respond(answer).await {
                                tracing::warn!("cannot answer request: {e}");
                            }
                        });
                    }
                    Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
                }
            }
        });
        Ok(())
    }

    /// Waits until every endpoint stopped (the bus subscription ended).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

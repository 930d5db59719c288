//! Runtime nodes as the gateway sees them: a roster kept from the nodes' announcements, and
//! scatter-gather requests that every node answers.
//!
//! A node announces itself on [`ANNOUNCE_SUBJECT`] when it starts and every
//! [`ANNOUNCE_INTERVAL_SECS`] seconds; the roster forgets a node that missed three
//! announcements. A broadcast request waits for as many answers as the roster has nodes (or
//! for a deadline), so `docker ps` costs one round trip to the slowest node, not a timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::container::{all_subject, op, NodeInfo, ANNOUNCE_INTERVAL_SECS, ANNOUNCE_SUBJECT};
use crate::endpoint::{BroadcastSubject, Endpoint};
use crate::error::{BusError, Result};
use crate::rpc;

/// Header naming the answering node on every part of a multi-part answer.
pub const HDR_NODE: &str = "Wharf-Node";
/// Header on every part of a multi-part answer but its last.
pub const HDR_MORE: &str = "Wharf-More";
/// Answers larger than this go in parts (NATS refuses messages over its `max_payload`, 1 MiB
/// in Wharf's configuration): `docker ps` with thousands of containers is such an answer.
pub const PART_SIZE: usize = 512 * 1024;

/// Answers a broadcast on `reply`, in parts when `payload` is large.
pub async fn answer(
    client: &async_nats::Client,
    reply: async_nats::Subject,
    node: &str,
    payload: bytes::Bytes,
) -> std::result::Result<(), async_nats::PublishError> {
    if payload.len() <= PART_SIZE {
        return client.publish(reply, payload).await;
    }
    let mut rest = payload;
    while !rest.is_empty() {
        let part = rest.split_to(rest.len().min(PART_SIZE));
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HDR_NODE, node);
        if !rest.is_empty() {
            headers.insert(HDR_MORE, "1");
        }
        client
            .publish_with_headers(reply.clone(), headers, part)
            .await?;
    }
    Ok(())
}

/// The node with the fewest running containers; ties go to the one with the fewest
/// containers, then to the first by name, so the choice is deterministic. Where new
/// containers and builds go.
pub fn least_loaded(nodes: &[NodeInfo]) -> Option<&NodeInfo> {
    nodes
        .iter()
        .min_by(|a, b| (a.running, a.containers, &a.name).cmp(&(b.running, b.containers, &b.name)))
}

/// How long a broadcast waits for nodes that have not answered.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long discovery listens when the roster is empty.
const DISCOVERY_WINDOW: Duration = Duration::from_millis(300);

#[derive(Debug)]
struct Seen {
    info: NodeInfo,
    at: Instant,
}

/// The nodes this gateway knows of.
#[derive(Clone)]
pub struct Roster {
    client: async_nats::Client,
    nodes: Arc<Mutex<BTreeMap<String, Seen>>>,
}

impl Roster {
    /// Starts following announcements and asks every node to say who it is.
    pub async fn start(client: async_nats::Client) -> Result<Roster> {
        let roster = Roster {
            client: client.clone(),
            nodes: Arc::new(Mutex::new(BTreeMap::new())),
        };
        let mut announcements = client
            .subscribe(ANNOUNCE_SUBJECT)
            .await
            .map_err(|e| BusError::unavailable(format!("cannot follow node announcements: {e}")))?;
        let nodes = Arc::downgrade(&roster.nodes);
        tokio::spawn(async move {
            while let Some(message) = announcements.next().await {
                let Some(nodes) = nodes.upgrade() else { break };
                if let Ok(info) = rpc::decode::<NodeInfo>(&message.payload) {
                    record(&nodes, info);
                }
            }
        });
        roster.discover().await;
        Ok(roster)
    }

    /// Asks every node to answer now (used at start and when no node is known).
    pub async fn discover(&self) {
        if let Ok(answers) = gather_raw(
            &self.client,
            &all_subject(op::PING),
            b"{}".to_vec(),
            usize::MAX,
            DISCOVERY_WINDOW,
        )
        .await
        {
            for answer in answers {
                if let Ok(info) = rpc::decode::<NodeInfo>(&answer) {
                    record(&self.nodes, info);
                }
            }
        }
    }

    /// The nodes heard from recently, by name.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let horizon = Duration::from_secs(ANNOUNCE_INTERVAL_SECS * 3 + 1);
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|_, seen| seen.at.elapsed() < horizon);
        nodes.values().map(|s| s.info.clone()).collect()
    }

    /// Like [`Roster::nodes`], discovering first when none is known.
    pub async fn nodes_or_discover(&self) -> Vec<NodeInfo> {
        let nodes = self.nodes();
        if !nodes.is_empty() {
            return nodes;
        }
        self.discover().await;
        self.nodes()
    }

    /// Notes a node's fresh counts (after it answered a request).
    pub fn note(&self, info: NodeInfo) {
        record(&self.nodes, info);
    }

    /// Sends `request` to every node on broadcast `E` and returns every answer.
    pub async fn gather<E: Endpoint + BroadcastSubject>(
        &self,
        request: &E::Request,
    ) -> Result<Vec<E::Reply>> {
        let expected = self.nodes_or_discover().await.len();
        if expected == 0 {
            return Ok(Vec::new());
        }
        let payload = serde_json::to_vec(request)
            .map_err(|e| BusError::internal(format!("cannot encode request: {e}")))?;
        let answers = gather_raw(
            &self.client,
            &E::subject(),
            payload,
            expected,
            GATHER_TIMEOUT,
        )
        .await?;
        let mut decoded = Vec::with_capacity(answers.len());
        for answer in answers {
            decoded.push(rpc::decode(&answer)?);
        }
        Ok(decoded)
    }
}

fn record(nodes: &Mutex<BTreeMap<String, Seen>>, info: NodeInfo) {
    let mut nodes = nodes.lock().unwrap_or_else(|e| e.into_inner());
    nodes.insert(
        info.name.clone(),
        Seen {
            info,
            at: Instant::now(),
        },
    );
}

/// Publishes `payload` on `subject` with a private reply inbox and collects answers until
/// `expected` arrived or `timeout` passed. An answer carrying a bus error fails the gather.
pub async fn gather_raw(
    client: &async_nats::Client,
    subject: &str,
    payload: Vec<u8>,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<bytes::Bytes>> {
    // No node subscribed (all restarting): the server says so at once; retry briefly, as
    // rpc::raw_request does for a single service.
    let mut backoff = crate::rpc::NO_RESPONDERS_BACKOFF.iter();
    loop {
        match gather_once(client, subject, payload.clone(), expected, timeout).await? {
            Some(answers) => return Ok(answers),
            None => match backoff.next() {
                Some(delay) => tokio::time::sleep(*delay).await,
                None => return Ok(Vec::new()),
            },
        }
    }
}

/// One broadcast; `None` when the server reported that nobody listens on `subject`.
async fn gather_once(
    client: &async_nats::Client,
    subject: &str,
    payload: Vec<u8>,
    expected: usize,
    timeout: Duration,
) -> Result<Option<Vec<bytes::Bytes>>> {
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| BusError::unavailable(format!("cannot subscribe to {inbox}: {e}")))?;
    client
        .publish_with_reply(subject.to_string(), inbox, payload.into())
        .await
        .map_err(|e| BusError::unavailable(format!("cannot publish on {subject}: {e}")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut answers = Vec::new();
    // Parts of multi-part answers, by node (parts of one node arrive in order).
    let mut partial: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    while answers.len() < expected {
        match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(message)) => {
                if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    return Ok(None);
                }
                if let Some(err) = BusError::from_headers(message.headers.as_ref()) {
                    return Err(err);
                }
                let header = |name: &str| {
                    message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_string())
                };
                match header(HDR_NODE) {
                    Some(node) => {
                        let buffer = partial.entry(node.clone()).or_default();
                        buffer.extend_from_slice(&message.payload);
                        if header(HDR_MORE).is_none() {
                            let whole = partial.remove(&node).unwrap_or_default();
                            answers.push(bytes::Bytes::from(whole));
                        }
                    }
                    None => answers.push(message.payload),
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    Ok(Some(answers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_answers_arrive_whole_from_every_node() {
        let server = crate::testkit::NatsServer::start();
        let client = server.client().await;
        let subject = "wharf.v1.runtime.all.test.large";
        for (node, size) in [("n1", 3 * PART_SIZE + 17), ("n2", 100)] {
            let mut requests = client.subscribe(subject).await.unwrap();
            let c = client.clone();
            tokio::spawn(async move {
                while let Some(m) = requests.next().await {
                    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                    answer(&c, m.reply.unwrap(), node, body.into())
                        .await
                        .unwrap();
                }
            });
        }
        client.flush().await.unwrap();
        let mut answers = gather_raw(&client, subject, b"{}".to_vec(), 2, Duration::from_secs(5))
            .await
            .unwrap();
        answers.sort_by_key(|a| a.len());
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].len(), 100);
        assert_eq!(answers[1].len(), 3 * PART_SIZE + 17);
        assert!(answers[1]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8));
    }
}

//! Container names: reserved at create, released at remove, swapped by `docker rename`, and
//! the generated `adjective_surname` names, like dockerd's, from Wharf's own lists (sailing
//! words and engineers of ships and harbours).
//!
//! A name is unique across every node: besides the node's own table (which also holds the
//! names of creates in progress), a reservation creates the name's key in the cluster's
//! key-value bucket ([`wharf_bus::container::NAMES_BUCKET`]). Only one create of a key can win,
//! so two nodes asked for one name at once give one container and one conflict, in dockerd's
//! words. Without JetStream (a bus server started without it) names are unique per node only.

use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use rand::seq::SliceRandom;
use wharf_bus::container::{NameHolder, NAMES_BUCKET};
use wharf_bus::BusError;

use super::{Container, Node};

const LEFT: &[&str] = &[
    "agile", "amber", "ardent", "bold", "brave", "breezy", "bright", "calm", "clever", "cool",
    "crisp", "daring", "deft", "eager", "earnest", "fair", "fearless", "fleet", "gallant",
    "gentle", "glad", "hardy", "honest", "jolly", "keen", "kind", "lively", "lucid", "merry",
    "mighty", "nimble", "noble", "patient", "plucky", "proud", "quick", "quiet", "ready", "salty",
    "serene", "sharp", "silent", "sleek", "snug", "spry", "steady", "stoic", "stout", "sturdy",
    "swift", "tidy", "trusty", "upbeat", "valiant", "vivid", "wary", "wise", "zesty",
];

const RIGHT: &[&str] = &[
    "archimedes",
    "brunel",
    "chapman",
    "cousteau",
    "cunard",
    "darwin",
    "drake",
    "ericsson",
    "fitzroy",
    "froude",
    "fulton",
    "harrison",
    "heyerdahl",
    "hopper",
    "humboldt",
    "kelvin",
    "lovelace",
    "magellan",
    "maury",
    "mercator",
    "nansen",
    "parsons",
    "piccard",
    "plimsoll",
    "rankine",
    "reynolds",
    "shackleton",
    "smeaton",
    "stevin",
    "telford",
    "thomson",
    "vasa",
    "watt",
    "yamamoto",
    "zheng",
];

/// A random `adjective_surname`; `attempt` > 0 appends a digit, as dockerd does on a clash.
pub fn generate(attempt: u32) -> String {
    let mut rng = rand::thread_rng();
    let left = LEFT.choose(&mut rng).expect("non-empty");
    let right = RIGHT.choose(&mut rng).expect("non-empty");
    if attempt == 0 {
        format!("{left}_{right}")
    } else {
        format!("{left}_{right}{}", rand::random::<u8>() % 10)
    }
}

fn in_use(name: &str, other: &str) -> BusError {
    BusError::conflict(format!(
        "Conflict. The container name \"{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

/// Reserves `name` (with slash) for `id` in the node's own table.
fn reserve_local(node: &Node, name: &str, id: &str) -> Result<(), BusError> {
    let mut names = node.names.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(other) = names.get(name) {
        return Err(in_use(name, other));
    }
    names.insert(name.to_string(), id.to_string());
    Ok(())
}

/// Frees `name` (with slash) in the node's own table if `id` holds it.
fn release_local(node: &Node, name: &str, id: &str) {
    let mut names = node.names.lock().unwrap_or_else(|e| e.into_inner());
    if names.get(name).map(String::as_str) == Some(id) {
        names.remove(name);
    }
}

/// Reserves `name` (with slash) for `id`, on this node and across the cluster.
pub(super) async fn reserve_name(node: &Node, name: &str, id: &str) -> Result<(), BusError> {
    reserve_local(node, name, id)?;
    let claimed = node.cluster_names.claim(name, id, &node.options.name).await;
    if let Err(e) = claimed {
        release_local(node, name, id);
        return Err(e);
    }
    Ok(())
}

/// Frees `name` (with slash) if `id` holds it, on this node and across the cluster.
pub(super) async fn release_name(node: &Node, name: &str, id: &str) {
    release_local(node, name, id);
    node.cluster_names.release(name, id).await;
}

/// Records a restored container's name: in the node's table, and in the cluster's bucket if
/// it is missing there (the bucket was new, or the reservation was lost).
pub(super) async fn restore_name(node: &Node, name: &str, id: &str) {
    node.names
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), id.to_string());
    if let Err(e) = node.cluster_names.claim(name, id, &node.options.name).await {
        tracing::warn!(container = %id, "name {name} is held elsewhere in the cluster: {}", e.message);
    }
}

/// The cluster's table of container names: a JetStream key-value bucket, opened (and created
/// if missing) at first use.
pub struct ClusterNames {
    js: jetstream::Context,
    store: tokio::sync::Mutex<Option<kv::Store>>,
    /// When the bucket was last found unreachable: it is asked for again only after
    /// [`RETRY_AFTER`], so a node on a bus without JetStream does not pay for it at every name.
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long an unreachable bucket is not asked for again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

impl ClusterNames {
    pub fn new(client: &async_nats::Client) -> ClusterNames {
        ClusterNames {
            js: jetstream::new(client.clone()),
            store: tokio::sync::Mutex::new(None),
            failed_at: std::sync::Mutex::new(None),
        }
    }

    /// The bucket; `None` (logged) while JetStream is unreachable.
    async fn store(&self) -> Option<kv::Store> {
        let mut slot = self.store.lock().await;
        if let Some(store) = slot.as_ref() {
            return Some(store.clone());
        }
        let failed_at = *self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        if failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return None;
        }
        let opened = match self.js.get_key_value(NAMES_BUCKET).await {
            Ok(store) => Ok(store),
            // Created as `create_key_value` would (history 1), which itself needs account
            // information nats-server 2.9 answers without fields async-nats requires.
            Err(_) => match self
                .js
                .create_stream(jetstream::stream::Config {
                    name: format!("KV_{NAMES_BUCKET}"),
                    description: Some("Wharf container names: name -> container and node".into()),
                    subjects: vec![format!("$KV.{NAMES_BUCKET}.>")],
                    max_messages_per_subject: 1,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    num_replicas: 1,
                    discard: jetstream::stream::DiscardPolicy::New,
                    ..Default::default()
                })
                .await
            {
                Ok(_) => self
                    .js
                    .get_key_value(NAMES_BUCKET)
                    .await
                    .map_err(|e| e.to_string()),
                // Another node may have created it meanwhile.
                Err(e) => self
                    .js
                    .get_key_value(NAMES_BUCKET)
                    .await
                    .map_err(|_| e.to_string()),
            },
        };
        match opened {
            Ok(store) => {
                *slot = Some(store.clone());
                Some(store)
            }
            Err(e) => {
                *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now());
                tracing::warn!(
                    "cluster name table unavailable ({e}): names are unique on this node only"
                );
                None
            }
        }
    }

    /// Claims `name` (with slash) for container `id` of `node`; a name another container
    /// holds is dockerd's conflict. Claiming what `id` already holds succeeds.
    async fn claim(&self, name: &str, id: &str, node: &str) -> Result<(), BusError> {
        let Some(store) = self.store().await else {
            return Ok(());
        };
        let key = name.trim_start_matches('/');
        let holder = NameHolder {
            id: id.to_string(),
            node: node.to_string(),
        };
        let value = Bytes::from(serde_json::to_vec(&holder).map_err(BusError::from)?);
        match store.create(key, value).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let held = store
                    .get(key)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|v| serde_json::from_slice::<NameHolder>(&v).ok());
                match held {
                    Some(h) if h.id == id => Ok(()),
                    Some(h) => Err(in_use(name, &h.id)),
                    // Deleted meanwhile: try once more.
                    None => match store
                        .create(key, Bytes::from(serde_json::to_vec(&holder)?))
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(_) => Err(in_use(name, "")),
                    },
                }
            }
            Err(e) if e.kind() == kv::CreateErrorKind::InvalidKey => {
                // Names the bucket cannot hold as keys are checked by create's own rules; such
                // a name stays unique on this node.
                tracing::debug!("name {name} is not a bucket key: {e}");
                Ok(())
            }
            Err(e) => Err(BusError::unavailable(format!(
                "cannot reserve the container name {name}: {e}"
            ))),
        }
    }

    /// Frees `name` (with slash) if container `id` holds it.
    async fn release(&self, name: &str, id: &str) {
        let Some(store) = self.store().await else {
            return;
        };
        let key = name.trim_start_matches('/');
        let Ok(Some(entry)) = store.entry(key).await else {
            return;
        };
        let holder = serde_json::from_slice::<NameHolder>(&entry.value).ok();
        if holder.is_some_and(|h| h.id == id) {
            // Only the entry read above: a name taken again meanwhile stays taken.
            if let Err(e) = store
                .delete_expect_revision(key, Some(entry.revision))
                .await
            {
                tracing::warn!(container = %id, "cannot free the name {name} in the cluster: {e}");
            }
        }
    }
}

/// `docker rename`.
pub async fn rename(node: &Arc<Node>, c: &Arc<Container>, new: &str) -> Result<(), BusError> {
    let new = format!("/{}", new.trim_start_matches('/'));
    let old = c.with(|r| r.name.clone());
    if new == old {
        return Err(BusError::invalid(
            "Renaming a container with the same name as its current name",
        ));
    }
    reserve_name(node, &new, &c.id).await?;
    if let Err(e) = c.update(|r| r.name = new.clone()) {
        release_name(node, &new, &c.id).await;
        return Err(e);
    }
    release_name(node, &old, &c.id).await;
    node.publish_event(&c.snapshot(), "rename", &[("oldName", old.clone())])
        .await;
    Ok(())
}

//! The build cache index, shared by every builder: a JetStream key-value bucket from a step's
//! cache key to the image the step made.
//!
//! A step's key is what dockerd's classic builder compares when it looks for a cached child of
//! the parent image: the parent's ID and the step's container config (the command with its
//! `#(nop)` comment or `|N` build-arg prefix, the environment, labels, ports, ...), minus the
//! `Image` and `Hostname` fields dockerd leaves out. COPY and ADD carry the checksum of their
//! sources inside that command, so changed files change the key.

use async_nats::jetstream;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wharf_bus::container::ContainerConfig;
use wharf_bus::BusError;

/// The bucket's name (the bus permissions give builders this bucket only).
pub const BUCKET: &str = wharf_bus::build::CACHE_BUCKET;

/// What the index keeps per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The image the step produced.
    pub image: String,
    /// The parent it was made from (for `docker system df` and prune).
    pub parent: String,
    /// The step's `created_by`, for listings.
    pub description: String,
    /// Unpacked size of the layer the step added (0 for a config-only step).
    #[serde(default)]
    pub size: u64,
    /// When it was stored (RFC 3339).
    pub created: String,
}

/// The cache key of a step on `parent` with `config`.
pub fn key(parent: &str, config: &ContainerConfig) -> String {
    let mut probe = config.clone();
    probe.image = String::new();
    probe.hostname = String::new();
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(&probe).unwrap_or_default());
    hex::encode(h.finalize())
}

/// Creates the bucket's stream as `create_key_value` would (history 1, no size limits).
/// `create_key_value` itself first reads the account's JetStream info, whose reply from
/// nats-server 2.9 lacks fields async-nats requires, so it fails there; the stream is the
/// same either way.
async fn create_bucket(js: &jetstream::Context) -> Result<(), String> {
    js.create_stream(jetstream::stream::Config {
        name: format!("KV_{BUCKET}"),
        description: Some("Wharf build cache: step key -> image".to_string()),
        subjects: vec![format!("$KV.{BUCKET}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        num_replicas: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The shared index. Without JetStream (a server started without `-js`), every probe misses and
/// nothing is stored: builds still work, uncached. The bucket is opened at the first use that
/// finds it reachable (JetStream may not be ready when a builder starts with its server).
#[derive(Clone)]
pub struct Cache {
    js: jetstream::Context,
    store: std::sync::Arc<tokio::sync::Mutex<Option<kv::Store>>>,
}

impl Cache {
    pub async fn open(client: &async_nats::Client) -> Cache {
        let cache = Cache {
            js: jetstream::new(client.clone()),
            store: Default::default(),
        };
        cache.store().await;
        cache
    }

    /// The bucket, created if missing; `None` (logged) while JetStream is unreachable.
    async fn store(&self) -> Option<kv::Store> {
        let mut slot = self.store.lock().await;
        if let Some(store) = slot.as_ref() {
            return Some(store.clone());
        }
        let store = match self.js.get_key_value(BUCKET).await {
            Ok(store) => Ok(store),
            Err(_) => match create_bucket(&self.js).await {
                Ok(()) => self
                    .js
                    .get_key_value(BUCKET)
                    .await
                    .map_err(|e| e.to_string()),
                // Another builder may have created it meanwhile.
                Err(e) => self.js.get_key_value(BUCKET).await.map_err(|_| e),
            },
        };
        match store {
            Ok(store) => {
                *slot = Some(store.clone());
                Some(store)
            }
            Err(e) => {
                tracing::warn!("build cache unavailable ({e}): this build runs uncached");
                None
            }
        }
    }

    pub async fn get(&self, key: &str) -> Option<Entry> {
        let store = self.store().await?;
        let value = store.get(key).await.ok()??;
        serde_json::from_slice(&value).ok()
    }

    pub async fn put(&self, key: &str, entry: &Entry) -> Result<(), BusError> {
        let Some(store) = self.store().await else {
            return Ok(());
        };
        let value = serde_json::to_vec(entry).map_err(|e| BusError::internal(e.to_string()))?;
        store
            .put(key, Bytes::from(value))
            .await
            .map(|_| ())
            .map_err(|e| BusError::unavailable(format!("cannot store the build cache entry: {e}")))
    }

    /// Every entry, by key (none while JetStream is unreachable: nothing was stored). An
    /// entry removed meanwhile, or unreadable as an [`Entry`], is left out.
    pub async fn entries(&self) -> Result<Vec<(String, Entry)>, BusError> {
        let Some(store) = self.store().await else {
            return Ok(Vec::new());
        };
        let unavailable = |e: &dyn std::fmt::Display| {
            BusError::unavailable(format!("cannot read the build cache: {e}"))
        };
        let keys: Vec<String> = store
            .keys()
            .await
            .map_err(|e| unavailable(&e))?
            .try_collect()
            .await
            .map_err(|e| unavailable(&e))?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let value = store.get(&key).await.map_err(|e| unavailable(&e))?;
            match value.map(|v| serde_json::from_slice::<Entry>(&v)) {
                Some(Ok(entry)) => out.push((key, entry)),
                Some(Err(e)) => tracing::warn!("build cache entry {key} is unreadable: {e}"),
                None => {}
            }
        }
        Ok(out)
    }

    /// Removes the entry under `key` (purged: the bucket keeps no history of it).
    pub async fn remove(&self, key: &str) -> Result<(), BusError> {
        let Some(store) = self.store().await else {
            return Ok(());
        };
        store.purge(key).await.map_err(|e| {
            BusError::unavailable(format!("cannot remove the build cache entry {key}: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_image_and_hostname_but_not_the_command() {
        let mut a = ContainerConfig {
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()]),
            ..Default::default()
        };
        let k = key("sha256:p", &a);
        a.image = "sha256:x".into();
        a.hostname = "h".into();
        assert_eq!(key("sha256:p", &a), k);
        assert_ne!(key("sha256:q", &a), k);
        a.cmd = Some(vec!["/bin/sh".into(), "-c".into(), "echo ho".into()]);
        assert_ne!(key("sha256:p", &a), k);
    }
}

//! Events: every state change is published on `wharf.v1.events.<type>.<action>`, in the shape
//! of Docker's `events.Message`, so `docker events` is a view of the bus.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::subjects;

/// The JetStream stream recording every event (`docker events --since` replays it); the gateway
/// creates it (`gateway/src/cluster/events.rs`) and alone may read it.
pub const STREAM: &str = "WHARF_EVENTS";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    /// An event stamped now, with `name` as the actor's `name` attribute when given.
    pub fn now(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or(0);
        Event {
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
            scope: "local".to_string(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
        }
    }

    pub fn subject(&self) -> String {
        subjects::event(&self.kind, &self.action)
    }
}

/// Publishes `event`; a lost event is logged, never fatal to the change it reports.
pub async fn publish(client: &async_nats::Client, event: &Event) {
    let payload = match serde_json::to_vec(event) {
        Ok(p) => p,
        Err(_) => return,
    };
    if let Err(e) = client.publish(event.subject(), payload.into()).await {
        tracing::warn!("cannot publish event {}: {e}", event.subject());
    }
}

/// The image event attributes dockerd sets: `name` is the familiar reference.
pub fn image_attributes(name: &str) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("name".to_string(), name.to_string());
    a
}

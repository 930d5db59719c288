//! Container names: the node's table of names in use (reserved at create, released at remove,
//! swapped by `docker rename`), and the generated `adjective_surname` names, like dockerd's,
//! from Wharf's own lists (sailing words and engineers of ships and harbours).

use std::sync::Arc;

use rand::seq::SliceRandom;
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

/// Reserves `name` (with slash) for `id` on this node.
pub(super) fn reserve_name(node: &Node, name: &str, id: &str) -> Result<(), BusError> {
    let mut names = node.names.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(other) = names.get(name) {
        return Err(BusError::conflict(format!(
            "Conflict. The container name \"{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
        )));
    }
    names.insert(name.to_string(), id.to_string());
    Ok(())
}

/// Frees `name` (with slash) if `id` holds it.
pub(super) fn release_name(node: &Node, name: &str, id: &str) {
    let mut names = node.names.lock().unwrap_or_else(|e| e.into_inner());
    if names.get(name).map(String::as_str) == Some(id) {
        names.remove(name);
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
    reserve_name(node, &new, &c.id)?;
    c.update(|r| r.name = new.clone())?;
    release_name(node, &old, &c.id);
    node.publish_event(&c.snapshot(), "rename", &[("oldName", old.clone())])
        .await;
    Ok(())
}

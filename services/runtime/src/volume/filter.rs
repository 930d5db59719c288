//! Filters of `docker volume ls` and `docker volume prune`, as dockerd reads them.

use crate::volume::{Result, Volume, VolumeError};

/// Parsed filters; each key's values are alternatives (any may match), keys must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeFilters {
    pub dangling: Option<bool>,
    /// Substrings of the name (dockerd matches `name=` as a substring).
    pub names: Vec<String>,
    pub drivers: Vec<String>,
    /// `label=key` or `label=key=value`: every one must match.
    pub labels: Vec<(String, Option<String>)>,
    /// `label!=key` or `label!=key=value` (prune): none may match.
    pub not_labels: Vec<(String, Option<String>)>,
    /// `all=true` (prune): named volumes too, not only anonymous ones.
    pub all: bool,
}

const LIST_KEYS: &[&str] = &["dangling", "name", "driver", "label"];
const PRUNE_KEYS: &[&str] = &["label", "label!", "all"];

impl VolumeFilters {
    /// Filters of `volume ls` from `(key, value)` pairs.
    pub fn for_list<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        Self::parse(pairs, LIST_KEYS)
    }

    /// Filters of `volume prune` from `(key, value)` pairs.
    pub fn for_prune<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        Self::parse(pairs, PRUNE_KEYS)
    }

    fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        allowed: &[&str],
    ) -> Result<Self> {
        let mut filters = VolumeFilters::default();
        for (key, value) in pairs {
            if !allowed.contains(&key) {
                return Err(VolumeError::InvalidParameter(format!(
                    "invalid filter '{key}'"
                )));
            }
            match key {
                "dangling" => filters.dangling = Some(parse_bool(key, value)?),
                "all" => filters.all = parse_bool(key, value)?,
                "name" => filters.names.push(value.to_string()),
                "driver" => filters.drivers.push(value.to_string()),
                "label" => filters.labels.push(split_label(value)),
                _ => filters.not_labels.push(split_label(value)),
            }
        }
        Ok(filters)
    }

    /// Whether `volume` passes every filter but `all` (which only prune interprets).
    pub fn matches(&self, volume: &Volume) -> bool {
        if self.dangling.is_some_and(|d| d != volume.is_dangling()) {
            return false;
        }
        if !self.names.is_empty() && !self.names.iter().any(|n| volume.name.contains(n.as_str())) {
            return false;
        }
        if !self.drivers.is_empty() && !self.drivers.contains(&volume.driver) {
            return false;
        }
        let has = |(key, value): &(String, Option<String>)| match volume.labels.get(key) {
            None => false,
            Some(v) => value.as_ref().is_none_or(|want| want == v),
        };
        self.labels.iter().all(has) && !self.not_labels.iter().any(has)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(VolumeError::InvalidParameter(format!(
            "invalid filter '{key}={value}'"
        ))),
    }
}

fn split_label(value: &str) -> (String, Option<String>) {
    match value.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (value.to_string(), None),
    }
}

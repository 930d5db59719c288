//! `docker container prune` on this node: the stopped containers its filters (`label`,
//! `label!`, `until`) keep, removed, with the space their files took.

use std::sync::Arc;

use wharf_bus::container::{ContainerPruneResponse, ListRequest};
use wharf_bus::BusError;

use super::record::Status;
use super::{remove, Node};

/// `docker container prune` on this node: every stopped container passing the filters.
pub async fn prune(
    node: &Arc<Node>,
    req: &ListRequest,
) -> Result<ContainerPruneResponse, BusError> {
    for key in req.filters.keys() {
        if !matches!(key.as_str(), "label" | "label!" | "until") {
            return Err(BusError::invalid(format!("invalid filter '{key}'")));
        }
    }
    // A value that is no time is refused, as dockerd does, rather than ignored (which pruned
    // every stopped container).
    let until = match req.filters.get("until").and_then(|v| v.first()) {
        Some(v) => Some(
            parse_until(v)
                .ok_or_else(|| BusError::invalid(format!("failed to parse value {v} as a time")))?,
        ),
        None => None,
    };
    let mut report = ContainerPruneResponse::default();
    for c in node.all() {
        let rec = c.snapshot();
        if !matches!(
            rec.state.status,
            Status::Exited | Status::Created | Status::Dead
        ) {
            continue;
        }
        let labels = &rec.config.labels;
        let label_ok = |spec: &str| match spec.split_once('=') {
            Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
            None => labels.contains_key(spec),
        };
        if let Some(want) = req.filters.get("label") {
            if !want.iter().all(|s| label_ok(s)) {
                continue;
            }
        }
        if let Some(refuse) = req.filters.get("label!") {
            if refuse.iter().any(|s| label_ok(s)) {
                continue;
            }
        }
        if until.is_some_and(|u| rec.created_nanos >= u) {
            continue;
        }
        let upper = c.paths.upper();
        let size = tokio::task::spawn_blocking(move || super::views::du(&upper))
            .await
            .unwrap_or(0);
        if remove::remove(node, &c, false, false).await.is_ok() {
            report.containers_deleted.push(rec.id.clone());
            report.space_reclaimed += size;
        }
    }
    Ok(report)
}

/// `until=` as a Unix time (with fraction), an RFC 3339 time or a duration like `10m`.
fn parse_until(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<f64>() {
        return Some((secs * 1e9) as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return t.timestamp_nanos_opt();
    }
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    // Checked: `99999999999999h` overflowed and panicked the request's task.
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }?;
    chrono::Utc::now()
        .timestamp_nanos_opt()?
        .checked_sub(secs.checked_mul(1_000_000_000)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found next to deploy/fuzz-api.sh's overflow in `update`: a prune's `until` of
    /// `99999999999999h` overflowed and panicked the task (no answer), and one that was no time
    /// at all was ignored, so the prune took every stopped container.
    #[test]
    fn until_values_never_overflow_and_bad_ones_are_none() {
        assert_eq!(parse_until("99999999999999h"), None);
        assert_eq!(parse_until("9223372036854775807s"), None);
        assert_eq!(parse_until("abc"), None);
        assert_eq!(parse_until("10x"), None);
        let ten_minutes_ago = parse_until("10m").unwrap();
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        assert!((now - ten_minutes_ago - 600_000_000_000).abs() < 5_000_000_000);
        assert_eq!(parse_until("1.5"), Some(1_500_000_000));
    }
}

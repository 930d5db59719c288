//! Docker's health checks: the image's or `--health-*` command run as an exec every interval;
//! `State.Health` records the last five results and the verdict (`starting` until the first
//! success or until failures outlast the start period, `unhealthy` after `Retries` failures in a
//! row), and each change of verdict is a `health_status` event.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::logs::format_go_rfc3339_nano;

use super::record::{Health, HealthResult};
use super::{Container, Node};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;
const KEEP_RESULTS: usize = 5;

fn nanos(v: i64, default: Duration) -> Duration {
    if v > 0 {
        Duration::from_nanos(v as u64)
    } else {
        default
    }
}

/// The command a health check runs, or `None` when the container has no (or a disabled) check.
fn command(test: &[String]) -> Option<Vec<String>> {
    match test.first().map(String::as_str) {
        Some("CMD") if test.len() > 1 => Some(test[1..].to_vec()),
        Some("CMD-SHELL") if test.len() > 1 => Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            test[1..].join(" "),
        ]),
        _ => None,
    }
}

/// Starts the health checks of a container that just started (run `exits` times before).
pub fn start(node: &Arc<Node>, c: &Arc<Container>, exits: u64) {
    let Some(check) = c.with(|r| r.config.healthcheck.clone()) else {
        return;
    };
    let Some(cmd) = command(check.test.as_deref().unwrap_or_default()) else {
        return;
    };
    let interval = nanos(check.interval, DEFAULT_INTERVAL);
    let timeout = nanos(check.timeout, DEFAULT_TIMEOUT);
    let start_period = nanos(check.start_period, Duration::ZERO);
    let retries = if check.retries > 0 {
        check.retries as i64
    } else {
        DEFAULT_RETRIES
    };
    c.update_logged(|r| {
        r.state.health = Some(Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        })
    });
    let node = node.clone();
    let c = c.clone();
    tokio::spawn(async move {
        let began = std::time::Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            let phase = c.phase.borrow().clone();
            if phase.exits != exits || !phase.running || phase.removed {
                return;
            }
            if !c.status().is_live() {
                continue;
            }
            let start = format_go_rfc3339_nano(Utc::now());
            let outcome = super::exec::run_captured(&node, &c, cmd.clone(), timeout).await;
            let (code, output) = match outcome {
                Ok((Some(code), output)) => (code, output),
                Ok((None, _)) => (
                    -1,
                    format!("Health check exceeded timeout ({}s)", timeout.as_secs()),
                ),
                Err(e) => {
                    if c.phase.borrow().exits != exits {
                        return;
                    }
                    (-1, e.message)
                }
            };
            let result = HealthResult {
                start,
                end: format_go_rfc3339_nano(Utc::now()),
                exit_code: code,
                output,
            };
            let in_start_period = began.elapsed() < start_period;
            let mut changed = None;
            c.update_logged(|r| {
                let health = r.state.health.get_or_insert_with(Health::default);
                health.log.push(result);
                if health.log.len() > KEEP_RESULTS {
                    health.log.remove(0);
                }
                let before = health.status.clone();
                if code == 0 {
                    health.failing_streak = 0;
                    health.status = "healthy".into();
                } else if !(in_start_period && health.status == "starting") {
                    health.failing_streak += 1;
                    if health.failing_streak >= retries {
                        health.status = "unhealthy".into();
                    }
                }
                if health.status != before {
                    changed = Some(health.status.clone());
                }
            });
            if let Some(status) = changed {
                let rec = c.snapshot();
                node.publish_event(&rec, &format!("health_status: {status}"), &[])
                    .await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_forms_become_commands() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command(&s(&["CMD", "true"])), Some(s(&["true"])));
        assert_eq!(
            command(&s(&["CMD-SHELL", "wget -q localhost || exit 1"])),
            Some(s(&["/bin/sh", "-c", "wget -q localhost || exit 1"]))
        );
        assert_eq!(command(&s(&["NONE"])), None);
        assert_eq!(command(&[]), None);
    }
}

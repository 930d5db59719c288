//! `docker top`: the host's `ps` output, kept to the rows of the container's processes as
//! dockerd does.

use std::sync::Arc;

use serde_json::{json, Value};
use wharf_bus::container::TopRequest;
use wharf_bus::BusError;

use crate::cgroups;

use super::{internal, Container, Node};

/// `GET /containers/{id}/top`: the host's `ps` rows of the container's processes.
pub async fn top(node: &Arc<Node>, c: &Arc<Container>, req: TopRequest) -> Result<Value, BusError> {
    if !c.status().is_live() {
        return Err(BusError::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    let Some(layout) = node.cgroups.clone() else {
        return Err(BusError::unavailable(
            "cgroups are not available on this node",
        ));
    };
    let cgroup = c.with(|r| r.cgroup_path());
    let args = if req.ps_args.is_empty() {
        "-ef".to_string()
    } else {
        req.ps_args.clone()
    };
    tokio::task::spawn_blocking(move || -> Result<Value, BusError> {
        let pids: Vec<i32> = cgroups::open(&layout, &cgroup)
            .and_then(|g| g.pids())
            .map_err(|e| internal("cgroup", e))?
            .into_iter()
            .map(|p| p.as_raw())
            .collect();
        // Arguments `ps` refuses, or whose output has no PID column, are the client's: 400
        // (dockerd answers 500 with the same texts).
        if args.contains('\0') {
            return Err(BusError::invalid("ps: arguments contain a NUL byte"));
        }
        let out = std::process::Command::new("ps")
            .args(args.split_whitespace())
            .output()
            .map_err(|e| internal("cannot run ps", e))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(BusError::invalid(format!(
                "ps: {}",
                stderr.lines().next().unwrap_or_default().trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    })
    .await
    .map_err(|e| internal("top", e))?
}

/// dockerd's parsing of `ps` output: the PID column found in the header, rows kept when their
/// PID belongs to the container, the last column taking the rest of the line.
fn parse_ps(output: &str, pids: &[i32]) -> Result<Value, BusError> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<&str> = header.split_whitespace().collect();
    let pid_index = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or_else(|| BusError::invalid("Couldn't find PID field in ps output"))?;
    let mut processes = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_index].parse::<i32>() else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        let mut row: Vec<String> = fields[..titles.len() - 1]
            .iter()
            .map(|s| s.to_string())
            .collect();
        row.push(fields[titles.len() - 1..].join(" "));
        processes.push(row);
    }
    Ok(json!({"Titles": titles, "Processes": processes}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_of_the_container_only() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init splash\nroot 4242 4200 0 10:01 ? 00:00:00 sleep 300\n";
        let v = parse_ps(out, &[4242]).unwrap();
        assert_eq!(v["Titles"][1], "PID");
        assert_eq!(v["Processes"].as_array().unwrap().len(), 1);
        assert_eq!(v["Processes"][0][7], "sleep 300");
    }

    /// Found by deploy/fuzz-api.sh (`GET /containers/{id}/top?ps_args=-e -o pid=`): output
    /// without a PID column comes from the client's arguments, a 400 rather than a 500.
    #[test]
    fn ps_output_without_a_pid_column_is_the_clients_error() {
        let err = parse_ps("  1\n  2\n", &[1]).unwrap_err();
        assert_eq!(err.kind, wharf_bus::ErrorKind::Invalid);
        assert_eq!(err.message, "Couldn't find PID field in ps output");
    }
}

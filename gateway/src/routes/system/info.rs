//! `/info`: dockerd's `docker info` document, with counts from the services (zero for a
//! service that is down) and the protections every runtime node enforces.

use axum::extract::State;
use axum::Extension;
use serde_json::{json, Value};
use wharf_bus::api;
use wharf_bus::endpoint::{self, Empty};
use wharf_bus::image::ImageList;

use super::ping::kernel_version;
use crate::cluster;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::version::ApiVersion;

fn os_pretty_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".to_string())
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn cgroup_version() -> &'static str {
    // cgroup2 at the root means a unified hierarchy; anything else (v1 or hybrid) is v1 to Docker.
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => "2",
        _ => "1",
    }
}

pub async fn info(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
) -> ApiResult<axum::Json<Value>> {
    // Counts come from the services; a service that is down leaves its count at zero rather than
    // failing `docker info`.
    let every_image = ImageList {
        all: true,
        ..Default::default()
    };
    let images = endpoint::call::<api::ImageListAll>(&state.bus, &every_image)
        .await
        .unwrap_or_default();
    let registry = endpoint::call::<api::RegistryInfo>(&state.bus, &Empty)
        .await
        .unwrap_or_default();
    let mut insecure_cidrs = vec!["::1/128".to_string(), "127.0.0.0/8".to_string()];
    let mut index_configs = serde_json::Map::new();
    index_configs.insert(
        "docker.io".to_string(),
        json!({"Name": "docker.io", "Mirrors": registry.mirrors, "Secure": true, "Official": true}),
    );
    for r in &registry.insecure_registries {
        if r.contains('/') {
            insecure_cidrs.push(r.clone());
        } else {
            index_configs.insert(
                r.clone(),
                json!({"Name": r, "Mirrors": [], "Secure": false, "Official": false}),
            );
        }
    }
    // Container counts are the sums of the runtime nodes' last announcements.
    let nodes = cluster::nodes::connected_or_none(&state).await;
    let counts = cluster::nodes::counts(&nodes);
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut info = json!({
        "ID": state.engine_id,
        "Containers": counts.containers,
        "ContainersRunning": counts.running,
        "ContainersPaused": counts.paused,
        "ContainersStopped": counts.stopped,
        "Images": images.len(),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": null,
            "Log": ["json-file"]
        },
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "BridgeNfIptables": false,
        "BridgeNfIp6tables": false,
        "Debug": false,
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "OomKillDisable": false,
        "NGoroutines": 0,
        "SystemTime": now,
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": os_pretty_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": insecure_cidrs,
            "IndexConfigs": index_configs,
            "Mirrors": registry.mirrors
        },
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total(),
        "GenericResources": null,
        "DockerRootDir": state.options.data_root.display().to_string(),
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": wharf_bus::VERSION,
        "Runtimes": {"wharf": {"path": "wharf-runtime"}},
        "DefaultRuntime": "wharf",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null
        },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": cluster::nodes::security_options(&nodes),
        "CDISpecDirs": [],
        "Warnings": []
    });
    for_version(&mut info, version);
    Ok(axum::Json(info))
}

/// What `/info` shows depends on the API version, as in dockerd 28: the bridge-nf flags are
/// gone from 1.50, the non-distributable registry settings from 1.47 (`null` before), and the
/// firewall backend (Wharf's own nftables tables) is shown from 1.49.
fn for_version(info: &mut Value, version: ApiVersion) {
    let Some(map) = info.as_object_mut() else {
        return;
    };
    if version.at_least(1, 50) {
        map.remove("BridgeNfIptables");
        map.remove("BridgeNfIp6tables");
    }
    if let Some(registry) = map.get_mut("RegistryConfig").and_then(Value::as_object_mut) {
        for key in [
            "AllowNondistributableArtifactsCIDRs",
            "AllowNondistributableArtifactsHostnames",
        ] {
            match version.at_least(1, 47) {
                true => registry.remove(key),
                false => registry.insert(key.into(), Value::Null),
            };
        }
    }
    if version.at_least(1, 49) {
        map.insert("FirewallBackend".into(), json!({"Driver": "nftables"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_and_go_with_the_api_version_as_in_dockerd_28() {
        let base = json!({
            "BridgeNfIptables": false,
            "BridgeNfIp6tables": false,
            "RegistryConfig": {
                "AllowNondistributableArtifactsCIDRs": [],
                "AllowNondistributableArtifactsHostnames": [],
                "Mirrors": []
            }
        });
        let at = |major, minor| {
            let mut v = base.clone();
            for_version(&mut v, ApiVersion(major, minor));
            v
        };
        let old = at(1, 41);
        assert_eq!(old["BridgeNfIptables"], false);
        assert_eq!(
            old["RegistryConfig"]["AllowNondistributableArtifactsCIDRs"],
            Value::Null
        );
        assert!(old.get("FirewallBackend").is_none());
        let v = at(1, 49);
        assert!(v["RegistryConfig"]
            .get("AllowNondistributableArtifactsHostnames")
            .is_none());
        assert_eq!(v["FirewallBackend"]["Driver"], "nftables");
        assert_eq!(v["BridgeNfIptables"], false);
        let new = at(1, 50);
        assert!(new.get("BridgeNfIptables").is_none() && new.get("BridgeNfIp6tables").is_none());
    }
}

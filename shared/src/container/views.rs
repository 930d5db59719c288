//! Containers as Docker's API shows them, rendered once by the node that holds them and passed
//! through by the gateway: a `docker ps` row ([`ContainerSummary`]), `docker inspect`
//! ([`InspectResponse`]) and an exec's inspect ([`ExecInspectResponse`]). Field names and order
//! are Docker's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ContainerConfig, HostConfig, PortBinding};

/// One `docker ps` row (`GET /containers/json`), serialized as Docker's JSON (field names and
/// order as the runtime always rendered them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSummary {
    pub id: String,
    /// The name with its slash (`/web`).
    pub names: Vec<String>,
    /// The image as the create named it.
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    pub command: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix nanoseconds, for a stable order of containers created within one second; never
    /// part of Docker's JSON (it crosses the bus beside the entry, see [`ListResponse`]).
    #[serde(skip)]
    pub created_nanos: i64,
    pub ports: Vec<PortSummary>,
    pub labels: BTreeMap<String, String>,
    /// `running`, `exited`, ...
    pub state: String,
    /// `Up 3 seconds`, `Exited (0) 2 minutes ago`, ...
    pub status: String,
    pub host_config: SummaryHostConfig,
    pub network_settings: SummaryNetworkSettings,
    pub mounts: Vec<MountPoint>,
    /// `size=1`: bytes of the writable layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<u64>,
    /// `size=1`: the writable layer and the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<u64>,
}

/// A port of a `docker ps` row: published (with `IP` and `PublicPort`) or only exposed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortSummary {
    #[serde(rename = "IP", default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub private_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    /// `tcp`, `udp`, `sctp`.
    #[serde(rename = "Type")]
    pub protocol: String,
}

/// `HostConfig` of a `docker ps` row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryHostConfig {
    pub network_mode: String,
    /// API 1.46 and later.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `NetworkSettings` of a `docker ps` row: the endpoints without their `Aliases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryNetworkSettings {
    pub networks: BTreeMap<String, EndpointView>,
}

/// Docker's `EndpointSettings` as inspect and `docker ps` show a container's network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    #[serde(rename = "IPAMConfig", default)]
    pub ipam_config: Option<Value>,
    #[serde(rename = "Links", default)]
    pub links: Option<Vec<String>>,
    /// Inspect shows `Aliases` (`Some`, possibly `null`); `docker ps` leaves the key out.
    #[serde(
        rename = "Aliases",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub aliases: Option<Option<Vec<String>>>,
    #[serde(rename = "NetworkID", default)]
    pub network_id: String,
    #[serde(rename = "EndpointID", default)]
    pub endpoint_id: String,
    #[serde(rename = "Gateway", default)]
    pub gateway: String,
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen", default)]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway", default)]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address", default)]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen", default)]
    pub global_ipv6_prefix_len: u8,
    #[serde(rename = "MacAddress", default)]
    pub mac_address: String,
    #[serde(rename = "DriverOpts", default)]
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// API 1.48: which endpoint gives the default route (highest first).
    #[serde(rename = "GwPriority", default)]
    pub gw_priority: i64,
    /// API 1.44: the names the embedded DNS server answers for it (user networks only).
    #[serde(rename = "DNSNames", default)]
    pub dns_names: Option<Vec<String>>,
}

/// A key that is there, even as `null` (`Some(None)`); a missing one stays `None` by `default`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Docker's `MountPoint`: one entry of `Mounts` in inspect and `docker ps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    /// `bind`, `volume`, `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// A volume's name (volumes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    /// A volume's driver (volumes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
}

/// `docker inspect` of a container (`GET /containers/{id}/json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InspectResponse {
    pub id: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: ContainerState,
    /// The image's ID (`sha256:...`).
    pub image: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    /// Empty until the container first starts.
    pub log_path: String,
    /// With its slash (`/web`).
    pub name: String,
    pub restart_count: i64,
    pub driver: String,
    pub platform: String,
    pub mount_label: String,
    pub process_label: String,
    pub app_armor_profile: String,
    #[serde(rename = "ExecIDs")]
    pub exec_ids: Option<Vec<String>>,
    pub host_config: HostConfig,
    pub graph_driver: GraphDriver,
    pub mounts: Vec<MountPoint>,
    pub config: ContainerConfig,
    pub network_settings: NetworkSettings,
    /// `size=1`: bytes of the writable layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<u64>,
    /// `size=1`: the writable layer and the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<u64>,
}

/// `State` of a container's inspect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited`, `dead`.
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// Only for a container with a health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthState>,
}

/// `State.Health`: the last results of the container's health check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthState {
    /// `starting`, `healthy`, `unhealthy`.
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthLogEntry>,
}

/// One run of a health check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthLogEntry {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// `GraphDriver`: the overlay's directories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GraphDriver {
    pub data: OverlayDirs,
    pub name: String,
}

/// `GraphDriver.Data` of overlay2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct OverlayDirs {
    /// The image's layers, top first, joined by `:`.
    pub lower_dir: String,
    pub merged_dir: String,
    pub upper_dir: String,
    pub work_dir: String,
}

/// `NetworkSettings` of a container's inspect: the legacy top-level fields of its first
/// network, its ports and its endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkSettings {
    #[serde(rename = "Bridge")]
    pub bridge: String,
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "HairpinMode")]
    pub hairpin_mode: bool,
    #[serde(rename = "LinkLocalIPv6Address")]
    pub link_local_ipv6_address: String,
    #[serde(rename = "LinkLocalIPv6PrefixLen")]
    pub link_local_ipv6_prefix_len: u8,
    /// Every exposed port (`80/tcp`), with its host bindings or `null`.
    #[serde(rename = "Ports")]
    pub ports: BTreeMap<String, Option<Vec<PortBinding>>>,
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
    #[serde(rename = "SecondaryIPAddresses")]
    pub secondary_ip_addresses: Option<Vec<Value>>,
    #[serde(rename = "SecondaryIPv6Addresses")]
    pub secondary_ipv6_addresses: Option<Vec<Value>>,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Gateway")]
    pub gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
    #[serde(rename = "Networks")]
    pub networks: BTreeMap<String, EndpointView>,
}

/// `docker exec` inspect (`GET /exec/{id}/json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecInspectResponse {
    #[serde(rename = "ID")]
    pub id: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub process_config: ExecProcessConfig,
    pub open_stdin: bool,
    pub open_stderr: bool,
    pub open_stdout: bool,
    pub can_remove: bool,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub detach_keys: String,
    pub pid: i64,
}

/// `ProcessConfig` of an exec's inspect (lower-case keys, as Docker has them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecProcessConfig {
    pub tty: bool,
    pub entrypoint: String,
    pub arguments: Vec<String>,
    pub privileged: bool,
    pub user: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::container::CreateBody;

    /// What a node renders is what the gateway serves: the JSON survives the trip through the
    /// typed view unchanged, with Docker's key names.
    #[test]
    fn an_inspect_crosses_the_bus_unchanged_with_dockers_keys() {
        let body: CreateBody = serde_json::from_value(json!({
            "Image": "busybox", "Cmd": ["sh"], "Env": ["A=1"], "Labels": {"l": "v"},
            "ExposedPorts": {"80/tcp": {}}, "Healthcheck": {"Test": ["CMD", "true"]},
            "HostConfig": {"Binds": ["/a:/b"], "PortBindings": {"80/tcp": [{"HostPort": "8080"}]},
                           "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
                           "PidsLimit": 10, "Tmpfs": {"/t": ""}, "Dns": [], "CapAdd": null,
                           "CgroupnsMode": "private", "Sysctls": {"net.ipv4.ip_forward": "1"},
                           "BlkioWeight": 300,
                           "BlkioWeightDevice": [{"Path": "/dev/sda", "Weight": 200}],
                           "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1048576}],
                           "DeviceRequests": [{"Driver": "nvidia", "Count": -1,
                                               "Capabilities": [["gpu"]]}],
                           "MemorySwappiness": 60, "OomKillDisable": true,
                           "KernelMemoryTCP": 4096, "IOMaximumIOps": 5, "ConsoleSize": [24, 80]}
        }))
        .unwrap();
        let inspect = InspectResponse {
            id: "c1".into(),
            name: "/web".into(),
            state: ContainerState {
                status: "running".into(),
                running: true,
                pid: 42,
                health: Some(HealthState {
                    status: "healthy".into(),
                    failing_streak: 0,
                    log: vec![HealthLogEntry {
                        exit_code: 0,
                        output: "ok".into(),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            },
            host_config: body.host_config.clone(),
            config: body.config.clone(),
            mounts: vec![MountPoint {
                kind: "volume".into(),
                name: Some("data".into()),
                driver: Some("local".into()),
                rw: true,
                ..Default::default()
            }],
            network_settings: NetworkSettings {
                ports: [(
                    "80/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: "0.0.0.0".into(),
                        host_port: "8080".into(),
                    }]),
                )]
                .into(),
                networks: [(
                    "bridge".to_string(),
                    EndpointView {
                        aliases: Some(None),
                        ..Default::default()
                    },
                )]
                .into(),
                ..Default::default()
            },
            size_rw: Some(7),
            ..Default::default()
        };
        let sent = serde_json::to_value(&inspect).unwrap();
        let got: InspectResponse = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(got, inspect);
        assert_eq!(serde_json::to_value(&got).unwrap(), sent);
        assert_eq!(sent["State"]["OOMKilled"], false);
        assert_eq!(sent["State"]["Health"]["Log"][0]["Output"], "ok");
        assert_eq!(sent["ExecIDs"], Value::Null);
        let host = &sent["HostConfig"];
        assert_eq!(host["PidsLimit"], 10);
        assert_eq!(host["LogConfig"]["Config"]["max-size"], "1m");
        // Lists as the client sent them: `[]` stays `[]`, `null` or nothing is `null`.
        assert_eq!(host["Dns"], json!([]));
        assert_eq!(host.get("CapAdd"), Some(&Value::Null));
        assert_eq!(host.get("Links"), Some(&Value::Null));
        assert_eq!(host.get("DeviceCgroupRules"), Some(&Value::Null));
        assert_eq!(host["BlkioWeightDevice"][0]["Weight"], 200);
        assert_eq!(host["BlkioDeviceReadBps"][0]["Rate"], 1048576);
        assert_eq!(host.get("BlkioDeviceWriteIOps"), Some(&Value::Null));
        assert_eq!(host["DeviceRequests"][0]["Capabilities"], json!([["gpu"]]));
        assert_eq!(
            host["DeviceRequests"][0].get("DeviceIDs"),
            Some(&Value::Null)
        );
        assert_eq!(
            (&host["MemorySwappiness"], &host["OomKillDisable"]),
            (&json!(60), &json!(true))
        );
        assert_eq!(host["CgroupnsMode"], "private");
        assert_eq!(host["Sysctls"]["net.ipv4.ip_forward"], "1");
        assert_eq!(host["ConsoleSize"], json!([24, 80]));
        assert_eq!(
            (&host["KernelMemoryTCP"], &host["IOMaximumIOps"]),
            (&json!(4096), &json!(5))
        );
        assert_eq!(
            (&host["CpuRealtimePeriod"], &host["CpusetMems"]),
            (&json!(0), &json!(""))
        );
        // Go's omitempty fields: there when set, absent when empty.
        assert_eq!(host["Tmpfs"]["/t"], "");
        for absent in ["Mounts", "StorageOpt", "Annotations", "Init"] {
            assert!(host.get(absent).is_none(), "{absent}");
        }
        assert_eq!(sent["Config"]["Labels"]["l"], "v");
        assert_eq!(
            sent["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
            "8080"
        );
        assert_eq!(sent["NetworkSettings"]["SecondaryIPAddresses"], Value::Null);
        assert_eq!(sent["Mounts"][0]["Name"], "data");
        assert_eq!(sent["SizeRw"], 7);
        assert!(sent.get("SizeRootFs").is_none());
        // Inspect shows an endpoint's Aliases key even when it is null.
        assert_eq!(
            sent["NetworkSettings"]["Networks"]["bridge"].get("Aliases"),
            Some(&Value::Null)
        );
    }

    #[test]
    fn an_exec_inspect_has_dockers_keys() {
        let exec = ExecInspectResponse {
            id: "e1".into(),
            running: true,
            exit_code: None,
            process_config: ExecProcessConfig {
                entrypoint: "sh".into(),
                arguments: vec!["-c".into(), "true".into()],
                ..Default::default()
            },
            open_stdin: true,
            container_id: "c1".into(),
            pid: 9,
            ..Default::default()
        };
        let sent = serde_json::to_value(&exec).unwrap();
        assert_eq!(sent["ID"], "e1");
        assert_eq!(sent["ExitCode"], Value::Null);
        assert_eq!(sent["ProcessConfig"]["entrypoint"], "sh");
        assert_eq!(sent["OpenStdin"], true);
        assert_eq!(sent["ContainerID"], "c1");
        let got: ExecInspectResponse = serde_json::from_value(sent).unwrap();
        assert_eq!(got, exec);
    }
}

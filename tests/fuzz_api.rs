//! The Engine API fuzzed from moby's published swagger (API 1.45) by schemathesis, through
//! `deploy/fuzz-api.sh`, against a real `wharf up` with a TCP loopback listener: no request
//! gets a 5xx or hangs, and no container process is left that the API does not list. The run
//! is bounded (`FUZZ_MAX_EXAMPLES`, 25 per operation by default: about 7,000 requests, under a
//! minute on 2 cores); the script's header lists the operations left out and why.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_port, skip_on_reference, unix_request, HttpAnswer, Stack, StackOptions};

/// The script's exit status when schemathesis cannot be installed (no python3, venv or PyPI).
const NOT_INSTALLED: i32 = 3;

#[test]
fn the_engine_api_answers_schemathesis_from_mobys_swagger_without_5xx_hangs_or_leaks() {
    if skip_on_reference("fuzzes Wharf's own stack and its data root") {
        return;
    }
    let port = free_port();
    let stack = Stack::start_with(StackOptions {
        extra_args: vec!["-H".into(), format!("tcp://127.0.0.1:{port}")],
        ..StackOptions::default()
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/fuzz-api.sh");
    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["--signal=TERM", "--kill-after=30", "600", script, "--url"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--data-root")
        .arg(&stack.data_root)
        .env(
            "FUZZ_MAX_EXAMPLES",
            std::env::var("FUZZ_MAX_EXAMPLES").unwrap_or_else(|_| "25".into()),
        )
        .output()
        .expect("runs deploy/fuzz-api.sh");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(NOT_INSTALLED) {
        eprintln!(
            "SKIPPED: schemathesis could not be installed (python3-venv and PyPI are needed; \
             deploy/test.sh installs them):\n{stderr}"
        );
        return;
    }
    eprintln!("deploy/fuzz-api.sh took {took:?}\n{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "deploy/fuzz-api.sh failed ({:?}):\n{stdout}\n{stderr}\n--- wharf up log (tail):\n{}",
        out.status,
        stack
            .log()
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        took < Duration::from_secs(600),
        "the bounded run took {took:?}"
    );
    assert!(stack.answers(), "the API still answers on its socket");
}

// ---------------------------------------------------------------------------------------------
// What the fuzzing found, each answered as dockerd does or as the client's error (400).

/// A one-layer image of the host's static busybox (`sleep` among its applets).
fn busybox_rootfs_tar() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut b = tar::Builder::new(Vec::new());
    let header = |size: u64, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    };
    let mut h = header(busybox.len() as u64, 0o755);
    b.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    for applet in ["sh", "sleep"] {
        let mut h = header(0, 0o777);
        h.set_entry_type(tar::EntryType::Symlink);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    b.into_inner().unwrap()
}

fn request(stack: &Stack, method: &str, path: &str, json: Option<&str>) -> HttpAnswer {
    let headers: &[(&str, &str)] = if json.is_some() {
        &[("Content-Type", "application/json")]
    } else {
        &[]
    };
    unix_request(
        &stack.socket,
        method,
        path,
        headers,
        json.map(str::as_bytes),
    )
    .unwrap()
}

fn message(answer: &HttpAnswer) -> String {
    serde_json::from_slice::<Value>(&answer.2)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.2).into_owned())
}

/// A stack running `sleep 300` without a TTY in a container named `probe`.
fn stack_with_a_running_container() -> Stack {
    let stack = Stack::start();
    let tar = busybox_rootfs_tar();
    let imported = unix_request(
        &stack.socket,
        "POST",
        "/v1.45/images/create?fromSrc=-&repo=probe&tag=latest",
        &[("Content-Type", "application/x-tar")],
        Some(&tar),
    )
    .unwrap();
    assert_eq!(imported.0, 200, "{}", message(&imported));
    let created = request(
        &stack,
        "POST",
        "/v1.45/containers/create?name=probe",
        Some(r#"{"Image":"probe:latest","Cmd":["sleep","300"]}"#),
    );
    assert_eq!(created.0, 201, "{}", message(&created));
    let started = request(&stack, "POST", "/v1.45/containers/probe/start", None);
    assert_eq!(started.0, 204, "{}", message(&started));
    stack
}

/// Found by deploy/fuzz-api.sh: `POST /containers/{id}/resize` of a running container without
/// a TTY answered 500 ("has no TTY"), and so did an exec's; dockerd (containerd's shim) answers
/// 200 and does nothing.
#[test]
fn resizing_a_container_without_a_tty_does_nothing_as_in_dockerd() {
    if skip_on_reference("starts Wharf's own stack") {
        return;
    }
    let stack = stack_with_a_running_container();
    for size in ["h=24&w=80", "h=0&w=0", "h=65535&w=65535"] {
        let answer = request(
            &stack,
            "POST",
            &format!("/v1.45/containers/probe/resize?{size}"),
            None,
        );
        assert_eq!(answer.0, 200, "{size}: {}", message(&answer));
    }
    // An exec without a TTY, before and after it starts.
    let exec = request(
        &stack,
        "POST",
        "/v1.45/containers/probe/exec",
        Some(r#"{"Cmd":["sleep","5"]}"#),
    );
    assert_eq!(exec.0, 201, "{}", message(&exec));
    let id = serde_json::from_slice::<Value>(&exec.2).unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let resize = format!("/v1.45/exec/{id}/resize?h=24&w=80");
    let answer = request(&stack, "POST", &resize, None);
    assert_eq!(answer.0, 200, "{}", message(&answer));
    let started = request(
        &stack,
        "POST",
        &format!("/v1.45/exec/{id}/start"),
        Some(r#"{"Detach":true}"#),
    );
    assert!(started.0 < 300, "{}", message(&started));
    let answer = request(&stack, "POST", &resize, None);
    assert_eq!(answer.0, 200, "{}", message(&answer));
}

/// Found by deploy/fuzz-api.sh: `ps_args` that `ps` refuses, or that leave out the PID column,
/// answered 500 (as dockerd does); they are the client's error, 400, with dockerd's texts.
#[test]
fn ps_arguments_ps_refuses_are_the_clients_error() {
    if skip_on_reference("starts Wharf's own stack") {
        return;
    }
    let stack = stack_with_a_running_container();
    let top = |args: &str| {
        request(
            &stack,
            "GET",
            &format!("/v1.45/containers/probe/top?ps_args={args}"),
            None,
        )
    };
    let refused = top("-o%20pid%2C%22");
    assert_eq!(refused.0, 400, "{}", message(&refused));
    assert!(
        message(&refused).starts_with("ps: "),
        "{}",
        message(&refused)
    );
    let no_pid = top("-e%20-o%20comm%3D");
    assert_eq!(no_pid.0, 400, "{}", message(&no_pid));
    assert_eq!(message(&no_pid), "Couldn't find PID field in ps output");
    let fine = top("-ef");
    assert_eq!(fine.0, 200, "{}", message(&fine));
    let rows: Value = serde_json::from_slice(&fine.2).unwrap();
    assert!(
        rows["Processes"].to_string().contains("sleep 300"),
        "{rows}"
    );
}

/// Found by deploy/fuzz-api.sh: a `docker cp` path holding a NUL byte answered 500 (EINVAL from
/// the kernel); no file has such a name, so it is bad input, 400, before anything is looked up.
#[test]
fn an_archive_path_with_a_nul_byte_is_bad_input() {
    if skip_on_reference("starts Wharf's own stack") {
        return;
    }
    let stack = stack_with_a_running_container();
    for method in ["GET", "HEAD", "PUT"] {
        let answer = request(
            &stack,
            method,
            "/v1.45/containers/probe/archive?path=/tmp%00x",
            None,
        );
        assert_eq!(answer.0, 400, "{method}: {}", message(&answer));
    }
    let fine = request(
        &stack,
        "HEAD",
        "/v1.45/containers/probe/archive?path=/bin",
        None,
    );
    assert_eq!(fine.0, 200);
}

/// Found by deploy/fuzz-api.sh: `POST /containers/{id}/update` with `CpuQuota`
/// 9223372036854775806 panicked the runtime's task (an overflow converting it to CPUs), so the
/// request hung until the client gave up; it is refused at once now, as out of range.
#[test]
fn an_update_with_a_huge_cpu_quota_is_refused_at_once() {
    if skip_on_reference("starts Wharf's own stack") {
        return;
    }
    let stack = stack_with_a_running_container();
    let started = Instant::now();
    let answer = request(
        &stack,
        "POST",
        "/v1.45/containers/probe/update",
        Some(r#"{"CpuQuota": 9223372036854775806}"#),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.0, 400, "{}", message(&answer));
    assert!(message(&answer).contains("cpus"), "{}", message(&answer));
    let fine = request(
        &stack,
        "POST",
        "/v1.45/containers/probe/update",
        Some(r#"{"CpuQuota": 50000}"#),
    );
    assert_eq!(fine.0, 200, "{}", message(&fine));
}

/// Found beside the update overflow: a container prune's `until` that is no time was ignored,
/// so the prune removed every stopped container; dockerd refuses it, and so do we now.
#[test]
fn a_prune_until_that_is_no_time_is_refused_and_prunes_nothing() {
    if skip_on_reference("starts Wharf's own stack") {
        return;
    }
    let stack = stack_with_a_running_container();
    let created = request(
        &stack,
        "POST",
        "/v1.45/containers/create?name=stopped",
        Some(r#"{"Image":"probe:latest","Cmd":["sleep","1"]}"#),
    );
    assert_eq!(created.0, 201, "{}", message(&created));
    for until in ["abc", "99999999999999h"] {
        let filters = format!("%7B%22until%22%3A%5B%22{until}%22%5D%7D");
        let answer = request(
            &stack,
            "POST",
            &format!("/v1.45/containers/prune?filters={filters}"),
            None,
        );
        assert_eq!(answer.0, 400, "{until}: {}", message(&answer));
    }
    let still = request(&stack, "GET", "/v1.45/containers/stopped/json", None);
    assert_eq!(still.0, 200, "the stopped container is still there");
}

/// Every key of `HostConfig` in dockerd 20.10's inspect of a container without mounts, tmpfs,
/// sysctls, storage options or init, in dockerd's order.
const DOCKERD_HOST_CONFIG_KEYS: [&str; 65] = [
    "Binds",
    "ContainerIDFile",
    "LogConfig",
    "NetworkMode",
    "PortBindings",
    "RestartPolicy",
    "AutoRemove",
    "VolumeDriver",
    "VolumesFrom",
    "CapAdd",
    "CapDrop",
    "CgroupnsMode",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IpcMode",
    "Cgroup",
    "Links",
    "OomScoreAdj",
    "PidMode",
    "Privileged",
    "PublishAllPorts",
    "ReadonlyRootfs",
    "SecurityOpt",
    "UTSMode",
    "UsernsMode",
    "ShmSize",
    "Runtime",
    "ConsoleSize",
    "Isolation",
    "CpuShares",
    "Memory",
    "NanoCpus",
    "CgroupParent",
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetCpus",
    "CpusetMems",
    "Devices",
    "DeviceCgroupRules",
    "DeviceRequests",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "OomKillDisable",
    "PidsLimit",
    "Ulimits",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
    "MaskedPaths",
    "ReadonlyPaths",
];

/// What docker-compose 1.29.2 (docker-py) sends for a service whose health check sets only
/// `test`: the check's other fields are null, as are other fields it leaves unset. The create
/// was refused ("invalid type: null, expected i64"); dockerd's Go decoder reads null as the
/// zero value, ignores unknown keys, and still refuses a value of the wrong type.
#[test]
fn a_compose_create_body_with_null_fields_runs_and_inspects_as_in_dockerd() {
    let stack = Stack::start();
    let tar = busybox_rootfs_tar();
    let imported = unix_request(
        &stack.socket,
        "POST",
        "/v1.41/images/create?fromSrc=-&repo=nulls&tag=latest",
        &[("Content-Type", "application/x-tar")],
        Some(&tar),
    )
    .unwrap();
    assert_eq!(imported.0, 200, "{}", message(&imported));
    let body = r#"{
        "Image": "nulls:latest", "Cmd": ["sleep", "300"], "Hostname": null, "User": null,
        "Labels": {"com.docker.compose.service": "web"}, "Env": null, "StopSignal": null,
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": null, "Timeout": null,
                        "Retries": null, "StartPeriod": null},
        "ComposeOnly": "an unknown field",
        "HostConfig": {"NetworkMode": "none", "Binds": [], "VolumesFrom": [], "Links": [],
                       "PortBindings": {}, "Memory": null, "RestartPolicy": null, "Init": null,
                       "LogConfig": {"Type": "", "Config": {"max-size": "10m"}}},
        "NetworkingConfig": null
    }"#;
    let created = request(
        &stack,
        "POST",
        "/v1.41/containers/create?name=composed",
        Some(body),
    );
    assert_eq!(created.0, 201, "{}", message(&created));
    let started = request(&stack, "POST", "/v1.41/containers/composed/start", None);
    assert_eq!(started.0, 204, "{}", message(&started));

    let inspected = request(&stack, "GET", "/v1.41/containers/composed/json", None);
    assert_eq!(inspected.0, 200, "{}", message(&inspected));
    let inspect: Value = serde_json::from_slice(&inspected.2).unwrap();
    assert_eq!(inspect["State"]["Running"], true, "{inspect:#}");
    assert_eq!(
        inspect["Config"]["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "true"]})
    );
    let host = inspect["HostConfig"].as_object().unwrap();
    assert_eq!(
        host.keys().map(String::as_str).collect::<Vec<_>>(),
        DOCKERD_HOST_CONFIG_KEYS,
        "{:#}",
        inspect["HostConfig"]
    );
    // What dockerd shows for what the body left out, and the log options it kept.
    let cgroup_v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "));
    let cgroupns = if cgroup_v2 && support::reference_host().is_some() {
        "private" // dockerd's default on a v2 host; Wharf shares the host's cgroup namespace
    } else {
        "host"
    };
    let expected = serde_json::json!({
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
        "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
        "Binds": [], "VolumesFrom": [], "PortBindings": {}, "CapAdd": null, "Dns": null,
        "ExtraHosts": null, "Links": null,
        "CgroupnsMode": cgroupns, "IpcMode": "private", "ShmSize": 67108864, "Runtime": "runc",
        "ConsoleSize": [0, 0], "Memory": 0, "CgroupParent": "", "BlkioWeight": 0,
        "BlkioWeightDevice": null, "BlkioDeviceReadBps": null, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetMems": "", "Devices": null, "DeviceCgroupRules": null,
        "DeviceRequests": null, "KernelMemory": 0, "KernelMemoryTCP": 0,
        "MemorySwappiness": null, "OomKillDisable": false, "PidsLimit": null, "Ulimits": null,
        "IOMaximumBandwidth": 0,
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&host[key], value, "HostConfig.{key}");
    }
    assert!(
        host["MaskedPaths"]
            .as_array()
            .is_some_and(|m| m.contains(&Value::from("/proc/kcore"))),
        "{:#}",
        inspect["HostConfig"]
    );

    // A value of the wrong type is still the client's error, in Go's words: dockerd 20.10
    // answers them with a 500, dockerd 23 and later (API 1.42+) with a 400 saying
    // "invalid JSON: ", as Wharf does.
    let refused = request(
        &stack,
        "POST",
        "/v1.41/containers/create",
        Some(r#"{"Image": "nulls:latest", "HostConfig": {"Memory": "1g"}}"#),
    );
    let status = if support::reference_host().is_some() {
        500
    } else {
        400
    };
    assert_eq!(refused.0, status, "{}", message(&refused));
    assert!(
        message(&refused).ends_with(
            "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Memory of type int64"
        ),
        "{}",
        message(&refused)
    );
    let removed = request(&stack, "DELETE", "/v1.41/containers/composed?force=1", None);
    assert_eq!(removed.0, 204, "{}", message(&removed));
}

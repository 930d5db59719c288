//! Settings that were accepted and shown but never applied, now applied, refused or discarded
//! with a warning as dockerd does on this host, side by side with a private dockerd: block IO
//! weights and throttles, real-time CPU, `--storage-opt`, `--gpus`, `--cgroup-parent` and
//! `--sysctl`, each read back from inside the container. A sysctl asked for in the host's
//! network namespace must leave the host's value alone.

mod support;

use std::collections::BTreeMap;

use support::dockerd::side_by_side;
use support::DockerCli;

/// The first block device of this host (a throttle needs a real one).
fn block_device() -> String {
    let mut found: Vec<String> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter(|e| {
            use std::os::unix::fs::FileTypeExt;
            e.file_type().is_ok_and(|t| t.is_block_device())
        })
        .map(|e| e.path().display().to_string())
        .collect();
    found.sort();
    found.into_iter().next().expect("a block device in /dev")
}

/// `docker run --rm ARGS IMAGE sh -c SCRIPT`: success, the warning or error line, the output.
fn run(d: &DockerCli, image: &str, args: &[&str], script: &str) -> String {
    let mut all: Vec<&str> = vec!["run", "--rm"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[image, "sh", "-c", script]);
    let out = d.run(&all);
    let said = out
        .stderr
        .lines()
        .find(|l| l.contains("WARNING") || l.contains("Error"))
        .unwrap_or_default()
        .trim_start_matches("docker: ")
        .to_string();
    // Start failures are worded by each engine's runtime (runc or Wharf's shim).
    let said = match said.contains("failed to create") {
        true => "(start failed)".to_string(),
        false => said,
    };
    format!("{} | {said} | {}", out.success(), out.stdout.trim())
}

fn observe(d: &DockerCli, image: &str, parent: &str) -> BTreeMap<&'static str, String> {
    let dev = block_device();
    let mut seen = BTreeMap::new();
    seen.insert(
        "blkio weight",
        run(d, image, &["--blkio-weight", "300"], "true"),
    );
    seen.insert(
        "blkio weight device",
        run(
            d,
            image,
            &["--blkio-weight-device", &format!("{dev}:300")],
            "true",
        ),
    );
    seen.insert(
        "throttle of a missing device",
        run(
            d,
            image,
            &["--device-read-bps", "/dev/wharf-none:1mb"],
            "true",
        ),
    );
    seen.insert(
        "throttle",
        run(
            d,
            image,
            &["--device-read-bps", &format!("{dev}:1mb"), "--device-write-iops", &format!("{dev}:77")],
            "cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device",
        ),
    );
    seen.insert(
        "rt period",
        run(
            d,
            image,
            &["--cpu-rt-period", "50000"],
            "cat /sys/fs/cgroup/cpu/cpu.rt_period_us",
        ),
    );
    seen.insert(
        "rt runtime beyond the parent's",
        run(d, image, &["--cpu-rt-runtime", "1000"], "true"),
    );
    seen.insert(
        "storage opt",
        run(d, image, &["--storage-opt", "size=1G"], "true"),
    );
    seen.insert("gpus", run(d, image, &["--gpus", "all"], "true"));
    let cgroup = run(
        d,
        image,
        &["--cgroup-parent", parent],
        "grep -E ':(pids|blkio):' /proc/self/cgroup | sed 's/[0-9a-f]\\{64\\}/ID/'",
    );
    seen.insert("cgroup parent", cgroup.replace(parent, "PARENT"));
    seen.insert(
        "namespaced sysctls",
        run(
            d,
            image,
            &[
                "--sysctl",
                "net.core.somaxconn=100",
                "--sysctl",
                "kernel.shmmax=1000000",
                "--sysctl",
                "fs.mqueue.msg_max=20",
            ],
            "cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmax /proc/sys/fs/mqueue/msg_max",
        ),
    );
    seen.insert(
        "a net sysctl in the host's namespace",
        run(
            d,
            image,
            &["--network", "host", "--sysctl", "net.core.somaxconn=77"],
            "true",
        ),
    );
    seen.insert(
        "an ipc sysctl in the host's namespace",
        run(
            d,
            image,
            &["--ipc", "host", "--sysctl", "kernel.shmmax=1000000"],
            "true",
        ),
    );
    seen
}

/// Removes the `--cgroup-parent` groups both engines leave in each v1 hierarchy.
fn remove_parent_groups(parent: &str) {
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(entry.path().join(parent));
    }
}

#[test]
fn host_limits_are_applied_refused_or_discarded_as_dockerd_does() {
    let parent = format!("wharf-test-parent-{}", std::process::id());
    let host_somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
    let (theirs, ours) = side_by_side("limits", |d, image| {
        let seen = observe(d, image, &parent);
        remove_parent_groups(&parent);
        seen
    });
    assert_eq!(ours, theirs);
    // What the comparison stands on.
    assert_eq!(ours["namespaced sysctls"], "true |  | 100\n1000000\n20");
    assert!(
        ours["throttle"].contains(" 1048576\n") && ours["throttle"].ends_with(" 77"),
        "{ours:?}"
    );
    assert!(ours["cgroup parent"].contains(":/PARENT/ID"), "{ours:?}");
    assert!(ours["a net sysctl in the host's namespace"].starts_with("false"));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap(),
        host_somaxconn,
        "the host's own value is untouched"
    );
}

//! Docker's default container configuration, expressed as an OCI runtime spec.

use std::path::PathBuf;

use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceType, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, Mount,
    MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use super::capabilities::docker_default_capabilities;
use super::process::rlimit_resource;

/// PATH that Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The file-descriptor limit dockerd asks for; [`default_spec`] clamps it to the host's.
const DEFAULT_NOFILE: u64 = 1_048_576;

/// The paths Docker masks in a container that is not privileged.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The paths Docker makes read-only in a container that is not privileged.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's defaults for a container running `args` as root in `/`, with its own mount, PID,
/// UTS, IPC and network namespaces, Docker's mounts, devices, masked and read-only paths and
/// default capability set. Callers adjust the result (user, env, cwd, rlimits) before launch.
pub fn default_spec(hostname: &str, args: Vec<String>) -> Spec {
    let caps: Capabilities = docker_default_capabilities();
    // Docker gives no inheritable or ambient capabilities (oci-spec's builder defaults would
    // put three in each).
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .expect("capabilities");
    let mut rlimits = vec![PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(DEFAULT_NOFILE)
        .hard(DEFAULT_NOFILE)
        .build()
        .expect("rlimit")];
    clamp_rlimits(&mut rlimits);
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .expect("user"),
        )
        .args(args)
        .env(vec![DEFAULT_PATH.to_string()])
        .cwd("/")
        .capabilities(capabilities)
        .rlimits(rlimits)
        .build()
        .expect("process");
    let linux = LinuxBuilder::default()
        .namespaces(default_namespaces())
        .devices(default_devices())
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .expect("linux");
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()
                .expect("root"),
        )
        .hostname(hostname)
        .process(process)
        .mounts(default_mounts())
        .linux(linux)
        .build()
        .expect("spec")
}

fn default_namespaces() -> Vec<LinuxNamespace> {
    [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
    ]
    .into_iter()
    .map(|typ| {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .build()
            .expect("namespace")
    })
    .collect()
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount")
}

fn default_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        ),
    ]
}

fn device(path: &str, major: i64, minor: i64) -> LinuxDevice {
    LinuxDeviceBuilder::default()
        .path(PathBuf::from(path))
        .typ(LinuxDeviceType::C)
        .major(major)
        .minor(minor)
        .file_mode(0o666u32)
        .uid(0u32)
        .gid(0u32)
        .build()
        .expect("device")
}

fn default_devices() -> Vec<LinuxDevice> {
    vec![
        device("/dev/null", 1, 3),
        device("/dev/zero", 1, 5),
        device("/dev/full", 1, 7),
        device("/dev/random", 1, 8),
        device("/dev/urandom", 1, 9),
        device("/dev/tty", 5, 0),
    ]
}

/// The host's hard limit for `typ`, which an unprivileged (or CAP_SYS_RESOURCE-less) process
/// cannot raise; `None` when it cannot be read.
pub fn host_hard_limit(typ: PosixRlimitType) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let rc = unsafe { libc::getrlimit(rlimit_resource(typ), &mut limit) };
    (rc == 0).then_some(limit.rlim_max)
}

/// Lowers every limit to the host's hard limit, so asking for more than the host allows
/// yields the most it allows rather than a failed start (what dockerd does with its defaults).
pub fn clamp_rlimits(rlimits: &mut [PosixRlimit]) {
    for rlimit in rlimits {
        if let Some(max) = host_hard_limit(rlimit.typ()) {
            let hard = rlimit.hard().min(max);
            *rlimit = PosixRlimitBuilder::default()
                .typ(rlimit.typ())
                .hard(hard)
                .soft(rlimit.soft().min(hard))
                .build()
                .expect("rlimit");
        }
    }
}

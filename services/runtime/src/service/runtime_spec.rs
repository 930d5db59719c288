//! The OCI runtime spec of a container (what the shim hands to the kernel): its process,
//! environment, capabilities, rlimits, namespaces, mounts and devices, from its record.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, Spec, UserBuilder,
};
use wharf_bus::container::HostConfig;
use wharf_bus::BusError;

use crate::container::{clamp_rlimits, default_spec, docker_default_capabilities};

use super::record::{ContainerPaths, ContainerRecord};
use super::user::ResolvedUser;

/// Docker's environment: the config's, with PATH, HOSTNAME, HOME and TERM as dockerd and runc
/// add them.
fn environment(rec: &ContainerRecord, user: &ResolvedUser) -> Vec<String> {
    let mut env = Vec::new();
    let has = |env: &Vec<String>, key: &str| {
        env.iter()
            .any(|e: &String| e.starts_with(&format!("{key}=")))
    };
    if !rec.config.env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(crate::container::DEFAULT_PATH.to_string());
    }
    env.push(format!("HOSTNAME={}", rec.config.hostname));
    if rec.config.tty {
        env.push("TERM=xterm".to_string());
    }
    for e in &rec.config.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x: &String| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    env
}

fn capability(name: &str) -> Result<Capability, BusError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare)
        .map_err(|_| BusError::invalid(format!("unknown capability: \"CAP_{bare}\"")))
}

/// All capabilities the kernel knows (for `--privileged` and `--cap-add ALL`).
fn all_capabilities() -> HashSet<Capability> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let names = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    // Only what this process may still hand out (its bounding set): in a restricted
    // environment `--privileged` gets what the host allows, as with runc.
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    names
        .iter()
        .enumerate()
        .take(last as usize + 1)
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .filter_map(|(_, n)| capability(n).ok())
        .collect()
}

/// The capability set of a container: Docker's default, `--cap-add`, `--cap-drop`,
/// `--privileged`.
pub fn capabilities(host: &HostConfig) -> Result<HashSet<Capability>, BusError> {
    if host.privileged {
        return Ok(all_capabilities());
    }
    let mut caps: HashSet<Capability> = docker_default_capabilities().into_iter().collect();
    for name in host.cap_drop.iter().flatten() {
        if name.eq_ignore_ascii_case("ALL") {
            caps.clear();
        } else {
            caps.remove(&capability(name)?);
        }
    }
    for name in host.cap_add.iter().flatten() {
        if name.eq_ignore_ascii_case("ALL") {
            caps = all_capabilities();
        } else {
            caps.insert(capability(name)?);
        }
    }
    Ok(caps)
}

fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    Some(match name {
        "core" => PosixRlimitType::RlimitCore,
        "cpu" => PosixRlimitType::RlimitCpu,
        "data" => PosixRlimitType::RlimitData,
        "fsize" => PosixRlimitType::RlimitFsize,
        "locks" => PosixRlimitType::RlimitLocks,
        "memlock" => PosixRlimitType::RlimitMemlock,
        "msgqueue" => PosixRlimitType::RlimitMsgqueue,
        "nice" => PosixRlimitType::RlimitNice,
        "nofile" => PosixRlimitType::RlimitNofile,
        "nproc" => PosixRlimitType::RlimitNproc,
        "rss" => PosixRlimitType::RlimitRss,
        "rtprio" => PosixRlimitType::RlimitRtprio,
        "rttime" => PosixRlimitType::RlimitRttime,
        "sigpending" => PosixRlimitType::RlimitSigpending,
        "stack" => PosixRlimitType::RlimitStack,
        "as" => PosixRlimitType::RlimitAs,
        _ => return None,
    })
}

/// Checks `--ulimit` names (dockerd's texts).
pub fn check_ulimits(host: &HostConfig) -> Result<(), BusError> {
    for u in host.ulimits.iter().flatten() {
        if rlimit_type(&u.name).is_none() {
            return Err(BusError::invalid(format!(
                "invalid ulimit type: {}",
                u.name
            )));
        }
        if u.soft > u.hard {
            return Err(BusError::invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            )));
        }
    }
    Ok(())
}

fn bind(destination: &str, source: &Path, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount")
}

/// The static init binary `--init` uses: dockerd's `docker-init`, or tini's static build.
pub fn init_binary() -> Option<std::path::PathBuf> {
    [
        "/usr/bin/docker-init",
        "/usr/bin/tini-static",
        "/usr/local/bin/docker-init",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
}

/// dockerd's refusal of `--privileged` in a remapped user namespace.
pub const PRIVILEGED_USERNS: &str = "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode";

/// The OCI spec of a container about to start.
pub fn spec(
    rec: &ContainerRecord,
    paths: &ContainerPaths,
    user: &ResolvedUser,
    netns: Option<&Path>,
    userns: Option<crate::userns::IdMap>,
) -> Result<Spec, BusError> {
    let host = &rec.host_config;
    let mut args = vec![rec.path.clone()];
    args.extend(rec.args.iter().cloned());
    // `--init`: Docker's tini (docker-init) at /dev/init runs the command and reaps zombies.
    let init = if host.init == Some(true) {
        let binary = init_binary().ok_or_else(|| {
            BusError::invalid("--init: no docker-init or tini-static found on this node")
        })?;
        args.splice(0..0, ["/dev/init".to_string(), "--".to_string()]);
        Some(binary)
    } else {
        None
    };
    let mut spec = default_spec(&rec.config.hostname, args);

    // Process: user, env, cwd, caps, rlimits, no-new-privileges, terminal.
    let mut process = spec.process().clone().expect("default process");
    let mut oci_user = UserBuilder::default()
        .uid(user.uid)
        .gid(user.gid)
        .build()
        .expect("user");
    if !user.additional_gids.is_empty() {
        oci_user.set_additional_gids(Some(user.additional_gids.clone()));
    }
    process.set_user(oci_user);
    process.set_env(Some(environment(rec, user)));
    let cwd = if rec.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        rec.config.working_dir.clone()
    };
    process.set_cwd(cwd.into());
    process.set_terminal(Some(rec.config.tty));
    let caps = capabilities(host)?;
    let bounding = caps.clone();
    let mut sets = process
        .capabilities()
        .clone()
        .expect("default capabilities");
    sets.set_bounding(Some(caps.clone()));
    sets.set_effective(Some(caps.clone()));
    sets.set_permitted(Some(caps));
    sets.set_inheritable(Some(HashSet::new()));
    sets.set_ambient(Some(HashSet::new()));
    process.set_capabilities(Some(sets));
    let mut rlimits = process.rlimits().clone().unwrap_or_default();
    for u in host.ulimits.iter().flatten() {
        let typ = rlimit_type(&u.name)
            .ok_or_else(|| BusError::invalid(format!("invalid ulimit type: {}", u.name)))?;
        rlimits.retain(|r| r.typ() != typ);
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(u.soft.max(0) as u64)
                .hard(u.hard.max(0) as u64)
                .build()
                .expect("rlimit"),
        );
    }
    clamp_rlimits(&mut rlimits);
    process.set_rlimits(Some(rlimits));
    // Explicit either way: oci-spec's process defaults would set no_new_privs.
    let security = super::security::parse(host.security_opt.as_deref().unwrap_or_default())?;
    process.set_no_new_privileges(Some(security.no_new_privileges));
    let seccomp = super::security::seccomp_for(&security, host.privileged, &bounding)?;
    spec.set_process(Some(process));

    // Root.
    if host.readonly_rootfs {
        let mut root = spec.root().clone().expect("default root");
        root.set_readonly(Some(true));
        spec.set_root(Some(root));
    }

    // Mounts: Docker's, /dev/shm sized, the /etc files, then volumes, binds and tmpfs.
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if host.shm_size > 0 {
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/dev/shm") {
                m.set_options(Some(vec![
                    "nosuid".into(),
                    "noexec".into(),
                    "nodev".into(),
                    "mode=1777".into(),
                    format!("size={}", host.shm_size),
                ]));
            }
        }
    }
    if host.privileged {
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/sys") {
                m.set_options(Some(vec!["nosuid".into(), "noexec".into(), "nodev".into()]));
            }
        }
    }
    if let Some(binary) = &init {
        mounts.push(bind("/dev/init", binary, &["rbind", "ro", "rprivate"]));
    }
    let user_mounts: Vec<&str> = rec.mounts.iter().map(|m| m.destination.as_str()).collect();
    for (dest, file) in [
        ("/etc/resolv.conf", paths.resolv_conf()),
        ("/etc/hostname", paths.hostname()),
        ("/etc/hosts", paths.hosts()),
    ] {
        if !user_mounts.contains(&dest) {
            let mut options = vec!["rbind", "rprivate"];
            if host.readonly_rootfs {
                options.push("ro");
            }
            mounts.push(bind(dest, &file, &options));
        }
    }
    for m in &rec.mounts {
        match m.kind.as_str() {
            "tmpfs" => {
                let mut options: Vec<String> =
                    vec!["nosuid".into(), "nodev".into(), "noexec".into()];
                options.extend(
                    m.options
                        .split(',')
                        .filter(|o| !o.is_empty())
                        .map(str::to_string),
                );
                mounts.push(
                    MountBuilder::default()
                        .destination(m.destination.as_str())
                        .typ("tmpfs")
                        .source("tmpfs")
                        .options(options)
                        .build()
                        .expect("mount"),
                );
            }
            _ => {
                let mut options = vec!["rbind", "rprivate"];
                if !m.rw {
                    options.push("ro");
                }
                mounts.push(bind(&m.destination, Path::new(&m.source), &options));
            }
        }
    }
    spec.set_mounts(Some(mounts));

    // Linux: namespaces, masked and read-only paths.
    let mut linux = spec.linux().clone().expect("default linux");
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    match rec.host_config.network_mode.as_str() {
        "host" => namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network),
        _ => {
            if let Some(netns) = netns {
                namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
                namespaces.push(
                    LinuxNamespaceBuilder::default()
                        .typ(LinuxNamespaceType::Network)
                        .path(netns)
                        .build()
                        .expect("namespace"),
                );
            }
        }
    }
    if host.uts_mode == "host" {
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::Uts);
        spec.set_hostname(None);
    }
    if host.pid_mode == "host" {
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::Pid);
    }
    if host.ipc_mode == "host" {
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::Ipc);
    }
    if let Some(map) = userns {
        if host.privileged {
            return Err(BusError::invalid(PRIVILEGED_USERNS));
        }
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .build()
                .expect("namespace"),
        );
        let id_map = |host_id: u32| {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host_id)
                .size(map.size)
                .build()
                .expect("id mapping")
        };
        linux.set_uid_mappings(Some(vec![id_map(map.uid)]));
        linux.set_gid_mappings(Some(vec![id_map(map.gid)]));
    }
    if !host.sysctls.is_empty() {
        let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
        let own = (
            has(LinuxNamespaceType::Network),
            has(LinuxNamespaceType::Ipc),
            has(LinuxNamespaceType::Uts),
        );
        for key in host.sysctls.keys() {
            check_sysctl(key, own).map_err(|why| {
                BusError::invalid(format!(
                    "failed to create task for container: {why}: unknown"
                ))
            })?;
        }
        linux.set_sysctl(Some(host.sysctls.clone().into_iter().collect()));
    }
    linux.set_namespaces(Some(namespaces));
    if host.privileged {
        linux.set_masked_paths(Some(Vec::new()));
        linux.set_readonly_paths(Some(Vec::new()));
    }
    if let Some(masked) = &host.masked_paths {
        linux.set_masked_paths(Some(masked.clone()));
    }
    if let Some(ro) = &host.readonly_paths {
        linux.set_readonly_paths(Some(ro.clone()));
    }
    linux.set_seccomp(seccomp);
    let (devices, _) = super::devices::plan(host)?;
    if !devices.is_empty() {
        let mut all = linux.devices().clone().unwrap_or_default();
        all.retain(|d| !devices.iter().any(|n| n.path() == d.path()));
        all.extend(devices);
        linux.set_devices(Some(all));
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Whether `--sysctl KEY` may be set in a container with its own network, IPC and UTS
/// namespaces as `own` says: only keys of a namespace the container has, as runc allows them
/// (its words when not).
fn check_sysctl(key: &str, own: (bool, bool, bool)) -> Result<(), String> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let (net, ipc, uts) = own;
    let plain = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !plain {
        return Err(format!("sysctl {key:?} is not a valid sysctl name"));
    }
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return match ipc {
            true => Ok(()),
            false => Err(format!(
                "sysctl {key:?} is not allowed in the hosts ipc namespace"
            )),
        };
    }
    if key.starts_with("net.") {
        return match net {
            true => Ok(()),
            false => Err(format!(
                "sysctl {key:?} not allowed in host network namespace"
            )),
        };
    }
    if key == "kernel.domainname" && uts {
        return Ok(());
    }
    Err(format!(
        "sysctl {key:?} is not in a separate kernel namespace"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_of_the_containers_own_namespaces_only_as_runc_allows() {
        let all = (true, true, true);
        for key in [
            "net.ipv4.ip_forward",
            "kernel.shmmax",
            "fs.mqueue.msg_max",
            "kernel.domainname",
        ] {
            assert_eq!(check_sysctl(key, all), Ok(()), "{key}");
        }
        assert_eq!(
            check_sysctl("net.ipv4.ip_forward", (false, true, true)).unwrap_err(),
            "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace"
        );
        assert_eq!(
            check_sysctl("kernel.shmmax", (true, false, true)).unwrap_err(),
            "sysctl \"kernel.shmmax\" is not allowed in the hosts ipc namespace"
        );
        for key in ["vm.swappiness", "kernel.hostname", "kernel.domainname"] {
            let err = check_sysctl(key, (true, true, false)).unwrap_err();
            assert!(
                err.ends_with("is not in a separate kernel namespace"),
                "{err}"
            );
        }
        // Keys that would climb out of /proc/sys never reach the launcher.
        for key in [
            "net/../../x",
            "net..ipv4",
            "net.ipv4.",
            "",
            "net.ipv4.conf.eth0/x",
        ] {
            assert!(check_sysctl(key, all).is_err(), "{key}");
        }
    }

    #[test]
    fn capabilities_follow_add_drop_and_privileged() {
        let host = HostConfig {
            cap_add: Some(vec!["NET_ADMIN".into()]),
            cap_drop: Some(vec!["CAP_CHOWN".into()]),
            ..Default::default()
        };
        let caps = capabilities(&host).unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::Chown));
        assert!(caps.contains(&Capability::Kill));
        let host = HostConfig {
            cap_drop: Some(vec!["all".into()]),
            ..Default::default()
        };
        assert!(capabilities(&host).unwrap().is_empty());
        let host = HostConfig {
            privileged: true,
            ..Default::default()
        };
        assert!(capabilities(&host).unwrap().contains(&Capability::SysAdmin));
        let host = HostConfig {
            cap_add: Some(vec!["BOGUS".into()]),
            ..Default::default()
        };
        assert!(capabilities(&host).is_err());
    }
}

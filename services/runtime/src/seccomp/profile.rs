//! Seccomp profiles in moby's JSON format (what `--security-opt seccomp=profile.json` sends,
//! inline), the built-in default profile, and their translation to the OCI spec's
//! `linux.seccomp` for one container: rules are kept or left out by the container's
//! capabilities, the host's architecture and kernel, as dockerd does.

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;

/// A profile as moby writes it. Unknown fields are ignored, as Go's decoder does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Architectures by their libseccomp names (`SCMP_ARCH_X86_64`), older profiles' form.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    pub syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// One entry of `syscalls`: an action for some system calls, under conditions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The older single-name form.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub names: Option<Vec<String>>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<Arg>>,
    #[serde(default)]
    pub includes: Option<Filter>,
    #[serde(default)]
    pub excludes: Option<Filter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    #[serde(default)]
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// When a rule applies: with all these capabilities, on one of these architectures (Go's
/// names: `amd64`, `arm64`...), from this kernel version on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

impl Profile {
    /// Reads a profile sent as `seccomp=<JSON>`, in dockerd's words when it cannot.
    pub fn parse(json: &str) -> Result<Profile, String> {
        let profile: Profile = serde_json::from_str(json)
            .map_err(|e| format!("Decoding seccomp profile failed: {e}"))?;
        if profile
            .architectures
            .as_ref()
            .is_some_and(|a| !a.is_empty())
            && profile.arch_map.as_ref().is_some_and(|a| !a.is_empty())
        {
            return Err("'architectures' and 'archMap' were specified in the seccomp profile, use either 'architectures' or 'archMap'".into());
        }
        for rule in profile.syscalls.iter().flatten() {
            let has_names = rule.names.as_ref().is_some_and(|n| !n.is_empty());
            if rule.name.as_ref().is_some_and(|n| !n.is_empty()) && has_names {
                return Err("'name' and 'names' were specified in the seccomp profile, use either 'name' or 'names'".into());
            }
        }
        Ok(profile)
    }

    /// The profile for a container with the capability set `caps`, as the OCI spec carries
    /// it: the host's architectures, the rules that apply to them, this kernel and `caps`.
    pub fn to_oci(&self, caps: &HashSet<Capability>) -> Result<LinuxSeccomp, String> {
        let arch = std::env::consts::ARCH;
        let kernel = kernel_version();
        let default_action = action(&self.default_action)?;
        let mut architectures = Vec::new();
        if let Some(names) = &self.architectures {
            for name in names {
                architectures.push(scmp_arch(name)?);
            }
        }
        if let Some(map) = &self.arch_map {
            if let Some(native) = map
                .iter()
                .find(|m| Some(m.architecture.as_str()) == native_scmp_arch(arch))
            {
                architectures.push(scmp_arch(&native.architecture)?);
                for sub in native.sub_architectures.iter().flatten() {
                    architectures.push(scmp_arch(sub)?);
                }
            }
        }
        let go_arch = go_arch(arch);
        let has_cap = |name: &str| {
            let bare = name.trim().to_ascii_uppercase();
            let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
            bare.parse::<Capability>().is_ok_and(|c| caps.contains(&c))
        };
        let mut syscalls = Vec::new();
        for rule in self.syscalls.iter().flatten() {
            if let Some(inc) = &rule.includes {
                if inc
                    .arches
                    .as_ref()
                    .is_some_and(|a| !a.is_empty() && !a.iter().any(|x| x == go_arch))
                {
                    continue;
                }
                if inc.caps.iter().flatten().any(|c| !has_cap(c)) {
                    continue;
                }
                if let Some(min) = inc.min_kernel.as_deref().filter(|m| !m.is_empty()) {
                    let min = parse_version(min)
                        .ok_or_else(|| format!("invalid kernel version: {min:?}"))?;
                    if kernel.is_some_and(|k| k < min) {
                        continue;
                    }
                }
            }
            if let Some(exc) = &rule.excludes {
                if exc.arches.iter().flatten().any(|x| x == go_arch) {
                    continue;
                }
                if exc.caps.iter().flatten().any(|c| has_cap(c)) {
                    continue;
                }
                if let Some(min) = exc.min_kernel.as_deref().filter(|m| !m.is_empty()) {
                    let min = parse_version(min)
                        .ok_or_else(|| format!("invalid kernel version: {min:?}"))?;
                    if kernel.is_some_and(|k| k >= min) {
                        continue;
                    }
                }
            }
            let names: Vec<String> = match (&rule.name, &rule.names) {
                (Some(n), _) if !n.is_empty() => vec![n.clone()],
                (_, Some(n)) => n.clone(),
                _ => continue,
            };
            let mut args = Vec::new();
            for a in rule.args.iter().flatten() {
                args.push(LinuxSeccompArg::from_parts(
                    a.index,
                    a.value,
                    a.value_two,
                    operator(&a.op)?,
                ));
            }
            let mut call: LinuxSyscall = LinuxSyscallBuilder::default()
                .names(names)
                .action(action(&rule.action)?)
                .build()
                .map_err(|e| e.to_string())?;
            if let Some(errno) = rule.errno_ret {
                call.set_errno_ret(Some(errno));
            }
            if !args.is_empty() {
                call.set_args(Some(args));
            }
            syscalls.push(call);
        }
        let mut seccomp = LinuxSeccompBuilder::default()
            .default_action(default_action)
            .architectures(architectures)
            .syscalls(syscalls)
            .build()
            .map_err(|e| e.to_string())?;
        if let Some(errno) = self.default_errno_ret {
            seccomp.set_default_errno_ret(Some(errno));
        }
        Ok(seccomp)
    }
}

trait FromParts {
    fn from_parts(index: u32, value: u64, value_two: u64, op: LinuxSeccompOperator) -> Self;
}

impl FromParts for LinuxSeccompArg {
    fn from_parts(index: u32, value: u64, value_two: u64, op: LinuxSeccompOperator) -> Self {
        oci_spec::runtime::LinuxSeccompArgBuilder::default()
            .index(index as usize)
            .value(value)
            .value_two(value_two)
            .op(op)
            .build()
            .expect("every field set")
    }
}

// oci-spec's enums read libseccomp's names (`SCMP_ACT_ALLOW`, `SCMP_CMP_EQ`, `SCMP_ARCH_X86_64`).
fn action(name: &str) -> Result<LinuxSeccompAction, String> {
    name.parse()
        .map_err(|_| format!("invalid action: {name:?}"))
}

fn operator(name: &str) -> Result<LinuxSeccompOperator, String> {
    name.parse()
        .map_err(|_| format!("invalid operator: {name:?}"))
}

fn scmp_arch(name: &str) -> Result<Arch, String> {
    name.parse()
        .map_err(|_| format!("invalid architecture: {name:?}"))
}

/// libseccomp's name of the architecture Rust calls `arch`.
fn native_scmp_arch(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "x86_64" => "SCMP_ARCH_X86_64",
        "x86" => "SCMP_ARCH_X86",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        "mips64" => "SCMP_ARCH_MIPSEL64",
        _ => return None,
    })
}

/// Go's name of the architecture Rust calls `arch` (profiles' `arches` use Go's names).
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "mips64" => "mips64le",
        other => other,
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()
        .map(|m| {
            let digits: String = m.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap_or(0)
        })
        .unwrap_or(0);
    Some((major, minor))
}

fn kernel_version() -> Option<(u32, u32)> {
    let uts = nix::sys::utsname::uname().ok()?;
    parse_version(&uts.release().to_string_lossy())
}

/// The profile dockerd applies when none is given (moby's `profiles/seccomp/default.json`):
/// everything outside an allow-list fails with EPERM; `socket` refuses AF_VSOCK, `personality`
/// takes only the harmless personas, `clone` creates no namespaces and `clone3` fails with
/// ENOSYS (so that libcs fall back to `clone`) unless the container has CAP_SYS_ADMIN; the
/// calls a capability is needed for are allowed with that capability.
pub fn builtin() -> Profile {
    let rule = |names: &[&str], includes: Option<Filter>, excludes: Option<Filter>| Rule {
        names: Some(names.iter().map(|s| s.to_string()).collect()),
        action: "SCMP_ACT_ALLOW".into(),
        includes,
        excludes,
        ..Rule::default()
    };
    let with_arg = |name: &str, index: u32, value: u64, op: &str| Rule {
        args: Some(vec![Arg {
            index,
            value,
            value_two: 0,
            op: op.into(),
        }]),
        ..rule(&[name], None, None)
    };
    let caps = |caps: &[&str]| {
        Some(Filter {
            caps: Some(caps.iter().map(|s| s.to_string()).collect()),
            ..Filter::default()
        })
    };
    let arches = |arches: &[&str]| {
        Some(Filter {
            arches: Some(arches.iter().map(|s| s.to_string()).collect()),
            ..Filter::default()
        })
    };
    // The namespace flags of clone(2): CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
    const CLONE_NAMESPACES: u64 = 0x7E02_0000;
    let mut syscalls = vec![rule(ALLOWED, None, None)];
    syscalls.push(rule(
        &["process_vm_readv", "process_vm_writev", "ptrace"],
        Some(Filter {
            min_kernel: Some("4.8".into()),
            ..Filter::default()
        }),
        None,
    ));
    // AF_VSOCK (40) reaches the host's hypervisor sockets.
    syscalls.push(with_arg("socket", 0, 40, "SCMP_CMP_NE"));
    // PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26, and the query 0xffffffff.
    for persona in [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(with_arg("personality", 0, persona, "SCMP_CMP_EQ"));
    }
    syscalls.push(rule(
        &["sync_file_range2", "swapcontext"],
        arches(&["ppc64le"]),
        None,
    ));
    syscalls.push(rule(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        arches(&["arm", "arm64"]),
        None,
    ));
    syscalls.push(rule(&["arch_prctl"], arches(&["amd64", "x32"]), None));
    syscalls.push(rule(
        &["modify_ldt"],
        arches(&["amd64", "x32", "x86"]),
        None,
    ));
    syscalls.push(rule(
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        arches(&["s390", "s390x"]),
        None,
    ));
    syscalls.push(rule(&["riscv_flush_icache"], arches(&["riscv64"]), None));
    syscalls.push(rule(
        &["open_by_handle_at"],
        caps(&["CAP_DAC_READ_SEARCH"]),
        None,
    ));
    syscalls.push(rule(
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        caps(&["CAP_SYS_ADMIN"]),
        None,
    ));
    let no_sys_admin = |arches: &[&str]| {
        Some(Filter {
            caps: Some(vec!["CAP_SYS_ADMIN".into()]),
            arches: Some(arches.iter().map(|s| s.to_string()).collect()),
            ..Filter::default()
        })
    };
    syscalls.push(Rule {
        excludes: no_sys_admin(&["s390", "s390x"]),
        ..with_arg("clone", 0, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")
    });
    // s390 passes clone's flags second.
    syscalls.push(Rule {
        includes: arches(&["s390", "s390x"]),
        excludes: caps(&["CAP_SYS_ADMIN"]),
        ..with_arg("clone", 1, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")
    });
    syscalls.push(Rule {
        action: "SCMP_ACT_ERRNO".into(),
        errno_ret: Some(libc::ENOSYS as u32),
        ..rule(&["clone3"], None, caps(&["CAP_SYS_ADMIN"]))
    });
    for (names, cap) in [
        (&["reboot"][..], "CAP_SYS_BOOT"),
        (&["chroot"], "CAP_SYS_CHROOT"),
        (
            &["delete_module", "init_module", "finit_module"],
            "CAP_SYS_MODULE",
        ),
        (&["acct"], "CAP_SYS_PACCT"),
        (
            &[
                "kcmp",
                "pidfd_getfd",
                "process_madvise",
                "process_vm_readv",
                "process_vm_writev",
                "ptrace",
            ],
            "CAP_SYS_PTRACE",
        ),
        (&["iopl", "ioperm"], "CAP_SYS_RAWIO"),
        (
            &["settimeofday", "stime", "clock_settime", "clock_settime64"],
            "CAP_SYS_TIME",
        ),
        (&["vhangup"], "CAP_SYS_TTY_CONFIG"),
        (
            &[
                "get_mempolicy",
                "mbind",
                "set_mempolicy",
                "set_mempolicy_home_node",
            ],
            "CAP_SYS_NICE",
        ),
        (&["syslog"], "CAP_SYSLOG"),
        (&["bpf"], "CAP_BPF"),
        (&["perf_event_open"], "CAP_PERFMON"),
    ] {
        syscalls.push(rule(names, caps(&[cap]), None));
    }
    let map = |arch: &str, subs: &[&str]| ArchMap {
        architecture: arch.into(),
        sub_architectures: Some(subs.iter().map(|s| s.to_string()).collect()),
    };
    Profile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(libc::EPERM as u32),
        architectures: None,
        arch_map: Some(vec![
            map("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
            map("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
            map(
                "SCMP_ARCH_MIPS64",
                &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"],
            ),
            map(
                "SCMP_ARCH_MIPS64N32",
                &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"],
            ),
            map(
                "SCMP_ARCH_MIPSEL64",
                &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
            ),
            map(
                "SCMP_ARCH_MIPSEL64N32",
                &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"],
            ),
            map("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
            map("SCMP_ARCH_RISCV64", &[]),
        ]),
        syscalls: Some(syscalls),
    }
}

/// The system calls every container may make, whatever its capabilities.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn names_allowed(seccomp: &LinuxSeccomp) -> HashSet<String> {
        seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn the_default_profile_follows_the_containers_capabilities() {
        let default_caps: HashSet<Capability> = crate::container::docker_default_capabilities()
            .into_iter()
            .collect();
        let seccomp = builtin().to_oci(&default_caps).unwrap();
        let allowed = names_allowed(&seccomp);
        assert!(allowed.contains("chroot"), "CAP_SYS_CHROOT is a default");
        for refused in [
            "mount", "unshare", "setns", "keyctl", "add_key", "reboot", "bpf",
        ] {
            assert!(!allowed.contains(refused), "{refused} allowed by default");
        }
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(1));
        // clone without namespaces, and clone3's ENOSYS, without CAP_SYS_ADMIN.
        let calls = seccomp.syscalls().clone().unwrap();
        assert!(calls
            .iter()
            .any(|c| c.names() == &["clone"] && c.args().is_some()));
        assert!(calls
            .iter()
            .any(|c| c.names() == &["clone3"] && c.errno_ret() == Some(38)));

        let mut admin = default_caps.clone();
        admin.insert(Capability::SysAdmin);
        let allowed = names_allowed(&builtin().to_oci(&admin).unwrap());
        for name in ["mount", "unshare", "setns", "clone", "clone3"] {
            assert!(allowed.contains(name), "{name} refused with CAP_SYS_ADMIN");
        }
    }

    #[test]
    fn profiles_are_read_as_dockerd_reads_them() {
        let p = Profile::parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"Unknown":1}]}"#,
        )
        .unwrap();
        let oci = p.to_oci(&HashSet::new()).unwrap();
        assert_eq!(oci.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert!(Profile::parse("{")
            .unwrap_err()
            .starts_with("Decoding seccomp profile failed"));
        assert!(Profile::parse(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#)
            .unwrap()
            .to_oci(&HashSet::new())
            .is_err());
        assert!(Profile::parse(
            r#"{"syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ALLOW"}]}"#
        )
        .is_err());
    }
}

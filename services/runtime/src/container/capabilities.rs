//! Capability sets: the bounding set is dropped with prctl, the other three with capset(2)
//! and the ambient set with prctl. These are three syscalls with fixed ABI structs, so we make
//! them with libc directly rather than adding a crate (such as `caps`) for them.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::error::{StepError, StepResult};
use nix::errno::Errno;

/// Docker's default capability set (moby's `oci/caps/defaults.go`), 0x00000000a80425fb.
pub fn docker_default_capabilities() -> Capabilities {
    [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ]
    .into_iter()
    .collect()
}

/// The kernel's number for a capability (linux/capability.h).
pub fn cap_number(cap: Capability) -> u32 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

fn mask(set: Option<&Capabilities>) -> u64 {
    set.into_iter()
        .flatten()
        .fold(0u64, |bits, cap| bits | (1u64 << cap_number(*cap)))
}

/// The spec's sets as bit masks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapSets {
    pub(crate) fn from_spec(caps: Option<&LinuxCapabilities>) -> CapSets {
        match caps {
            None => CapSets::default(),
            Some(c) => CapSets {
                bounding: mask(c.bounding().as_ref()),
                effective: mask(c.effective().as_ref()),
                permitted: mask(c.permitted().as_ref()),
                inheritable: mask(c.inheritable().as_ref()),
                ambient: mask(c.ambient().as_ref()),
            },
        }
    }
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: capability prctls take integer arguments only.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    Errno::result(rc).map(drop)
}

/// Drops every capability not in `keep` from the bounding set (needs CAP_SETPCAP, so this
/// runs before the user switch).
pub(crate) fn drop_bounding(keep: u64) -> StepResult<()> {
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        match prctl(libc::PR_CAPBSET_DROP, cap.into(), 0) {
            Ok(()) => {}
            // Past the kernel's last capability.
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(StepError::os(format!("drop capability {cap}"), e)),
        }
    }
    Ok(())
}

/// Keeps the permitted set across setuid away from root (cleared again by the kernel at exec).
pub(crate) fn keep_caps(on: bool) -> StepResult<()> {
    prctl(libc::PR_SET_KEEPCAPS, on.into(), 0).map_err(|e| StepError::os("prctl keepcaps", e))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets effective, permitted and inheritable, then the ambient set.
pub(crate) fn apply(sets: &CapSets) -> StepResult<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data: [CapData; 2] = std::array::from_fn(|i| {
        let word = |bits: u64| (bits >> (32 * i)) as u32;
        CapData {
            effective: word(sets.effective),
            permitted: word(sets.permitted),
            inheritable: word(sets.inheritable),
        }
    });
    // SAFETY: version 3 capset reads one header and two data structs, which we own.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    Errno::result(rc).map_err(|e| StepError::os("capset", e))?;
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )
    .map_err(|e| StepError::os("clear ambient capabilities", e))?;
    for cap in 0..64u32 {
        if sets.ambient & (1 << cap) != 0 {
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap.into(),
            )
            .map_err(|e| StepError::os(format!("raise ambient capability {cap}"), e))?;
        }
    }
    Ok(())
}

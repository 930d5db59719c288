//! Device rules on cgroup v2. The unified hierarchy has no `devices` controller: which device
//! nodes a group's processes may create (`mknod`), read and write is decided by eBPF programs of
//! type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the group, as runc does it (its
//! `devicefilter`). This module turns a group's ordered rule list into such a program
//! ([`Policy::program`]), loads it with bpf(2) and attaches it to the group's directory
//! ([`apply`]). Removing the group releases the program.
//!
//! **Semantics are cgroup v1's.** The rules are taken in order, as writes to `devices.allow`
//! and `devices.deny` would be ([`Policy::from_rules`], after the kernel's
//! `devcgroup_update_access`), and the program decides as the v1 controller decides with the
//! result (`Policy::allows`, after `devcgroup_legacy_check_permission`); runc gets the same
//! from its devices emulator before it generates its filter. For the lists Wharf makes (a
//! deny-all, then allows) that means: a later rule wins over an earlier one (an `a` rule
//! drops everything before it), and an access is allowed when an allow rule covers it whole.
//! The one thing v1 adds to "the last matching rule wins" is that allows of the very same
//! device (`c 1:3 r`, then `c 1:3 w`) merge their access, as the kernel merges them.
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
//! (`access_type`: device type in the low 16 bits, `BPF_DEVCG_DEV_BLOCK` 1 or `_CHAR` 2;
//! access in the high 16 bits, `BPF_DEVCG_ACC_MKNOD` 1, `_READ` 2, `_WRITE` 4) and returns 1
//! to allow, 0 to refuse (the caller sees `EPERM`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::devices::DeviceRule;
use super::error::{CgroupError, Result};

/// `BPF_DEVCG_DEV_BLOCK`: the low half of `access_type` for a block device.
pub(crate) const DEV_BLOCK: u32 = 1;
/// `BPF_DEVCG_DEV_CHAR`.
pub(crate) const DEV_CHAR: u32 = 2;
/// `BPF_DEVCG_ACC_MKNOD`: the high half of `access_type` when a node is created.
pub(crate) const ACC_MKNOD: u32 = 1;
/// `BPF_DEVCG_ACC_READ`.
pub(crate) const ACC_READ: u32 = 2;
/// `BPF_DEVCG_ACC_WRITE`.
pub(crate) const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The largest major and minor numbers a device can have (`MINORBITS` is 20 in `dev_t`):
/// an exception naming a larger number can match nothing.
const MAX_MAJOR: u32 = (1 << 12) - 1;
const MAX_MINOR: u32 = (1 << 20) - 1;

// ---------------------------------------------------------------------------------------------
// The rules, reduced as cgroup v1 reduces them.

/// One entry of v1's exception list: a device type (`DEV_BLOCK` or `DEV_CHAR`), major and
/// minor (`None`: any) and access bits (`ACC_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exception {
    kind: u32,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

impl Exception {
    fn same_device(&self, other: &Exception) -> bool {
        (self.kind, self.major, self.minor) == (other.kind, other.major, other.minor)
    }

    #[cfg(test)]
    fn names(&self, kind: u32, major: u32, minor: u32) -> bool {
        self.kind == kind
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }

    fn can_match_a_device(&self) -> bool {
        self.major.is_none_or(|m| m <= MAX_MAJOR) && self.minor.is_none_or(|m| m <= MAX_MINOR)
    }
}

/// What a v1 devices group holds after a list of rules: a default (allow or deny everything)
/// and the exceptions to it, each of the opposite verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    default_allow: bool,
    exceptions: Vec<Exception>,
}

impl Policy {
    /// Applies `rules` in order to a new group (which, like a v1 group under an unrestricted
    /// parent or a v2 group without programs, allows everything), as the kernel's v1
    /// controller does:
    ///
    /// - `a` (any numbers, any access) sets the default and drops every exception;
    /// - a rule of the default's verdict takes its access away from the exception naming
    ///   the very same device (type, major, minor, wildcards included), dropping it when
    ///   nothing is left;
    /// - a rule of the other verdict adds its access to the exception naming the very same
    ///   device, or adds a new exception.
    pub(crate) fn from_rules(rules: &[DeviceRule]) -> Result<Policy> {
        let mut policy = Policy {
            default_allow: true,
            exceptions: Vec::new(),
        };
        for rule in rules {
            let kind = match rule.kind {
                'a' => {
                    policy.default_allow = rule.allow;
                    policy.exceptions.clear();
                    continue;
                }
                'b' => DEV_BLOCK,
                'c' => DEV_CHAR,
                other => {
                    return Err(CgroupError::InvalidResources(format!(
                        "device rule {:?}: unknown device type {other:?}",
                        rule.to_v1()
                    )))
                }
            };
            let access = access_bits(&rule.access).ok_or_else(|| {
                CgroupError::InvalidResources(format!(
                    "device rule {:?}: access must be some of r, w and m",
                    rule.to_v1()
                ))
            })?;
            let new = Exception {
                kind,
                major: rule.major,
                minor: rule.minor,
                access,
            };
            if rule.allow == policy.default_allow {
                for ex in policy
                    .exceptions
                    .iter_mut()
                    .filter(|ex| ex.same_device(&new))
                {
                    ex.access &= !access;
                }
                policy.exceptions.retain(|ex| ex.access != 0);
            } else if let Some(ex) = policy.exceptions.iter_mut().find(|ex| ex.same_device(&new)) {
                ex.access |= access;
            } else {
                policy.exceptions.push(new);
            }
        }
        Ok(policy)
    }

    /// Whether `access` (`ACC_*` bits) to the device `kind` (`DEV_*`) `major:minor` is
    /// allowed, as v1 decides: with a deny default, when one exception names the device and
    /// covers all of the access; with an allow default, unless an exception names the device
    /// and shares any of the access. (The program is checked against this in the tests.)
    #[cfg(test)]
    pub(crate) fn allows(&self, kind: u32, access: u32, major: u32, minor: u32) -> bool {
        let mut named = self
            .exceptions
            .iter()
            .filter(|ex| ex.names(kind, major, minor));
        if self.default_allow {
            !named.any(|ex| access & ex.access != 0)
        } else {
            named.any(|ex| access & !ex.access == 0)
        }
    }

    /// The program that decides as `Policy::allows` does. Like runc's filter: the context
    /// is read into registers, then one block per exception (in reverse order; all of them
    /// have the same verdict) jumps to the next block when the device or access does not
    /// match and returns the exception's verdict otherwise; the last block returns the
    /// default.
    ///
    /// ```text
    /// r2 = ctx->access_type & 0xffff     r3 = ctx->access_type >> 16
    /// r4 = ctx->major                    r5 = ctx->minor
    /// per exception:
    ///   if r2 != type goto next
    ///   r1 = r3 & access                 (left out when access is rwm)
    ///   deny default:  if r1 != r3 goto next     (all of the access covered)
    ///   allow default: if r1 == 0 goto next      (any of it)
    ///   if r4 != major goto next         (left out for *)
    ///   if r5 != minor goto next         (left out for *)
    ///   return the exception's verdict
    /// return the default
    /// ```
    pub(crate) fn program(&self) -> Vec<Insn> {
        use Reg::*;
        let mut program = vec![
            Insn::load_u32(R2, R1, 0),
            Insn::and32_imm(R2, 0xffff),
            Insn::load_u32(R3, R1, 0),
            Insn::rsh32_imm(R3, 16),
            Insn::load_u32(R4, R1, 4),
            Insn::load_u32(R5, R1, 8),
        ];
        let verdict = i32::from(!self.default_allow);
        for ex in self.exceptions.iter().rev() {
            if !ex.can_match_a_device() {
                continue;
            }
            let mut block = Block::default();
            block.jump_next(Insn::jne_imm(R2, ex.kind as i32, 0));
            if ex.access != ACC_ALL {
                block.push(Insn::mov32_reg(R1, R3));
                block.push(Insn::and32_imm(R1, ex.access as i32));
                if self.default_allow {
                    block.jump_next(Insn::jeq_imm(R1, 0, 0));
                } else {
                    block.jump_next(Insn::jne_reg(R1, R3, 0));
                }
            }
            if let Some(major) = ex.major {
                block.jump_next(Insn::jne_imm(R4, major as i32, 0));
            }
            if let Some(minor) = ex.minor {
                block.jump_next(Insn::jne_imm(R5, minor as i32, 0));
            }
            block.push(Insn::mov32_imm(R0, verdict));
            block.push(Insn::exit());
            program.extend(block.finish());
        }
        program.push(Insn::mov32_imm(R0, i32::from(self.default_allow)));
        program.push(Insn::exit());
        program
    }
}

/// `rwm` as `ACC_*` bits; `None` for anything else or nothing.
fn access_bits(access: &str) -> Option<u32> {
    let mut bits = 0;
    for c in access.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    (bits != 0).then_some(bits)
}

/// Instructions of one exception, whose failed checks jump past its end.
#[derive(Default)]
struct Block {
    insns: Vec<Insn>,
    /// Which instructions jump to the next block.
    jumps: Vec<usize>,
}

impl Block {
    fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    /// A conditional jump (its offset set in `finish`) to the next block.
    fn jump_next(&mut self, jump: Insn) {
        self.jumps.push(self.insns.len());
        self.insns.push(jump);
    }

    fn finish(mut self) -> Vec<Insn> {
        let len = self.insns.len();
        for at in self.jumps {
            // A jump's offset counts from the instruction after it; a block is at most 8 long.
            self.insns[at].off = (len - at - 1) as i16;
        }
        self.insns
    }
}

// ---------------------------------------------------------------------------------------------
// eBPF instructions: only the few the program uses.

/// An eBPF register. r1 holds the context pointer on entry, r0 the return value on exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Reg {
    R0 = 0,
    R1 = 1,
    R2 = 2,
    R3 = 3,
    R4 = 4,
    R5 = 5,
}

// Opcode parts (linux/bpf_common.h, linux/bpf.h): class | size or operation | source.
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04; // 32-bit arithmetic: the result is zero-extended to 64 bits
const BPF_JMP: u8 = 0x05; // 64-bit comparisons
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00; // operand: the immediate
const BPF_X: u8 = 0x08; // operand: the source register
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// One instruction as the kernel reads it (`struct bpf_insn`, 8 bytes): opcode, destination
/// and source registers (4 bits each), a signed offset (for jumps: instructions to skip after
/// this one) and a signed 32-bit immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        // `__u8 dst_reg:4, src_reg:4`: the first bit-field takes the low bits on
        // little-endian machines and the high bits on big-endian ones.
        let (dst, src) = (dst as u8, src as u8);
        let regs = if cfg!(target_endian = "little") {
            dst | src << 4
        } else {
            dst << 4 | src
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    /// `dst = *(u32 *)(src + off)` (`ldxw`), zero-extended.
    pub(crate) fn load_u32(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }

    /// `dst = imm` (`mov32`), zero-extended.
    pub(crate) fn mov32_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_MOV | BPF_K, dst, Reg::R0, 0, imm)
    }

    /// `dst = (u32) src` (`mov32`).
    pub(crate) fn mov32_reg(dst: Reg, src: Reg) -> Insn {
        Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
    }

    /// `dst = (u32) dst & imm` (`and32`).
    pub(crate) fn and32_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_AND | BPF_K, dst, Reg::R0, 0, imm)
    }

    /// `dst = (u32) dst >> imm` (`rsh32`, logical).
    pub(crate) fn rsh32_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(BPF_ALU | BPF_RSH | BPF_K, dst, Reg::R0, 0, imm)
    }

    /// `if dst != imm goto +off` (`imm` sign-extended to 64 bits).
    pub(crate) fn jne_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JNE | BPF_K, dst, Reg::R0, off, imm)
    }

    /// `if dst != src goto +off`.
    pub(crate) fn jne_reg(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JNE | BPF_X, dst, src, off, 0)
    }

    /// `if dst == imm goto +off`.
    pub(crate) fn jeq_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JEQ | BPF_K, dst, Reg::R0, off, imm)
    }

    /// `return r0`.
    pub(crate) fn exit() -> Insn {
        Insn::new(BPF_JMP | BPF_EXIT, Reg::R0, Reg::R0, 0, 0)
    }

    /// The 8 bytes the kernel reads, in this machine's byte order.
    #[cfg(test)]
    pub(crate) fn to_bytes(self) -> [u8; 8] {
        let mut out = [0; 8];
        out[0] = self.code;
        out[1] = self.regs;
        out[2..4].copy_from_slice(&self.off.to_ne_bytes());
        out[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        out
    }
}

// ---------------------------------------------------------------------------------------------
// bpf(2): loading the program and attaching it to the group.

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Programs of the group's ancestors keep running, and every one must allow an access.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// The license the kernel is told: it only matters to GPL-only helpers, which this program
/// does not call.
const LICENSE: &std::ffi::CStr = c"Apache-2.0";
/// The name `bpftool prog` shows (at most 15 bytes).
const NAME: &[u8] = b"wharf_devices";
/// The verifier's log buffer, asked for when a load fails.
const LOG_SIZE: usize = 64 * 1024;

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type` (what kernels since
/// 4.17 know; an older one accepts the trailing zeros).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH` and `BPF_PROG_DETACH`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// `union bpf_attr` for `BPF_PROG_QUERY`.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `union bpf_attr` for `BPF_PROG_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Calls bpf(2) with `attr`, one of the `*Attr` structs above (each a plain prefix of
/// `union bpf_attr` with no padding bytes, as the kernel checks everything it is given).
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised #[repr(C)] value laid out as the prefix of
    // `union bpf_attr` for `cmd`; the kernel reads and writes at most `size_of::<T>()` bytes of
    // it, and any pointers in it point to buffers that outlive this call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A descriptor bpf(2) returned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) just returned this new descriptor, which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Loads `insns` as a cgroup device program. When the kernel refuses it, the load is tried
/// again with the verifier's log, which the error carries.
fn load(insns: &[Insn], dir: &Path) -> Result<OwnedFd> {
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..NAME.len()].copy_from_slice(NAME);
    let first = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(owned(fd)),
        Err(e) => e,
    };
    let mut log = vec![0u8; LOG_SIZE];
    attr.log_level = 1;
    attr.log_size = LOG_SIZE as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    let again = bpf(BPF_PROG_LOAD, &mut attr);
    let source = match again {
        Ok(fd) => return Ok(owned(fd)),
        Err(e) => e,
    };
    let said = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)])
        .trim()
        .to_string();
    let mut detail = match said.is_empty() {
        true => String::new(),
        false => format!("; the verifier said: {said}"),
    };
    if first.raw_os_error() == Some(libc::EPERM) {
        detail.push_str(
            " (loading BPF programs needs CAP_BPF or CAP_SYS_ADMIN, and kernels before 5.11 \
             charge them to RLIMIT_MEMLOCK)",
        );
    }
    Err(CgroupError::DeviceProgram {
        op: "load it",
        dir: dir.to_path_buf(),
        source,
        detail,
    })
}

/// The IDs of the device programs attached to the group itself (not its ancestors').
fn attached(group: &File) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 16];
    loop {
        let mut attr = QueryAttr {
            target_fd: group.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // The kernel says how many there are.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ids = vec![0; (attr.prog_cnt as usize).max(ids.len() * 2)];
            }
            Err(e) => return Err(e),
        }
    }
}

/// Attaches `prog` to the group, then detaches the device programs attached to it before
/// (an earlier `apply`'s): with `BPF_F_ALLOW_MULTI` every attached program must allow an
/// access, so an old one would otherwise keep refusing what the new rules allow. Between
/// the two steps both run, which is never looser than either.
fn attach(prog: &OwnedFd, dir: &Path) -> Result<()> {
    let fail = |op, source| CgroupError::DeviceProgram {
        op,
        dir: dir.to_path_buf(),
        source,
        detail: String::new(),
    };
    let group = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| fail("open the group", e))?;
    let old = attached(&group).map_err(|e| fail("list the programs attached before", e))?;
    let mut attr = AttachAttr {
        target_fd: group.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| fail("attach it", e))?;
    for id in old {
        let mut by_id = GetFdByIdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_prog = match bpf(BPF_PROG_GET_FD_BY_ID, &mut by_id) {
            Ok(fd) => owned(fd),
            // Detached and freed meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(fail("find an earlier one", e)),
        };
        let mut detach = AttachAttr {
            target_fd: group.as_raw_fd() as u32,
            attach_bpf_fd: old_prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        match bpf(BPF_PROG_DETACH, &mut detach) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(fail("detach an earlier one", e)),
        }
    }
    Ok(())
}

/// Enforces `rules` (in order, with v1's semantics) on the v2 group at `dir`: a program
/// generated from them is loaded and attached, replacing the group's earlier one.
pub(crate) fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let program = Policy::from_rules(rules)?.program();
    let prog = load(&program, dir)?;
    attach(&prog, dir)
    // `prog` closes here; the attachment holds the program until it is detached or the
    // group is removed.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::default_device_rules;
    use Reg::*;

    fn rule(text: &str) -> DeviceRule {
        DeviceRule::parse(text).unwrap()
    }

    fn deny(text: &str) -> DeviceRule {
        DeviceRule {
            allow: false,
            ..rule(text)
        }
    }

    fn bytes(program: &[Insn]) -> Vec<u8> {
        program.iter().flat_map(|i| i.to_bytes()).collect()
    }

    /// Runs `program` in rbpf's interpreter (an eBPF machine independent of this module) on
    /// a `bpf_cgroup_dev_ctx`.
    fn run(program: &[u8], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let vm = rbpf::EbpfVmRaw::new(Some(program)).expect("rbpf accepts the program");
        let mut ctx = Vec::with_capacity(12);
        for field in [access << 16 | kind, major, minor] {
            ctx.extend_from_slice(&field.to_ne_bytes());
        }
        vm.execute_program(&mut ctx).expect("the program runs")
    }

    const KINDS: [u32; 2] = [DEV_BLOCK, DEV_CHAR];
    const ACCESSES: [u32; 7] = [1, 2, 3, 4, 5, 6, 7];
    const NUMBERS: [u32; 6] = [0, 1, 3, 5, 7, 136];

    /// The program's answer equals the policy's for every type, access and number here.
    #[track_caller]
    fn assert_program_decides_as_the_policy(policy: &Policy) {
        let program = bytes(&policy.program());
        for kind in KINDS {
            for access in ACCESSES {
                for major in NUMBERS {
                    for minor in NUMBERS {
                        let want = policy.allows(kind, access, major, minor);
                        assert_eq!(
                            run(&program, kind, access, major, minor),
                            u64::from(want),
                            "{kind} {major}:{minor} access {access} in {policy:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn each_instruction_encodes_as_the_kernel_reads_it() {
        // (built here, the bytes from the eBPF instruction set, the same in rbpf's assembler)
        let cases = [
            (
                Insn::load_u32(R2, R1, 0),
                [0x61, 0x12, 0, 0, 0, 0, 0, 0],
                "ldxw r2, [r1+0]",
            ),
            (
                Insn::load_u32(R4, R1, 4),
                [0x61, 0x14, 4, 0, 0, 0, 0, 0],
                "ldxw r4, [r1+4]",
            ),
            (
                Insn::load_u32(R5, R1, 8),
                [0x61, 0x15, 8, 0, 0, 0, 0, 0],
                "ldxw r5, [r1+8]",
            ),
            (
                Insn::and32_imm(R2, 0xffff),
                [0x54, 0x02, 0, 0, 0xff, 0xff, 0, 0],
                "and32 r2, 0xffff",
            ),
            (
                Insn::rsh32_imm(R3, 16),
                [0x74, 0x03, 0, 0, 16, 0, 0, 0],
                "rsh32 r3, 16",
            ),
            (
                Insn::mov32_reg(R1, R3),
                [0xbc, 0x31, 0, 0, 0, 0, 0, 0],
                "mov32 r1, r3",
            ),
            (
                Insn::mov32_imm(R0, 1),
                [0xb4, 0x00, 0, 0, 1, 0, 0, 0],
                "mov32 r0, 1",
            ),
            (
                Insn::jne_imm(R2, 2, 3),
                [0x55, 0x02, 3, 0, 2, 0, 0, 0],
                "jne r2, 2, +3",
            ),
            (
                Insn::jne_imm(R4, 136, 300),
                [0x55, 0x04, 0x2c, 0x01, 136, 0, 0, 0],
                "jne r4, 136, +300",
            ),
            (
                Insn::jne_reg(R1, R3, 1),
                [0x5d, 0x31, 1, 0, 0, 0, 0, 0],
                "jne r1, r3, +1",
            ),
            (
                Insn::jeq_imm(R1, 0, 2),
                [0x15, 0x01, 2, 0, 0, 0, 0, 0],
                "jeq r1, 0, +2",
            ),
            (Insn::exit(), [0x95, 0, 0, 0, 0, 0, 0, 0], "exit"),
        ];
        for (insn, want, asm) in cases {
            assert_eq!(std::mem::size_of_val(&insn), 8);
            if cfg!(target_endian = "little") {
                assert_eq!(insn.to_bytes(), want, "{asm}");
                assert_eq!(
                    rbpf::assembler::assemble(asm).unwrap(),
                    want.to_vec(),
                    "rbpf's {asm}"
                );
                // The in-memory layout handed to the kernel is the same 8 bytes.
                // SAFETY: Insn is #[repr(C)], 8 bytes without padding.
                let raw: [u8; 8] = unsafe { std::mem::transmute(insn) };
                assert_eq!(raw, want, "{asm} in memory");
            }
        }
    }

    #[test]
    fn the_attr_structs_match_the_kernels_layout() {
        // Offsets in `union bpf_attr` (linux/bpf.h); a gap would be padding the kernel
        // might see as non-zero.
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, license), 16);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_level), 24);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<AttachAttr>(), 20);
        assert_eq!(std::mem::offset_of!(AttachAttr, attach_type), 8);
        assert_eq!(std::mem::offset_of!(AttachAttr, attach_flags), 12);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(std::mem::size_of::<GetFdByIdAttr>(), 12);
    }

    #[test]
    fn the_default_rules_make_runcs_program() {
        let policy = Policy::from_rules(&default_device_rules()).unwrap();
        assert!(!policy.default_allow);
        assert_eq!(policy.exceptions.len(), 11);
        let program = policy.program();
        // The context, then the last rule first: `c 136:* rwm` checks type and major only.
        assert_eq!(
            program[..10],
            [
                Insn::load_u32(R2, R1, 0),
                Insn::and32_imm(R2, 0xffff),
                Insn::load_u32(R3, R1, 0),
                Insn::rsh32_imm(R3, 16),
                Insn::load_u32(R4, R1, 4),
                Insn::load_u32(R5, R1, 8),
                Insn::jne_imm(R2, DEV_CHAR as i32, 3),
                Insn::jne_imm(R4, 136, 2),
                Insn::mov32_imm(R0, 1),
                Insn::exit(),
            ]
        );
        // ... and the first, `c *:* m`, checks type and access.
        let n = program.len();
        assert_eq!(
            program[n - 8..],
            [
                Insn::jne_imm(R2, DEV_CHAR as i32, 5),
                Insn::mov32_reg(R1, R3),
                Insn::and32_imm(R1, ACC_MKNOD as i32),
                Insn::jne_reg(R1, R3, 2),
                Insn::mov32_imm(R0, 1),
                Insn::exit(),
                Insn::mov32_imm(R0, 0),
                Insn::exit(),
            ]
        );
        let program = bytes(&program);
        let null_rw = run(&program, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3);
        assert_eq!(null_rw, 1);
        assert_eq!(run(&program, DEV_CHAR, ACC_READ, 136, 4), 1);
        assert_eq!(run(&program, DEV_BLOCK, ACC_MKNOD, 7, 0), 1);
        assert_eq!(run(&program, DEV_BLOCK, ACC_READ, 7, 0), 0);
        assert_eq!(run(&program, DEV_CHAR, ACC_READ | ACC_MKNOD, 10, 200), 0);
        assert_eq!(run(&program, DEV_CHAR, ACC_READ, 1, 1), 0, "/dev/mem");
        assert_program_decides_as_the_policy(&policy);
    }

    #[test]
    fn rules_reduce_as_the_v1_controller_reduces_them() {
        let policy = |rules: &[DeviceRule]| Policy::from_rules(rules).unwrap();
        // Nothing, or allow-all: everything allowed, no exceptions.
        assert!(policy(&[]).allows(DEV_BLOCK, ACC_ALL, 8, 0));
        assert_eq!(policy(&[DeviceRule::all(true)]), policy(&[]));
        // Allows of the same device merge; of a different one (here a wildcard) they don't.
        let merged = policy(&[DeviceRule::all(false), rule("c 1:3 r"), rule("c 1:3 w")]);
        assert_eq!(merged.exceptions.len(), 1);
        assert!(merged.allows(DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
        let apart = policy(&[DeviceRule::all(false), rule("c 1:* r"), rule("c 1:3 w")]);
        assert!(!apart.allows(DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
        assert!(apart.allows(DEV_CHAR, ACC_READ, 1, 3));
        assert!(apart.allows(DEV_CHAR, ACC_WRITE, 1, 3));
        // A deny of the same device takes access away; of another one it does nothing.
        let taken = policy(&[DeviceRule::all(false), rule("c 1:3 rwm"), deny("c 1:3 w")]);
        assert!(taken.allows(DEV_CHAR, ACC_READ, 1, 3));
        assert!(!taken.allows(DEV_CHAR, ACC_WRITE, 1, 3));
        let gone = policy(&[DeviceRule::all(false), rule("c 1:3 rw"), deny("c 1:3 rw")]);
        assert!(gone.exceptions.is_empty());
        let wider = policy(&[DeviceRule::all(false), rule("c 1:3 rwm"), deny("c 1:* w")]);
        assert!(wider.allows(DEV_CHAR, ACC_WRITE, 1, 3));
        // A later `a` drops everything before it.
        let reset = policy(&[
            DeviceRule::all(false),
            rule("c 1:5 rwm"),
            DeviceRule::all(true),
        ]);
        assert_eq!(reset, policy(&[]));
        let again = policy(&[rule("c 1:5 rwm"), DeviceRule::all(false), rule("c 1:3 r")]);
        assert!(!again.allows(DEV_CHAR, ACC_READ, 1, 5));
        assert!(again.allows(DEV_CHAR, ACC_READ, 1, 3));
        // Allow by default: a deny refuses any access it shares, even partly.
        let denied = policy(&[DeviceRule::all(true), deny("c 1:3 w")]);
        assert!(!denied.allows(DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
        assert!(!denied.allows(DEV_CHAR, ACC_WRITE, 1, 3));
        assert!(denied.allows(DEV_CHAR, ACC_READ, 1, 3));
        assert!(denied.allows(DEV_BLOCK, ACC_WRITE, 1, 3));
        // Types and access letters are checked.
        for bad in [
            DeviceRule::allow('x', None, None, "rwm"),
            DeviceRule::allow('c', None, None, "rwx"),
            DeviceRule::allow('c', None, None, ""),
        ] {
            assert!(matches!(
                Policy::from_rules(&[bad]),
                Err(CgroupError::InvalidResources(_))
            ));
        }
    }

    #[test]
    fn programs_decide_as_the_policy_in_both_modes() {
        for rules in [
            vec![DeviceRule::all(true)],
            vec![DeviceRule::all(false)],
            vec![DeviceRule::all(false), rule("c 1:3 r"), rule("c 1:3 w")],
            vec![DeviceRule::all(false), rule("c 1:* r"), rule("c 1:3 w")],
            vec![DeviceRule::all(false), rule("b 7:* rwm"), deny("b 7:3 w")],
            vec![DeviceRule::all(true), deny("c 1:3 w"), deny("b *:* m")],
            vec![DeviceRule::all(true), deny("c 136:* rw"), deny("c *:5 r")],
            [
                default_device_rules(),
                vec![rule("b 7:5 r"), rule("c 5:* rw")],
            ]
            .concat(),
        ] {
            assert_program_decides_as_the_policy(&Policy::from_rules(&rules).unwrap());
        }
    }

    #[test]
    fn numbers_no_device_can_have_match_nothing() {
        let rules = [
            DeviceRule::all(false),
            DeviceRule::allow('c', Some(u32::MAX), None, "rwm"),
            DeviceRule::allow('c', Some(1), Some(1 << 20), "rwm"),
            rule("c 1:3 rwm"),
        ];
        let policy = Policy::from_rules(&rules).unwrap();
        // Only the block of `c 1:3` is there.
        assert_eq!(policy.program().len(), 6 + 5 + 2);
        assert_program_decides_as_the_policy(&policy);
    }

    /// For Wharf's lists (a deny-all, then allows naming different devices) v1's reduction
    /// equals the rule the brief of runc's filter states: the last matching rule wins.
    #[test]
    fn for_a_deny_all_then_allows_the_last_matching_rule_wins() {
        fn last_match(
            rules: &[DeviceRule],
            kind: u32,
            access: u32,
            major: u32,
            minor: u32,
        ) -> bool {
            rules
                .iter()
                .rev()
                .find(|r| {
                    r.kind == 'a'
                        || (Some(kind) == access_type(r.kind)
                            && r.major.is_none_or(|m| m == major)
                            && r.minor.is_none_or(|m| m == minor)
                            && access & !access_bits(&r.access).unwrap() == 0)
                })
                .is_some_and(|r| r.allow)
        }
        fn access_type(kind: char) -> Option<u32> {
            match kind {
                'b' => Some(DEV_BLOCK),
                'c' => Some(DEV_CHAR),
                _ => None,
            }
        }
        let rules = [
            default_device_rules(),
            vec![rule("b 7:5 r"), rule("c 10:200 rwm"), rule("c 13:* rw")],
        ]
        .concat();
        let policy = Policy::from_rules(&rules).unwrap();
        for kind in KINDS {
            for access in ACCESSES {
                for (major, minor) in [
                    (1, 3),
                    (1, 1),
                    (7, 5),
                    (7, 6),
                    (10, 200),
                    (13, 64),
                    (136, 9),
                    (5, 2),
                ] {
                    assert_eq!(
                        policy.allows(kind, access, major, minor),
                        last_match(&rules, kind, access, major, minor),
                        "{kind} {major}:{minor} {access}"
                    );
                }
            }
        }
    }

    /// Loading needs root (CAP_BPF or CAP_SYS_ADMIN): skipped without it.
    #[test]
    fn a_program_the_verifier_refuses_fails_with_its_log() {
        if !nix::unistd::geteuid().is_root() {
            return eprintln!("not root; skipped");
        }
        let dir = Path::new("/sys/fs/cgroup/wharf/x");
        // A device program must return 0 or 1.
        let err = load(&[Insn::mov32_imm(R0, 2), Insn::exit()], dir).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("device program of /sys/fs/cgroup/wharf/x: cannot load it: "),
            "{text}"
        );
        assert!(
            text.contains("the verifier said:") && text.contains("R0"),
            "{text}"
        );
        // The default rules' program loads.
        let program = Policy::from_rules(&default_device_rules())
            .unwrap()
            .program();
        load(&program, dir).unwrap();
    }

    mod random {
        use super::*;
        use proptest::prelude::*;

        fn any_rule() -> impl Strategy<Value = DeviceRule> {
            let number = prop_oneof![Just(None), (0u32..4).prop_map(Some), Just(Some(136))];
            (
                any::<bool>(),
                prop_oneof![1 => Just('a'), 4 => Just('b'), 4 => Just('c')],
                number.clone(),
                number,
                1u32..8,
            )
                .prop_map(|(allow, kind, major, minor, bits)| {
                    let access: String = [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
                        .iter()
                        .filter(|(bit, _)| bits & bit != 0)
                        .map(|(_, c)| c)
                        .collect();
                    DeviceRule {
                        allow,
                        ..DeviceRule::allow(kind, major, minor, &access)
                    }
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn any_rule_list_compiles_to_a_program_deciding_as_v1(
                rules in proptest::collection::vec(any_rule(), 0..12)
            ) {
                let policy = Policy::from_rules(&rules).unwrap();
                let program = bytes(&policy.program());
                for kind in KINDS {
                    for access in ACCESSES {
                        for major in [0, 1, 2, 3, 136] {
                            for minor in [0, 1, 3, 136] {
                                prop_assert_eq!(
                                    run(&program, kind, access, major, minor),
                                    u64::from(policy.allows(kind, access, major, minor))
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

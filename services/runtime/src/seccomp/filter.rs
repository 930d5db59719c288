//! The OCI spec's `linux.seccomp` compiled to a BPF program by libseccomp (the library runc
//! uses), and loaded by the process about to exec.
//!
//! The program is compiled before the launcher forks, so the child only makes one system call
//! with memory it already has.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::os::fd::FromRawFd;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

/// A compiled filter: BPF instructions as the kernel takes them.
#[derive(Debug, Clone)]
pub struct Program(Vec<libc::sock_filter>);

impl Program {
    /// How many instructions the program has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The instructions as the kernel's `struct sock_filter` array lays them out.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * INSTRUCTION);
        for i in &self.0 {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.extend_from_slice(&[i.jt, i.jf]);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Program, String> {
        if !bytes.len().is_multiple_of(INSTRUCTION) {
            return Err("a partial BPF instruction".to_string());
        }
        let program = bytes
            .chunks_exact(INSTRUCTION)
            .map(|b| libc::sock_filter {
                code: u16::from_ne_bytes([b[0], b[1]]),
                jt: b[2],
                jf: b[3],
                k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            })
            .collect();
        Ok(Program(program))
    }
}

/// The size of one BPF instruction.
const INSTRUCTION: usize = std::mem::size_of::<libc::sock_filter>();

/// A program crosses to the shim as base64 text of its instructions.
impl serde::Serialize for Program {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(self.to_bytes()))
    }
}

impl<'de> serde::Deserialize<'de> for Program {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Program, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = BASE64.decode(text).map_err(serde::de::Error::custom)?;
        Program::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// Programs already compiled, by their filter's JSON: a node compiles the default profile
/// once, not at every start and exec (libseccomp takes milliseconds for moby's profile).
#[derive(Default)]
pub struct Cache(Mutex<HashMap<[u8; 32], Program>>);

/// Distinct filters a node keeps (custom profiles beyond it are compiled again).
const CACHED: usize = 32;

impl Cache {
    /// The compiled program of `seccomp`, from the cache or compiled now (blocking).
    pub fn program(&self, seccomp: &LinuxSeccomp) -> Result<Program, String> {
        let json = serde_json::to_vec(seccomp).map_err(|e| format!("seccomp: {e}"))?;
        let key: [u8; 32] = Sha256::digest(&json).into();
        if let Some(p) = self.lock().get(&key) {
            return Ok(p.clone());
        }
        let program = compile(seccomp)?;
        let mut cache = self.lock();
        if cache.len() >= CACHED {
            cache.clear();
        }
        cache.insert(key, program.clone());
        Ok(program)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Program>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err("seccomp notification (SCMP_ACT_NOTIFY) is not supported".into())
        }
    })
}

fn arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

fn compare(op: LinuxSeccompOperator, value: u64, value_two: u64) -> (ScmpCompareOp, u64) {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // The mask is `value`, the masked argument must equal `valueTwo`.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(value), value_two),
    }
}

/// Compiles `seccomp` for this host. Names libseccomp does not know on an architecture are
/// left out (as runc does: a profile may name calls newer than the library); a rule whose
/// action is the default one adds nothing.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Program, String> {
    let failed = |what: &str, e: libseccomp::error::SeccompError| format!("seccomp: {what}: {e}");
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| failed("init", e))?;
    // The child sets no_new_privs itself when the spec asks; loading needs none.
    ctx.set_ctl_nnp(false).map_err(|e| failed("nnp", e))?;
    for a in seccomp.architectures().iter().flatten() {
        let a = arch(*a);
        if a == ScmpArch::Native {
            continue;
        }
        match ctx.add_arch(a) {
            Ok(_) => {}
            Err(e) => return Err(failed("architecture", e)),
        }
    }
    for call in seccomp.syscalls().iter().flatten() {
        let act = action(
            call.action(),
            call.errno_ret().or(seccomp.default_errno_ret()),
        )?;
        if act == default {
            continue;
        }
        let conditions: Vec<ScmpArgCompare> = call
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let (op, datum) = compare(a.op(), a.value(), a.value_two().unwrap_or(0));
                ScmpArgCompare::new(a.index() as u32, op, datum)
            })
            .collect();
        // libseccomp takes one condition per argument in a rule; several on one argument
        // become separate rules (any of them matching), as runc makes them.
        let mut indexes: Vec<usize> = call.args().iter().flatten().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in call.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if conditions.is_empty() {
                ctx.add_rule(act, syscall)
            } else if repeated {
                conditions
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, syscall, &[*c]).map(drop))
                    .map(|()| &mut ctx)
            } else {
                ctx.add_rule_conditional(act, syscall, &conditions)
            };
            added.map_err(|e| failed(&format!("rule for {name}"), e))?;
        }
    }
    export(&ctx).map_err(|e| format!("seccomp: export the filter: {e}"))
}

/// The filter's BPF program, through a memory file (libseccomp 2.5 exports to a descriptor).
fn export(ctx: &ScmpFilterContext) -> std::io::Result<Program> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags, and returns a new descriptor.
    let fd = unsafe { libc::memfd_create(c"wharf-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    ctx.export_bpf(&mut file).map_err(std::io::Error::other)?;
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Program::from_bytes(&bytes).map_err(std::io::Error::other)
}

/// Installs `program` on the calling thread, for good: it and its children keep it across
/// exec. Needs no_new_privs or CAP_SYS_ADMIN.
pub fn load(program: &Program) -> nix::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.0.len()).map_err(|_| nix::errno::Errno::E2BIG)?,
        filter: program.0.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the kernel copies the program that `prog` points to, which lives until return.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

//! The container process itself: rlimits, no_new_privs, user and groups, and finding and
//! executing its program the way Docker reports failures.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{self, Gid, Uid};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType, User};

use super::error::{StepError, StepResult};

pub(crate) fn rlimit_resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Sets each limit, clamped to the hard limit we have (raising it needs CAP_SYS_RESOURCE,
/// which this host may not give even to root).
pub(crate) fn apply_rlimits(rlimits: &[PosixRlimit]) -> StepResult<()> {
    let mut rlimits = rlimits.to_vec();
    super::spec::clamp_rlimits(&mut rlimits);
    for r in &rlimits {
        let limit = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit reads one rlimit we own.
        let rc = unsafe { libc::setrlimit(rlimit_resource(r.typ()), &limit) };
        Errno::result(rc).map_err(|e| StepError::os(format!("setrlimit {}", r.typ()), e))?;
    }
    Ok(())
}

pub(crate) fn set_no_new_privs() -> StepResult<()> {
    // SAFETY: integer-only prctl.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Errno::result(rc)
        .map(drop)
        .map_err(|e| StepError::os("no_new_privs", e))
}

/// Supplementary groups, gid, then uid (the order in which each call is still permitted).
pub(crate) fn set_user(user: &User) -> StepResult<()> {
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    unistd::setgroups(&groups).map_err(|e| StepError::os("setgroups", e))?;
    unistd::setgid(Gid::from_raw(user.gid())).map_err(|e| StepError::os("setgid", e))?;
    unistd::setuid(Uid::from_raw(user.uid())).map_err(|e| StepError::os("setuid", e))
}

/// The program to run: `name` itself when it has a slash, else the first executable file of
/// that name on the PATH of `env`. Errors read as Docker's.
pub(crate) fn find_executable(name: &str, env: &[String]) -> StepResult<PathBuf> {
    if name.contains('/') {
        return match std::fs::metadata(name) {
            Ok(_) => Ok(PathBuf::from(name)),
            Err(e) => Err(StepError(format!(
                "exec: \"{name}\": stat {name}: {}",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
                    .desc()
                    .to_lowercase()
            ))),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(StepError(format!(
        "exec: \"{name}\": executable file not found in $PATH"
    )))
}

/// Replaces this process with `program`; returns only on failure.
pub(crate) fn exec(program: &Path, args: &[String], env: &[String]) -> StepError {
    let cstrings = |v: &[String]| -> Result<Vec<CString>, StepError> {
        v.iter()
            .map(|s| CString::new(s.as_str()).map_err(|_| StepError(format!("NUL in {s:?}"))))
            .collect()
    };
    let (args_c, env_c) = match (cstrings(args), cstrings(env)) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let Ok(prog) = CString::new(program.as_os_str().as_encoded_bytes()) else {
        return StepError("NUL in program path".into());
    };
    // ETXTBSY: another thread of the launcher may have had the file open for writing when we
    // forked (say, unpacking a layer), and our copy of that descriptor closes only at its exec.
    let mut errno = unistd::execve(&prog, &args_c, &env_c).unwrap_err();
    for _ in 0..20 {
        if errno != Errno::ETXTBSY {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        errno = unistd::execve(&prog, &args_c, &env_c).unwrap_err();
    }
    StepError(format!(
        "exec: \"{}\": {}",
        args[0],
        errno.desc().to_lowercase()
    ))
}

/// Closes every descriptor above stdio except `keep` (marking them close-on-exec is not
/// enough: until exec, `/proc/self/fd/N` would still lead to whatever they are).
pub(crate) fn close_all_but(keep: &[std::os::fd::RawFd]) -> StepResult<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd > 2)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3u32;
    let close = |from: u32, to: u32| -> StepResult<()> {
        if from > to {
            return Ok(());
        }
        // SAFETY: closes descriptors nothing in this process uses any more; the kept ones,
        // still referred to by their owners, are outside the range.
        let rc = unsafe { libc::close_range(from, to, 0) };
        Errno::result(rc)
            .map(drop)
            .map_err(|e| StepError::os("close_range", e))
    };
    for fd in keep {
        if fd > first {
            close(first, fd - 1)?;
        }
        first = fd + 1;
    }
    close(first, u32::MAX)
}

/// Enters the working directory `cwd`, resolved inside the root we are in (symlinks and `..`
/// cannot leave it, `/proc/self/fd` links are refused), and checks afterwards that it is
/// inside the root, as runc 1.1.12 does (CVE-2024-21626).
pub(crate) fn enter_cwd(cwd: &Path) -> StepResult<()> {
    use nix::fcntl::{self, OFlag, OpenHow, ResolveFlag};
    // runc's words, which Docker passes on.
    let failed = |e: Errno| {
        StepError(format!(
            "chdir to cwd ({:?}) set in config.json failed: {}",
            cwd.display().to_string(),
            e.desc().to_lowercase()
        ))
    };
    let root = fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(failed)?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let dir = fcntl::openat2(&root, cwd, how).map_err(failed)?;
    unistd::fchdir(&dir).map_err(failed)?;
    match unistd::getcwd() {
        Ok(now) if now.is_absolute() => Ok(()),
        _ => Err(StepError(
            "current working directory is outside of container mount namespace root -- \
             possible container breakout detected"
                .into(),
        )),
    }
}

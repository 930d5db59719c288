//! moby's default seccomp profile, compiled by libseccomp and loaded into a forked child of
//! this test (real kernel): the calls dockerd's containers cannot make fail as they fail
//! there, the ones they can make succeed.

use std::collections::HashSet;

use oci_spec::runtime::Capability;
use wharf_runtime::container::docker_default_capabilities;
use wharf_runtime::seccomp::{self, Program};

/// Runs `probe` in a child under `program` and returns its errno (0: the call succeeded).
fn errno_under(program: &Program, probe: fn() -> libc::c_long) -> i32 {
    let mut fds = [0; 2];
    // SAFETY: pipe fills the array we own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child makes system calls only and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: integer-only prctl; then the filter; then the probe.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        let loaded = seccomp::load(program).is_ok();
        let rc = probe();
        let errno = if !loaded {
            -1
        } else if rc < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-2)
        } else {
            0
        };
        let bytes = errno.to_ne_bytes();
        // SAFETY: writes 4 bytes we own to our pipe, then leaves.
        unsafe {
            libc::write(fds[1], bytes.as_ptr().cast(), 4);
            libc::_exit(0)
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut bytes = [0u8; 4];
    // SAFETY: reads 4 bytes into our buffer.
    let n = unsafe { libc::read(fds[0], bytes.as_mut_ptr().cast(), 4) };
    let mut status = 0;
    // SAFETY: reaps our child.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::close(fds[0]);
    }
    assert_eq!(n, 4, "the probe child died");
    let errno = i32::from_ne_bytes(bytes);
    assert_ne!(errno, -1, "the filter could not be loaded");
    errno
}

fn default_program(extra: &[Capability]) -> Program {
    let mut caps: HashSet<Capability> = docker_default_capabilities().into_iter().collect();
    caps.extend(extra.iter().copied());
    let oci = seccomp::builtin().to_oci(&caps).unwrap();
    seccomp::compile(&oci).unwrap()
}

fn keyctl() -> libc::c_long {
    // KEYCTL_GET_KEYRING_ID of the session keyring.
    // SAFETY: integer arguments only.
    unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) }
}

fn unshare_user() -> libc::c_long {
    // SAFETY: integer argument only.
    unsafe { libc::unshare(libc::CLONE_NEWUSER) as libc::c_long }
}

fn clone3() -> libc::c_long {
    // A zero-sized clone_args: the kernel would say EINVAL; the filter says ENOSYS first.
    // SAFETY: a null pointer with size 0 is never read.
    unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) }
}

fn vsock() -> libc::c_long {
    // SAFETY: integer arguments only; the descriptor, if any, is left to _exit.
    unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) as libc::c_long }
}

fn unix_socket() -> libc::c_long {
    // SAFETY: integer arguments only.
    unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) as libc::c_long }
}

fn personality_query() -> libc::c_long {
    // SAFETY: 0xffffffff only queries the persona.
    unsafe { libc::personality(0xffff_ffff) as libc::c_long }
}

fn personality_read_implies_exec() -> libc::c_long {
    // SAFETY: integer argument only (READ_IMPLIES_EXEC, refused by the profile).
    unsafe { libc::personality(0x0040_0000) as libc::c_long }
}

fn getpid() -> libc::c_long {
    // SAFETY: no arguments.
    unsafe { libc::getpid() as libc::c_long }
}

fn mount_tmpfs() -> libc::c_long {
    // SAFETY: NUL-terminated constant strings; the mount fails one way or another.
    unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/nonexistent-wharf".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        ) as libc::c_long
    }
}

#[test]
fn the_default_profile_refuses_what_dockerds_refuses() {
    let program = default_program(&[]);
    assert!(
        program.len() > 100,
        "a filter of {} instructions",
        program.len()
    );
    assert_eq!(errno_under(&program, getpid), 0);
    assert_eq!(errno_under(&program, unix_socket), 0);
    assert_eq!(errno_under(&program, personality_query), 0);
    assert_eq!(errno_under(&program, keyctl), libc::EPERM);
    assert_eq!(errno_under(&program, unshare_user), libc::EPERM);
    assert_eq!(errno_under(&program, mount_tmpfs), libc::EPERM);
    assert_eq!(errno_under(&program, vsock), libc::EPERM);
    assert_eq!(
        errno_under(&program, personality_read_implies_exec),
        libc::EPERM
    );
    // libcs fall back to clone when clone3 says ENOSYS.
    assert_eq!(errno_under(&program, clone3), libc::ENOSYS);
}

#[test]
fn cap_sys_admin_opens_the_calls_it_gates() {
    let program = default_program(&[Capability::SysAdmin]);
    // Allowed by the filter now: what fails is the call itself (no such mount point), not EPERM.
    assert_eq!(errno_under(&program, mount_tmpfs), libc::ENOENT);
    assert_ne!(errno_under(&program, clone3), libc::ENOSYS);
    // keyctl is refused whatever the capabilities.
    assert_eq!(errno_under(&program, keyctl), libc::EPERM);
}

#[test]
fn a_cached_program_sent_as_json_filters_as_the_one_compiled() {
    let caps: HashSet<Capability> = docker_default_capabilities().into_iter().collect();
    let oci = seccomp::builtin().to_oci(&caps).unwrap();
    let cache = seccomp::Cache::default();
    let first = cache.program(&oci).unwrap();
    let again = cache.program(&oci).unwrap();
    assert_eq!(first.len(), again.len());
    // Through the shim's launch request and back.
    let json = serde_json::to_string(&first).unwrap();
    let sent: Program = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&sent).unwrap(), json);
    assert_eq!(errno_under(&sent, keyctl), libc::EPERM);
    assert_eq!(errno_under(&sent, getpid), 0);
    // Another filter is another program.
    let admin: HashSet<Capability> = caps.into_iter().chain([Capability::SysAdmin]).collect();
    let other = cache
        .program(&seccomp::builtin().to_oci(&admin).unwrap())
        .unwrap();
    assert_eq!(errno_under(&other, mount_tmpfs), libc::ENOENT);
    assert!(
        serde_json::from_str::<Program>("\"AAAA\"").is_err(),
        "a partial instruction"
    );
}

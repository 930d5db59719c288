//! A container's terminal, made as runc makes it: the init opens it from its own devpts (after
//! pivot_root), so `tty` inside says `/dev/pts/0`, and sends the master side to the launcher
//! over a socket (SCM_RIGHTS) before exec.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;

use super::error::{LaunchError, StepError, StepResult};

/// A pair of connected sockets, the child's end and the launcher's, both close-on-exec.
pub(crate) fn socket_pair() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into our array.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    Errno::result(rc).map_err(|e| LaunchError::os("terminal socketpair", e))?;
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// In the child, inside its root: a new terminal from `/dev/ptmx` becomes stdin, stdout,
/// stderr and the controlling terminal (the child leads a new session); its master goes to
/// the launcher over `socket`.
pub(crate) fn open_and_send(socket: &OwnedFd, size: Option<(u16, u16)>) -> StepResult<()> {
    let os = |what: &'static str| move |e: Errno| StepError::os(what, e);
    let master = fcntl::open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(os("open /dev/ptmx"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int we own.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    Errno::result(rc).map_err(os("unlock the terminal"))?;
    if let Some((rows, cols)) = size {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize we own.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        Errno::result(rc).map_err(os("set the terminal size"))?;
    }
    // The slave of this very master, without a path lookup (Linux 4.13).
    // SAFETY: TIOCGPTPEER takes flags and returns a new descriptor.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY,
        )
    };
    let slave = Errno::result(slave).map_err(os("open the terminal's slave"))?;
    for target in 0..3 {
        // SAFETY: dup2 onto a standard descriptor number.
        let rc = unsafe { libc::dup2(slave, target) };
        Errno::result(rc).map_err(os("dup2 terminal"))?;
    }
    // SAFETY: `slave` is ours and above the standard descriptors.
    unsafe { libc::close(slave) };
    // SAFETY: integer-only ioctl on our stdin; we lead a session with no terminal.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    Errno::result(rc).map_err(os("TIOCSCTTY"))?;
    send_fd(socket, &master).map_err(os("send the terminal"))
}

/// In the launcher: the master the child sent (it sent it before exec, so it is queued).
pub(crate) fn receive(socket: &OwnedFd) -> Result<OwnedFd, LaunchError> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: recvmsg fills buffers we own, described by `msg`.
    let n = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    Errno::result(n).map_err(|e| LaunchError::os("receive the terminal", e))?;
    // SAFETY: CMSG_FIRSTHDR reads the msghdr recvmsg filled.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null()
        // SAFETY: a non-null cmsg points into `control`.
        || unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) }
            != (libc::SOL_SOCKET, libc::SCM_RIGHTS)
    {
        return Err(LaunchError::os("receive the terminal", Errno::EBADMSG));
    }
    // SAFETY: an SCM_RIGHTS message holds at least one descriptor, now ours.
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd) };
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_fd(socket: &OwnedFd, fd: &OwnedFd) -> nix::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: `control` has room for one descriptor's cmsg (space <= 64 bytes).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd.as_raw_fd());
    }
    // SAFETY: sendmsg reads buffers we own, described by `msg`.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) };
    Errno::result(n).map(drop)
}

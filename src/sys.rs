//! Every `unsafe` block in tether lives here. Each one says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::socket::{getsockopt, sockopt};

/// The descriptor number the listening socket is handed over on.
pub const LISTENER_FD: RawFd = 3;

/// Makes `cmd` start a daemon: a new session (so no terminal or process group
/// of containerd's reaches it) with `listener` as fd 3, the only descriptor
/// beyond stdio it inherits on purpose.
pub fn daemon_child(cmd: &mut Command, listener: RawFd) {
    // SAFETY: the closure runs between fork and exec in the child, where only
    // async-signal-safe functions may be called. setsid, dup2 and fcntl are
    // async-signal-safe, the closure allocates nothing, and it touches no
    // state shared with the parent beyond the plain integer `listener`.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if listener == LISTENER_FD {
                // dup2 onto itself keeps FD_CLOEXEC: clear it by hand.
                let flags = libc::fcntl(listener, libc::F_GETFD);
                if flags < 0 || libc::fcntl(listener, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(listener, LISTENER_FD) < 0 {
                // dup2 leaves the new descriptor without FD_CLOEXEC.
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes ownership of the listening socket `start` handed over on fd 3.
///
/// Refuses anything that is not a listening socket, so a daemon started by
/// hand without one fails with a clear error rather than serving on, say, a
/// terminal.
pub fn take_listener() -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor flags of fd 3 and has no
    // effect on memory; a closed descriptor yields EBADF.
    if unsafe { libc::fcntl(LISTENER_FD, libc::F_GETFD) } < 0 {
        return Err(io::Error::other(
            "no listening socket on fd 3: the daemon is started by `start`",
        ));
    }
    // SAFETY: fd 3 is open (checked above) and nothing else in this process
    // owns it: it was inherited across exec and no code has wrapped it yet.
    // This function is called once, from the daemon's entry point.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTENER_FD) };
    match getsockopt(&fd, sockopt::AcceptConn) {
        Ok(true) => {}
        _ => {
            return Err(io::Error::other(
                "fd 3 is not a listening socket: the daemon is started by `start`",
            ))
        }
    }
    nix::fcntl::fcntl(
        LISTENER_FD,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(fd)
}

//! Every `unsafe` block in tether lives here. Each one says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::socket::{getsockopt, sockopt};

mod mount;
mod ns;
mod pidfd;

pub use mount::{attach_mount, idmapped_clone, mount_from_dir};
pub use ns::{fork_single_threaded, owning_user_namespace, Forked};
pub use pidfd::{pidfd_open, pidfd_pid, pidfd_send_signal};

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
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::other("the listening socket was taken already"));
    }
    // SAFETY: F_GETFD only reads the descriptor flags of fd 3 and has no
    // effect on memory; a closed descriptor yields EBADF.
    if unsafe { libc::fcntl(LISTENER_FD, libc::F_GETFD) } < 0 {
        return Err(io::Error::other(
            "no listening socket on fd 3: the daemon is started by `start`",
        ));
    }
    // SAFETY: fd 3 is open (checked above) and nothing else in this process
    // owns it: it was inherited across exec, and this function, the only
    // code that takes fd 3, runs once per process (TAKEN above).
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

/// Receives one descriptor sent with SCM_RIGHTS on `sock` (as runc sends a
/// pty master to the console socket, or a pidfd to the pidfd socket). The
/// descriptor arrives close-on-exec (MSG_CMSG_CLOEXEC), so no child can
/// inherit it in between. Anything other than exactly one descriptor is an
/// error; extra descriptors are closed.
pub fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut name = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<UnixAddr>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed `fd` in this process for
                // this message; nothing else knows of it, so wrapping it in an
                // OwnedFd gives it exactly one owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if fds.len() != 1 {
        return Err(io::Error::other(format!(
            "expected one descriptor on the socket, got {}",
            fds.len()
        )));
    }
    Ok(fds.remove(0))
}

nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// Sets a terminal's window size (TIOCSWINSZ).
pub fn set_winsize(fd: RawFd, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which points
    // at a live, initialised local for the duration of the call. A bad fd or a
    // non-terminal yields an error, not undefined behaviour.
    unsafe { tiocswinsz(fd, &ws) }
        .map(drop)
        .map_err(io::Error::from)
}

/// Makes `cmd`'s child receive `fds[i]` as descriptor `3 + i` (for a
/// `binary://` logger: stdout, stderr, readiness). The sources must be
/// close-on-exec; their copies at 3, 4, 5 are not.
pub fn pass_fds(cmd: &mut Command, fds: [RawFd; 3]) {
    // SAFETY: runs between fork and exec, calling only dup2 and fcntl, which
    // are async-signal-safe; it allocates nothing and reads only the copied
    // array of integers.
    unsafe {
        cmd.pre_exec(move || {
            // Move every source above the target range first, so a source
            // that already sits at 3..5 is not overwritten before use.
            let mut high = [0; 3];
            for (i, fd) in fds.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                if high[i] < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Registers an owned descriptor with tokio's reactor.
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd is moved into the AsyncFd, so the descriptor stays
    // open, and refers to the same file, until the AsyncFd is dropped; an
    // OwnedFd always reports the same raw descriptor.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

nix::ioctl_read_bad!(fionread, libc::FIONREAD, libc::c_int);

/// How many bytes sit in a pipe's buffer, not yet read (FIONREAD, which a
/// pipe answers on either end).
pub fn pipe_unread(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at a
    // live local of that type for the duration of the call. A bad fd is an
    // error, not undefined behaviour.
    unsafe { fionread(fd, &mut n) }.map_err(io::Error::from)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// The descriptors a live-upgrade snapshot gives away, as numbers: each is
/// released from its one owner (so it is not closed) and listed, to be kept
/// open across the exec, or taken back through an [`FdTable`] if the upgrade
/// is called off.
#[derive(Debug, Default)]
pub struct FdList(Vec<RawFd>);

impl FdList {
    /// An empty list.
    pub fn new() -> FdList {
        FdList::default()
    }

    /// Gives `fd` away; its number.
    pub fn give(&mut self, fd: OwnedFd) -> RawFd {
        let n = std::os::fd::IntoRawFd::into_raw_fd(fd);
        self.0.push(n);
        n
    }

    /// Records a number whose descriptor stays with its owner (the
    /// listener), so that it too survives the exec.
    pub fn lend(&mut self, fd: RawFd) -> RawFd {
        self.0.push(fd);
        fd
    }

    /// Every number given or lent.
    pub fn numbers(&self) -> &[RawFd] {
        &self.0
    }
}

/// The descriptors a live-upgrade state hands over, taken by number.
///
/// A state names each descriptor its writer released (`into_raw_fd`) from
/// one owner: after the exec, nothing in the new image has wrapped them, and
/// when an upgrade is called off, their old owners are gone. Each number
/// therefore has exactly one owner to become, provided it is taken once: the
/// table refuses a number taken before and stdio's 0-2, and is the only code
/// that takes ownership of a descriptor by number. Build one table per state.
#[derive(Debug, Default)]
pub struct FdTable {
    taken: std::collections::BTreeSet<RawFd>,
}

impl FdTable {
    /// An empty table, for one state.
    pub fn new() -> FdTable {
        FdTable::default()
    }

    /// Takes ownership of descriptor `fd` (made close-on-exec again).
    pub fn take(&mut self, fd: RawFd) -> io::Result<OwnedFd> {
        if fd < 3 {
            return Err(io::Error::other(format!(
                "descriptor {fd} is stdio, not a handed-over descriptor"
            )));
        }
        if !self.taken.insert(fd) {
            return Err(io::Error::other(format!(
                "descriptor {fd} was handed over twice"
            )));
        }
        // SAFETY: `fd` is not below 3 and has not been taken through this
        // table before (both checked above), and per the type's contract no
        // other code takes descriptors by number from the same state; so
        // nothing else owns it.
        unsafe { adopt_fd(fd) }
    }
}

/// Takes ownership of a descriptor by number.
///
/// # Safety
/// `fd` must have no owner in this process: nothing else may close it, wrap
/// it, or take it again. [`FdTable`] is the one caller and guarantees that.
unsafe fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads descriptor flags; a closed fd is EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and unowned (this
    // function's contract).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(owned)
}

/// Lets a descriptor survive exec (for a live upgrade).
pub fn keep_across_exec(fd: RawFd, keep: bool) -> io::Result<()> {
    let flags = if keep {
        nix::fcntl::FdFlag::empty()
    } else {
        nix::fcntl::FdFlag::FD_CLOEXEC
    };
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags))?;
    Ok(())
}

/// Makes `cmd`'s child unshare into a new, empty user namespace before it
/// execs (for a holder of idmapped-mount maps; see `crate::mount::idmap`).
pub fn in_new_user_namespace(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec in the child, where only
    // async-signal-safe functions may be called; unshare is a plain system
    // call, and the closure allocates nothing and touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends signal number `signal` to `pid`: any signal the kernel knows,
/// realtime ones included (nix's `Signal` has none of those).
pub fn send_signal(pid: u32, signal: i32) -> Result<(), nix::errno::Errno> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// What [`reap_one`] found.
pub enum Reaped {
    /// A child ended: its pid, and its exit code or 128 + the signal that
    /// killed it (realtime signals included).
    Exited(u32, u32),
    /// Children are left, none has ended yet.
    NoneYet,
    /// No child is left.
    NoChildren,
}

/// Reaps one ended child, without blocking. nix's waitpid cannot be used:
/// it turns a child killed by a realtime signal into an EINVAL error after
/// the kernel has already reaped it, and that exit would be lost.
pub fn reap_one() -> io::Result<Reaped> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes one int to `status`, which lives across the
        // call; the flags ask for no blocking.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == 0 {
            return Ok(Reaped::NoneYet);
        }
        if pid < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => Ok(Reaped::NoChildren),
                _ => Err(e),
            };
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status) as u32
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status) as u32
        } else {
            // Stopped or continued (not asked for): not an end.
            continue;
        };
        return Ok(Reaped::Exited(pid as u32, code));
    }
}

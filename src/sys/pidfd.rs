//! pidfds (Linux 5.3+): a descriptor that names one process, and keeps
//! naming it, and nothing else, after the process is reaped and its pid is
//! given to another. Signals sent through it reach that process or fail with
//! ESRCH; never a stranger that inherited the number.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// pidfd_open(2): a pidfd for `pid`, close-on-exec (the kernel makes every
/// pidfd so). Only sound to use as "that process" while `pid` is known not
/// to have been reaped (the caller's child, reaping paused or not yet done).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or
    // -1; it reads and writes no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just installed this descriptor for this call;
    // nothing else knows of it, so the OwnedFd is its one owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2): sends signal number `signal` (realtime ones and 0
/// included) to the process `pidfd` names. ESRCH once that process has been
/// reaped, whoever has its pid now.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> Result<(), Errno> {
    // SAFETY: a null siginfo makes the kernel fill in the one kill(2) would
    // send; the descriptor is borrowed, so it stays open for the call; the
    // flags are 0. Nothing of ours is read or written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// The pid a pidfd names, as the kernel reports it in `fdinfo` (in this
/// process's pid namespace): None if `fd` is no pidfd, Some(-1) once the
/// process has been reaped.
pub fn pidfd_pid(fd: BorrowedFd<'_>) -> Option<i64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_pidfd_names_its_process_until_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id()).unwrap();
        let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "pidfds are close-on-exec");
        assert_eq!(pidfd_pid(fd.as_fd()), Some(child.id() as i64));
        pidfd_send_signal(fd.as_fd(), 0).unwrap();
        pidfd_send_signal(fd.as_fd(), libc::SIGKILL).unwrap();
        child.wait().unwrap();
        assert_eq!(pidfd_send_signal(fd.as_fd(), 0), Err(Errno::ESRCH));
        assert_eq!(pidfd_pid(fd.as_fd()), Some(-1));
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(pidfd_pid(file.as_fd()), None);
    }
}

//! Every `unsafe` block in tetherctl lives here. Each one says why it is sound.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;

/// Makes `cmd`'s child the leader of a new session, so that it outlives
/// this tetherctl and gets no signal from its terminal.
pub fn new_session(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec in the child; setsid is
    // async-signal-safe, and the closure allocates nothing and touches no
    // state shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The size of the terminal on `fd` as (columns, rows), or `None` when `fd`
/// is not a terminal.
pub fn get_winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points at a live local of that type for the duration of the call; the
    // descriptor is borrowed, so open. A non-terminal is an error (ENOTTY).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_col, ws.ws_row))
}

/// Descriptor numbers [`take_inherited_pipe`] has given out.
static TAKEN: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

/// Takes ownership of the pipe inherited on descriptor `fd` (the log driver
/// gets the container's output on 3 and 4 and a readiness pipe on 5 from
/// the shim), made close-on-exec.
///
/// Refuses stdio, a number taken before, and anything that is not a pipe,
/// so a descriptor this process opened itself (the async runtime's, which
/// are never pipes) is never taken over.
pub fn take_inherited_pipe(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::other(format!(
            "descriptor {fd} is stdio, not a handed-over pipe"
        )));
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if taken.contains(&fd) {
        return Err(io::Error::other(format!("descriptor {fd} was taken twice")));
    }
    // SAFETY: zeroed bytes are a valid `stat` (plain integers), which fstat
    // overwrites.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one `stat` through the pointer, which points at a
    // live local of that type; a closed descriptor is EBADF, not undefined
    // behaviour.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(io::Error::other(format!("descriptor {fd} is not a pipe")));
    }
    // SAFETY: F_SETFD only changes the descriptor's flags; it is open (fstat
    // succeeded).
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    taken.insert(fd);
    // SAFETY: `fd` is open and a pipe, so not one of the descriptors the
    // standard library or the runtime opened for this process (none of them
    // is a pipe), and not stdio; it was inherited, and it is taken here once
    // (the set above, held locked): nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

//! Namespaces and the fork the pod holder needs (see
//! `crate::sandbox::holder`). Both run in the holder's own process, which
//! is single-threaded: it is exec'd fresh and starts no thread.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `NS_GET_USERNS` (linux/nsfs.h: `_IO(0xb7, 0x1)`).
const NS_GET_USERNS: libc::c_ulong = 0xb701;

/// The user namespace that owns namespace `ns` (a descriptor of a
/// `/proc/<pid>/ns/*` file or a bind mount of one), close-on-exec.
pub fn owning_user_namespace(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor
    // or -1; no memory of ours is read or written. The descriptor is
    // borrowed, so it stays open for the call.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS as _) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just installed this descriptor (O_CLOEXEC, as nsfs
    // makes them) for this call; the OwnedFd is its one owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Which side of [`fork_single_threaded`] this is.
pub enum Forked {
    /// The parent, with the child's pid.
    Parent(u32),
    /// The child.
    Child,
}

/// fork(2), for a process that has one thread (the caller's promise).
pub fn fork_single_threaded() -> io::Result<Forked> {
    // SAFETY: with a single thread, no lock can be held by another thread at
    // the fork, so the child may do anything the parent could (allocate,
    // write files); the caller guarantees that it started no thread.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw() as u32)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

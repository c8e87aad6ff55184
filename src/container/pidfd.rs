//! The pidfd a runtime that takes `--pidfd-socket` sends for the process it
//! started (see `runc/pidfd.rs`): received once the runtime has returned,
//! and checked against the pid file before the process keeps it.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::fdsocket::FdSocket;

/// How long the pidfd may take to arrive once the runtime has returned (runc
/// sends it before it returns: this only bounds a runtime that does not).
const RECEIVE_LIMIT: Duration = Duration::from_secs(10);

/// The pidfd sent to `socket` for process `pid`, or None (the process is
/// then signalled by pid, as with a runtime that sends none): the runtime
/// sent nothing, or a descriptor that is no pidfd for `pid`. A pidfd whose
/// process has been reaped already (it exited at once) is kept: it names
/// that process still, so signals fail as they should.
pub(super) async fn receive(socket: &FdSocket, pid: u32) -> Option<OwnedFd> {
    let fd = match socket.receive(RECEIVE_LIMIT).await {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(pid, error = %e, "no pidfd from the runtime: signalling by pid");
            return None;
        }
    };
    match crate::sys::pidfd_pid(fd.as_fd()) {
        Some(named) if named == i64::from(pid) || named == -1 => {
            tracing::debug!(pid, "holding a pidfd");
            Some(fd)
        }
        named => {
            tracing::warn!(
                pid,
                ?named,
                "the runtime sent a descriptor that is no pidfd for the process: signalling by pid"
            );
            None
        }
    }
}

//! Copy loops with a regular file at one end (a `file://` log, a stdout path
//! that is not a FIFO, stdin from a file) run on tokio's blocking pool, not
//! on the runtime thread: a write to a file can stall for as long as its
//! filesystem does (a frozen or unreachable one, a full journal), and the
//! runtime thread also reaps, answers every request and copies every other
//! container's output. Pool threads are started when such a loop starts and
//! go away once they have been idle for a while, so an idle shim keeps one
//! thread.
//!
//! Pipe to file is spliced (no copy through the shim's memory). A loop waits
//! with poll(2) on its source and on a stop eventfd, so a stop (a live
//! upgrade, the process's stdio being dropped) ends it at once, handing back
//! both ends and the unwritten bytes exactly as an async loop does, except
//! while a write is stuck in the filesystem itself: that returns when the
//! filesystem does.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::EfdFlags;

use crate::io::copy::{Sink, Source, Stopped, COPY_BUF};
use crate::io::progress::{self, Progress};

/// Bytes moved per splice from a pipe into a file: up to a whole pipe
/// buffer, so a loop that fell behind catches up in one call.
const SPLICE_MAX: usize = 1 << 20;

/// An eventfd that, once signalled, stays readable: every blocking loop of a
/// process's stdio polls it, and one signal stops them all.
pub struct StopSignal(OwnedFd);

impl StopSignal {
    /// A new, unsignalled eventfd (close-on-exec).
    pub fn new() -> io::Result<Arc<StopSignal>> {
        #[allow(deprecated)]
        let fd = nix::sys::eventfd::eventfd(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Arc::new(StopSignal(fd)))
    }

    /// Stops every loop polling this signal.
    pub fn signal(&self) {
        let _ = nix::unistd::write(&self.0, &1u64.to_ne_bytes());
    }
}

/// What a wait for readiness ended with.
enum Ready {
    Go,
    Stop,
}

/// Waits until `fd` is ready for `events` (or hung up) or `stop` is set.
fn wait(fd: BorrowedFd<'_>, events: PollFlags, stop: &StopSignal) -> io::Result<Ready> {
    loop {
        let mut fds = [
            PollFd::new(stop.0.as_fd(), PollFlags::POLLIN),
            PollFd::new(fd, events),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if fds[0].any().unwrap_or(false) {
            return Ok(Ready::Stop);
        }
        if fds[1].any().unwrap_or(false) {
            return Ok(Ready::Go);
        }
    }
}

/// Copies `from` to `to` (after writing `pending`), blocking, until the
/// source ends or (input only) the sink fails (None), or `stop` is
/// signalled (both ends and the unwritten bytes handed back). The blocking
/// twin of [`crate::io::copy::copy`]. An output whose file fails a write
/// drops that chunk, logs it, and goes on.
pub fn copy_blocking(
    from: Source,
    to: Sink,
    mut pending: Vec<u8>,
    progress: Option<Arc<Progress>>,
    stop: Arc<StopSignal>,
) -> Option<Stopped> {
    let count = |n: usize| progress::count(&progress, n);
    let output = progress.is_some();
    let mut can_splice = matches!((&from, &to), (Source::Pipe(_), Sink::File(_)));
    let mut zero_copy = can_splice;
    // Output dropped since the last write that worked.
    let mut lost = 0u64;
    let mut buf = Vec::new();
    loop {
        while !pending.is_empty() {
            match wait(sink_fd(&to), PollFlags::POLLOUT, &stop) {
                Ok(Ready::Go) => {}
                Ok(Ready::Stop) => {
                    return Some(Stopped {
                        from,
                        to,
                        pending,
                        tail: None,
                    })
                }
                Err(_) => return None,
            }
            match nix::unistd::write(sink_fd(&to), &pending) {
                Ok(n @ 1..) => {
                    pending.drain(..n);
                    count(n);
                    if lost > 0 {
                        tracing::warn!(lost, "output written again after write errors; bytes lost");
                        lost = 0;
                    }
                    zero_copy = can_splice;
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                // A log file that fails a write (a full or failing disk)
                // loses that chunk, not the copy: the container's pipe is
                // still drained, and later writes are tried again.
                Err(e) if output => {
                    if lost == 0 {
                        tracing::warn!(error = %e, "cannot write output: dropping it until writes work again");
                    }
                    lost += pending.len() as u64;
                    count(pending.len());
                    pending.clear();
                    zero_copy = false;
                }
                Ok(_) | Err(_) => {
                    tracing::debug!("stdio copy stopped: the sink is gone");
                    return None;
                }
            }
        }
        match wait(source_fd(&from), PollFlags::POLLIN, &stop) {
            Ok(Ready::Go) => {}
            Ok(Ready::Stop) => {
                return Some(Stopped {
                    from,
                    to,
                    pending,
                    tail: None,
                })
            }
            Err(_) => break,
        }
        if zero_copy {
            use nix::fcntl::{splice, SpliceFFlags};
            let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
            match splice(
                source_fd(&from),
                None,
                sink_fd(&to),
                None,
                SPLICE_MAX,
                flags,
            ) {
                Ok(0) => break,
                Ok(n) => count(n),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(Errno::EINVAL | Errno::ENOSYS) => {
                    can_splice = false;
                    zero_copy = false;
                }
                // Through a buffer: a write that fails there loses only
                // its chunk (output), or ends the loop (input).
                Err(_) => zero_copy = false,
            }
            continue;
        }
        if buf.is_empty() {
            buf = vec![0u8; COPY_BUF];
        }
        match nix::unistd::read(source_fd(&from).as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            // EIO: a terminal whose other side is gone, i.e. its end.
            Err(_) => break,
        }
    }
    progress::ended(&progress);
    if lost > 0 {
        tracing::warn!(lost, "output ended while writes failed; bytes lost");
    }
    if let Sink::Console(c) = &to {
        c.send_eof_blocking();
    }
    None
}

fn source_fd(s: &Source) -> BorrowedFd<'_> {
    match s {
        Source::Pipe(p) => p.as_fd(),
        Source::File(f) => f.as_fd(),
        Source::Console(c) => c.fd(),
    }
}

fn sink_fd(s: &Sink) -> BorrowedFd<'_> {
    match s {
        Sink::Pipe(p) => p.as_fd(),
        Sink::File(f) => f.as_fd(),
        Sink::Console(c) => c.fd(),
    }
}

//! Copy loops between a process's pipes or terminal and the client's FIFOs
//! or files, stoppable at any moment without losing a byte: a stopped loop
//! hands back both ends and whatever it read but had not yet written, and a
//! loop started from those resumes exactly where the other left off (in this
//! process or, after a live upgrade, in the next).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use crate::io::console::Console;
use crate::io::progress::{self, Progress};
use crate::io::spill::{Spill, SpillTail};

/// Bytes read per step.
pub const COPY_BUF: usize = 64 * 1024;

/// Where a copy reads from.
pub enum Source {
    /// A pipe or FIFO.
    Pipe(pipe::Receiver),
    /// A regular file. Loops with a file at either end run on the blocking
    /// pool (`file_copy`), never through [`copy`].
    File(std::fs::File),
    /// A terminal's master side.
    Console(Arc<Console>),
}

/// Where a copy writes to.
pub enum Sink {
    /// A pipe or FIFO.
    Pipe(pipe::Sender),
    /// A regular file, appended to (see [`Source::File`]: such loops run on
    /// the blocking pool).
    File(std::fs::File),
    /// A terminal's master side.
    Console(Arc<Console>),
}

impl Source {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Pipe(p) => p.read(buf).await,
            Source::File(f) => std::io::Read::read(f, buf),
            Source::Console(c) => c.read(buf).await,
        }
    }

    /// Waits until there is something to read (or an end), so that an idle
    /// loop holds no buffer.
    async fn ready(&self) -> io::Result<()> {
        match self {
            Source::Pipe(p) => p.readable().await,
            Source::File(_) => Ok(()),
            Source::Console(c) => c.readable().await,
        }
    }

    /// The descriptor, for a handover; None for a terminal (the console's
    /// one descriptor is handed over once, by its owner).
    pub async fn into_fd(self) -> io::Result<Option<OwnedFd>> {
        Ok(match self {
            Source::Pipe(p) => Some(p.into_nonblocking_fd()?),
            Source::File(f) => Some(f.into()),
            Source::Console(_) => None,
        })
    }
}

impl Sink {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Pipe(p) => p.write(buf).await,
            Sink::File(f) => std::io::Write::write(f, buf),
            Sink::Console(c) => c.write(buf).await,
        }
    }

    async fn finish(&mut self) {
        match self {
            Sink::Pipe(p) => {
                let _ = p.flush().await;
                wait_until_read(p).await;
            }
            Sink::File(_) => {}
            Sink::Console(c) => c.send_eof().await,
        }
    }

    /// The descriptor, for a handover (see [`Source::into_fd`]).
    pub async fn into_fd(self) -> io::Result<Option<OwnedFd>> {
        Ok(match self {
            Sink::Pipe(p) => Some(p.into_nonblocking_fd()?),
            Sink::File(f) => Some(f.into()),
            Sink::Console(_) => None,
        })
    }
}

/// How long a reader may leave the pipe's last bytes unread, without taking
/// any, before the sink is closed anyway.
const READ_STALL: Duration = Duration::from_secs(5);

/// Waits until the reader has taken every byte out of the pipe (or stops
/// taking any). containerd's client closes its FIFO read ends as soon as it
/// deletes a process (ctr, `cio` Cancel), so bytes still in the FIFO when
/// the exit reaches it would be lost; the exit is reported only after this.
async fn wait_until_read(p: &pipe::Sender) {
    use std::os::fd::AsRawFd;
    let fd = p.as_raw_fd();
    let mut last = usize::MAX;
    let mut since = tokio::time::Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let unread = match crate::sys::pipe_unread(fd) {
            Ok(n) => n,
            Err(_) => return,
        };
        if unread == 0 {
            return;
        }
        if unread < last {
            last = unread;
            since = tokio::time::Instant::now();
        } else if since.elapsed() > READ_STALL {
            tracing::warn!(
                unread,
                "the reader took nothing for {READ_STALL:?}; closing the pipe with bytes unread"
            );
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// A loop that was stopped: its ends and the bytes still to write.
pub struct Stopped {
    /// The source, positioned after the last byte read.
    pub from: Source,
    /// The sink.
    pub to: Sink,
    /// Read, not yet written.
    pub pending: Vec<u8>,
    /// The part of an output's spill held in its file: written after
    /// `pending`.
    pub tail: Option<SpillTail>,
}

/// How a zero-copy stretch ended.
enum Spliced {
    /// The source reached its end.
    Eof,
    /// Asked to stop.
    Stopped,
    /// The kernel cannot splice these two: copy through a buffer instead.
    Unsupported,
    /// The sink is gone.
    Failed,
    /// The sink is full while the source has data (asked for with
    /// `spill`: the caller keeps reading into its spill instead of waiting).
    Full,
}

/// Moves data from a pipe to a pipe or a file with splice(2): no copy
/// through the shim's memory, no buffer. With `spill`, returns
/// [`Spliced::Full`] when the sink has no room, instead of waiting for it.
async fn splice_pipe(
    from: &pipe::Receiver,
    to: &Sink,
    progress: &Option<Arc<Progress>>,
    stop: &CancellationToken,
    spill: bool,
) -> Spliced {
    use nix::errno::Errno;
    use nix::fcntl::{splice, SpliceFFlags};
    use std::os::fd::AsFd;
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Spliced::Stopped,
            r = from.readable() => if r.is_err() { return Spliced::Failed },
        }
        let moved = match to {
            Sink::Pipe(p) => splice(from.as_fd(), None, p.as_fd(), None, COPY_BUF, flags),
            Sink::File(f) => splice(from.as_fd(), None, f.as_fd(), None, COPY_BUF, flags),
            Sink::Console(_) => return Spliced::Unsupported,
        };
        match moved {
            Ok(0) => return Spliced::Eof,
            Ok(n) => progress::count(progress, n),
            Err(Errno::EAGAIN) => {
                // Either side may be the one that would block: ask the source.
                // Readiness is cleared only by a check made inside try_io,
                // after tokio took its snapshot: an event that comes after
                // the check keeps the readiness set, so it cannot be lost.
                let empty = from.try_io(|| {
                    if has_input(from) {
                        Ok(())
                    } else {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                });
                if empty.is_err() {
                    continue;
                }
                let Sink::Pipe(p) = to else { continue };
                let room = p.try_io(|| {
                    if has_room(p) {
                        Ok(())
                    } else {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                });
                if spill {
                    if room.is_err() {
                        return Spliced::Full;
                    }
                    continue;
                }
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Spliced::Stopped,
                    r = p.writable() => if r.is_err() { return Spliced::Failed },
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOSYS) => return Spliced::Unsupported,
            Err(_) => return Spliced::Failed,
        }
    }
}

/// Whether a pipe can take a write (or its reader is gone), right now.
fn has_room(p: &pipe::Sender) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(p.as_fd(), PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Whether a pipe has data (or its end) waiting, right now.
fn has_input(p: &pipe::Receiver) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(p.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Copies `from` to `to` (after writing `pending`) until EOF on `from` or an
/// error, then finishes `to` (closes it, or ends a terminal's input). When
/// `stop` is cancelled, returns both ends and the unwritten bytes instead.
pub async fn copy(
    mut from: Source,
    mut to: Sink,
    mut pending: Vec<u8>,
    progress: Option<Arc<Progress>>,
    stop: CancellationToken,
) -> Option<Stopped> {
    // Allocated when there is first something to read: idle loops (stdin
    // nobody writes, a quiet container's stderr) cost no buffer.
    let mut buf = Vec::new();
    let mut zero_copy = matches!((&from, &to), (Source::Pipe(_), Sink::Pipe(_)));
    loop {
        if zero_copy && pending.is_empty() {
            let Source::Pipe(p) = &from else {
                unreachable!()
            };
            match splice_pipe(p, &to, &progress, &stop, false).await {
                Spliced::Eof => break,
                Spliced::Stopped => {
                    return Some(Stopped {
                        from,
                        to,
                        pending,
                        tail: None,
                    })
                }
                Spliced::Failed => return None,
                Spliced::Unsupported | Spliced::Full => zero_copy = false,
            }
        }
        while !pending.is_empty() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Some(Stopped {
                from,
                to,
                pending,
                tail: None,
            }),
                written = to.write(&pending) => match written {
                    Ok(n @ 1..) => {
                        pending.drain(..n);
                        progress::count(&progress, n);
                    }
                    Ok(_) | Err(_) => {
                        tracing::debug!("stdio copy stopped: the reader is gone");
                        return None;
                    }
                },
            }
        }
        if buf.is_empty() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Some(Stopped {
                from,
                to,
                pending,
                tail: None,
            }),
                ready = from.ready() => if ready.is_err() { break },
            }
            buf = vec![0u8; COPY_BUF];
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Some(Stopped {
                from,
                to,
                pending,
                tail: None,
            }),
            read = from.read(&mut buf) => match read {
                Ok(n @ 1..) => pending.extend_from_slice(&buf[..n]),
                Ok(_) | Err(_) => break,
            },
        }
    }
    progress::ended(&progress);
    // Stopped while finishing: the sink just closes (what the reader has
    // not taken stays in the pipe for it).
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = to.finish() => {}
    }
    None
}

/// How long a reader may take nothing from a full pipe, with the spill
/// full too, before it counts as away and the newest output is dropped;
/// until then the copy waits for it (a slow reader is not a lost one).
const READER_AWAY: Duration = Duration::from_secs(10);

/// Copies a process's output from `from` to its reader's pipe `to` (after
/// whatever `spill` already holds) without ever making the container wait
/// for the reader: while the pipe has room, straight through (spliced when
/// `from` is a pipe); while it has none (the reader is away or slow), the
/// container's pipe is still read, into `spill`, and what it holds is
/// written, in order, as soon as the pipe takes it. With the spill full,
/// the copy waits for a reader that is still taking output and drops the
/// newest output for one that is away ([`READER_AWAY`]). A reader that fails for
/// good (EPIPE from a dead logger) does not stop the copy either: the output
/// is dropped, counted, and the container's pipe drained to its end. When
/// `stop` is cancelled, returns both ends and everything held as unwritten
/// bytes.
pub async fn copy_output(
    mut from: Source,
    to: pipe::Sender,
    mut spill: Spill,
    progress: Option<Arc<Progress>>,
    stop: CancellationToken,
) -> Option<Stopped> {
    let count = |n: usize| progress::count(&progress, n);
    let stopped = |from, to, spill: Spill| {
        let (pending, tail) = spill.into_parts();
        Some(Stopped {
            from,
            to,
            pending,
            tail,
        })
    };
    let mut to = Sink::Pipe(to);
    let mut zero_copy = matches!(from, Source::Pipe(_));
    let mut buf = Vec::new();
    let (mut eof, mut broken) = (false, false);
    // When the reader last took output from a full pipe (or the loop
    // started): a full spill waits for a reader that took some within
    // READER_AWAY, and drops output once it has not.
    let mut taken = tokio::time::Instant::now();
    let mut told_ended = false;
    loop {
        // The source is done: the drain waits for the reader from now on.
        if eof && !std::mem::replace(&mut told_ended, true) {
            progress::ended(&progress);
        }
        let Sink::Pipe(p) = &to else {
            return None;
        };
        // Deliver what is held, as far as the pipe takes it.
        while !broken && !spill.is_empty() {
            let front = match spill.front() {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the output spill back: dropping what it holds");
                    spill.discard();
                    break;
                }
            };
            match p.try_write(front) {
                Ok(n @ 1..) => {
                    spill.consume(n);
                    count(n);
                    taken = tokio::time::Instant::now();
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the output's reader failed: dropping its output from now on");
                    broken = true;
                    spill.discard();
                }
            }
        }
        if eof && (broken || spill.is_empty()) {
            break;
        }
        if let (true, Source::Pipe(src)) = (zero_copy && !eof && !broken && spill.is_empty(), &from)
        {
            match splice_pipe(src, &to, &progress, &stop, true).await {
                Spliced::Eof => eof = true,
                Spliced::Stopped => return stopped(from, to, spill),
                Spliced::Unsupported => zero_copy = false,
                Spliced::Failed => {
                    tracing::warn!("the output's reader failed: dropping its output from now on");
                    broken = true;
                }
                // The pipe has no room and the source has data: read it
                // into the spill.
                Spliced::Full => {}
            }
            if eof || broken || !zero_copy {
                continue;
            }
        }
        if buf.is_empty() {
            // Allocated when there is first something to read (an idle
            // terminal's loop holds no buffer).
            if !eof && spill.is_empty() {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return stopped(from, to, spill),
                    ready = from.ready() => if ready.is_err() {
                        eof = true;
                        continue;
                    },
                }
            }
            buf = vec![0u8; COPY_BUF];
        }
        // A slow reader is waited for, as if there were no spill; only one
        // that is away loses output.
        let present = !broken && taken.elapsed() < READER_AWAY;
        let room = spill.room().min(COPY_BUF as u64) as usize;
        let waiting = present && room == 0;
        let want = if present { room } else { COPY_BUF };
        tokio::select! {
            biased;
            _ = stop.cancelled() => return stopped(from, to, spill),
            r = p.writable(), if !broken && !spill.is_empty() => if r.is_err() {
                broken = true;
                spill.discard();
            },
            _ = tokio::time::sleep_until(taken + READER_AWAY), if waiting => {}
            read = from.read(&mut buf[..want]), if !eof && !waiting => match read {
                Ok(n @ 1..) => {
                    count(n);
                    if broken {
                        spill.lose(n as u64);
                    } else {
                        spill.push(&buf[..n]);
                    }
                }
                Ok(_) | Err(_) => eof = true,
            },
        }
    }
    if spill.dropped() > 0 {
        tracing::warn!(
            dropped = spill.dropped(),
            "output stream ended; bytes of it were dropped (spill full or reader failed)"
        );
    }
    if !broken {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = to.finish() => {}
        }
    }
    None
}

//! Copy loops between a process's pipes or terminal and the client's FIFOs
//! or files, stoppable at any moment without losing a byte: a stopped loop
//! hands back both ends and whatever it read but had not yet written, and a
//! loop started from those resumes exactly where the other left off (in this
//! process or, after a live upgrade, in the next).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::unix::pipe;
use tokio::sync::watch;

use crate::console::Console;

/// Bytes read per step.
pub const COPY_BUF: usize = 64 * 1024;

/// Where a copy reads from.
pub enum Source {
    /// A pipe or FIFO.
    Pipe(pipe::Receiver),
    /// A regular file (read directly: page-cache reads are short).
    File(std::fs::File),
    /// A terminal's master side.
    Console(Arc<Console>),
}

/// Where a copy writes to.
pub enum Sink {
    /// A pipe or FIFO.
    Pipe(pipe::Sender),
    /// A regular file, appended to directly: page-cache writes are short,
    /// and a blocking-pool round trip per write costs more than it saves.
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
            Sink::Pipe(p) => drop(p.flush().await),
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

/// A loop that was stopped: its ends and the bytes still to write.
pub struct Stopped {
    /// The source, positioned after the last byte read.
    pub from: Source,
    /// The sink.
    pub to: Sink,
    /// Read, not yet written.
    pub pending: Vec<u8>,
}

/// Copies `from` to `to` (after writing `pending`) until EOF on `from` or an
/// error, then finishes `to` (closes it, or ends a terminal's input). When
/// `stop` turns true, returns both ends and the unwritten bytes instead.
pub async fn copy(
    mut from: Source,
    mut to: Sink,
    mut pending: Vec<u8>,
    progress: Option<Arc<AtomicU64>>,
    mut stop: watch::Receiver<bool>,
) -> Option<Stopped> {
    // Allocated when there is first something to read: idle loops (stdin
    // nobody writes, a quiet container's stderr) cost no buffer.
    let mut buf = Vec::new();
    loop {
        while !pending.is_empty() {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Some(Stopped { from, to, pending }),
                written = to.write(&pending) => match written {
                    Ok(n @ 1..) => {
                        pending.drain(..n);
                        if let Some(p) = &progress {
                            p.fetch_add(n as u64, Ordering::Relaxed);
                        }
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
                _ = stop.wait_for(|s| *s) => return Some(Stopped { from, to, pending }),
                ready = from.ready() => if ready.is_err() { break },
            }
            buf = vec![0u8; COPY_BUF];
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Some(Stopped { from, to, pending }),
            read = from.read(&mut buf) => match read {
                Ok(n @ 1..) => pending.extend_from_slice(&buf[..n]),
                Ok(_) | Err(_) => break,
            },
        }
    }
    to.finish().await;
    None
}

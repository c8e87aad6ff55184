//! A process's stdio across a live upgrade: [`ProcessIo::snapshot`] stops
//! every copy loop where it stands and writes down each descriptor (as a
//! number that survives exec) and the bytes read but not yet written;
//! [`ProcessIo::restore`] picks up exactly there, in this binary or the next.

use std::fs::File;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::net::unix::pipe;

use super::console::Console;
use super::copy::{Sink, Source};
use super::log_uri::Logger;
use super::spill::{SpillConf, SpillTail};
use super::{sender, ProcessIo};
use crate::error::{Error, Result};
use crate::sys::{FdList, FdTable};
use crate::tasks::Tasks;

/// A process's stdio, stopped.
#[derive(Debug, Serialize, Deserialize)]
pub struct IoRec {
    /// The shim's own writer of the stdin FIFO (until CloseIO).
    pub stdin_holder: Option<RawFd>,
    /// Copy loops that were still running.
    pub streams: Vec<StreamRec>,
    /// The terminal's master side.
    pub console: Option<RawFd>,
    /// A running `binary://` logger.
    pub logger_pid: Option<u32>,
    /// Where output spills (absent in the records of binaries without a
    /// spill).
    #[serde(default)]
    pub spill: Option<SpillConf>,
}

/// One copy loop, stopped.
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamRec {
    /// Output (counts towards draining) or input.
    pub output: bool,
    /// The source: a pipe/FIFO, a file, or (None) the terminal.
    pub from: Option<RawFd>,
    /// Whether `from` is a regular file.
    pub from_file: bool,
    /// The sink: a pipe/FIFO, a file, or (None) the terminal.
    pub to: Option<RawFd>,
    /// Whether `to` is a regular file.
    pub to_file: bool,
    /// Read and not yet written.
    pub pending: Vec<u8>,
    /// An output's spill file, whose unread part comes after `pending`.
    #[serde(default)]
    pub spill_file: Option<RawFd>,
    /// Where that unread part starts and ends.
    #[serde(default)]
    pub spill_range: (u64, u64),
}

impl IoRec {
    /// Every descriptor number it names.
    pub fn descriptors(&self, all: &mut Vec<RawFd>) {
        all.extend(self.stdin_holder);
        all.extend(self.console);
        for s in &self.streams {
            all.extend(s.from);
            all.extend(s.to);
            all.extend(s.spill_file);
        }
    }
}

impl ProcessIo {
    /// Stops every copy loop where it stands and gives every descriptor away
    /// into `fds`. Never drops a stream silently: whatever could not be
    /// recorded is named in the error that comes with the record, and the
    /// upgrade is then called off (the record still holds the rest).
    pub async fn snapshot(mut self, fds: &mut FdList) -> (IoRec, Option<String>) {
        self.stop_loops();
        let mut failed = Vec::new();
        let mut rec = IoRec {
            stdin_holder: self.stdin_holder.take().map(|f| fds.give(OwnedFd::from(f))),
            streams: Vec::new(),
            console: None,
            logger_pid: None,
            spill: self.spill.take(),
        };
        let loops = self.input.take().into_iter().map(|l| (l, false));
        let loops: Vec<_> = loops
            .chain(self.outputs.drain(..).map(|l| (l, true)))
            .collect();
        for (handle, output) in loops {
            let stopped = match handle.await {
                Ok(Some(stopped)) => stopped,
                // The loop had ended: nothing left to hand over.
                Ok(None) => continue,
                Err(e) => {
                    failed.push(format!("a copy loop ended abnormally: {e}"));
                    continue;
                }
            };
            let from_file = matches!(stopped.from, Source::File(_));
            let to_file = matches!(stopped.to, Sink::File(_));
            let (from, to) = match (stopped.from.into_fd().await, stopped.to.into_fd().await) {
                (Ok(from), Ok(to)) => (from.map(|f| fds.give(f)), to.map(|f| fds.give(f))),
                (from, to) => {
                    let e = from.err().or(to.err()).map(|e| e.to_string());
                    failed.push(format!("a stream's descriptor: {}", e.unwrap_or_default()));
                    continue;
                }
            };
            let spill_range = stopped.tail.as_ref().map_or((0, 0), |t| (t.start, t.end));
            let spill_file = stopped.tail.map(|t| fds.give(OwnedFd::from(t.file)));
            rec.streams.push(StreamRec {
                output,
                from,
                from_file,
                to,
                to_file,
                pending: stopped.pending,
                spill_file,
                spill_range,
            });
        }
        if let Some(console) = self.console.take() {
            // Someone may still hold the terminal (a resize on its way out):
            // hand over a duplicate, the original closes at exec.
            let master = match Arc::try_unwrap(console) {
                Ok(c) => Ok(c.into_fd()),
                Err(shared) => shared.try_clone_fd(),
            };
            match master {
                Ok(m) => rec.console = Some(fds.give(m)),
                Err(e) => failed.push(format!("the terminal: {e}")),
            }
        }
        rec.logger_pid = self.logger.take().map(Logger::snapshot);
        let failed = (!failed.is_empty()).then(|| failed.join("; "));
        (rec, failed)
    }

    /// Picks up where a snapshot left off, taking its descriptors from `fds`.
    pub fn restore(
        rec: IoRec,
        fds: &mut FdTable,
        tasks: &Tasks,
        span: tracing::Span,
    ) -> Result<ProcessIo> {
        let mut take = |n: Option<RawFd>| {
            n.map(|n| fds.take(n))
                .transpose()
                .map_err(Error::io("take over", "stdio descriptor"))
        };
        let mut io = ProcessIo::empty(tasks.branch(), span);
        io.spill = rec.spill;
        io.stdin_holder = take(rec.stdin_holder)?.map(File::from);
        io.logger = rec
            .logger_pid
            .map(|pid| Logger::restore(pid, io.tasks.clone()));
        if let Some(master) = take(rec.console)? {
            io.console = Some(Arc::new(Console::new(master)?));
        }
        for s in rec.streams {
            let console = |io: &ProcessIo| {
                io.console.clone().ok_or_else(|| {
                    Error::InvalidArgument("a terminal stream without a terminal".into())
                })
            };
            let from = match (take(s.from)?, s.from_file) {
                (Some(fd), true) => Source::File(File::from(fd)),
                (Some(fd), false) => Source::Pipe(
                    pipe::Receiver::from_owned_fd(fd).map_err(Error::io("resume", "pipe"))?,
                ),
                (None, _) => Source::Console(console(&io)?),
            };
            let to = match (take(s.to)?, s.to_file) {
                (Some(fd), true) => Sink::File(File::from(fd)),
                (Some(fd), false) => Sink::Pipe(sender(fd)?),
                (None, _) => Sink::Console(console(&io)?),
            };
            let tail = take(s.spill_file)?.map(|fd| SpillTail {
                file: File::from(fd),
                start: s.spill_range.0,
                end: s.spill_range.1,
            });
            let l = io.resume(from, to, s.pending, tail, s.output)?;
            if s.output {
                io.outputs.push(l);
            } else {
                io.input = Some(l);
            }
        }
        Ok(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_terminal_still_shared_is_handed_over_as_a_duplicate() {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let console = Arc::new(Console::new(pty.master).expect("console"));
        let mut io = ProcessIo::empty(Tasks::root(), tracing::Span::none());
        io.console = Some(console.clone());
        let mut fds = FdList::new();
        let (rec, failed) = io.snapshot(&mut fds).await;
        assert_eq!(failed, None);
        let n = rec.console.expect("the terminal is recorded");
        assert_eq!(fds.numbers(), &[n]);
        // The duplicate is a descriptor of its own, on the same terminal.
        let dup = FdTable::new().take(n).expect("the recorded descriptor");
        assert!(nix::unistd::isatty(std::os::fd::AsRawFd::as_raw_fd(&dup)).unwrap_or(false));
        drop(console);
    }
}

//! A bounded spill for a process's output while its reader is away
//! (containerd down or restarting, a killed `ctr`, a FIFO nobody has
//! reopened yet): the copy loop keeps reading the container's pipe, so the
//! container's writes never wait for a reader, and keeps what it read here,
//! oldest first, until the reader takes it.
//!
//! The first [`MEMORY`] bytes stay in memory; the rest goes to a file in the
//! container's bundle directory (containerd's state directory for the task,
//! a tmpfs under /run by default). That file is opened with `O_TMPFILE`
//! (mode 0600, close-on-exec), so it has no name: nothing is left behind
//! whatever happens to the shim, and it is gone once the loop ends (the
//! process's stdio dropped at Delete). While it holds data, newer data goes
//! to its end, so the order is always memory, then file.
//!
//! At `max` bytes held, the copy loop waits for a reader that is still
//! taking output (a slow one), and for one that is away, drops the newest
//! output (what the container writes while the spill is full); what is held
//! is delivered intact: the reader gets a contiguous stretch up to the
//! moment the spill filled, then a gap, then the output from the moment it
//! had room again. Each episode is logged with the number of bytes dropped.
//! ([`crate::io::copy::copy_output`] decides which; this is the buffer.)

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::io::copy::COPY_BUF;

/// Bytes held in memory before the spill goes to its file.
pub const MEMORY: usize = 1 << 20;

/// Where a process's output spills, and how much it may hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpillConf {
    /// The directory of the spill file (the container's bundle).
    pub dir: PathBuf,
    /// The cap, in bytes, per output stream.
    pub max: u64,
}

/// Output read from the container and not yet taken by the reader.
pub struct Spill {
    conf: SpillConf,
    /// Being delivered: `head[head_at..]`.
    head: Vec<u8>,
    head_at: usize,
    /// In memory after `head`, oldest first.
    mem: VecDeque<Vec<u8>>,
    mem_bytes: usize,
    /// After `mem`, once memory is full.
    file: Option<SpillFile>,
    /// Bytes held in all three.
    held: u64,
    /// Bytes dropped since the spill last had room (logged when it has
    /// room again).
    dropping: u64,
    /// Bytes dropped in all.
    dropped: u64,
}

/// The unnamed file, with its unread stretch `[read_at, write_at)`.
struct SpillFile {
    file: File,
    read_at: u64,
    write_at: u64,
}

impl Spill {
    /// An empty spill.
    pub fn new(conf: SpillConf) -> Spill {
        Spill {
            conf,
            head: Vec::new(),
            head_at: 0,
            mem: VecDeque::new(),
            mem_bytes: 0,
            file: None,
            held: 0,
            dropping: 0,
            dropped: 0,
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Bytes it can take before its cap.
    pub fn room(&self) -> u64 {
        self.conf.max.saturating_sub(self.held)
    }

    /// Bytes dropped so far (past the cap, or by [`Spill::discard`]).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Keeps `data` after everything held; what does not fit under the cap
    /// (or in a spill file that cannot be written) is dropped and counted.
    pub fn push(&mut self, data: &[u8]) {
        let room = self.conf.max.saturating_sub(self.held);
        let keep = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let (keep, over) = data.split_at(keep);
        if !over.is_empty() {
            if self.dropping == 0 {
                tracing::warn!(
                    max = self.conf.max,
                    "output spill full while the reader is away: dropping the newest output until it has room"
                );
            }
            self.lose(over.len() as u64);
        }
        if keep.is_empty() {
            return;
        }
        if self.dropping > 0 {
            tracing::warn!(
                dropped = self.dropping,
                "output spill has room again; bytes dropped while it was full"
            );
            self.dropping = 0;
        }
        let in_file = self.file.as_ref().is_some_and(|f| f.write_at > f.read_at);
        if !in_file && self.mem_bytes + keep.len() <= MEMORY {
            self.mem.push_back(keep.to_vec());
            self.mem_bytes += keep.len();
            self.held += keep.len() as u64;
            return;
        }
        match self.append(keep) {
            Ok(()) => self.held += keep.len() as u64,
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.conf.dir.display(), "cannot write the output spill file: dropping output");
                self.lose(keep.len() as u64);
            }
        }
    }

    /// Counts `n` bytes dropped without being held (a reader that failed
    /// for good).
    pub fn lose(&mut self, n: u64) {
        self.dropping += n;
        self.dropped += n;
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(SpillFile {
                file: unnamed_file(&self.conf.dir)?,
                read_at: 0,
                write_at: 0,
            });
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::ErrorKind::NotFound.into());
        };
        f.file.write_all_at(data, f.write_at)?;
        f.write_at += data.len() as u64;
        Ok(())
    }

    /// The oldest bytes held (empty when nothing is), to be written and
    /// then [`consume`](Spill::consume)d.
    pub fn front(&mut self) -> io::Result<&[u8]> {
        if self.head_at == self.head.len() && self.held > 0 {
            self.head_at = 0;
            if let Some(chunk) = self.mem.pop_front() {
                self.mem_bytes -= chunk.len();
                self.head = chunk;
            } else if let Some(f) = self.file.as_mut() {
                let n = (f.write_at - f.read_at).min(COPY_BUF as u64) as usize;
                self.head.resize(n, 0);
                if let Err(e) = f.file.read_exact_at(&mut self.head, f.read_at) {
                    self.head.clear();
                    return Err(e);
                }
                f.read_at += n as u64;
                if f.read_at == f.write_at {
                    // Drained: give the space back and start over.
                    f.read_at = 0;
                    f.write_at = 0;
                    f.file.set_len(0)?;
                }
            }
        }
        Ok(&self.head[self.head_at..])
    }

    /// Marks `n` bytes of [`front`](Spill::front) as delivered.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.head.len() - self.head_at);
        self.head_at += n;
        self.held -= n as u64;
        if self.head_at == self.head.len() && self.head.capacity() > COPY_BUF {
            self.head = Vec::new();
            self.head_at = 0;
        }
    }

    /// Drops everything held (the reader failed for good), counting it.
    pub fn discard(&mut self) {
        let n = self.held;
        self.head = Vec::new();
        self.head_at = 0;
        self.mem.clear();
        self.mem_bytes = 0;
        self.file = None;
        self.held = 0;
        self.lose(n);
    }

    /// Everything held, for a live upgrade: what is in memory (at most
    /// [`MEMORY`] and a chunk), and after it the file's unread part, whose
    /// descriptor is handed over as it is.
    pub fn into_parts(mut self) -> (Vec<u8>, Option<SpillTail>) {
        let mut mem = self.head.split_off(self.head_at);
        for chunk in self.mem.drain(..) {
            mem.extend_from_slice(&chunk);
        }
        let tail = self.file.take().and_then(|f| {
            (f.write_at > f.read_at).then_some(SpillTail {
                file: f.file,
                start: f.read_at,
                end: f.write_at,
            })
        });
        self.held = 0;
        (mem, tail)
    }

    /// A spill holding `pending`, then `tail`, as [`Spill::into_parts`]
    /// gave them.
    pub fn resume(conf: SpillConf, pending: Vec<u8>, tail: Option<SpillTail>) -> Spill {
        let mut s = Spill::new(conf);
        s.held = pending.len() as u64;
        s.head = pending;
        if let Some(t) = tail {
            s.held += t.end.saturating_sub(t.start);
            s.file = Some(SpillFile {
                file: t.file,
                read_at: t.start,
                write_at: t.end.max(t.start),
            });
        }
        s
    }
}

/// The bytes of a handed-over tail, for a loop without a spill.
pub fn read_tail(t: &SpillTail) -> io::Result<Vec<u8>> {
    let len = t.end.saturating_sub(t.start);
    if len > t.file.metadata()?.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("spill range {}..{} past the file's end", t.start, t.end),
        ));
    }
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    t.file.read_exact_at(&mut buf, t.start)?;
    Ok(buf)
}

/// The part of a spill held in its file, handed over in a live upgrade.
pub struct SpillTail {
    /// The unnamed file.
    pub file: File,
    /// Where its unread bytes start.
    pub start: u64,
    /// Where they end.
    pub end: u64,
}

impl Drop for Spill {
    fn drop(&mut self) {
        if self.held > 0 {
            tracing::warn!(
                undelivered = self.held,
                dropped = self.dropped,
                "output stream closed with spilled output its reader never took"
            );
        }
    }
}

/// A file with no name in `dir`, mode 0600, close-on-exec: `O_TMPFILE`, or
/// where the filesystem lacks it, a file created and unlinked at once.
fn unnamed_file(dir: &std::path::Path) -> io::Result<File> {
    let opts = |flags| {
        let mut o = OpenOptions::new();
        o.read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(flags | libc::O_CLOEXEC);
        o
    };
    match opts(libc::O_TMPFILE).open(dir) {
        Ok(f) => Ok(f),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            let path = dir.join(format!(".output-spill-{}", std::process::id()));
            let f = opts(0).create_new(true).open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(f)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spill(dir: &std::path::Path, max: u64) -> Spill {
        Spill::new(SpillConf {
            dir: dir.to_path_buf(),
            max,
        })
    }

    fn drain(s: &mut Spill, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !s.is_empty() {
            let f = s.front().unwrap();
            let n = f.len().min(step);
            out.extend_from_slice(&f[..n]);
            s.consume(n);
        }
        out
    }

    #[test]
    fn keeps_order_across_memory_and_file_and_refills() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spill(dir.path(), 64 << 20);
        let data = (0..3 * MEMORY).map(|i| (i % 251) as u8).collect::<Vec<_>>();
        for c in data.chunks(10_000) {
            s.push(c);
        }
        assert!(s.file.is_some(), "past MEMORY the spill uses its file");
        // Deliver part, push more (must go after the file's data), then all.
        let mut got = Vec::new();
        while got.len() < MEMORY + 5 {
            let f = s.front().unwrap();
            let n = f.len().min(777);
            got.extend_from_slice(&f[..n]);
            s.consume(n);
        }
        let more = vec![7u8; 50_000];
        s.push(&more);
        got.extend(drain(&mut s, 4096));
        let mut want = data.clone();
        want.extend_from_slice(&more);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "order kept");
        assert_eq!(s.dropped(), 0);
        // Drained: the file was emptied and memory is used first again.
        s.push(b"abc");
        assert_eq!(s.mem_bytes, 3);
        assert_eq!(drain(&mut s, 1), b"abc");
        let f = s.file.as_ref().unwrap();
        assert_eq!(f.file.metadata().unwrap().len(), 0);
        // The file has no name in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn past_the_cap_the_newest_bytes_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spill(dir.path(), 10);
        s.push(b"0123456");
        s.push(b"789abc");
        s.push(b"def");
        assert_eq!(s.held, 10);
        assert_eq!(s.dropped(), 6);
        assert_eq!(drain(&mut s, 3), b"0123456789");
        s.push(b"XY");
        assert_eq!(drain(&mut s, 3), b"XY");
        assert_eq!(s.dropped(), 6);
    }

    #[test]
    fn handed_over_and_resumed_in_order_then_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spill(dir.path(), 64 << 20);
        let big = (0..MEMORY + 10).map(|i| (i % 13) as u8).collect::<Vec<_>>();
        s.push(b"head");
        s.push(&big);
        s.push(b"tail");
        let f = s.front().unwrap();
        assert_eq!(&f[..2], b"he");
        s.consume(2);
        let conf = s.conf.clone();
        let (pending, tail) = s.into_parts();
        assert!(tail.is_some(), "the file part is handed over as a file");
        let mut s = Spill::resume(conf, pending, tail);
        s.push(b"after");
        let mut want = b"ad".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"tailafter");
        assert_eq!(drain(&mut s, 1000), want);
        s.push(b"x");
        s.discard();
        assert!(s.is_empty());
        assert_eq!(s.dropped(), 1);
    }

    #[test]
    fn an_unwritable_directory_drops_instead_of_failing() {
        let mut s = spill(std::path::Path::new("/nonexistent/tether"), 64 << 20);
        s.push(&vec![0u8; MEMORY]);
        s.push(b"more");
        assert_eq!(s.held, MEMORY as u64);
        assert_eq!(s.dropped(), 4);
    }
}

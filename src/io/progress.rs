//! How far a process's output copying has got, for the drain that holds its
//! exit back: bytes moved (a sign of life) and how many outputs' sources
//! have ended (every process that held them is gone).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shared by a process's output loops and its drain.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: AtomicU64,
    ended: AtomicUsize,
}

impl Progress {
    /// Counts `n` bytes moved.
    pub fn add(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// One output's source reached its end (EOF on a pipe, EIO on a pty
    /// master): what that loop still holds only waits for the reader.
    pub fn source_ended(&self) {
        self.ended.fetch_add(1, Ordering::Release);
    }

    /// How many outputs' sources have ended.
    pub fn sources_ended(&self) -> usize {
        self.ended.load(Ordering::Acquire)
    }
}

/// [`Progress::add`] for a loop that may count nothing (input).
pub fn count(p: &Option<std::sync::Arc<Progress>>, n: usize) {
    if let Some(p) = p {
        p.add(n);
    }
}

/// [`Progress::source_ended`] for a loop that may count nothing (input).
pub fn ended(p: &Option<std::sync::Arc<Progress>>) {
    if let Some(p) = p {
        p.source_ended();
    }
}

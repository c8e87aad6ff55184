//! What reaches the shim's monitor from outside a request, and whose it is.
//!
//! Two kinds of notice arrive on one channel, in order: exits the reaper did
//! not claim, and OOM notifications from cgroup watchers. The monitor (see
//! `Shim::monitor`) routes each to its container by id; nothing below a
//! container points back up to it.
//!
//! A process is registered under its pid once the pid is known (after `runc
//! create` or `runc exec` wrote the pid file). It may already have exited by
//! then: exits of pids nobody has registered are kept, a bounded number for
//! a bounded time, and handed over at registration.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::reaper::{Exit, ExitRec};

/// Something that happened to a container, for the monitor.
#[derive(Debug)]
pub enum Notice {
    /// A process nobody was waiting for by pid was reaped.
    Exit(Exit),
    /// The kernel reported an OOM in this container's cgroup.
    Oom {
        /// Container id.
        container: String,
    },
    /// Answered once every notice sent before it has been handled.
    CaughtUp(tokio::sync::oneshot::Sender<()>),
}

/// Where notices are sent.
pub type Notices = mpsc::UnboundedSender<Notice>;

/// A process, by container id and exec id (empty for init).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessKey {
    /// Container id.
    pub container: String,
    /// Exec id; empty for the init process.
    pub exec: String,
}

/// How many unregistered exits are kept at most.
const EARLY_EXITS: usize = 1024;
/// How long an unregistered exit is kept: longer than any runtime
/// invocation takes to write its pid file, short enough that a reused pid
/// cannot match a stale exit.
const EARLY_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Inner {
    owners: HashMap<u32, ProcessKey>,
    early: VecDeque<(Exit, Instant)>,
}

/// Routes exits to processes.
#[derive(Default)]
pub struct Router {
    inner: Mutex<Inner>,
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the process `key` under `pid`. Returns its exit if it was
    /// reaped before this call.
    pub fn register(&self, pid: u32, key: ProcessKey) -> Option<Exit> {
        let mut inner = self.lock();
        if let Some(i) = inner.early.iter().position(|(e, _)| e.pid == pid) {
            return inner.early.remove(i).map(|(e, _)| e);
        }
        inner.owners.insert(pid, key);
        None
    }

    /// The process an exit belongs to, which stops being registered; or
    /// None, and the exit is kept for a later registration.
    pub fn route(&self, exit: Exit) -> Option<ProcessKey> {
        let mut inner = self.lock();
        if let Some(key) = inner.owners.remove(&exit.pid) {
            return Some(key);
        }
        let now = Instant::now();
        while inner
            .early
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > EARLY_TTL)
            || inner.early.len() >= EARLY_EXITS
        {
            inner.early.pop_front();
        }
        inner.early.push_back((exit, now));
        None
    }

    /// Exits nobody has registered yet, for a live upgrade. (Registrations
    /// are not recorded: restored processes register again.)
    pub fn snapshot(&self) -> Vec<ExitRec> {
        self.lock().early.iter().map(|(e, _)| e.record()).collect()
    }

    /// Keeps the exits a snapshot recorded, for later registrations.
    pub fn restore(&self, exits: &[ExitRec]) {
        let now = Instant::now();
        self.lock()
            .early
            .extend(exits.iter().map(|r| (Exit::from_record(r), now)));
    }

    /// Forgets the registration of `pid` (its process is being deleted).
    pub fn forget(&self, pid: u32) {
        self.lock().owners.remove(&pid);
    }
}

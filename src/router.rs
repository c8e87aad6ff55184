//! Which process a reaped pid belongs to.
//!
//! A process is registered once its pid is known (after `runc create` or
//! `runc exec` wrote the pid file). It may already have exited by then: exits
//! of pids nobody has registered are kept, a bounded number for a bounded
//! time, and handed over at registration.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::container::Container;
use crate::process::Process;
use crate::reaper::Exit;

/// How many unregistered exits are kept at most.
const EARLY_EXITS: usize = 1024;
/// How long an unregistered exit is kept: longer than any runtime
/// invocation takes to write its pid file, short enough that a reused pid
/// cannot match a stale exit.
const EARLY_TTL: Duration = Duration::from_secs(60);

type Owner = (Weak<Container>, Arc<Process>);

#[derive(Default)]
struct Inner {
    owners: HashMap<u32, Owner>,
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

    /// Registers `process` of `container` under `pid`. Returns its exit if it
    /// was reaped before this call.
    pub fn register(
        &self,
        pid: u32,
        container: &Arc<Container>,
        process: &Arc<Process>,
    ) -> Option<Exit> {
        let mut inner = self.lock();
        if let Some(i) = inner.early.iter().position(|(e, _)| e.pid == pid) {
            return inner.early.remove(i).map(|(e, _)| e);
        }
        inner
            .owners
            .insert(pid, (Arc::downgrade(container), process.clone()));
        None
    }

    /// The owner of an exit, which stops being registered; or None, and the
    /// exit is kept for a later registration.
    pub fn route(&self, exit: Exit) -> Option<(Arc<Container>, Arc<Process>)> {
        let mut inner = self.lock();
        if let Some((c, p)) = inner.owners.remove(&exit.pid) {
            return c.upgrade().map(|c| (c, p));
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

    /// Exits nobody has registered yet (for a handover).
    pub fn early_exits(&self) -> Vec<Exit> {
        self.lock().early.iter().map(|(e, _)| *e).collect()
    }

    /// Takes exits an earlier shim had kept.
    pub fn keep_early(&self, exits: Vec<Exit>) {
        let now = Instant::now();
        self.lock()
            .early
            .extend(exits.into_iter().map(|e| (e, now)));
    }

    /// Forgets the registration of `pid` (its process is being deleted).
    pub fn forget(&self, pid: u32) {
        self.lock().owners.remove(&pid);
    }
}

//! The two rules of a container's shared state that types can hold, rather
//! than comments:
//!
//! - [`Gate`]: the operations that check the container's state and then
//!   change it through runc (Pause, Resume, Update, Checkpoint) pass it
//!   alone; exec Starts pass it together, from their "not paused" check
//!   through `runc exec`, so a Pause cannot land in between. Whether the
//!   container is paused lives in the gate and can be changed only by an
//!   operation that passed it alone ([`Alone::set_paused`]); anyone may read
//!   it without waiting, one Pause old at worst. The gate is held across the
//!   one runc call of the operation, for at most that call's deadline: the
//!   only place the shim waits on runc with anything held.
//! - [`Watched`]: the cgroup and its OOM count are found together, once,
//!   right after the init has a pid, so no reader can see one without the
//!   other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::cgroup::oom::OomSeen;
use crate::cgroup::Cgroup;

/// See the module's doc.
#[derive(Debug, Default)]
pub(super) struct Gate {
    pass: RwLock<()>,
    paused: AtomicBool,
}

/// An operation that passed the gate alone.
pub(super) struct Alone<'a> {
    _pass: RwLockWriteGuard<'a, ()>,
    paused: &'a AtomicBool,
}

/// An exec Start that passed the gate (alongside other exec Starts).
pub(super) struct Shared<'a> {
    _pass: RwLockReadGuard<'a, ()>,
}

impl Gate {
    /// A gate for a container that is paused or not (a handed-over one may
    /// be).
    pub(super) fn new(paused: bool) -> Gate {
        Gate {
            pass: RwLock::new(()),
            paused: AtomicBool::new(paused),
        }
    }

    /// Whether Pause froze the container.
    pub(super) fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Waits to pass alone.
    pub(super) async fn alone(&self) -> Alone<'_> {
        Alone {
            _pass: self.pass.write().await,
            paused: &self.paused,
        }
    }

    /// Waits to pass as an exec Start.
    pub(super) async fn shared(&self) -> Shared<'_> {
        Shared {
            _pass: self.pass.read().await,
        }
    }
}

impl Alone<'_> {
    /// Records what Pause or Resume did, once runc did it.
    pub(super) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }
}

/// A container's cgroup and the OOM kills counted in it.
#[derive(Debug)]
pub(super) struct Watched {
    /// The cgroup, as found from the init's pid.
    pub(super) cgroup: Cgroup,
    /// Its OOM kills, observed and reported (shared with its watcher).
    pub(super) oom: Arc<OomSeen>,
}

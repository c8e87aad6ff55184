//! The task tree: every task the daemon spawns belongs to an owner, and
//! every owner can stop its tasks and wait for them.
//!
//! An owner is a [`Tasks`]: a cancellation token and a tracker. The tokens
//! form a tree, daemon -> container -> process stdio, so cancelling an owner
//! cancels everything below it; a process's stdio shares its container's
//! tracker, so waiting for a container waits for its copy loops too.
//!
//! - The daemon's tasks: the reaper, the monitor, the event sender, the
//!   accept loop.
//! - A container's tasks: its exit handlers, its OOM watch, and the copy
//!   loops of every one of its processes.
//!
//! Shutdown and live upgrade walk the tree the same way: cancel an owner,
//! close its tracker, and wait (bounded) for what it tracks to end
//! ([`Tasks::shut`]). A task reacts to its token at its own await points
//! (`token.cancelled()` in a `select!`), which is how a copy loop hands its
//! descriptors back instead of being torn off mid-write; a loop on the
//! blocking pool is woken by an eventfd that the token's cancellation sets.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An owner of tasks: what stops them, and what waits for them.
#[derive(Clone, Default)]
pub struct Tasks {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    /// The root of a tree (the daemon).
    pub fn root() -> Tasks {
        Tasks::default()
    }

    /// An owner below this one, with a tracker of its own: cancelled with
    /// this one, waited for on its own.
    pub fn child(&self) -> Tasks {
        Tasks {
            token: self.token.child_token(),
            tracker: TaskTracker::new(),
        }
    }

    /// An owner below this one that shares its tracker: cancelled on its own
    /// or with this one; waiting for this one waits for it too.
    pub fn branch(&self) -> Tasks {
        Tasks {
            token: self.token.child_token(),
            tracker: self.tracker.clone(),
        }
    }

    /// What tells this owner's tasks to stop.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Tells this owner's tasks (and every owner below) to stop.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Spawns a task this owner tracks. The task watches the token itself.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Spawns a task this owner tracks, dropped at its next await once the
    /// owner is cancelled.
    pub fn spawn_until_cancelled<F>(&self, task: F) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                biased;
                _ = token.cancelled() => None,
                out = task => Some(out),
            }
        })
    }

    /// Runs `f` on the blocking pool as a task this owner tracks.
    pub fn spawn_blocking<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.tracker.spawn_blocking(f)
    }

    /// Cancels this owner and closes its tracker, without waiting (a
    /// deleted container: what it still runs ends by itself).
    pub fn close(&self) {
        self.token.cancel();
        self.tracker.close();
    }

    /// Cancels this owner, closes its tracker, and waits up to `limit` for
    /// those it tracks to end. Says whether they all did.
    pub async fn shut(&self, limit: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancelling_an_owner_stops_the_tasks_below_it() {
        let daemon = Tasks::root();
        let container = daemon.child();
        let process = container.branch();
        let copy = process.spawn_until_cancelled(std::future::pending::<()>());
        let handler = container.spawn_until_cancelled(std::future::pending::<()>());
        daemon.cancel();
        assert!(container.shut(Duration::from_secs(5)).await);
        assert!(copy.await.unwrap().is_none());
        assert!(handler.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_branch_cancelled_alone_leaves_its_owner_running() {
        let container = Tasks::root().child();
        let process = container.branch();
        process.cancel();
        assert!(!container.token().is_cancelled());
        let done = container.spawn(async { 7 });
        assert_eq!(done.await.unwrap(), 7);
    }
}

//! The one owner of `waitpid` in the daemon.
//!
//! The shim is a child subreaper: runc, the container's init and anything the
//! container leaves behind end up as its children. Exactly one task calls
//! `waitpid(-1)`; everyone else learns of exits from it.
//!
//! A process the shim spawns itself (a runc invocation) is *claimed* by pid in
//! the same critical section as the spawn, so its exit can never be reaped
//! before someone is waiting for it, and never reaches anyone else. Every exit
//! nobody claimed goes to the monitor channel, in the order it was reaped.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::sys::Reaped;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// A reaped process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Its pid.
    pub pid: u32,
    /// Exit code, or 128 + signal number for a process killed by a signal.
    pub status: u32,
    /// When the shim reaped it.
    pub at: SystemTime,
}

/// An exit as a live-upgrade snapshot records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitRec {
    /// Pid.
    pub pid: u32,
    /// Status.
    pub status: u32,
    /// Time since the epoch.
    pub at: std::time::Duration,
}

impl Exit {
    /// Its record.
    pub fn record(&self) -> ExitRec {
        ExitRec {
            pid: self.pid,
            status: self.status,
            at: self
                .at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// Back from a record.
    pub fn from_record(r: &ExitRec) -> Exit {
        Exit {
            pid: r.pid,
            status: r.status,
            at: SystemTime::UNIX_EPOCH + r.at,
        }
    }
}

/// Where the exits nobody claimed go, in the order they were reaped.
pub type Unclaimed = Arc<dyn Fn(Exit) + Send + Sync>;

/// Handle to the reaper; cheap to clone.
#[derive(Clone)]
pub struct Reaper {
    claims: Arc<Mutex<HashMap<u32, oneshot::Sender<Exit>>>>,
    unclaimed: Unclaimed,
    /// While set, nothing is reaped: exits wait as zombies (for a live
    /// upgrade, whose next binary reaps them).
    paused: Arc<std::sync::atomic::AtomicBool>,
}

/// The exit of a process spawned through [`Reaper::spawn`].
pub struct ExitFuture(oneshot::Receiver<Exit>);

impl ExitFuture {
    /// Waits for the process to exit.
    pub async fn wait(self) -> Exit {
        // The sender lives in the claim table until the exit is delivered, and
        // the reaper task lives until the daemon's tasks are shut, its last
        // act.
        self.0
            .await
            .expect("the reaper outlives every process it claimed")
    }
}

impl Reaper {
    /// Starts reaping on SIGCHLD, in a task of `tasks` (the daemon's); exits
    /// nobody claimed go to `unclaimed`. Must be called inside the tokio
    /// runtime.
    pub fn start(unclaimed: Unclaimed, tasks: &crate::tasks::Tasks) -> io::Result<Reaper> {
        let reaper = Reaper {
            claims: Arc::default(),
            unclaimed,
            paused: Arc::default(),
        };
        let mut sigchld = signal(SignalKind::child())?;
        let r = reaper.clone();
        tasks.spawn_until_cancelled(async move {
            // Children that exited before the handler was installed.
            r.reap();
            while sigchld.recv().await.is_some() {
                r.reap();
            }
        });
        Ok(reaper)
    }

    /// Spawns `cmd` and claims its exit. The claim is made while the claim
    /// table is locked, and reaping takes the same lock, so the exit cannot
    /// slip past. Never call `wait` on the returned child.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, ExitFuture)> {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        claims.insert(child.id(), tx);
        Ok((child, ExitFuture(rx)))
    }

    /// SIGKILLs the process group of `pid`, a process spawned through
    /// [`Reaper::spawn`] as the leader of a group of its own, unless it has
    /// been reaped already. The claim table stays locked from the check to
    /// the signal, so the pid cannot be reaped, and reused, in between.
    /// Returns whether the signal was sent.
    pub fn kill_group(&self, pid: u32) -> bool {
        let claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        claims.contains_key(&pid)
            && nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
    }

    /// Stops reaping: exits wait as zombies (for a live upgrade, whose next
    /// binary reaps them).
    pub fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Reaps again, starting with what exited meanwhile.
    pub fn resume(&self) {
        self.paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.reap();
    }

    /// Reaps every child that has exited.
    fn reap(&self) {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        if self.paused.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        loop {
            let (pid, status) = match crate::sys::reap_one() {
                Ok(Reaped::Exited(pid, status)) => (pid, status),
                Ok(Reaped::NoneYet | Reaped::NoChildren) => return,
                Err(e) => {
                    tracing::error!(error = %e, "waitpid failed");
                    return;
                }
            };
            let exit = Exit {
                pid,
                status,
                at: SystemTime::now(),
            };
            match claims.remove(&exit.pid) {
                // A dropped future just means nobody cares any more.
                Some(tx) => drop(tx.send(exit)),
                None => (self.unclaimed)(exit),
            }
        }
    }
}

/// Whether `pid` is a running process (not gone, not a zombie).
#[cfg(test)]
pub(crate) fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The orphan below is reaped by the reaper under test, not by `wait`.
    #[allow(clippy::zombie_processes)]
    #[tokio::test(flavor = "current_thread")]
    async fn claimed_exits_go_to_the_spawner_and_others_to_the_monitor() {
        let (tx, mut unclaimed) = tokio::sync::mpsc::unbounded_channel();
        let tasks = crate::tasks::Tasks::root();
        let unclaimed_to = Arc::new(move |e| {
            let _ = tx.send(e);
        });
        let reaper = Reaper::start(unclaimed_to, &tasks).unwrap();
        let (_child, exit) = reaper
            .spawn(Command::new("sh").args(["-c", "exit 7"]))
            .unwrap();
        let exit = exit.wait().await;
        assert_eq!(exit.status, 7);

        // A grandchild-like process nobody claimed: spawn directly.
        let orphan = Command::new("sh")
            .args(["-c", "kill -9 $$"])
            .spawn()
            .unwrap();
        // Children of other tests in this process exit meanwhile too.
        let got = loop {
            let got = unclaimed.recv().await.unwrap();
            if got.pid == orphan.id() {
                break got;
            }
        };
        assert_eq!(got.status, 137);
    }
}

//! A process's reaped exit: drained, reported, and for the init, after its
//! execs'; and the OOM kills reported before it.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::inflight::KILLS_GRACE;
use super::{Container, Op, EXEC_DRAIN_LIMIT};
use crate::error::Result;
use crate::events::Event;
use crate::process::{ExitInfo, Phase, Process};
use crate::reaper::Exit;

/// How long init's exit waits for the exits of its execs to be reported (an
/// exec that escaped the container must not hold the init's exit forever).
const EXECS_GRACE: Duration = Duration::from_secs(10);

/// The exit status of a process killed by SIGKILL, as the OOM killer kills.
const KILLED: u32 = 128 + libc::SIGKILL as u32;

impl Container {
    /// Handles the reaped exit of the init process (empty exec id) or an
    /// exec: what the monitor calls with an exit the router matched.
    pub fn reaped(self: &Arc<Self>, exec_id: &str, exit: Exit) -> Result<()> {
        let p = self.process(exec_id)?;
        self.on_exit(p, exit);
        Ok(())
    }

    /// Handles the reaped exit of `process` in a task the container owns.
    pub(crate) fn on_exit(self: &Arc<Self>, process: Arc<Process>, exit: Exit) {
        if process.is_init() {
            // Read now, while the cgroup is surely there: a cgroup manager
            // may remove an emptied cgroup before the exit is reported.
            if let Some(w) = self.watched.get() {
                w.oom.observe(&w.cgroup);
            }
        }
        let span = process.span().clone();
        self.tasks
            .spawn(self.clone().exited(process, exit).instrument(span));
    }

    /// Handles the reaped exit of one of the container's processes: drain its
    /// output, then report it. For init, first kill what is left if needed and
    /// let the execs' exits go first. Runs once per process. Once the
    /// container's tasks are cancelled (it was deleted), the waiting is cut
    /// short: the exit is still reported, so no Wait is left hanging.
    async fn exited(self: Arc<Self>, process: Arc<Process>, exit: Exit) {
        let token = self.tasks.token().clone();
        process.wait_until(|p| *p != Phase::Starting).await;
        if self.advance(Op::Exit, &process).is_err() {
            return;
        }
        if process.is_init() {
            let settle = async {
                if self.kill_all_on_exit {
                    self.kill_the_rest().await;
                }
                // The container's processes are gone with its init (killed
                // above, or with its pid namespace): no time limit needed.
                process.drain(None).await;
                self.wait_for_execs().await;
            };
            token.run_until_cancelled(settle).await;
            // An OOM kill that ended the container is reported before its exit.
            if !self.check_oom() && exit.status == KILLED {
                self.oom_from_kernel_log(exit.pid).await;
            }
        } else {
            // A child the exec left behind may hold its output open (or
            // keep writing) for ever: the exec still returns.
            token
                .run_until_cancelled(process.drain(Some(EXEC_DRAIN_LIMIT)))
                .await;
        }
        // A Kill that caused this exit answers its caller first.
        let kills = self.kills.settled(KILLS_GRACE);
        if token.run_until_cancelled(kills).await == Some(false) {
            tracing::debug!(id = %self.id, "a Kill is still in flight; reporting the exit anyway");
        }
        let info = ExitInfo {
            status: exit.status,
            at: exit.at,
        };
        tracing::info!(id = %self.id, exec_id = %process.exec_id, pid = exit.pid, status = exit.status, "process exited");
        if process.is_init() {
            // On disk before anyone hears of it: if this daemon dies now,
            // `delete` still reports the real status.
            // Written through the page cache, without an fsync (see
            // `write_replacing_now`): enough for a daemon that dies next.
            let record = crate::records::ExitRecord::new(exit.pid, info.status, info.at);
            if let Err(e) = record.save(&self.bundle) {
                tracing::warn!(id = %self.id, error = %e, "keeping the exit status on disk");
            }
        }
        // The event is queued and the phase set with no await in between, so
        // whoever reacts to the event finds the process stopped.
        self.publisher.publish(Event::Exit {
            id: self.id.clone(),
            process: if process.is_init() {
                self.id.clone()
            } else {
                process.exec_id.clone()
            },
            pid: process.pid(),
            status: info.status,
            at: info.at,
        });
        process.set_phase(Phase::Stopped(info));
    }

    /// Publishes `/tasks/oom` if the cgroup's OOM kill count grew; returns
    /// whether it did.
    pub fn check_oom(&self) -> bool {
        let Some(w) = self.watched.get() else {
            return false;
        };
        let grew = w.oom.grew(&w.cgroup);
        if grew {
            tracing::info!(id = %self.id, "OOM kill in the container");
            self.publisher.publish(Event::Oom {
                id: self.id.clone(),
            });
        }
        grew
    }

    /// For an init that died of SIGKILL after its cgroup went, before the
    /// kill counter was seen to move (systemd removes an emptied scope at
    /// once): the kernel log says whether the OOM killer killed it.
    async fn oom_from_kernel_log(&self, pid: u32) {
        let Some(seen) = self.watched.get().map(|w| w.oom.clone()) else {
            return;
        };
        if !seen.unseen_kill_possible() {
            return;
        }
        let since = seen.since_us();
        let lookup = move || crate::cgroup::kmsg::oom_killed(pid, since);
        if self.tasks.spawn_blocking(lookup).await.unwrap_or(false) {
            seen.add_unseen_kill();
            tracing::info!(id = %self.id, pid, "OOM kill in the container (the kernel log's; its cgroup was gone)");
            self.publisher.publish(Event::Oom {
                id: self.id.clone(),
            });
        }
    }

    /// Finds the container's cgroup (its init has a pid now) and starts
    /// watching it for OOM kills.
    pub(crate) fn watch_cgroup(&self) {
        self.watch_cgroup_from(None);
    }

    /// Like `watch_cgroup`, counting OOM kills from `seen` (what an earlier
    /// shim already reported) instead of from now.
    pub(crate) fn watch_cgroup_from(&self, seen: Option<u64>) {
        let Some(cgroup) = crate::cgroup::Cgroup::of_pid(self.init.pid()) else {
            tracing::warn!(id = %self.id, "the container's cgroup was not found");
            return;
        };
        let seen = match seen {
            Some(n) => crate::cgroup::oom::OomSeen::from_count(n),
            None => crate::cgroup::oom::OomSeen::baseline(&cgroup),
        };
        let seen = Arc::new(seen);
        let target = crate::cgroup::oom::Target {
            container: self.id.clone(),
            seen: seen.clone(),
            notices: self.notices.clone(),
        };
        // Set before the watch starts, so its first notice finds it.
        let watched = super::gate::Watched {
            cgroup: cgroup.clone(),
            oom: seen,
        };
        if self.watched.set(watched).is_err() {
            return;
        }
        match crate::cgroup::oom::watch(target, &cgroup, &self.tasks) {
            Ok(()) => {}
            Err(e) => tracing::warn!(id = %self.id, error = %e, "OOM kills will not be reported"),
        }
    }

    /// Waits until no exec is starting or running any more (bounded).
    async fn wait_for_execs(&self) {
        let execs: Vec<_> = self.lock_execs().values().cloned().collect();
        let all = async {
            for p in execs {
                let settled = p.wait_until(|p| *p != Phase::Starting).await;
                if matches!(settled, Phase::Running | Phase::Exited) {
                    p.wait_until(|p| !matches!(p, Phase::Running | Phase::Exited))
                        .await;
                }
            }
        };
        if tokio::time::timeout(EXECS_GRACE, all).await.is_err() {
            tracing::warn!(id = %self.id, "execs outlived the init process; reporting its exit anyway");
        }
    }
}

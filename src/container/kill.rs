//! Kill and Delete of a container, and what Kill does when the runtime
//! hangs.
//!
//! With a pidfd for the init process (a runtime that takes
//! `--pidfd-socket`), Kill signals it through the pidfd, without the
//! runtime: that reaches the init or, once it has been reaped, nothing
//! (NotFound), never a process that reused its pid. The runtime is still
//! run for what `runc kill` does beyond signalling the init: `all`, and a
//! SIGKILL where it kills the whole cgroup (a shared pid namespace) or thaws
//! it (a frozen cgroup, paused through the shim or not), or where the
//! cgroup is unknown.
//!
//! `runc kill` runs within its deadline (`RuncTimeouts.Kill`). When it times
//! out, the shim does the work itself rather than fail: SIGKILL, or any
//! signal with `all`, goes to every process of the container's cgroup (see
//! `cgroup/kill.rs`), any other signal to the init process, which is what
//! `runc kill` without `--all` signals. The exit then arrives through the
//! reaper as usual. Delete has no such fallback: a `runc delete` that times
//! out is a DeadlineExceeded error and the container stays as it was, so
//! Delete can be retried (the runtime's state and cgroups are the runtime's
//! to remove).

use nix::errno::Errno;

use crate::container::{is_not_running, never_ran_or, Container, Op};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::process::{finished_error, ExitInfo, Phase};

impl Container {
    /// Sends `signal` to init (or to every process with `all`) or to an exec.
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        // Counted from before the signal until the reply: an exit it causes
        // is published after it (see `inflight`).
        let _in_flight = self.kills.begin();
        let p = self.process(exec_id)?;
        self.allow(Op::Kill, &p)?;
        if !p.is_init() {
            return self.kill_exec(&p, signal);
        }
        let beyond_init = all || (signal == libc::SIGKILL as u32 && self.sigkill_beyond_init());
        let through_pidfd = (!beyond_init)
            .then(|| p.signal_through_pidfd(signal as i32))
            .flatten();
        if let Some(sent) = through_pidfd {
            return match sent {
                Ok(()) => Ok(()),
                Err(Errno::ESRCH) => Err(finished_error(&self.id, &p)),
                Err(Errno::EINVAL) => Err(Error::InvalidArgument(format!(
                    "signal {signal} is not a signal"
                ))),
                Err(e) => Err(Error::Sys {
                    op: "kill",
                    source: e,
                }),
            };
        }
        match self.runc.kill(&self.id, signal, all).await {
            Ok(()) => Ok(()),
            Err(e @ Error::RuntimeTimeout { .. }) => {
                let through = self.kill_without_runtime(signal, all).await?;
                tracing::warn!(id = %self.id, error = %e, signal, all, through, "signalled the container without the runtime");
                Ok(())
            }
            // The process may have exited while runc was starting.
            Err(e) if p.phase().finished() || is_not_running(&e) => {
                Err(finished_error(&self.id, &p))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `runc kill` does more with SIGKILL than signal the init: it
    /// kills the whole cgroup in a shared pid namespace, and thaws a frozen
    /// cgroup (in which, on v1, a SIGKILLed process dies only when thawed).
    /// An unknown cgroup leaves that to runc.
    fn sigkill_beyond_init(&self) -> bool {
        self.kill_all_on_exit || self.is_paused() || self.cgroup().map_or(true, |c| c.is_frozen())
    }

    /// What `runc kill` does, done by the shim: SIGKILL or `all` through
    /// the cgroup, and the init process signalled directly in any case (a
    /// no-op after a cgroup SIGKILL; the only way left when the cgroup is
    /// unknown).
    /// Returns how it got there, for the log.
    async fn kill_without_runtime(&self, signal: u32, all: bool) -> Result<String> {
        let init = &self.init;
        let mut through = String::from("init");
        if all || signal == libc::SIGKILL as u32 {
            through = match self.cgroup() {
                Some(cgroup) => match cgroup.signal_all(signal as i32).await? {
                    Some(n) => format!("cgroup ({n} processes) and init"),
                    None => "cgroup.kill and init".into(),
                },
                None => "init (cgroup unknown)".into(),
            };
        }
        // Through the pidfd if there is one; else by pid, which is the
        // shim's unreaped child until its phase says it exited.
        if init.phase().finished() {
            return Ok(through);
        }
        match init.signal(signal as i32) {
            Ok(()) | Err(Errno::ESRCH) => Ok(through),
            Err(e) => Err(Error::Sys {
                op: "kill",
                source: e,
            }),
        }
    }

    /// After the init's exit, in a container sharing a pid namespace: kills
    /// what is left of it (`runc kill --all KILL`, or the cgroup if that
    /// times out).
    pub(crate) async fn kill_the_rest(&self) {
        let kill = libc::SIGKILL;
        let result = match self.runc.kill(&self.id, kill as u32, true).await {
            Err(Error::RuntimeTimeout { .. }) => match self.cgroup() {
                Some(cgroup) => cgroup.signal_all(kill).await.map(drop),
                None => Ok(()),
            },
            other => other,
        };
        if let Err(e) = result {
            tracing::debug!(id = %self.id, error = %e, "killing the rest of the container");
        }
    }

    /// Deletes the container from the runtime (or an exec from the shim).
    /// For init, the caller removes the container from the shim's table once
    /// this succeeds.
    pub async fn delete(&self, exec_id: &str) -> Result<(u32, ExitInfo)> {
        if !exec_id.is_empty() {
            return self.delete_exec(exec_id);
        }
        let init = &self.init;
        let before = self.advance(Op::Delete, init)?;
        if let Err(e) = self.runc.delete(&self.id, true).await {
            if !is_not_running(&e) {
                init.set_phase(before);
                return Err(e);
            }
        }
        for p in self.lock_execs().drain().map(|(_, p)| p) {
            p.close_io();
        }
        init.close_io();
        // Its OOM watch, and any exit handler still at work, end with it.
        self.tasks.close();
        self.router.forget(init.pid());
        if self.rootfs_mounted {
            crate::mount::unmount_all(&self.bundle.join("rootfs"));
        }
        let info = never_ran_or(before);
        init.set_phase(Phase::Deleted(info));
        self.publisher.publish(Event::Delete {
            id: self.id.clone(),
            exec_id: String::new(),
            pid: init.pid(),
            status: info.status,
            at: Some(info.at),
        });
        Ok((init.pid(), info))
    }
}

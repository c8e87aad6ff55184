//! One container: its init process, its execs, and what happens when they
//! start, are signalled, exit and are deleted. Exec-only operations live in
//! `exec.rs`.

mod checkpoint;
mod exec;
mod kill;
mod pidfd;
mod resources;
mod snapshot;

pub use snapshot::ContainerRec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::events::{Event, Publisher};
use crate::io::{Owner, ProcessIo};
use crate::process::{ExitInfo, Phase, Process};
use crate::reaper::{Exit, Reaper};
use crate::router::{Notices, Router};
use crate::runc::Runc;
use crate::tasks::Tasks;
use tracing::Instrument;

/// How long init's exit waits for the exits of its execs to be reported (an
/// exec that escaped the container must not hold the init's exit forever).
const EXECS_GRACE: Duration = Duration::from_secs(10);

/// A container and its processes.
pub struct Container {
    /// Container id.
    pub id: String,
    /// containerd namespace.
    pub namespace: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// The init process.
    pub init: Arc<Process>,
    /// Exec processes by exec id.
    pub(crate) execs: Mutex<HashMap<String, Arc<Process>>>,
    /// The runtime managing it.
    pub runc: Runc,
    /// The runtime options it was created with.
    pub options: crate::runc::RuntimeOptions,
    /// The checkpoint image Start restores from, if created from one.
    pub restore_from: Option<PathBuf>,
    /// Whether the shim mounted the rootfs (and so unmounts it).
    pub rootfs_mounted: bool,
    /// The container shares a pid namespace: on init's exit, the rest of its
    /// processes are killed (its own pid namespace does that by itself).
    pub kill_all_on_exit: bool,
    /// The container's cgroup, found right after `runc create`.
    pub cgroup: std::sync::OnceLock<crate::cgroup::Cgroup>,
    /// OOM kills already reported.
    pub(crate) oom: std::sync::OnceLock<Arc<crate::cgroup::oom::OomSeen>>,
    /// Frozen by Pause.
    pub(crate) paused: std::sync::atomic::AtomicBool,
    /// Serialises the operations that check the container's state and then
    /// change it through the runtime: pause, resume, update, checkpoint
    /// (writers), and exec Start, which checks "not paused" before `runc
    /// exec` (a reader: execs start side by side). It guards no data (those
    /// have their own short locks), so it is the one lock held while runc
    /// runs, for at most that runc call's deadline. State, Wait, Stats,
    /// Pids, Kill and Delete never take it.
    pub(crate) op_lock: tokio::sync::RwLock<()>,
    /// The container's tasks: its exit handlers, its OOM watch and its
    /// processes' copy loops. Cancelled when the container is deleted or
    /// handed over; a child of the daemon's.
    pub(crate) tasks: Tasks,
    pub(crate) publisher: Publisher,
    pub(crate) reaper: Reaper,
    pub(crate) router: Arc<Router>,
    pub(crate) notices: Notices,
}

/// How long an exec's output may stay open after the exec's own process has
/// exited (a background child holding it) before it is closed and the exit
/// reported. Output that flows keeps the drain going until then; once every
/// process holding the output is gone (EOF, or EIO on a terminal), what the
/// shim still holds goes to the reader for as long as it takes it, past
/// the limit (see `ProcessIo::drain`).
pub(crate) const EXEC_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The daemon-wide services every container works with.
#[derive(Clone)]
pub struct Services {
    /// Publishes task events to containerd.
    pub publisher: Publisher,
    /// Spawns runtime processes and claims their exits.
    pub reaper: Reaper,
    /// Routes reaped exits to the processes they belong to.
    pub router: Arc<Router>,
    /// The monitor's channel (for OOM watchers).
    pub notices: Notices,
    /// The daemon's tasks: each container's are a child of them.
    pub tasks: Tasks,
}

/// What a container is made of, apart from its processes.
pub struct Parts {
    /// Container id.
    pub id: String,
    /// containerd namespace.
    pub namespace: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Runtime options.
    pub options: crate::runc::RuntimeOptions,
    /// Checkpoint image to restore from at Start.
    pub restore_from: Option<PathBuf>,
    /// Whether the shim mounted the rootfs.
    pub rootfs_mounted: bool,
    /// Whether init's exit kills the rest of the container.
    pub kill_all_on_exit: bool,
}

impl Container {
    /// Builds a container around its init process.
    /// `tasks` is the container's own (a child of `services.tasks`, made
    /// first so its processes can be made with it).
    pub fn assemble(
        parts: Parts,
        init: Process,
        services: Services,
        tasks: Tasks,
    ) -> Arc<Container> {
        let Services {
            publisher,
            reaper,
            router,
            notices,
            tasks: _,
        } = services;
        Arc::new(Container {
            runc: Runc::new(
                &parts.options,
                &parts.namespace,
                &parts.bundle,
                reaper.clone(),
            ),
            id: parts.id,
            namespace: parts.namespace,
            bundle: parts.bundle,
            init: Arc::new(init),
            execs: Mutex::default(),
            options: parts.options,
            restore_from: parts.restore_from,
            rootfs_mounted: parts.rootfs_mounted,
            kill_all_on_exit: parts.kill_all_on_exit,
            cgroup: Default::default(),
            oom: Default::default(),
            paused: Default::default(),
            op_lock: Default::default(),
            tasks,
            publisher,
            reaper,
            router,
            notices,
        })
    }

    /// Who `process` belongs to, for loggers and its copy loops.
    pub fn owner<'a>(&'a self, process: &'a Process) -> Owner<'a> {
        Owner {
            id: &self.id,
            namespace: &self.namespace,
            io_owner: (self.options.io_uid, self.options.io_gid),
            bundle: &self.bundle,
            spill_max: self.options.output_spill_max.0,
            tasks: &self.tasks,
            span: process.span(),
        }
    }

    /// The init process (empty exec id) or an exec.
    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.lock_execs().get(exec_id).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "exec {exec_id:?} not found in container {:?}",
                self.id
            ))
        })
    }

    pub(crate) fn lock_execs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Process>>> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the init process or a registered exec.
    pub async fn start(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        if !exec_id.is_empty() {
            return self.start_exec(exec_id).await;
        }
        if self.restore_from.is_some() {
            return self.start_restore().await;
        }
        let init = &self.init;
        init.transition(|p| match p {
            Phase::Created => Ok(Phase::Starting),
            Phase::Starting | Phase::Running => Err(Error::FailedPrecondition(format!(
                "container {:?} is already started",
                self.id
            ))),
            _ => Err(Error::FailedPrecondition(format!(
                "container {:?} has already exited",
                self.id
            ))),
        })?;
        if let Err(e) = self.runc.start(&self.id).await {
            init.set_phase(Phase::Created);
            return Err(e);
        }
        // Published before leaving Starting: the exit path waits for that.
        self.publisher.publish(Event::Start {
            id: self.id.clone(),
            pid: init.pid(),
        });
        init.set_phase(Phase::Running);
        Ok(init.pid())
    }

    /// Handles the reaped exit of `process` in a task the container owns.
    pub(crate) fn on_exit(self: &Arc<Self>, process: Arc<Process>, exit: Exit) {
        if process.is_init() {
            // Read now, while the cgroup is surely there: a cgroup manager
            // may remove an emptied cgroup before the exit is reported.
            if let (Some(cgroup), Some(seen)) = (self.cgroup.get(), self.oom.get()) {
                seen.observe(cgroup);
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
        let claimed = process.transition(|p| match p {
            Phase::Created | Phase::Running => Ok(Phase::Exited),
            other => Err(Error::FailedPrecondition(format!(
                "exit already handled ({other:?})"
            ))),
        });
        if claimed.is_err() {
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
            self.check_oom();
        } else {
            // A child the exec left behind may hold its output open (or
            // keep writing) for ever: the exec still returns.
            token
                .run_until_cancelled(process.drain(Some(EXEC_DRAIN_LIMIT)))
                .await;
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
        let (Some(cgroup), Some(seen)) = (self.cgroup.get(), self.oom.get()) else {
            return false;
        };
        let grew = seen.grew(cgroup);
        if grew {
            tracing::info!(id = %self.id, "OOM kill in the container");
            self.publisher.publish(Event::Oom {
                id: self.id.clone(),
            });
        }
        grew
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
        let _ = self.oom.set(seen.clone());
        let target = crate::cgroup::oom::Target {
            container: self.id.clone(),
            seen,
            notices: self.notices.clone(),
        };
        match crate::cgroup::oom::watch(target, &cgroup, &self.tasks) {
            Ok(()) => {}
            Err(e) => tracing::warn!(id = %self.id, error = %e, "OOM kills will not be reported"),
        }
        let _ = self.cgroup.set(cgroup);
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

    /// Registers a started process and handles an exit that came first.
    pub(crate) fn register(&self, process: &Process) -> Option<Exit> {
        let key = crate::router::ProcessKey {
            container: self.id.clone(),
            exec: process.exec_id.clone(),
        };
        self.router.register(process.pid(), key)
    }

    /// Opens stdio for `process` and runs `spawn` (runc create, exec or
    /// restore) with it and the sockets to hand descriptors back on; returns
    /// the pid from `pid_file` with the stdio and the pidfd attached. A pidfd
    /// socket is offered when `pidfd` (the sub-command takes one) and the
    /// runtime takes `--pidfd-socket`.
    pub(crate) async fn spawn_with_io<F, Fut>(
        &self,
        process: &Process,
        pid_file: &std::path::Path,
        pidfd: bool,
        spawn: F,
    ) -> Result<u32>
    where
        F: FnOnce(crate::runc::Sockets, crate::runc::ProcessStdio) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let pidfd_socket = if pidfd && self.runc.takes_pidfd_socket().await {
            Some(crate::fdsocket::FdSocket::new("pidfd", "receive pidfd")?)
        } else {
            None
        };
        let (mut io, stdio, console) =
            ProcessIo::open(&process.stdio, self.owner(process), &self.reaper).await?;
        let sockets = crate::runc::Sockets {
            console: console.as_ref().map(|c| c.path().to_path_buf()),
            pidfd: pidfd_socket.as_ref().map(|s| s.path().to_path_buf()),
        };
        spawn(sockets, stdio).await?;
        if let Some(console) = &console {
            io.attach_console(console.receive().await?)?;
        }
        let pid = crate::records::read_pid(pid_file).ok_or_else(|| Error::Runtime {
            binary: self.runc.record().binary.clone(),
            op: if process.is_init() { "create" } else { "exec" },
            message: format!("no pid in {}", pid_file.display()),
        })?;
        let pidfd = match &pidfd_socket {
            Some(socket) => pidfd::receive(socket, pid).await,
            None => None,
        };
        process.set_running_io(pid, pidfd, io);
        Ok(pid)
    }
}

/// Whether a process in phase `p` may be deleted; the phase to move to.
pub(crate) fn deletable(id: &str, p: Phase) -> Result<Phase> {
    match p {
        Phase::Created => Ok(Phase::Deleting(None)),
        Phase::Stopped(e) => Ok(Phase::Deleting(Some(e))),
        Phase::Starting | Phase::Running | Phase::Exited => Err(Error::FailedPrecondition(
            format!("cannot delete a running process of container {id:?}"),
        )),
        Phase::Deleting(_) | Phase::Deleted(_) => Err(Error::NotFound(format!(
            "process of container {id:?} is already deleted"
        ))),
    }
}

/// The exit to report for a deleted process: its own, or, if it never ran,
/// status 0 now (it did not fail).
pub(crate) fn never_ran_or(before: Phase) -> ExitInfo {
    before.exit().unwrap_or(ExitInfo {
        status: 0,
        at: SystemTime::now(),
    })
}

/// runc's ways of saying the container or process is gone.
pub(crate) fn is_not_running(e: &Error) -> bool {
    match e {
        Error::Runtime { message, .. } => {
            let m = message.to_ascii_lowercase();
            m.contains("not running")
                || m.contains("does not exist")
                || m.contains("no such process")
                || m.contains("process already finished")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_gone_messages_are_recognised() {
        let e = |m: &str| Error::Runtime {
            binary: "runc".into(),
            op: "kill",
            message: m.into(),
        };
        assert!(is_not_running(&e("container not running")));
        assert!(is_not_running(&e("container \"x\" does not exist")));
        assert!(!is_not_running(&e("permission denied")));
    }

    #[test]
    fn delete_rules() {
        assert!(deletable("c", Phase::Created).is_ok());
        let running = deletable("c", Phase::Running).unwrap_err();
        assert_eq!(running.code(), ttrpc::Code::FAILED_PRECONDITION);
        let gone = deletable("c", Phase::Deleting(None)).unwrap_err();
        assert_eq!(gone.code(), ttrpc::Code::NOT_FOUND);
        assert_eq!(never_ran_or(Phase::Created).status, 0);
    }
}

//! One container: its init process, its execs, and its whole lifecycle:
//! Create (`create.rs`), Start, Exec (`exec.rs`), Kill and Delete
//! (`kill.rs`), exits (`exit.rs`), Pause, Resume and Update
//! (`resources.rs`), Checkpoint and restore (`checkpoint.rs`), the queries
//! (`queries.rs`) and the live-upgrade record (`snapshot.rs`). Whether an
//! operation may happen is decided in one table, `lifecycle.rs`. The fields
//! are private: the service and the shim call one method per request.
//!
//! # What guards what, and in which order
//!
//! - **Phases** (one `watch` per process) are the lifecycle lock. An
//!   operation that changes a phase checks the table and moves the phase in
//!   one step (`advance`); the transitional phases (Starting, Exited,
//!   Deleting) make a second Start or Delete fail fast, and the exit path
//!   waits for Starting to end, so Start's event comes before the exit's.
//! - **`gate`** ([`gate::Gate`]) serialises the operations that check
//!   container state and then change it through runc: Pause, Resume,
//!   Update, Checkpoint pass it alone; exec Starts pass it together, from
//!   their "not paused" check through `runc exec`, so Pause cannot land in
//!   between. Whether the container is paused lives in it, and only an
//!   operation that passed alone can change that (after runc succeeded);
//!   it is read without waiting (State, Kill, the table), where a value
//!   one Pause old is harmless. State, Wait, Stats, Pids, Kill, Delete and
//!   exit handling never wait for the gate, and nothing else is held while
//!   waiting for it.
//! - **`watched`** ([`gate::Watched`]: the cgroup and its OOM count,
//!   together) is set once, right after the init has a pid (Create,
//!   restore at Start, or a handover) and before the init is registered
//!   with the router, so its exit handler finds it. A reader takes `None`
//!   as "unknown" (no cgroup was found).
//! - **`execs`** is a short mutex, never held across an await or a runc
//!   call; a process is taken out as an `Arc` and used after the lock is
//!   dropped.
//! - **`tasks`** owns every task of the container (exit handlers, the OOM
//!   watch, the copy loops). Exit handlers are spawned only into it; it is
//!   cancelled when the container is deleted (an exit handler still at work
//!   reports at once) or handed over (`snapshot`, after the copy loops have
//!   stopped), and never while a process is between phases.

mod checkpoint;
mod create;
mod exec;
mod exit;
mod gate;
mod inflight;
mod kill;
mod lifecycle;
mod pidfd;
mod queries;
mod resources;
mod snapshot;

pub use create::CreateRequest;
pub use queries::ProcessState;
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
pub(crate) use lifecycle::Op;
use lifecycle::State;

/// A container and its processes.
pub struct Container {
    /// Container id.
    id: String,
    /// containerd namespace.
    namespace: String,
    /// Bundle directory.
    bundle: PathBuf,
    /// The init process.
    init: Arc<Process>,
    /// Exec processes by exec id.
    execs: Mutex<HashMap<String, Arc<Process>>>,
    /// The runtime managing it.
    runc: Runc,
    /// The runtime options it was created with.
    options: crate::runc::RuntimeOptions,
    /// The checkpoint image Start restores from, if created from one.
    restore_from: Option<PathBuf>,
    /// Whether the shim mounted the rootfs (and so unmounts it).
    rootfs_mounted: bool,
    /// The container shares a pid namespace: on init's exit, the rest of its
    /// processes are killed (its own pid namespace does that by itself).
    kill_all_on_exit: bool,
    /// The container's cgroup and its OOM count, found right after `runc
    /// create`.
    watched: std::sync::OnceLock<gate::Watched>,
    /// The operations that change the container through runc, one at a
    /// time, and whether Pause froze it (see the module's doc).
    gate: gate::Gate,
    /// Its Kills in flight, which its exits wait for (see `inflight`).
    kills: inflight::Kills,
    /// The container's tasks: its exit handlers, its OOM watch and its
    /// processes' copy loops. Cancelled when the container is deleted or
    /// handed over; a child of the daemon's.
    tasks: Tasks,
    publisher: Publisher,
    reaper: Reaper,
    router: Arc<Router>,
    notices: Notices,
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
    /// Whether it is paused (a handed-over container may be).
    pub paused: bool,
}

/// Whether `phase` is one a process passes through (starting, draining its
/// exit, being deleted) rather than rests in.
pub fn between_phases(phase: &Phase) -> bool {
    matches!(phase, Phase::Starting | Phase::Exited | Phase::Deleting(_))
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
            watched: Default::default(),
            gate: gate::Gate::new(parts.paused),
            kills: inflight::Kills::new(),
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

    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's cgroup, if it was found.
    fn cgroup(&self) -> Option<&crate::cgroup::Cgroup> {
        self.watched.get().map(|w| &w.cgroup)
    }

    /// The init process's pid (0 before it has one).
    pub fn init_pid(&self) -> u32 {
        self.init.pid()
    }

    /// The init process and every exec.
    fn processes(&self) -> Vec<Arc<Process>> {
        let execs = self.lock_execs().values().cloned().collect::<Vec<_>>();
        std::iter::once(self.init.clone()).chain(execs).collect()
    }

    /// A process that is between phases (starting, draining its exit,
    /// being deleted), if any: a live upgrade waits for none to be.
    pub fn between_phases(&self) -> Option<Arc<Process>> {
        self.processes()
            .into_iter()
            .find(|p| between_phases(&p.phase()))
    }

    /// Cancels the container's tasks and waits (up to `limit`) for them to
    /// end; says whether they did.
    pub async fn shut_tasks(&self, limit: Duration) -> bool {
        self.tasks.shut(limit).await
    }

    /// The init process (empty exec id) or an exec.
    fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
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

    fn lock_execs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Process>>> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the transition table sees for an operation on `p` whose own
    /// phase is `phase`.
    fn state_with(&self, p: &Process, phase: Phase) -> State {
        State {
            exec: !p.is_init(),
            phase,
            init: if p.is_init() {
                phase
            } else {
                self.init.phase()
            },
            paused: self.is_paused(),
        }
    }

    /// Names `p` in an error.
    fn what(&self, p: &Process) -> String {
        if p.is_init() {
            format!("container {:?}", self.id)
        } else {
            format!("exec {:?} of container {:?}", p.exec_id, self.id)
        }
    }

    /// Whether `op` may happen on `p` now (an operation that changes no
    /// phase; see [`lifecycle::check`]).
    fn allow(&self, op: Op, p: &Process) -> Result<()> {
        lifecycle::check(op, self.state_with(p, p.phase()))
            .map(drop)
            .map_err(|r| r.error(op, &self.what(p)))
    }

    /// Moves `p` to the phase `op` leads to, checked and changed in one
    /// step; returns the phase before.
    fn advance(&self, op: Op, p: &Process) -> Result<Phase> {
        p.transition(|phase| {
            lifecycle::check(op, self.state_with(p, phase)).map_err(|r| r.error(op, &self.what(p)))
        })
    }

    /// Starts the init process (restoring it, for a container created from
    /// a checkpoint) or a registered exec.
    pub async fn start(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        if !exec_id.is_empty() {
            return self.start_exec(exec_id).await;
        }
        let init = self.init.clone();
        self.advance(Op::Start, &init)?;
        let started = match &self.restore_from {
            None => self.runc.start(&self.id).await.map(|()| None),
            Some(image) => self.restore_init(image.clone()).await,
        };
        let early = match started {
            Ok(early) => early,
            Err(e) => {
                init.set_phase(Phase::Created);
                return Err(e);
            }
        };
        // Published before leaving Starting: the exit path waits for that.
        self.publisher.publish(Event::Start {
            id: self.id.clone(),
            pid: init.pid(),
        });
        init.set_phase(Phase::Running);
        if let Some(exit) = early {
            self.on_exit(init.clone(), exit);
        }
        Ok(init.pid())
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
    fn a_process_that_never_ran_exits_0() {
        assert_eq!(never_ran_or(Phase::Created).status, 0);
    }
}

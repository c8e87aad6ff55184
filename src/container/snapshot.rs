//! A container across a live upgrade: [`Container::snapshot`] records it,
//! its processes and their stdio; [`Container::restore`] builds it again,
//! in this binary (an upgrade called off) or the next, and picks up the
//! supervision of its processes where it was.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How long a container's tasks may take to end once cancelled.
const TASKS_END: std::time::Duration = std::time::Duration::from_secs(1);

use super::{Container, Parts, Services};
use crate::process::{Phase, Process, ProcessRec};
use crate::runc::RuntimeOptions;
use crate::sys::{FdList, FdTable};

/// A container as a snapshot records it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ContainerRec {
    /// Id.
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// Bundle.
    pub bundle: PathBuf,
    /// Runtime options.
    pub options: RuntimeOptions,
    /// Checkpoint to restore from at Start.
    pub restore_from: Option<PathBuf>,
    /// Whether the shim mounted the rootfs.
    pub rootfs_mounted: bool,
    /// Whether init's exit kills the rest.
    pub kill_all_on_exit: bool,
    /// Frozen by Pause.
    pub paused: bool,
    /// OOM kills reported so far.
    pub oom_seen: Option<u64>,
    /// The init process.
    pub init: ProcessRec,
    /// The execs.
    pub execs: Vec<ProcessRec>,
}

impl ContainerRec {
    /// Every descriptor number it names.
    pub fn descriptors(&self, all: &mut Vec<std::os::fd::RawFd>) {
        for p in std::iter::once(&self.init).chain(&self.execs) {
            if let Some(io) = &p.io {
                io.descriptors(all);
            }
            all.extend(p.pidfd);
        }
    }
}

impl Container {
    /// Records the container, stopping its processes' stdio and giving their
    /// descriptors away into `fds`. Its processes must not be between
    /// phases (the upgrade waits for that) and reaping must be paused. What
    /// could not be recorded is added to `failed`, naming the process.
    pub async fn snapshot(&self, fds: &mut FdList, failed: &mut Vec<String>) -> ContainerRec {
        let mut note = |exec_id: &str, why: Option<String>| {
            if let Some(why) = why {
                failed.push(format!("stdio of {}/{exec_id}: {why}", self.id));
            }
        };
        let (init, why) = self.init.snapshot(fds).await;
        note("init", why);
        let mut execs = Vec::new();
        let processes: Vec<_> = self.lock_execs().values().cloned().collect();
        for p in processes {
            let (rec, why) = p.snapshot(fds).await;
            note(&p.exec_id, why);
            execs.push(rec);
        }
        // Its copy loops are stopped and its processes settled: what is left
        // (the OOM watch) ends here; the next binary starts its own.
        if !self.tasks.shut(TASKS_END).await {
            tracing::warn!(id = %self.id, "tasks of the container still running at the handover");
        }
        ContainerRec {
            id: self.id.clone(),
            namespace: self.namespace.clone(),
            bundle: self.bundle.clone(),
            options: self.options.clone(),
            restore_from: self.restore_from.clone(),
            rootfs_mounted: self.rootfs_mounted,
            kill_all_on_exit: self.kill_all_on_exit,
            paused: self.is_paused(),
            oom_seen: self.watched.get().map(|w| w.oom.count()),
            init,
            execs,
        }
    }

    /// The container a snapshot recorded, supervised again: its descriptors
    /// taken from `fds`, its cgroup watched, its running processes
    /// registered (an exit reaped meanwhile is handled at once).
    pub fn restore(
        rec: ContainerRec,
        services: Services,
        fds: &mut FdTable,
    ) -> std::io::Result<Arc<Container>> {
        let tasks = services.tasks.child();
        let init = Process::restore(rec.init, fds, &rec.id, &tasks)?;
        let parts = Parts {
            id: rec.id,
            namespace: rec.namespace,
            bundle: rec.bundle,
            options: rec.options,
            restore_from: rec.restore_from,
            rootfs_mounted: rec.rootfs_mounted,
            kill_all_on_exit: rec.kill_all_on_exit,
            paused: rec.paused,
        };
        let container = Container::assemble(parts, init, services, tasks);
        for e in rec.execs {
            let p = Arc::new(Process::restore(e, fds, &container.id, &container.tasks)?);
            container.lock_execs().insert(p.exec_id.clone(), p);
        }
        if container.init.phase() == Phase::Running {
            container.watch_cgroup_from(rec.oom_seen);
        }
        let running: Vec<_> = std::iter::once(container.init.clone())
            .chain(container.lock_execs().values().cloned())
            .filter(|p| p.phase() == Phase::Running)
            .collect();
        for p in running {
            if let Some(exit) = container.register(&p) {
                container.on_exit(p, exit);
            }
        }
        Ok(container)
    }
}

//! A sandbox across a live upgrade: what the next binary needs to serve it
//! on (the holder's pidfd is handed over by number), and its rebuilding.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::files::CriFiles;
use super::holder::Holder;
use super::plan::PodPlan;
use super::{cgroup, Inner, Phase, Sandbox};
use crate::container::Services;
use crate::reaper::{Exit, ExitRec};
use crate::sys::{FdList, FdTable};

/// A sandbox as a live-upgrade state records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRec {
    /// The sandbox id.
    pub id: String,
    /// Its bundle.
    pub bundle: PathBuf,
    /// What the holder is.
    pub plan: PodPlan,
    /// Where the sandbox is.
    pub phase: Phase,
    /// The holder's pid (0 before Start).
    pub pid: u32,
    /// The holder's pidfd, handed over, while it runs.
    pub pidfd: Option<RawFd>,
    /// When the holder started, since the epoch.
    pub started_at: Option<Duration>,
    /// Its exit, once it went.
    pub exit: Option<ExitRec>,
    /// The pod's containers.
    #[serde(default)]
    pub members: Vec<super::record::Member>,
}

impl Sandbox {
    /// Records the sandbox for the next binary; the holder's pidfd goes
    /// into `fds`. (Requests have stopped: no Start or Stop is under way.)
    pub fn snapshot(&self, fds: &mut FdList) -> SandboxRec {
        let mut inner = self.inner();
        let pidfd = inner.holder.take().map(|h| fds.give(h.pidfd));
        SandboxRec {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            plan: self.plan.clone(),
            phase: inner.phase,
            pid: inner.pid,
            pidfd,
            started_at: inner
                .started_at
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()),
            exit: self.exit.borrow().map(|e| e.record()),
            members: inner.members.clone(),
        }
    }

    /// The sandbox a state recorded; a running holder is registered for its
    /// exit again (an exit reaped in between is handled at once).
    pub fn restore(
        rec: SandboxRec,
        services: &Services,
        fds: &mut FdTable,
    ) -> std::io::Result<Sandbox> {
        let holder = match rec.pidfd {
            Some(fd) => Some(Holder {
                pid: rec.pid,
                pidfd: fds.take(fd)?,
            }),
            None => None,
        };
        let files = CriFiles::from_bundle(&rec.bundle, &rec.id, rec.plan.ipc)
            .map_err(std::io::Error::other)?;
        let leaf = rec
            .plan
            .cgroup_parent
            .as_deref()
            .map(|p| cgroup::leaf_path(p, &rec.id));
        let running = holder.is_some() && rec.phase == Phase::Ready;
        let s = Sandbox {
            id: rec.id,
            bundle: rec.bundle,
            plan: rec.plan,
            files,
            leaf,
            inner: Mutex::new(Inner {
                phase: rec.phase,
                holder,
                pid: rec.pid,
                started_at: rec.started_at.map(|d| SystemTime::UNIX_EPOCH + d),
                members: rec.members,
            }),
            exit: watch::channel(rec.exit.as_ref().map(Exit::from_record)).0,
        };
        if running {
            let key = crate::router::ProcessKey {
                container: s.id.clone(),
                exec: String::new(),
            };
            if let Some(exit) = services.router.register(rec.pid, key) {
                s.exited(exit);
            }
        }
        Ok(s)
    }
}

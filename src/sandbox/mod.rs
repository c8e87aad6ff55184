//! The pod sandbox a shim serves when containerd's CRI runs a handler with
//! `sandboxer = "shim"`: a holder process in the pod's namespaces (see
//! [`holder`]), the files CRI mounts into the pod's containers (see
//! [`files`]), and the sandbox's life, from CreateSandbox to
//! ShutdownSandbox.
//!
//! One `Sandbox` per daemon, beside its container table. Its phase changes
//! in one place, [`Sandbox::advance`], under a lock held only for the check
//! and the change; the holder's exit comes from the monitor
//! ([`Sandbox::exited`]) and is published on a watch that WaitSandbox and
//! StopSandbox wait on.

pub mod cgroup;
pub mod files;
pub mod holder;
pub mod plan;
pub mod record;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::container::Services;
use crate::error::{Error, Result};
use crate::reaper::Exit;
use crate::records::ExitRecord;
use files::CriFiles;
use holder::Holder;
use plan::PodPlan;
use record::{Member, SandboxRecord};

/// How long the holder may take to go once SIGKILLed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// CreateSandbox, in domain terms.
#[derive(Debug, Clone)]
pub struct CreateSandbox {
    /// The sandbox id.
    pub id: String,
    /// Its bundle.
    pub bundle: PathBuf,
    /// CreateSandbox's options: type URL and bytes (CRI's pod config).
    pub options: Option<(String, Vec<u8>)>,
    /// The netns CRI made ("" for the node's network).
    pub netns: String,
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    /// Created, not started.
    Created,
    /// StartSandbox is under way.
    Starting,
    /// The holder runs.
    Ready,
    /// The holder is gone (or never ran).
    Stopped,
}

/// What an operation asks of the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Start,
    Started,
    StartFailed,
    Stop,
    Exit,
}

/// The one transition table: the next phase, or why not.
fn next(phase: Phase, op: Op) -> std::result::Result<Phase, &'static str> {
    use Phase::*;
    match (op, phase) {
        (Op::Start, Created) => Ok(Starting),
        (Op::Start, Starting | Ready) => Err("is already started"),
        (Op::Start, Stopped) => Err("is stopped"),
        (Op::Started, Starting) => Ok(Ready),
        (Op::StartFailed, Starting) => Ok(Created),
        (Op::Started | Op::StartFailed, _) => Err("was not starting"),
        (Op::Stop, Starting) => Err("is starting"),
        (Op::Stop, p) => Ok(if p == Ready { Ready } else { Stopped }),
        (Op::Exit, _) => Ok(Stopped),
    }
}

/// SandboxStatus, in domain terms.
#[derive(Debug, Clone)]
pub struct Status {
    /// The holder's pid (0 before Start).
    pub pid: u32,
    /// Where the sandbox is.
    pub phase: Phase,
    /// When the holder started.
    pub created_at: Option<SystemTime>,
    /// When it went.
    pub exited_at: Option<SystemTime>,
}

struct Inner {
    phase: Phase,
    holder: Option<Holder>,
    /// The holder's pid, kept after it went.
    pid: u32,
    started_at: Option<SystemTime>,
    /// The pod's containers, for `delete` after the shim's death.
    members: Vec<Member>,
}

/// A pod sandbox.
pub struct Sandbox {
    id: String,
    bundle: PathBuf,
    plan: PodPlan,
    files: CriFiles,
    leaf: Option<String>,
    inner: Mutex<Inner>,
    exit: watch::Sender<Option<Exit>>,
}

impl Sandbox {
    /// A sandbox for CreateSandbox: the plan is read and checked, nothing is
    /// started.
    pub fn create(req: CreateSandbox) -> Result<Sandbox> {
        crate::ids::validate("sandbox id", &req.id)?;
        let options = req
            .options
            .as_ref()
            .map(|(t, b)| (t.as_str(), b.as_slice()));
        let plan = PodPlan::new(options, &req.netns)?;
        let files = CriFiles::from_bundle(&req.bundle, &req.id, plan.ipc)?;
        let leaf = plan
            .cgroup_parent
            .as_deref()
            .map(|p| cgroup::leaf_path(p, &req.id));
        let s = Sandbox {
            id: req.id,
            bundle: req.bundle,
            plan,
            files,
            leaf,
            inner: Mutex::new(Inner {
                phase: Phase::Created,
                holder: None,
                pid: 0,
                started_at: None,
                members: Vec::new(),
            }),
            exit: watch::channel(None).0,
        };
        s.save_record()?;
        Ok(s)
    }

    /// The sandbox id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the phase for `op`; refuses as the table says.
    fn advance(&self, op: Op) -> Result<Phase> {
        let mut inner = self.inner();
        let phase = next(inner.phase, op)
            .map_err(|why| Error::FailedPrecondition(format!("sandbox {:?} {why}", self.id)))?;
        inner.phase = phase;
        Ok(phase)
    }

    fn save_record(&self) -> Result<()> {
        let (pid, members) = {
            let inner = self.inner();
            (inner.pid, inner.members.clone())
        };
        SandboxRecord {
            id: self.id.clone(),
            pid,
            pid_start: record::start_time(pid).unwrap_or_default(),
            cgroup_leaf: self.leaf.clone(),
            shm: self.plan.ipc,
            members,
        }
        .save(&self.bundle)
    }

    /// Records a container of the pod (created by this shim), with the
    /// runtime its Create recorded in its bundle.
    pub fn join(&self, id: &str, bundle: &std::path::Path) {
        self.inner().members.push(Member {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            runtime: crate::records::RuntimeRecord::load(bundle),
        });
        if let Err(e) = self.save_record() {
            tracing::warn!(container = id, error = %e, "recording a container of the pod");
        }
    }

    /// Forgets a container of the pod (deleted).
    pub fn leave(&self, id: &str) {
        self.inner().members.retain(|m| m.id != id);
        if let Err(e) = self.save_record() {
            tracing::warn!(container = id, error = %e, "recording a container of the pod");
        }
    }

    /// Starts the holder, writes the pod's files, and puts the holder in
    /// the pod's cgroup. Returns its pid and start time.
    pub async fn start(&self, services: &Services) -> Result<(u32, SystemTime)> {
        self.advance(Op::Start)?;
        match self.start_holder(services).await {
            Ok(started) => Ok(started),
            Err(e) => {
                self.files.remove();
                let _ = self.advance(Op::StartFailed);
                Err(e)
            }
        }
    }

    async fn start_holder(&self, services: &Services) -> Result<(u32, SystemTime)> {
        self.files.prepare(&self.plan)?;
        let h = holder::spawn(&self.plan, self.leaf.as_deref(), &services.reaper).await?;
        let pid = h.pid;
        let key = crate::router::ProcessKey {
            container: self.id.clone(),
            exec: String::new(),
        };
        let early = services.router.register(pid, key);
        self.inner().pid = pid;
        if let Err(e) = self.save_record() {
            holder::kill(&h);
            services.router.forget(pid);
            return Err(e);
        }
        let at = SystemTime::now();
        {
            let mut inner = self.inner();
            inner.holder = Some(h);
            inner.started_at = Some(at);
        }
        self.advance(Op::Started)?;
        tracing::info!(pid, "pod holder started");
        if let Some(exit) = early {
            self.exited(exit);
        }
        Ok((pid, at))
    }

    /// The holder was reaped (the monitor calls this).
    pub fn exited(&self, exit: Exit) {
        {
            let mut inner = self.inner();
            let _ = next(inner.phase, Op::Exit).map(|p| inner.phase = p);
            inner.holder = None;
        }
        tracing::info!(pid = exit.pid, status = exit.status, "pod holder exited");
        if let Err(e) = ExitRecord::new(exit.pid, exit.status, exit.at).save(&self.bundle) {
            tracing::warn!(error = %e, "recording the holder's exit");
        }
        if let Some(leaf) = &self.leaf {
            cgroup::remove(leaf);
        }
        self.exit.send_replace(Some(exit));
    }

    /// Stops the sandbox: SIGKILLs the holder, waits until it is reaped,
    /// unmounts the pod's shm. Stopping a stopped sandbox is no error.
    pub async fn stop(&self) -> Result<()> {
        match self.advance(Op::Stop)? {
            Phase::Ready => {
                if let Some(h) = &self.inner().holder {
                    holder::kill(h);
                }
                if tokio::time::timeout(STOP_LIMIT, self.wait()).await.is_err() {
                    return Err(Error::FailedPrecondition(format!(
                        "the holder of sandbox {:?} did not go within {}s of SIGKILL",
                        self.id,
                        STOP_LIMIT.as_secs()
                    )));
                }
            }
            _ => {
                // Never started: nothing will exit, so Wait hears it now.
                self.exit.send_if_modified(|e| {
                    let first = e.is_none();
                    if first {
                        *e = Some(Exit {
                            pid: 0,
                            status: 0,
                            at: SystemTime::now(),
                        });
                    }
                    first
                });
            }
        }
        self.files.unmount();
        Ok(())
    }

    /// Waits for the holder's exit (at once if it has gone).
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        let exit = match rx.wait_for(Option::is_some).await {
            Ok(e) => *e,
            // The sender lives as long as self.
            Err(_) => None,
        };
        exit.unwrap_or(Exit {
            pid: 0,
            status: 0,
            at: SystemTime::now(),
        })
    }

    /// Where the sandbox is. The pod's files are put back if a restarted
    /// containerd removed them (CreateContainer asks this first).
    pub fn status(&self) -> Status {
        let inner = self.inner();
        let status = Status {
            pid: inner.pid,
            phase: inner.phase,
            created_at: inner.started_at,
            exited_at: self.exit.borrow().map(|e| e.at),
        };
        drop(inner);
        if status.phase == Phase::Ready {
            self.heal();
        }
        status
    }

    /// Puts back what a restarted containerd removed of the pod's files.
    pub fn heal(&self) {
        if let Err(e) = self.files.publish() {
            tracing::warn!(error = %e, "restoring the pod's files");
        }
    }

    /// Stops the sandbox and removes what it made: the pod's files, its
    /// cgroup leaf, its record.
    pub async fn shutdown(&self) -> Result<()> {
        self.stop().await?;
        self.files.remove();
        let _ = std::fs::remove_file(self.bundle.join(record::SANDBOX_FILE));
        Ok(())
    }

    /// The pod's statistics: its cgroup parent's, or else the holder's
    /// cgroup's.
    pub fn metrics(&self) -> Result<protobuf::well_known_types::any::Any> {
        if let Some(parent) = &self.plan.cgroup_parent {
            return cgroup::stats(parent);
        }
        let pid = self.status().pid;
        crate::cgroup::Cgroup::of_pid(pid)
            .ok_or_else(|| Error::NotFound(format!("sandbox {:?} has no cgroup", self.id)))?
            .stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use Phase::*;
        assert_eq!(next(Created, Op::Start), Ok(Starting));
        assert!(next(Ready, Op::Start).is_err());
        assert!(next(Stopped, Op::Start).is_err());
        assert_eq!(next(Starting, Op::Started), Ok(Ready));
        assert_eq!(next(Starting, Op::StartFailed), Ok(Created));
        assert!(next(Starting, Op::Stop).is_err());
        assert_eq!(next(Ready, Op::Stop), Ok(Ready));
        assert_eq!(next(Created, Op::Stop), Ok(Stopped));
        assert_eq!(next(Stopped, Op::Stop), Ok(Stopped));
        assert_eq!(next(Ready, Op::Exit), Ok(Stopped));
    }
}

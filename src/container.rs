//! One container and its init process: the lifecycle state machine.
//!
//! State lives in a `watch` channel per process, changed only through short,
//! synchronous transitions; no lock is held while runc runs or while anything
//! is awaited. Transitional phases (`Starting`, `Exited`, `Deleting`) stand in
//! for a lifecycle lock: a second Start or Delete sees them and is refused,
//! and the exit path waits for `Starting` to end, so `/tasks/start` is always
//! published before `/tasks/exit`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::events::{Event, Publisher};
use crate::io::{ProcessIo, StdioPaths};
use crate::reaper::Exit;
use crate::runc::Runc;

/// A finished process's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, or 128 + signal.
    pub status: u32,
    /// When it exited.
    pub at: SystemTime,
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created by the runtime, not started.
    Created,
    /// A Start is running the runtime.
    Starting,
    /// Started and not yet reaped.
    Running,
    /// Reaped; its output is being drained.
    Exited,
    /// Reaped and drained: the exit is reported.
    Stopped(ExitInfo),
    /// A Delete is running the runtime.
    Deleting(Option<ExitInfo>),
    /// Gone from the shim; kept for Wait callers holding a receiver.
    Deleted(ExitInfo),
}

/// What State reports for a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Stopped,
}

impl Phase {
    /// The status containerd sees.
    pub fn status(&self) -> Status {
        match self {
            Phase::Created | Phase::Starting => Status::Created,
            Phase::Running | Phase::Exited => Status::Running,
            Phase::Stopped(_) | Phase::Deleting(_) | Phase::Deleted(_) => Status::Stopped,
        }
    }

    /// The exit, once it is reported.
    pub fn exit(&self) -> Option<ExitInfo> {
        match self {
            Phase::Stopped(e) | Phase::Deleted(e) | Phase::Deleting(Some(e)) => Some(*e),
            _ => None,
        }
    }

    /// Whether the process can no longer receive signals.
    fn finished(&self) -> bool {
        matches!(
            self,
            Phase::Exited | Phase::Stopped(_) | Phase::Deleting(_) | Phase::Deleted(_)
        )
    }
}

/// A process the shim supervises.
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its stdio, as the client sent it.
    pub stdio: StdioPaths,
    phase: watch::Sender<Phase>,
    io: Mutex<Option<ProcessIo>>,
}

impl Process {
    /// A process in phase `Created`.
    pub fn new(pid: u32, stdio: StdioPaths, io: ProcessIo) -> Process {
        Process {
            pid,
            stdio,
            phase: watch::Sender::new(Phase::Created),
            io: Mutex::new(Some(io)),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Moves to a new phase if `f` allows it; returns the phase before.
    fn transition(&self, f: impl FnOnce(Phase) -> Result<Phase>) -> Result<Phase> {
        let mut result = None;
        self.phase.send_if_modified(|p| {
            let before = *p;
            match f(before) {
                Ok(next) => {
                    *p = next;
                    result = Some(Ok(before));
                    next != before
                }
                Err(e) => {
                    result = Some(Err(e));
                    false
                }
            }
        });
        result.expect("send_if_modified always runs the closure")
    }

    /// Waits until the exit is reported.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.phase.subscribe();
        let phase = rx
            .wait_for(|p| p.exit().is_some())
            .await
            .map(|p| *p)
            .expect("the sender lives as long as the process");
        phase.exit().expect("waited for an exit")
    }

    /// Closes the process's stdin (CloseIO).
    pub fn close_stdin(&self) {
        if let Some(io) = self.io.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            io.close_stdin();
        }
    }

    async fn drain(&self) {
        let io = self.io.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut io) = io {
            io.drain().await;
            *self.io.lock().unwrap_or_else(|p| p.into_inner()) = Some(io);
        }
    }

    fn close_io(&self) {
        self.io.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// A container and its init process.
pub struct Container {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// The init process.
    pub init: Process,
    /// The runtime managing it.
    pub runc: Runc,
    /// Whether the shim mounted the rootfs (and so unmounts it).
    pub rootfs_mounted: bool,
    /// The container shares a pid namespace: on init's exit, the rest of its
    /// processes are killed (its own pid namespace does that by itself).
    pub kill_all_on_exit: bool,
    /// Where events go.
    pub publisher: Publisher,
}

impl Container {
    /// Starts the init process.
    pub async fn start(&self) -> Result<u32> {
        self.init.transition(|p| match p {
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
            let _ = self.init.transition(|_| Ok(Phase::Created));
            return Err(e);
        }
        // Published before leaving Starting: the exit path waits for that.
        self.publisher.publish(Event::Start {
            id: self.id.clone(),
            pid: self.init.pid,
        });
        let _ = self.init.transition(|_| Ok(Phase::Running));
        Ok(self.init.pid)
    }

    /// Handles the reaped exit of the init process: kill what is left if
    /// needed, drain output, then report. Runs once; later calls do nothing.
    pub async fn init_exited(&self, exit: Exit) {
        let mut rx = self.init.phase.subscribe();
        let _ = rx.wait_for(|p| *p != Phase::Starting).await;
        let claimed = self.init.transition(|p| match p {
            Phase::Created | Phase::Running => Ok(Phase::Exited),
            other => Err(Error::FailedPrecondition(format!(
                "exit already handled ({other:?})"
            ))),
        });
        if claimed.is_err() {
            return;
        }
        if self.kill_all_on_exit {
            if let Err(e) = self.runc.kill(&self.id, libc::SIGKILL as u32, true).await {
                tracing::debug!(id = %self.id, error = %e, "killing the rest of the container");
            }
        }
        self.init.drain().await;
        let info = ExitInfo {
            status: exit.status,
            at: exit.at,
        };
        let _ = self.init.transition(|_| Ok(Phase::Stopped(info)));
        tracing::info!(id = %self.id, pid = exit.pid, status = exit.status, "container exited");
        self.publisher.publish(Event::Exit {
            id: self.id.clone(),
            process: self.id.clone(),
            pid: self.init.pid,
            status: info.status,
            at: info.at,
        });
    }

    /// Sends `signal` to init, or to every process with `all`.
    pub async fn kill(&self, signal: u32, all: bool) -> Result<()> {
        if self.init.phase().finished() {
            return Err(Error::NotFound(format!(
                "process {} of container {:?} has already finished",
                self.init.pid, self.id
            )));
        }
        self.runc.kill(&self.id, signal, all).await.map_err(|e| {
            // The process may have exited while runc was starting.
            if self.init.phase().finished() || is_not_running(&e) {
                Error::NotFound(format!(
                    "process {} of container {:?} has already finished",
                    self.init.pid, self.id
                ))
            } else {
                e
            }
        })
    }

    /// Deletes the container from the runtime. The caller removes it from
    /// the shim's table once this succeeds.
    pub async fn delete(&self) -> Result<ExitInfo> {
        let before = self.init.transition(|p| match p {
            Phase::Created => Ok(Phase::Deleting(None)),
            Phase::Stopped(e) => Ok(Phase::Deleting(Some(e))),
            Phase::Starting | Phase::Running | Phase::Exited => {
                Err(Error::FailedPrecondition(format!(
                    "cannot delete container {:?}: its init process is still running",
                    self.id
                )))
            }
            Phase::Deleting(_) | Phase::Deleted(_) => {
                Err(Error::ContainerNotFound(self.id.clone()))
            }
        })?;
        if let Err(e) = self.runc.delete(&self.id, true).await {
            if !is_not_running(&e) {
                let _ = self.init.transition(|_| Ok(before));
                return Err(e);
            }
        }
        self.init.close_io();
        if self.rootfs_mounted {
            crate::mount::unmount_all(&self.bundle.join("rootfs"));
        }
        // Never started: it never ran, so it did not fail.
        let info = before.exit().unwrap_or(ExitInfo {
            status: 0,
            at: SystemTime::now(),
        });
        let _ = self.init.transition(|_| Ok(Phase::Deleted(info)));
        self.publisher.publish(Event::Delete {
            id: self.id.clone(),
            exec_id: String::new(),
            pid: self.init.pid,
            status: info.status,
            at: Some(info.at),
        });
        Ok(info)
    }
}

/// runc's ways of saying the container or process is gone.
fn is_not_running(e: &Error) -> bool {
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
    fn status_follows_phase() {
        let e = ExitInfo {
            status: 3,
            at: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(Phase::Starting.status(), Status::Created);
        assert_eq!(Phase::Exited.status(), Status::Running);
        assert_eq!(Phase::Stopped(e).status(), Status::Stopped);
        assert_eq!(Phase::Exited.exit(), None);
        assert_eq!(Phase::Deleted(e).exit(), Some(e));
        assert!(Phase::Exited.finished() && !Phase::Created.finished());
    }

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
}

//! What a container answers about its processes without changing them:
//! State, Pids, Wait, and the stdio requests (CloseIO, ResizePty).

use std::collections::HashMap;
use std::path::PathBuf;

use super::Container;
use crate::error::Result;
use crate::process::{ExitInfo, Status};

/// What State reports of a process.
#[derive(Debug, Clone)]
pub struct ProcessState {
    /// The container's bundle.
    pub bundle: PathBuf,
    /// The process's pid (0 before it has one).
    pub pid: u32,
    /// Its status, Paused for a paused container's running init.
    pub status: Status,
    /// Its stdio, as the client sent it.
    pub stdio: crate::io::StdioPaths,
    /// Its exit, once reported.
    pub exit: Option<ExitInfo>,
}

impl Container {
    /// What State reports of the init process (empty exec id) or an exec.
    pub fn state(&self, exec_id: &str) -> Result<ProcessState> {
        let p = self.process(exec_id)?;
        let phase = p.phase();
        let status = match phase.status() {
            Status::Running if p.is_init() && self.is_paused() => Status::Paused,
            other => other,
        };
        Ok(ProcessState {
            bundle: self.bundle.clone(),
            pid: p.pid(),
            status,
            stdio: p.stdio.clone(),
            exit: phase.exit(),
        })
    }

    /// The pids of the container's processes, each with its exec id if it
    /// is an exec's.
    pub async fn pids(&self) -> Result<Vec<(u32, Option<String>)>> {
        let pids = self.runc.ps(&self.id).await?;
        let execs: HashMap<u32, String> = self
            .lock_execs()
            .values()
            .map(|p| (p.pid(), p.exec_id.clone()))
            .collect();
        Ok(pids
            .into_iter()
            .map(|pid| (pid, execs.get(&pid).cloned()))
            .collect())
    }

    /// Waits for a process's exit (reported: its output drained).
    pub async fn wait(&self, exec_id: &str) -> Result<ExitInfo> {
        Ok(self.process(exec_id)?.wait().await)
    }

    /// Closes a process's stdin once its client's writers are gone.
    pub fn close_stdin(&self, exec_id: &str) -> Result<()> {
        self.process(exec_id)?.close_stdin();
        Ok(())
    }

    /// Resizes a process's terminal.
    pub fn resize(&self, exec_id: &str, width: u16, height: u16) -> Result<()> {
        self.process(exec_id)?.resize(width, height)
    }
}

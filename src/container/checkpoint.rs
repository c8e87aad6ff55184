//! Checkpoint (runc checkpoint, criu dump) and restore at Start.
//!
//! criu does not work everywhere (kernels, virtualisation): when it fails,
//! the error carries criu's own reason from its log in the work directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::container::Container;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::process::Phase;
use crate::records::INIT_PID_FILE;
use crate::runc::CheckpointArgs;

impl Container {
    /// Where criu works (and logs) when the request names no place.
    pub fn default_work_path(&self) -> PathBuf {
        if self.options.criu_work_path.is_empty() {
            self.bundle.join("criu-work")
        } else {
            PathBuf::from(&self.options.criu_work_path)
        }
    }

    /// Where a checkpoint goes when the request names no place.
    pub fn default_image_path(&self) -> Option<PathBuf> {
        (!self.options.criu_image_path.is_empty())
            .then(|| PathBuf::from(&self.options.criu_image_path))
    }

    /// Checkpoints the running container; publishes `/tasks/checkpointed`.
    pub async fn checkpoint(&self, args: CheckpointArgs) -> Result<()> {
        let _op = self.op_lock.write().await;
        if self.init.phase() != Phase::Running {
            return Err(Error::FailedPrecondition(format!(
                "cannot checkpoint container {:?}: it is not running",
                self.id
            )));
        }
        self.runc
            .checkpoint(&self.id, &args)
            .await
            .map_err(|e| with_criu_reason(e, &args.work_path.join("dump.log")))?;
        self.publisher.publish(Event::Checkpointed {
            id: self.id.clone(),
            checkpoint: args.image_path.display().to_string(),
        });
        Ok(())
    }

    /// Start of a container created from a checkpoint: `runc restore`.
    pub(crate) async fn start_restore(self: &Arc<Self>) -> Result<u32> {
        let image = self.restore_from.clone().expect("only called for restores");
        let init = self.init.clone();
        init.transition(|p| match p {
            Phase::Created => Ok(Phase::Starting),
            _ => Err(Error::FailedPrecondition(format!(
                "container {:?} is already started",
                self.id
            ))),
        })?;
        let args = CheckpointArgs {
            image_path: image,
            work_path: self.default_work_path(),
            terminal: init.stdio.terminal,
            ..Default::default()
        };
        let pid_file = self.bundle.join(INIT_PID_FILE);
        let (c, a, pid) = (self, &args, &pid_file);
        let restored = self
            // `runc restore` takes no --pidfd-socket: init is signalled by pid.
            .spawn_with_io(&init, &pid_file, false, |sockets, stdio| async move {
                c.runc
                    .restore(
                        &c.id,
                        &c.bundle,
                        pid,
                        a,
                        &c.options,
                        sockets.console.as_deref(),
                        stdio,
                    )
                    .await
            })
            .await;
        let pid = match restored {
            Ok(pid) => pid,
            Err(e) => {
                init.close_io();
                init.set_phase(Phase::Created);
                return Err(with_criu_reason(e, &args.work_path.join("restore.log")));
            }
        };
        self.watch_cgroup();
        let early = self.register(&init);
        self.publisher.publish(Event::Start {
            id: self.id.clone(),
            pid,
        });
        init.set_phase(Phase::Running);
        if let Some(exit) = early {
            self.on_exit(init, exit);
        }
        Ok(pid)
    }
}

/// Adds criu's own last errors (from its log) to a runtime failure.
fn with_criu_reason(e: Error, log: &Path) -> Error {
    let Some(reason) = criu_reason(log) else {
        return e;
    };
    match e {
        Error::Runtime {
            binary,
            op,
            message,
        } => Error::Runtime {
            binary,
            op,
            message: format!("{message}; criu: {reason}"),
        },
        other => other,
    }
}

/// The last few `Error` lines of a criu log.
fn criu_reason(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error"))
        .map(|l| l.trim())
        .collect();
    let tail = &errors[errors.len().saturating_sub(3)..];
    (!tail.is_empty()).then(|| tail.join(" / "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_reason_is_the_last_errors_of_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dump.log");
        std::fs::write(
            &log,
            "(00.000) Version: 3.17.1\n\
             (00.001) Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable\n\
             (00.001) Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed\n",
        )
        .unwrap();
        let r = criu_reason(&log).unwrap();
        assert!(r.contains("vdso: Failed to fill self vdso symtable"), "{r}");
        let e = with_criu_reason(
            Error::Runtime {
                binary: "runc".into(),
                op: "checkpoint",
                message: "criu failed".into(),
            },
            &log,
        );
        assert!(e.to_string().contains("criu failed; criu: "), "{e}");
        assert_eq!(criu_reason(&dir.path().join("missing.log")), None);
    }
}

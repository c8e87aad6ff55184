//! Checkpoint (runc checkpoint, criu dump) and restore at Start.
//!
//! criu does not work everywhere (kernels, virtualisation): when it fails,
//! the error carries criu's own reason from its log in the work directory.

use std::path::{Path, PathBuf};

use crate::container::{Container, Op};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::reaper::Exit;
use crate::records::INIT_PID_FILE;
use crate::runc::CheckpointArgs;

impl Container {
    /// Where criu works (and logs) when the request names no place.
    fn default_work_path(&self) -> PathBuf {
        if self.options.criu_work_path.is_empty() {
            self.bundle.join("criu-work")
        } else {
            PathBuf::from(&self.options.criu_work_path)
        }
    }

    /// Where a checkpoint goes when the request names no place.
    fn default_image_path(&self) -> Option<PathBuf> {
        (!self.options.criu_image_path.is_empty())
            .then(|| PathBuf::from(&self.options.criu_image_path))
    }

    /// Checkpoints the running container; publishes `/tasks/checkpointed`.
    /// An empty image or work path in `args` stands for the container's
    /// default (its runtime options'); with no image path at all it is
    /// InvalidArgument.
    pub async fn checkpoint(&self, mut args: CheckpointArgs) -> Result<()> {
        if args.image_path.as_os_str().is_empty() {
            args.image_path = self
                .default_image_path()
                .ok_or_else(|| Error::InvalidArgument("no checkpoint path".into()))?;
        }
        if args.work_path.as_os_str().is_empty() {
            args.work_path = self.default_work_path();
        }
        let _op = self.gate.alone().await;
        self.allow(Op::Checkpoint, &self.init)?;
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

    /// Start of a container created from a checkpoint: `runc restore` of
    /// `image`. Start has moved the init to Starting and finishes the
    /// transition; this runs the runtime, finds the cgroup, and registers
    /// the process. Returns its exit if it came already.
    pub(super) async fn restore_init(&self, image: PathBuf) -> Result<Option<Exit>> {
        let init = self.init.clone();
        let args = CheckpointArgs {
            image_path: image,
            work_path: self.default_work_path(),
            terminal: init.stdio.terminal,
            ..Default::default()
        };
        let pid_file = self.bundle.join(INIT_PID_FILE);
        let (c, a, pid) = (self, &args, &pid_file);
        let restored = self
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
        if let Err(e) = restored {
            init.close_io();
            return Err(with_criu_reason(e, &args.work_path.join("restore.log")));
        }
        self.watch_cgroup();
        Ok(self.register(&init))
    }
}

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

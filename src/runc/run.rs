//! Running one runtime invocation to its end, or to its deadline.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::log::{keep_log, last_error_in, Invocation};
use super::{Output, Runc};
use crate::error::{Error, Result};
use crate::reaper::Reaper;

impl Runc {
    /// Runs `cmd` to completion, within the deadline of `op`. With
    /// `capture`, stdout and stderr are read through pipes; otherwise the
    /// caller has set stdio.
    ///
    /// The runtime runs in a process group of its own. When it outlives its
    /// deadline, or the caller stops waiting for it (drops this future), the
    /// whole group is SIGKILLed: runc, a `runc init` it started, a hook, a
    /// wrapper script's children. The runtime's exit is reaped by the reaper
    /// like any other.
    pub(super) async fn run(
        &self,
        op: &'static str,
        inv: Invocation,
        capture: bool,
    ) -> Result<Output> {
        self.run_within(op, inv, capture, self.timeouts.of(op))
            .await
    }

    /// Like `run`, with `limit` as the deadline.
    pub(super) async fn run_within(
        &self,
        op: &'static str,
        inv: Invocation,
        capture: bool,
        limit: Option<std::time::Duration>,
    ) -> Result<Output> {
        let Invocation { mut cmd, log } = inv;
        if capture {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        cmd.process_group(0);
        let spawned = self.reaper.spawn(&mut cmd);
        if spawned.is_err() {
            let _ = fs::remove_file(&log);
        }
        let (mut child, exit) = spawned.map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::RuntimeMissing {
                    binary: self.record.binary.clone(),
                    source,
                }
            } else {
                Error::Io {
                    op: "spawn",
                    path: self.record.binary.clone().into(),
                    source,
                }
            }
        })?;
        // The command holds the parent's copies of the child's stdio: drop
        // them now so the container's pipes see EOF when it exits.
        drop(cmd);
        let mut abandoned = KillOnDrop {
            reaper: &self.reaper,
            pid: child.id(),
            armed: true,
        };
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let exit = exit.wait();
        tokio::pin!(exit);
        let finish = async {
            let (stdout, stderr) = if capture {
                tokio::join!(
                    read_all(out.map(OwnedFd::from)),
                    read_all(err.map(OwnedFd::from))
                )
            } else {
                (Vec::new(), Vec::new())
            };
            (stdout, stderr, (&mut exit).await)
        };
        let finished = match limit {
            Some(limit) => tokio::time::timeout(limit, finish).await.ok(),
            None => Some(finish.await),
        };
        let Some((stdout, stderr, exit)) = finished else {
            self.reaper.kill_group(child.id());
            abandoned.armed = false;
            // SIGKILL ends it unless it is stuck in the kernel: wait for the
            // reaper to have reaped it, but not for ever.
            if tokio::time::timeout(REAP_AFTER_KILL, &mut exit)
                .await
                .is_err()
            {
                tracing::warn!(pid = child.id(), op, "a timed-out runtime survives SIGKILL");
            }
            let _ = keep_log(&log, &self.log);
            return Err(Error::RuntimeTimeout {
                binary: self.record.binary.clone(),
                op,
                after: limit.unwrap_or_default(),
            });
        };
        abandoned.armed = false;
        let logged = keep_log(&log, &self.log);
        if exit.status == 0 {
            return Ok(Output { stdout });
        }
        let message = last_error_in(&logged)
            .or_else(|| {
                let text = String::from_utf8_lossy(&stderr).trim().to_string();
                (!text.is_empty()).then(|| text.lines().last().unwrap_or_default().to_string())
            })
            .unwrap_or_else(|| format!("exit status {}", exit.status));
        Err(Error::Runtime {
            binary: self.record.binary.clone(),
            op,
            message,
        })
    }
}

/// How long a runtime SIGKILLed at its deadline may take to be reaped before
/// the call returns anyway (a process in uninterruptible sleep dies later).
const REAP_AFTER_KILL: std::time::Duration = std::time::Duration::from_secs(5);

/// Kills a runtime invocation's process group if the future running it is
/// dropped before the invocation ended (its caller gave up on it).
struct KillOnDrop<'a> {
    reaper: &'a Reaper,
    pid: u32,
    armed: bool,
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed && self.reaper.kill_group(self.pid) {
            tracing::debug!(pid = self.pid, "killed an abandoned runtime invocation");
        }
    }
}

async fn read_all(fd: Option<OwnedFd>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(fd) = fd {
        if let Ok(mut rx) = pipe::Receiver::from_owned_fd(fd) {
            let _ = rx.read_to_end(&mut buf).await;
        }
    }
    buf
}

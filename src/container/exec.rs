//! Exec processes: registered by Exec, started by Start with an exec id.

use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use nix::errno::Errno;

use crate::container::{never_ran_or, Container, Op};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::io::StdioPaths;
use crate::process::{finished_error, ExitInfo, Phase, Process};

impl Container {
    /// Registers an exec (Exec): it runs only when started.
    pub fn add_exec(&self, exec_id: &str, stdio: StdioPaths, spec_json: &[u8]) -> Result<()> {
        self.allow(Op::Exec, &self.init)?;
        let mut spec: serde_json::Value =
            serde_json::from_slice(spec_json).map_err(Error::decode("exec process spec"))?;
        if !spec.is_object() {
            return Err(Error::InvalidArgument(
                "exec process spec is not an object".into(),
            ));
        }
        // The request's flag decides, as with containerd's own shim.
        spec["terminal"] = stdio.terminal.into();
        let spec = serde_json::to_vec(&spec).expect("a JSON value serializes");
        {
            let mut execs = self.lock_execs();
            if execs.contains_key(exec_id) {
                return Err(Error::AlreadyExists(format!(
                    "exec {exec_id:?} in container {:?}",
                    self.id
                )));
            }
            let p = Process::new(&self.id, exec_id.to_string(), stdio, spec);
            execs.insert(exec_id.to_string(), Arc::new(p));
        }
        self.publisher.publish(Event::ExecAdded {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
        });
        Ok(())
    }

    /// Starts a registered exec. It holds the container's gate (shared with
    /// other exec Starts) from the "not paused" check through
    /// `runc exec`, so a Pause cannot land in between (it waits for the exec
    /// to have started).
    pub(crate) async fn start_exec(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        let p = self.process(exec_id)?;
        let _op = self.gate.shared().await;
        self.advance(Op::Start, &p)?;
        // The init's exit ends the Start: its handler waits for no exec that
        // is starting, and a runtime still at work is killed (dropping
        // `run_exec` kills its process group). A finished `runc exec` wins
        // a tie, so a process it started is never left unregistered.
        let started = tokio::select! {
            biased;
            r = self.run_exec(&p) => r,
            _ = self.init.wait_until(|ph| ph.finished()) => {
                let _ = std::fs::remove_file(self.exec_spec_file(exec_id));
                Err(Error::FailedPrecondition(format!(
                    "cannot start exec {exec_id:?}: the init process of container {:?} exited while it was starting",
                    self.id
                )))
            }
        };
        match started {
            Ok(pid) => {
                let early = self.register(&p);
                self.publisher.publish(Event::ExecStarted {
                    id: self.id.clone(),
                    exec_id: exec_id.to_string(),
                    pid,
                });
                p.set_phase(Phase::Running);
                if let Some(exit) = early {
                    self.on_exit(p, exit);
                }
                Ok(pid)
            }
            Err(e) => {
                p.close_io();
                p.set_phase(Phase::Created);
                Err(e)
            }
        }
    }

    async fn run_exec(&self, p: &Process) -> Result<u32> {
        // runc reads the spec from a file: no argument length limit applies.
        let spec_file = self.exec_spec_file(&p.exec_id);
        let pid_file = self.bundle.join(format!("{}.pid", p.exec_id));
        // A size set before Start: runc sizes the terminal before the process
        // runs, which a resize after `runc exec` returned would be too late for.
        let spec = match p.pending_size() {
            Some((width, height)) if p.stdio.terminal => {
                let mut spec: serde_json::Value =
                    serde_json::from_slice(&p.spec).expect("validated at Exec");
                spec["consoleSize"] = serde_json::json!({"width": width, "height": height});
                serde_json::to_vec(&spec).expect("a JSON value serializes")
            }
            _ => p.spec.clone(),
        };
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&spec_file)?;
            f.write_all(&spec)
        };
        write().map_err(Error::io("write exec spec", &spec_file))?;
        let (runc, id, spec, pid) = (&self.runc, &self.id, &spec_file, &pid_file);
        let result = self
            .spawn_with_io(p, &pid_file, true, |sockets, stdio| async move {
                runc.exec(id, spec, pid, &sockets, stdio).await
            })
            .await;
        let _ = std::fs::remove_file(&spec_file);
        result
    }

    /// Where `runc exec` reads the process spec of exec `exec_id` from.
    fn exec_spec_file(&self, exec_id: &str) -> std::path::PathBuf {
        self.bundle.join(format!(".exec-{exec_id}.json"))
    }

    /// Signals an exec (Kill has checked it runs).
    pub(crate) fn kill_exec(&self, p: &Process, signal: u32) -> Result<()> {
        // Any signal number up to SIGRTMAX, realtime ones included, as Kill
        // of the init (runc kill) takes them.
        if signal == 0 || signal as i32 > libc::SIGRTMAX() {
            return Err(Error::InvalidArgument(format!(
                "signal {signal} is not a signal"
            )));
        }
        // Through its pidfd when the runtime sent one; else by pid, which
        // names no other process while the phase says Running (checked
        // above), short of the moment between its reaping and its handler.
        match p.signal(signal as i32) {
            Ok(()) => Ok(()),
            Err(Errno::ESRCH) => Err(finished_error(&self.id, p)),
            Err(e) => Err(Error::Sys {
                op: "kill",
                source: e,
            }),
        }
    }

    pub(crate) fn delete_exec(&self, exec_id: &str) -> Result<(u32, ExitInfo)> {
        let p = self.process(exec_id)?;
        let before = self.advance(Op::Delete, &p)?;
        let info = never_ran_or(before);
        self.lock_execs().remove(exec_id);
        p.close_io();
        self.router.forget(p.pid());
        let _ = std::fs::remove_file(self.bundle.join(format!("{exec_id}.pid")));
        p.set_phase(Phase::Deleted(info));
        self.publisher.publish(Event::Delete {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            pid: p.pid(),
            status: info.status,
            at: Some(info.at),
        });
        Ok((p.pid(), info))
    }
}

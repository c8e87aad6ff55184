//! containerd of a running environment, from the outside: its PID, killing
//! or stopping it (its shims live on) and starting it again inside.

use std::fs;
use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Env, TEARDOWN_TIMEOUT};
use crate::init::spawn_daemon;

impl Env {
    /// containerd's PID, from its PID file.
    pub fn containerd_pid(&self) -> Option<i32> {
        let d = self.daemon.as_ref()?;
        fs::read_to_string(&d.pid_file).ok()?.trim().parse().ok()
    }

    /// SIGKILLs containerd (by the PID of its PID file) and waits until it is
    /// gone; its shims live on.
    pub fn kill_containerd(&mut self) -> io::Result<()> {
        if self.signal_containerd(Signal::SIGKILL, TEARDOWN_TIMEOUT)? {
            Ok(())
        } else {
            Err(io::Error::other("containerd survived SIGKILL"))
        }
    }

    /// Stops containerd with SIGTERM, and SIGKILL after `grace`.
    pub fn stop_containerd(&mut self, grace: Duration) -> io::Result<()> {
        if !self.signal_containerd(Signal::SIGTERM, grace)? {
            self.kill_containerd()?;
        }
        Ok(())
    }

    /// Sends `signal` to containerd; true once it is gone (within `wait`).
    fn signal_containerd(&mut self, signal: Signal, wait: Duration) -> io::Result<bool> {
        let Some(pid) = self.containerd_pid() else {
            return Ok(true);
        };
        let _ = kill(Pid::from_raw(pid), signal);
        let deadline = Instant::now() + wait;
        loop {
            // Init reaps the containerd it started; this one, the others.
            // Gone means reaped: a zombie still holds its PID.
            let gone = match self.containerd.as_mut() {
                Some(c) if c.id() as i32 == pid => c.try_wait()?.is_some(),
                _ => !Path::new(&format!("/proc/{pid}")).exists(),
            };
            if gone {
                self.containerd = None;
                return Ok(true);
            }
            if Instant::now() > deadline {
                if !running(pid) {
                    return Err(io::Error::other(format!(
                        "containerd {pid} died but nobody reaped it"
                    )));
                }
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts containerd again, inside, with the same config, PATH,
    /// variables and log (appended to); returns once its socket answers.
    pub fn restart_containerd(&mut self) -> io::Result<()> {
        let d = self
            .daemon
            .clone()
            .ok_or_else(|| io::Error::other("this environment has no containerd"))?;
        if self.containerd_pid().is_some_and(running) {
            return Err(io::Error::other("containerd is still running"));
        }
        let child = spawn_daemon(self.command(&d.binary), &d)?;
        self.containerd = Some(child);
        Ok(())
    }
}

/// Whether process `pid` runs (a zombie does not).
fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

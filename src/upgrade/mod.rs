//! Live upgrade: the shim replaces its own binary while its containers run.
//!
//! On SIGUSR2 the daemon stops taking requests (connections wait, and only
//! Wait calls, which may take forever, stay unanswered), lets transitions in
//! progress finish, stops reaping (exits wait as zombies), detaches client
//! connections, stops event sending and every copy loop, and writes its state
//! with every descriptor it hands over. The binary now at the shim's path
//! must read that state (`-upgrade-check`) before anything is given up; then
//! the daemon execs it in place: same pid, so it stays the parent and
//! subreaper of its containers. Whatever fails before exec, the old code
//! takes everything back and carries on.

pub mod relay;
pub mod snapshot;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::container::Container;
use crate::shim::Shim;
use crate::sys::{FdList, FdTable};
use crate::upgrade::relay::Relays;
use snapshot::State;

/// The environment variable naming the state file for the next binary.
pub const STATE_ENV: &str = "TETHER_UPGRADE_STATE";
/// How long processes may take to settle (exits to be drained and reported).
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// What an upgrade works on.
pub struct Daemon {
    /// The daemon's own arguments, for the exec.
    pub args: Vec<String>,
    /// The path the daemon's binary was started from.
    pub exe: PathBuf,
    /// Where the state file goes.
    pub state_path: PathBuf,
    /// The shim.
    pub shim: Arc<Shim>,
    /// Client connections.
    pub relays: Arc<Relays>,
    /// The listening socket.
    pub listener: Arc<tokio::net::UnixListener>,
    /// Pauses accepting.
    pub accept_paused: watch::Sender<bool>,
}

impl Daemon {
    /// Upgrades in place; returns only if the upgrade was called off, with
    /// the reason, everything running as before.
    pub async fn upgrade(&self) -> String {
        self.accept_paused.send_replace(true);
        let why = self.attempt().await;
        self.accept_paused.send_replace(false);
        why
    }

    async fn attempt(&self) -> String {
        let services = self.shim.services().clone();
        if let Err(e) = self.relays.quiesce().await {
            self.relays_back_in_place().await;
            return e;
        }
        let settled = settle(&self.shim).await.is_ok();
        services.reaper.pause();
        // Exits reaped just before the pause reach their processes first.
        self.shim.monitor_caught_up().await;
        let settled = settled && settle(&self.shim).await.is_ok();
        if !settled {
            self.relays_back_in_place().await;
            services.reaper.resume();
            return "processes did not settle".into();
        }
        let mut given = FdList::new();
        let mut failed = Vec::new();
        let mut state = self.snapshot(&mut given, &mut failed).await;
        let outcome = if failed.is_empty() {
            self.exec(&state, given.numbers())
        } else {
            // A process whose stdio could not be recorded would lose it in
            // the next binary: take everything back instead.
            Err(format!("stdio handover failed: {}", failed.join("; ")))
        };
        match outcome {
            Ok(never) => match never {},
            Err(why) => {
                // Called off: take it all back.
                let events = std::mem::take(&mut state.events);
                if let Err(e) = restore(&self.shim, &self.relays, state, &mut FdTable::new()) {
                    tracing::error!(error = %e, "taking the state back after a failed upgrade");
                }
                services.publisher.restore(&events);
                services.reaper.resume();
                why
            }
        }
    }

    /// Detaches every connection and takes it straight back (an upgrade
    /// called off before anything else was stopped).
    async fn relays_back_in_place(&self) {
        let conns = self.relays.snapshot(&mut FdList::new()).await;
        if let Err(e) = self.relays.restore(conns, &mut FdTable::new()) {
            tracing::error!(error = %e, "taking connections back");
        }
    }

    /// Stops and records every component: connections, events, containers
    /// (their processes and stdio), early exits. Descriptors go into `fds`;
    /// what could not be recorded, into `failed`.
    async fn snapshot(&self, fds: &mut FdList, failed: &mut Vec<String>) -> State {
        let services = self.shim.services();
        let listener = fds.lend(self.listener.as_raw_fd());
        let conns = self.relays.snapshot(fds).await;
        let events = services.publisher.snapshot().await;
        let mut containers = Vec::new();
        for c in self.shim.containers() {
            containers.push(c.snapshot(fds, failed).await);
        }
        State {
            version: snapshot::VERSION,
            tether: env!("CARGO_PKG_VERSION").into(),
            upgrades: self.shim.upgrades() + 1,
            listener,
            conns,
            events,
            early_exits: services.router.snapshot(),
            containers,
        }
    }

    /// Proves the new binary reads the state, then becomes it.
    fn exec(&self, state: &State, fds: &[RawFd]) -> Result<std::convert::Infallible, String> {
        snapshot::write(&self.state_path, state).map_err(|e| e.to_string())?;
        // Reaping is paused: waiting for this one child directly is safe.
        let check = Command::new(&self.exe)
            .arg("-upgrade-check")
            .arg(&self.state_path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output();
        match check {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let _ = std::fs::remove_file(&self.state_path);
                return Err(format!(
                    "the new binary {} cannot take over ({}): {}",
                    self.exe.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.state_path);
                return Err(format!("the new binary {}: {e}", self.exe.display()));
            }
        }
        for fd in fds {
            let _ = crate::sys::keep_across_exec(*fd, true);
        }
        tracing::info!(exe = %self.exe.display(), "upgrading in place");
        let err = Command::new(&self.exe)
            .args(&self.args)
            .env(STATE_ENV, &self.state_path)
            .exec();
        for fd in fds {
            let _ = crate::sys::keep_across_exec(*fd, false);
        }
        let _ = std::fs::remove_file(&self.state_path);
        Err(format!("exec of {}: {err}", self.exe.display()))
    }
}

/// Waits (bounded) until no process is between phases.
async fn settle(shim: &Shim) -> Result<(), ()> {
    let wait = async {
        loop {
            let any = shim.containers().iter().any(|c| c.is_between_phases());
            if !any {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(SETTLE_LIMIT, wait).await.map_err(drop)
}

/// Builds the shim's containers and connections from a state (after exec,
/// or when an upgrade is called off), taking every descriptor from `fds`.
/// Queued events are the caller's: see `Publisher::restored`/`restore`.
pub fn restore(
    shim: &Arc<Shim>,
    relays: &Relays,
    state: State,
    fds: &mut FdTable,
) -> std::io::Result<()> {
    let services = shim.services();
    services.router.restore(&state.early_exits);
    for c in state.containers {
        shim.adopt(Container::restore(c, services.clone(), fds)?);
    }
    relays.restore(state.conns, fds)?;
    shim.set_upgrades(state.upgrades);
    Ok(())
}

/// `-upgrade-check FILE`: succeeds if this binary can take over that state.
pub fn check(path: &std::path::Path) -> Result<(), String> {
    snapshot::read(path).map(drop)
}

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

pub mod snapshot;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use crate::container::Container;
use crate::sandbox::Sandbox;
use crate::shim::Shim;
use crate::sys::{FdList, FdTable};
use crate::transport::{Transport, Unsettled};
use snapshot::{State, StateError};

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
    pub transport: Arc<Transport>,
    /// The listening socket.
    pub listener: Arc<tokio::net::UnixListener>,
}

/// Why a live upgrade was called off.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Requests other than Wait did not finish.
    #[error(transparent)]
    Requests(#[from] Unsettled),
    /// Processes stayed between phases (starting, exited, deleting).
    #[error("processes did not settle within {0:?}")]
    Processes(Duration),
    /// Some process's stdio could not be recorded.
    #[error("stdio handover failed: {}", .0.join("; "))]
    Stdio(Vec<String>),
    /// The state file could not be written.
    #[error("writing the upgrade state: {0}")]
    WriteState(#[source] crate::error::Error),
    /// The new binary could not be run to check the state.
    #[error("running the new binary {}: {source}", exe.display())]
    Check {
        /// The new binary.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The new binary refused the state.
    #[error("the new binary {} cannot take over ({status}): {stderr}", exe.display())]
    Refused {
        /// The new binary.
        exe: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// The exec itself failed.
    #[error("exec of {}: {source}", exe.display())]
    Exec {
        /// The new binary.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Daemon {
    /// Upgrades in place; returns only if the upgrade was called off, with
    /// the reason, everything running as before.
    pub async fn upgrade(&self) -> UpgradeError {
        self.transport.set_accepting(false);
        let why = self.attempt().await;
        self.transport.set_accepting(true);
        why
    }

    async fn attempt(&self) -> UpgradeError {
        let services = self.shim.services().clone();
        if let Err(e) = self.transport.quiesce().await {
            self.conns_back_in_place().await;
            return e.into();
        }
        let settled = settle(&self.shim).await;
        services.reaper.pause();
        // Exits reaped just before the pause reach their processes first.
        self.shim.monitor_caught_up().await;
        let settled = settled.and(settle(&self.shim).await);
        if let Err(e) = settled {
            self.conns_back_in_place().await;
            services.reaper.resume();
            return e;
        }
        let mut given = FdList::new();
        let mut failed = Vec::new();
        let mut state = self.snapshot(&mut given, &mut failed).await;
        let outcome = if failed.is_empty() {
            self.exec(&state, given.numbers())
        } else {
            // A process whose stdio could not be recorded would lose it in
            // the next binary: take everything back instead.
            Err(UpgradeError::Stdio(failed))
        };
        match outcome {
            Ok(never) => match never {},
            Err(why) => {
                // Called off: take it all back.
                let events = std::mem::take(&mut state.events);
                if let Err(e) = restore(&self.shim, &self.transport, state, &mut FdTable::new()) {
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
    async fn conns_back_in_place(&self) {
        let conns = self.transport.snapshot(&mut FdList::new()).await;
        if let Err(e) = self.transport.restore(conns, &mut FdTable::new()) {
            tracing::error!(error = %e, "taking connections back");
        }
    }

    /// Stops and records every component: connections, events, containers
    /// (their processes and stdio), early exits. Descriptors go into `fds`;
    /// what could not be recorded, into `failed`.
    async fn snapshot(&self, fds: &mut FdList, failed: &mut Vec<String>) -> State {
        let services = self.shim.services();
        let listener = fds.lend(self.listener.as_raw_fd());
        let conns = self.transport.snapshot(fds).await;
        let events = services.publisher.snapshot().await;
        let mut containers = Vec::new();
        for c in self.shim.containers() {
            containers.push(c.snapshot(fds, failed).await);
        }
        let sandbox = self.shim.current_sandbox().map(|s| s.snapshot(fds));
        State {
            version: snapshot::VERSION,
            tether: env!("CARGO_PKG_VERSION").into(),
            upgrades: self.shim.upgrades() + 1,
            listener,
            conns,
            events,
            early_exits: services.router.snapshot(),
            containers,
            sandbox,
        }
    }

    /// Proves the new binary reads the state, then becomes it.
    fn exec(&self, state: &State, fds: &[RawFd]) -> Result<std::convert::Infallible, UpgradeError> {
        snapshot::write(&self.state_path, state).map_err(UpgradeError::WriteState)?;
        let exe = || self.exe.clone();
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
                return Err(UpgradeError::Refused {
                    exe: exe(),
                    status: out.status,
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            Err(source) => {
                let _ = std::fs::remove_file(&self.state_path);
                return Err(UpgradeError::Check { exe: exe(), source });
            }
        }
        for fd in fds {
            let _ = crate::sys::keep_across_exec(*fd, true);
        }
        tracing::info!(exe = %self.exe.display(), "upgrading in place");
        let source = Command::new(&self.exe)
            .args(&self.args)
            .env(STATE_ENV, &self.state_path)
            .exec();
        for fd in fds {
            let _ = crate::sys::keep_across_exec(*fd, false);
        }
        let _ = std::fs::remove_file(&self.state_path);
        Err(UpgradeError::Exec { exe: exe(), source })
    }
}

/// Waits (bounded) until no process is between phases: waits for each busy
/// process to leave its phase, then looks at all of them again.
async fn settle(shim: &Shim) -> Result<(), UpgradeError> {
    let first_busy = || shim.containers().iter().find_map(|c| c.between_phases());
    let wait = async {
        while let Some(p) = first_busy() {
            p.wait_until(|phase| !crate::container::between_phases(phase))
                .await;
        }
    };
    tokio::time::timeout(SETTLE_LIMIT, wait)
        .await
        .map_err(|_| UpgradeError::Processes(SETTLE_LIMIT))
}

/// Builds the shim's containers and connections from a state (after exec,
/// or when an upgrade is called off), taking every descriptor from `fds`.
/// Queued events are the caller's: see `Publisher::restored`/`restore`.
pub fn restore(
    shim: &Arc<Shim>,
    transport: &Transport,
    state: State,
    fds: &mut FdTable,
) -> std::io::Result<()> {
    let services = shim.services();
    services.router.restore(&state.early_exits);
    for c in state.containers {
        shim.adopt(Container::restore(c, services.clone(), fds)?);
    }
    // Before the connections: their pending WaitSandbox is sent again.
    if let Some(s) = state.sandbox {
        shim.adopt_sandbox(Sandbox::restore(s, services, fds)?);
    }
    transport.restore(state.conns, fds)?;
    shim.set_upgrades(state.upgrades);
    Ok(())
}

/// `-upgrade-check FILE`: succeeds if this binary can take over that state.
pub fn check(path: &Path) -> Result<(), StateError> {
    snapshot::read(path).map(drop)
}

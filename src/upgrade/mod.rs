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

use protobuf::Message;
use tokio::sync::watch;

use crate::container::{Container, Parts};
use crate::events::Publisher;
use crate::io::ProcessIo;
use crate::process::{Phase, Process};
use crate::protos::forward::ForwardRequest;
use crate::shim::Shim;
use crate::upgrade::relay::Relays;
use snapshot::{ConnRec, ContainerRec, ExitRec, IoRec, PhaseRec, ProcessRec, State};

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
        let crate::container::Services {
            publisher, reaper, ..
        } = self.shim.services().clone();
        if let Err(e) = self.relays.quiesce().await {
            let conns = self.relays.detach().await;
            let _ = self.relays.restore(conns);
            return e;
        }
        let settled = settle(&self.shim).await.is_ok();
        reaper.pause(true);
        // Exits reaped just before the pause are routed and handled now.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let settled = settled && settle(&self.shim).await.is_ok();
        let conns = self.relays.detach().await;
        if !settled {
            let _ = self.relays.restore(conns);
            reaper.pause(false);
            return "processes did not settle".into();
        }
        let events = publisher.stop().await;
        let (state, fds) = self.capture(conns, &events).await;
        match self.exec(&state, &fds) {
            Ok(never) => match never {},
            Err(why) => {
                // Called off: take it all back.
                let mut fds = crate::sys::FdTable::new();
                if let Err(e) = restore_in_place(&self.shim, &self.relays, state, &mut fds) {
                    tracing::error!(error = %e, "taking the state back after a failed upgrade");
                }
                publisher.resume(events);
                reaper.pause(false);
                why
            }
        }
    }

    /// Stops every process's stdio and writes down everything.
    async fn capture(
        &self,
        conns: Vec<crate::upgrade::relay::ConnHandover>,
        events: &[ForwardRequest],
    ) -> (State, Vec<RawFd>) {
        let mut fds = vec![self.listener.as_raw_fd()];
        let router = &self.shim.services().router;
        let mut containers = Vec::new();
        for c in self.shim.containers() {
            let init = capture_process(&c.init, &mut fds).await;
            let mut execs = Vec::new();
            let exec_list: Vec<_> = c.lock_execs().values().cloned().collect();
            for p in exec_list {
                execs.push(capture_process(&p, &mut fds).await);
            }
            containers.push(ContainerRec {
                id: c.id.clone(),
                namespace: c.namespace.clone(),
                bundle: c.bundle.clone(),
                options: c.options.clone(),
                restore_from: c.restore_from.clone(),
                rootfs_mounted: c.rootfs_mounted,
                kill_all_on_exit: c.kill_all_on_exit,
                paused: c.is_paused(),
                oom_seen: c.oom.get().map(|s| s.count()),
                init,
                execs,
            });
        }
        let state = State {
            version: snapshot::VERSION,
            tether: env!("CARGO_PKG_VERSION").into(),
            upgrades: self.shim.upgrades() + 1,
            listener: self.listener.as_raw_fd(),
            conns: conns
                .into_iter()
                .map(|c| ConnRec::of(c, &mut fds))
                .collect(),
            events: events
                .iter()
                .filter_map(|e| e.write_to_bytes().ok())
                .collect(),
            early_exits: router.early_exits().iter().map(ExitRec::of).collect(),
            containers,
        };
        (state, fds)
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
    let busy = |p: &Process| {
        matches!(
            p.phase(),
            Phase::Starting | Phase::Exited | Phase::Deleting(_)
        )
    };
    let wait = async {
        loop {
            let any = shim
                .containers()
                .iter()
                .any(|c| busy(&c.init) || c.lock_execs().values().any(|p| busy(p)));
            if !any {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(SETTLE_LIMIT, wait).await.map_err(drop)
}

async fn capture_process(p: &Process, fds: &mut Vec<RawFd>) -> ProcessRec {
    let io = match p.take_io() {
        Some(io) => match io.stop().await {
            Ok(h) => Some(IoRec::of(h, fds)),
            Err(e) => {
                tracing::error!(error = %e, "stopping stdio for the upgrade");
                None
            }
        },
        None => None,
    };
    let (size, stdin_closed) = p.pending_requests();
    ProcessRec {
        exec_id: p.exec_id.clone(),
        stdio: p.stdio.clone(),
        spec: p.spec.clone(),
        pid: p.pid(),
        phase: match p.phase() {
            Phase::Stopped(e) => PhaseRec::Stopped(ExitRec::of_info(p.pid(), &e)),
            Phase::Created => PhaseRec::Created,
            _ => PhaseRec::Running,
        },
        size,
        stdin_closed,
        io,
    }
}

/// Builds the shim's containers from a state (after exec, or when an
/// upgrade is called off) and takes the connections back.
pub fn restore_in_place(
    shim: &Arc<Shim>,
    relays: &Relays,
    state: State,
    fds: &mut crate::sys::FdTable,
) -> std::io::Result<()> {
    shim.services()
        .router
        .keep_early(state.early_exits.iter().map(ExitRec::exit).collect());
    for c in state.containers {
        let init = restore_process(c.init, fds)?;
        let container = Container::assemble(
            Parts {
                id: c.id,
                namespace: c.namespace,
                bundle: c.bundle,
                options: c.options,
                restore_from: c.restore_from,
                rootfs_mounted: c.rootfs_mounted,
                kill_all_on_exit: c.kill_all_on_exit,
            },
            init,
            shim.services().clone(),
        );
        container
            .paused
            .store(c.paused, std::sync::atomic::Ordering::Release);
        for e in c.execs {
            let p = Arc::new(restore_process(e, fds)?);
            container.lock_execs().insert(p.exec_id.clone(), p);
        }
        if container.init.phase() == Phase::Running {
            container.watch_cgroup_from(c.oom_seen);
        }
        let running: Vec<_> = std::iter::once(container.init.clone())
            .chain(container.lock_execs().values().cloned())
            .filter(|p| p.phase() == Phase::Running)
            .collect();
        for p in running {
            if let Some(exit) = container.register(&p) {
                tokio::spawn(container.clone().exited(p, exit));
            }
        }
        shim.adopt(container);
    }
    let mut conns = Vec::new();
    for c in state.conns {
        conns.push(c.handover(fds)?);
    }
    relays.restore(conns)?;
    shim.set_upgrades(state.upgrades);
    Ok(())
}

fn restore_process(r: ProcessRec, fds: &mut crate::sys::FdTable) -> std::io::Result<Process> {
    let p = Process::new(r.exec_id, r.stdio, r.spec);
    p.set_pid(r.pid);
    p.set_pending_requests(r.size, r.stdin_closed);
    match r.phase {
        PhaseRec::Created => {}
        PhaseRec::Running => p.set_phase(Phase::Running),
        PhaseRec::Stopped(e) => p.set_phase(Phase::Stopped(e.info())),
    }
    if let Some(io) = r.io {
        let io = ProcessIo::resume(io.handover(fds)?).map_err(std::io::Error::other)?;
        p.put_io(io);
    }
    Ok(p)
}

/// The events an earlier binary had queued.
pub fn queued_events(state: &State) -> Vec<ForwardRequest> {
    state
        .events
        .iter()
        .filter_map(|b| ForwardRequest::parse_from_bytes(b).ok())
        .collect()
}

/// `-upgrade-check FILE`: succeeds if this binary can take over that state.
pub fn check(path: &std::path::Path) -> Result<(), String> {
    snapshot::read(path).map(drop)
}

/// Reaper and publisher for a daemon taking over from `state`.
pub fn publisher_for(state: &State, address: String, namespace: String) -> Publisher {
    Publisher::with_queue(address, namespace, queued_events(state))
}

//! One supervised process (a container's init or an exec) and its phases.
//!
//! State lives in a `watch` channel, changed only through short, synchronous
//! transitions; no lock is held while runc runs or while anything is awaited.
//! Transitional phases (`Starting`, `Exited`, `Deleting`) stand in for a
//! lifecycle lock: a second Start or Delete sees them and is refused, and the
//! exit path waits for `Starting` to end, so the start event always precedes
//! the exit event.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::io::{IoRec, ProcessIo, StdioPaths};
use crate::reaper::ExitRec;
use crate::sys::{FdList, FdTable};
use crate::tasks::Tasks;

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
    /// Created (init) or registered (exec), not started.
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
    /// The init of a paused container (the container says so, not a phase).
    Paused,
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

    /// Whether the process has run and can no longer receive signals.
    pub fn finished(&self) -> bool {
        matches!(
            self,
            Phase::Exited | Phase::Stopped(_) | Phase::Deleting(_) | Phase::Deleted(_)
        )
    }
}

/// A process the shim supervises.
pub struct Process {
    /// The exec id; empty for the init process.
    pub exec_id: String,
    /// Its stdio, as the client sent it.
    pub stdio: StdioPaths,
    /// The OCI process spec (JSON) of an exec.
    pub spec: Vec<u8>,
    pid: AtomicU32,
    /// A pidfd for it, from a runtime that sends one (`--pidfd-socket`):
    /// kept for the process's life in the shim, since a pidfd never names
    /// another process, reaped or not.
    pidfd: Mutex<Option<OwnedFd>>,
    phase: watch::Sender<Phase>,
    io: Mutex<Option<ProcessIo>>,
    /// Requests that came before the process had stdio.
    pending: Mutex<Pending>,
    /// The span of its tasks (copy loops, exit handling): ids, pid once known.
    span: tracing::Span,
}

/// What a client asked of a process's stdio before it had any (between Exec
/// and the end of Start, CloseIO and ResizePty still count).
#[derive(Default)]
struct Pending {
    size: Option<(u16, u16)>,
    stdin_closed: bool,
}

impl Process {
    /// A process in phase `Created`, with no pid until it has one.
    pub fn new(container: &str, exec_id: String, stdio: StdioPaths, spec: Vec<u8>) -> Process {
        let span = tracing::info_span!(
            "process",
            id = container,
            exec_id = exec_id.as_str(),
            pid = tracing::field::Empty
        );
        Process {
            span,
            exec_id,
            stdio,
            spec,
            pid: AtomicU32::new(0),
            pidfd: Mutex::new(None),
            phase: watch::Sender::new(Phase::Created),
            io: Mutex::new(None),
            pending: Mutex::default(),
        }
    }

    /// The span its tasks run in.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Whether this is the container's init process.
    pub fn is_init(&self) -> bool {
        self.exec_id.is_empty()
    }

    /// Its pid (0 before it has one).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Acquire)
    }

    /// Sends signal number `signal` through its pidfd; None if it has none
    /// (nothing sent).
    pub fn signal_through_pidfd(&self, signal: i32) -> Option<Result<(), Errno>> {
        let pidfd = self.lock_pidfd();
        let fd = pidfd.as_ref()?;
        tracing::debug!(pid = self.pid(), exec_id = %self.exec_id, signal, "signalling through the pidfd");
        Some(crate::sys::pidfd_send_signal(fd.as_fd(), signal))
    }

    /// Sends signal number `signal`: through its pidfd if it has one (ESRCH
    /// once it has been reaped), else to its pid, which the caller must know
    /// to be unreaped (its phase is not finished: see `Phase::finished`).
    pub fn signal(&self, signal: i32) -> Result<(), Errno> {
        self.signal_through_pidfd(signal)
            .unwrap_or_else(|| crate::sys::send_signal(self.pid(), signal))
    }

    #[cfg(test)]
    fn set_pid_and_pidfd(&self, pid: u32, pidfd: OwnedFd) {
        self.pid.store(pid, Ordering::Release);
        *self.lock_pidfd() = Some(pidfd);
    }

    /// Records the pid, its pidfd if the runtime sent one, and the stdio
    /// once the runtime has started it.
    pub fn set_running_io(&self, pid: u32, pidfd: Option<OwnedFd>, mut io: ProcessIo) {
        self.pid.store(pid, Ordering::Release);
        self.span.record("pid", pid);
        *self.lock_pidfd() = pidfd;
        // The pending lock is held while the stdio is installed, so a request
        // lands either here or on the installed stdio, never in between.
        let pending = self.lock_pending();
        if let Some((w, h)) = pending.size {
            if let Err(e) = io.resize(w, h) {
                tracing::warn!(error = %e, "applying the terminal size");
            }
        }
        if pending.stdin_closed {
            io.close_stdin();
        }
        *self.lock_io() = Some(io);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Moves to a new phase if `f` allows it; returns the phase before.
    pub fn transition(&self, f: impl FnOnce(Phase) -> Result<Phase>) -> Result<Phase> {
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

    /// Sets the phase unconditionally.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Waits until the phase satisfies `f`.
    pub async fn wait_until(&self, f: impl Fn(&Phase) -> bool) -> Phase {
        let mut rx = self.phase.subscribe();
        let phase = *rx
            .wait_for(f)
            .await
            .expect("the sender lives as long as the process");
        phase
    }

    /// Waits until the exit is reported.
    pub async fn wait(&self) -> ExitInfo {
        let phase = self.wait_until(|p| p.exit().is_some()).await;
        phase.exit().expect("waited for an exit")
    }

    /// Closes the process's stdin (CloseIO), now or when it starts.
    pub fn close_stdin(&self) {
        let mut pending = self.lock_pending();
        pending.stdin_closed = true;
        if let Some(io) = self.lock_io().as_mut() {
            io.close_stdin();
        }
    }

    /// Resizes the terminal, now or when the process starts.
    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        let mut pending = self.lock_pending();
        pending.size = Some((width, height));
        match self.lock_io().as_mut() {
            Some(io) => io.resize(width, height),
            None => Ok(()),
        }
    }

    /// A terminal size requested before the process had stdio.
    pub fn pending_size(&self) -> Option<(u16, u16)> {
        self.lock_pending().size
    }

    /// Waits for the output to be copied (see [`ProcessIo::drain`]). With a
    /// `limit`, output still open when it runs out (a child the process left
    /// behind holds it) is closed: its reader gets its end, and the exit is
    /// reported. Without one, copying goes on in the background.
    pub async fn drain(&self, limit: Option<std::time::Duration>) {
        let io = self.lock_io().take();
        if let Some(mut io) = io {
            let deadline = limit.map(|l| std::time::Instant::now() + l);
            let ended = io.drain(deadline).await;
            if ended || limit.is_none() {
                *self.lock_io() = Some(io);
            }
        }
    }

    /// Drops the process's stdio: FIFOs, pipes, terminal, logger.
    pub fn close_io(&self) {
        self.lock_io().take();
    }

    fn lock_io(&self) -> std::sync::MutexGuard<'_, Option<ProcessIo>> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pidfd(&self) -> std::sync::MutexGuard<'_, Option<OwnedFd>> {
        self.pidfd.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A process as a live-upgrade snapshot records it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProcessRec {
    /// Exec id ("" for init).
    pub exec_id: String,
    /// Client stdio.
    pub stdio: StdioPaths,
    /// Exec spec (JSON).
    pub spec: Vec<u8>,
    /// Pid (0: none yet).
    pub pid: u32,
    /// Its pidfd, handed over (absent from states before version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidfd: Option<std::os::fd::RawFd>,
    /// Phase.
    pub phase: PhaseRec,
    /// Terminal size requested before it had stdio.
    pub size: Option<(u16, u16)>,
    /// CloseIO came before it had stdio.
    pub stdin_closed: bool,
    /// Its stdio.
    pub io: Option<IoRec>,
}

/// The phases a recorded process can be in (transitions in progress are
/// waited out before a snapshot).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum PhaseRec {
    /// Not started.
    Created,
    /// Running.
    Running,
    /// Exited and reported.
    Stopped(ExitRec),
}

impl Process {
    /// Stops the process's stdio and records it all, giving its descriptors
    /// (stdio, pidfd) away into `fds`. The process keeps no stdio and no
    /// pidfd afterwards. What could not be recorded comes back as the second
    /// value (the upgrade must then be called off).
    pub async fn snapshot(&self, fds: &mut FdList) -> (ProcessRec, Option<String>) {
        let io = self.lock_io().take();
        let (io, failed) = match io {
            Some(io) => {
                let (rec, failed) = io.snapshot(fds).await;
                (Some(rec), failed)
            }
            None => (None, None),
        };
        let (size, stdin_closed) = {
            let p = self.lock_pending();
            (p.size, p.stdin_closed)
        };
        let rec = ProcessRec {
            exec_id: self.exec_id.clone(),
            stdio: self.stdio.clone(),
            spec: self.spec.clone(),
            pid: self.pid(),
            pidfd: self.lock_pidfd().take().map(|fd| fds.give(fd)),
            phase: match self.phase() {
                Phase::Stopped(e) => PhaseRec::Stopped(ExitRec {
                    pid: self.pid(),
                    status: e.status,
                    at: e
                        .at
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default(),
                }),
                Phase::Created => PhaseRec::Created,
                _ => PhaseRec::Running,
            },
            size,
            stdin_closed,
            io,
        };
        (rec, failed)
    }

    /// The process a snapshot recorded, its descriptors taken from `fds`.
    pub fn restore(
        rec: ProcessRec,
        fds: &mut FdTable,
        container: &str,
        tasks: &Tasks,
    ) -> std::io::Result<Process> {
        let p = Process::new(container, rec.exec_id, rec.stdio, rec.spec);
        p.pid.store(rec.pid, Ordering::Release);
        if rec.pid != 0 {
            p.span.record("pid", rec.pid);
        }
        if let Some(fd) = rec.pidfd {
            *p.lock_pidfd() = Some(fds.take(fd)?);
        }
        *p.lock_pending() = Pending {
            size: rec.size,
            stdin_closed: rec.stdin_closed,
        };
        match rec.phase {
            PhaseRec::Created => {}
            PhaseRec::Running => p.set_phase(Phase::Running),
            PhaseRec::Stopped(e) => p.set_phase(Phase::Stopped(ExitInfo {
                status: e.status,
                at: SystemTime::UNIX_EPOCH + e.at,
            })),
        }
        if let Some(io) = rec.io {
            let io = ProcessIo::restore(io, fds, tasks, p.span.clone())
                .map_err(std::io::Error::other)?;
            *p.lock_io() = Some(io);
        }
        Ok(p)
    }
}

/// The error for a process that has already finished.
pub fn finished_error(id: &str, p: &Process) -> Error {
    Error::NotFound(format!(
        "process {} of container {id:?} has already finished",
        p.pid()
    ))
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

    /// Kill through a pidfd reaches the process or nothing: once the process
    /// is reaped and its pid given to another (made to happen with
    /// `ns_last_pid`), the signal fails with ESRCH and the newcomer lives.
    #[test]
    fn a_pidfd_never_signals_a_process_that_reused_the_pid() {
        use std::process::Command;
        // Fails rather than skips without root; `cargo quick` leaves it out.
        assert!(nix::unistd::geteuid().is_root(), "ns_last_pid needs root");
        let mut first = Command::new("sleep").arg("100").spawn().unwrap();
        let pid = first.id();
        let p = Process::new("c", "e".into(), StdioPaths::default(), Vec::new());
        let pidfd = crate::sys::pidfd_open(pid).unwrap();
        p.set_pid_and_pidfd(pid, pidfd);
        p.signal(0).unwrap();
        p.signal(libc::SIGKILL).unwrap();
        // Another test's reaper may reap it first: either way it is gone.
        let _ = first.wait();
        let mut reuser = None;
        for _ in 0..200 {
            // The next pid allocated is ns_last_pid + 1, unless another
            // process forks in between: try again then.
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
            let mut c = Command::new("sleep").arg("100").spawn().unwrap();
            if c.id() == pid {
                reuser = Some(c);
                break;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut reuser = reuser.unwrap_or_else(|| panic!("pid {pid} was never reused"));
        assert_eq!(p.signal(libc::SIGKILL), Err(Errno::ESRCH));
        assert_eq!(p.signal(0), Err(Errno::ESRCH));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            crate::reaper::is_alive(pid),
            "the process that reused pid {pid} was killed"
        );
        let _ = reuser.kill();
        let _ = reuser.wait();
    }

    #[test]
    fn refused_transitions_change_nothing() {
        let p = Process::new("c", String::new(), StdioPaths::default(), Vec::new());
        p.transition(|_| Ok(Phase::Starting)).unwrap();
        let e = p
            .transition(|_| Err(Error::FailedPrecondition("no".into())))
            .unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::FAILED_PRECONDITION);
        assert_eq!(p.phase(), Phase::Starting);
    }
}

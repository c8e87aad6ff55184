//! The state a shim hands to the next binary in a live upgrade: versioned
//! JSON, with descriptors as numbers that survive the exec.
//!
//! A newer binary reads every older version it knows; an older binary refuses
//! a newer version cleanly (see [`VERSION`] and [`read`]).

use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::io::{IoHandover, StdioPaths, StreamHandover};
use crate::process::ExitInfo;
use crate::reaper::Exit;
use crate::runc::RuntimeOptions;
use crate::sys::FdTable;
use crate::upgrade::relay::{ConnHandover, Pending};

/// The version this binary writes, and the newest it reads.
pub const VERSION: u32 = 1;

/// Everything the next binary needs.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// The tether version that wrote it.
    pub tether: String,
    /// Upgrades so far, this one included.
    pub upgrades: u32,
    /// The listening socket.
    pub listener: RawFd,
    /// Client connections and their unanswered requests.
    pub conns: Vec<ConnRec>,
    /// Events not yet delivered, oldest first (ForwardRequest bytes).
    pub events: Vec<Vec<u8>>,
    /// Exits of processes not registered yet.
    pub early_exits: Vec<ExitRec>,
    /// The containers.
    pub containers: Vec<ContainerRec>,
}

/// A client connection.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConnRec {
    /// Its socket.
    pub fd: RawFd,
    /// Requests without a response: (method, frame).
    pub pending: Vec<(String, Vec<u8>)>,
}

/// An exit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ExitRec {
    /// Pid.
    pub pid: u32,
    /// Status.
    pub status: u32,
    /// Time since the epoch.
    pub at: Duration,
}

/// A container.
#[derive(Debug, Serialize, Deserialize)]
pub struct ContainerRec {
    /// Id.
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// Bundle.
    pub bundle: PathBuf,
    /// Runtime options.
    pub options: RuntimeOptions,
    /// Checkpoint to restore from at Start.
    pub restore_from: Option<PathBuf>,
    /// Whether the shim mounted the rootfs.
    pub rootfs_mounted: bool,
    /// Whether init's exit kills the rest.
    pub kill_all_on_exit: bool,
    /// Frozen by Pause.
    pub paused: bool,
    /// OOM kills reported so far.
    pub oom_seen: Option<u64>,
    /// The init process.
    pub init: ProcessRec,
    /// The execs.
    pub execs: Vec<ProcessRec>,
}

/// A process.
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
    /// Phase.
    pub phase: PhaseRec,
    /// Terminal size requested before it had stdio.
    pub size: Option<(u16, u16)>,
    /// CloseIO came before it had stdio.
    pub stdin_closed: bool,
    /// Its stdio.
    pub io: Option<IoRec>,
}

/// The phases a handed-over process can be in (transitions in progress are
/// waited out before a handover).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum PhaseRec {
    /// Not started.
    Created,
    /// Running.
    Running,
    /// Exited and reported.
    Stopped(ExitRec),
}

/// A process's stdio.
#[derive(Debug, Serialize, Deserialize)]
pub struct IoRec {
    /// The stdin FIFO holder.
    pub stdin_holder: Option<RawFd>,
    /// Copy loops.
    pub streams: Vec<StreamRec>,
    /// pty master.
    pub console: Option<RawFd>,
    /// A binary:// logger.
    pub logger_pid: Option<u32>,
}

/// One copy loop.
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamRec {
    /// Output or input.
    pub output: bool,
    /// Source (None: the terminal).
    pub from: Option<RawFd>,
    /// Source is a regular file.
    pub from_file: bool,
    /// Sink (None: the terminal).
    pub to: Option<RawFd>,
    /// Sink is a regular file.
    pub to_file: bool,
    /// Read, not yet written.
    pub pending: Vec<u8>,
}

impl ExitRec {
    /// From a reaped exit.
    pub fn of(e: &Exit) -> ExitRec {
        ExitRec {
            pid: e.pid,
            status: e.status,
            at: e.at.duration_since(UNIX_EPOCH).unwrap_or_default(),
        }
    }

    /// From a reported exit.
    pub fn of_info(pid: u32, e: &ExitInfo) -> ExitRec {
        ExitRec {
            pid,
            status: e.status,
            at: e.at.duration_since(UNIX_EPOCH).unwrap_or_default(),
        }
    }

    /// Back to an exit.
    pub fn exit(&self) -> Exit {
        Exit {
            pid: self.pid,
            status: self.status,
            at: SystemTime::UNIX_EPOCH + self.at,
        }
    }

    /// Back to a reported exit.
    pub fn info(&self) -> ExitInfo {
        ExitInfo {
            status: self.status,
            at: SystemTime::UNIX_EPOCH + self.at,
        }
    }
}

/// Descriptors become numbers; the caller keeps the list to mark them for
/// exec (and to take them back if the upgrade is called off).
pub fn fd_out(fd: OwnedFd, all: &mut Vec<RawFd>) -> RawFd {
    let raw = fd.into_raw_fd();
    all.push(raw);
    raw
}

impl IoRec {
    /// From a stopped stdio.
    pub fn of(h: IoHandover, all: &mut Vec<RawFd>) -> IoRec {
        IoRec {
            stdin_holder: h.stdin_holder.map(|f| fd_out(f, all)),
            streams: h
                .streams
                .into_iter()
                .map(|s| StreamRec {
                    output: s.output,
                    from: s.from.map(|f| fd_out(f, all)),
                    from_file: s.from_file,
                    to: s.to.map(|f| fd_out(f, all)),
                    to_file: s.to_file,
                    pending: s.pending,
                })
                .collect(),
            console: h.console.map(|f| fd_out(f, all)),
            logger_pid: h.logger_pid,
        }
    }

    /// Back to a handover.
    pub fn handover(self, fds: &mut FdTable) -> std::io::Result<IoHandover> {
        let mut opt = |f: Option<RawFd>| f.map(|n| fds.take(n)).transpose();
        let mut streams = Vec::new();
        for s in self.streams {
            streams.push(StreamHandover {
                output: s.output,
                from: opt(s.from)?,
                from_file: s.from_file,
                to: opt(s.to)?,
                to_file: s.to_file,
                pending: s.pending,
            });
        }
        Ok(IoHandover {
            stdin_holder: opt(self.stdin_holder)?,
            streams,
            console: opt(self.console)?,
            logger_pid: self.logger_pid,
        })
    }
}

impl ConnRec {
    /// From a detached connection.
    pub fn of(c: ConnHandover, all: &mut Vec<RawFd>) -> ConnRec {
        ConnRec {
            fd: fd_out(c.client, all),
            pending: c.pending.into_iter().map(|p| (p.method, p.frame)).collect(),
        }
    }

    /// Back to a connection.
    pub fn handover(self, fds: &mut FdTable) -> std::io::Result<ConnHandover> {
        Ok(ConnHandover {
            client: fds.take(self.fd)?,
            pending: self
                .pending
                .into_iter()
                .map(|(method, frame)| Pending { method, frame })
                .collect(),
        })
    }
}

/// Writes the state file (0600).
pub fn write(path: &Path, state: &State) -> crate::error::Result<()> {
    let data = serde_json::to_vec(state).expect("the upgrade state serializes");
    crate::records::write_atomic(path, &data, 0o600)
}

/// Reads a state file this binary understands.
pub fn read(path: &Path) -> Result<State, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse(&data)
}

/// Decodes a state and checks its descriptor numbers: each names one
/// descriptor the next binary takes ownership of, so a number below 3 (stdio)
/// or one given twice (two owners, a double close) refuses the whole state.
pub fn parse(data: &[u8]) -> Result<State, String> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version =
        serde_json::from_slice(data).map_err(|e| format!("not a tether state: {e}"))?;
    if v.version > VERSION {
        return Err(format!(
            "state version {} is newer than this binary reads ({VERSION})",
            v.version
        ));
    }
    let state: State =
        serde_json::from_slice(data).map_err(|e| format!("state version {}: {e}", v.version))?;
    let mut seen = std::collections::BTreeSet::new();
    for fd in state.descriptors() {
        if fd < 3 {
            return Err(format!("state names descriptor {fd}, a stdio descriptor"));
        }
        if !seen.insert(fd) {
            return Err(format!("state names descriptor {fd} twice"));
        }
    }
    Ok(state)
}

impl State {
    /// Every descriptor number the state hands over.
    pub fn descriptors(&self) -> Vec<RawFd> {
        let mut all = vec![self.listener];
        all.extend(self.conns.iter().map(|c| c.fd));
        for c in &self.containers {
            for p in std::iter::once(&c.init).chain(&c.execs) {
                let Some(io) = &p.io else { continue };
                all.extend(io.stdin_holder);
                all.extend(io.console);
                for s in &io.streams {
                    all.extend(s.from);
                    all.extend(s.to);
                }
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"version":1,"tether":"0.1.0","upgrades":2,"listener":3,
        "conns":[{"fd":7,"pending":[["Wait",[0,0,0,0,0,0,0,1,1,0]]]}],
        "events":[],"early_exits":[{"pid":9,"status":137,"at":{"secs":5,"nanos":0}}],
        "containers":[]}"#;

    #[test]
    fn reads_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(&p, V1).unwrap();
        let s = read(&p).unwrap();
        assert_eq!((s.version, s.upgrades, s.listener), (1, 2, 3));
        assert_eq!(s.conns[0].pending[0].0, "Wait");
        assert_eq!(s.early_exits[0].exit().status, 137);
    }

    #[test]
    fn refuses_newer_versions_and_garbage_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(&p, V1.replace("\"version\":1", "\"version\":2")).unwrap();
        let e = read(&p).unwrap_err();
        assert!(e.contains("newer than this binary reads"), "{e}");
        std::fs::write(&p, "not json").unwrap();
        assert!(read(&p).unwrap_err().contains("not a tether state"));
        assert!(read(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn refuses_a_descriptor_named_twice_or_stdio() {
        let twice = V1.replace("\"fd\":7", "\"fd\":3");
        let e = parse(twice.as_bytes()).unwrap_err();
        assert!(e.contains("descriptor 3 twice"), "{e}");
        let stdio = V1.replace("\"listener\":3", "\"listener\":2");
        let e = parse(stdio.as_bytes()).unwrap_err();
        assert!(e.contains("descriptor 2, a stdio"), "{e}");
        assert_eq!(parse(V1.as_bytes()).unwrap().descriptors(), vec![3, 7]);
    }
}

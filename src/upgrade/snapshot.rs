//! The state a shim hands to the next binary in a live upgrade: versioned
//! JSON, with descriptors as numbers that survive the exec. Each component
//! records itself next to its own code (`Container::snapshot`,
//! `Transport::snapshot`, `Publisher::snapshot`, `Router::snapshot`); this is
//! the envelope, and the checks a reader makes before anything is taken.
//!
//! A newer binary reads every older version it knows; an older binary refuses
//! a newer version cleanly (see [`VERSION`] and [`read`]).

use std::os::fd::RawFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::container::ContainerRec;
use crate::reaper::ExitRec;
use crate::sandbox::snapshot::SandboxRec;
use crate::transport::ConnRec;

/// The version this binary writes, and the newest it reads. Version 2 adds
/// the processes' pidfds (`ProcessRec::pidfd`): a descriptor a version-1
/// reader would not know to take, so it must refuse the state rather than
/// leave the descriptor open and unowned. Version 3 adds the pod sandbox
/// (`State::sandbox`), with its holder's pidfd, for the same reason.
pub const VERSION: u32 = 3;

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
    /// The pod sandbox, if the shim serves one.
    #[serde(default)]
    pub sandbox: Option<SandboxRec>,
}

/// Writes the state file (0600).
pub fn write(path: &Path, state: &State) -> crate::error::Result<()> {
    let data = serde_json::to_vec(state).expect("the upgrade state serializes");
    crate::records::write_atomic(path, &data, 0o600)
}

/// Why a state cannot be taken over.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The state file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not JSON, or without a version.
    #[error("not a tether state: {0}")]
    NotState(#[source] serde_json::Error),
    /// Written by a newer binary.
    #[error("state version {0} is newer than this binary reads ({VERSION})")]
    Newer(u32),
    /// A version this binary knows, but malformed.
    #[error("state version {version}: {source}")]
    Malformed {
        /// Its version.
        version: u32,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// A stdio descriptor named for handover.
    #[error("state names descriptor {0}, a stdio descriptor")]
    Stdio(RawFd),
    /// A descriptor named twice (two owners).
    #[error("state names descriptor {0} twice")]
    Twice(RawFd),
}

/// Reads a state file this binary understands.
pub fn read(path: &Path) -> Result<State, StateError> {
    let data = std::fs::read(path).map_err(|source| StateError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&data)
}

/// Decodes a state and checks its descriptor numbers: each names one
/// descriptor the next binary takes ownership of, so a number below 3 (stdio)
/// or one given twice (two owners, a double close) refuses the whole state.
pub fn parse(data: &[u8]) -> Result<State, StateError> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version = serde_json::from_slice(data).map_err(StateError::NotState)?;
    if v.version > VERSION {
        return Err(StateError::Newer(v.version));
    }
    let state: State = serde_json::from_slice(data).map_err(|source| StateError::Malformed {
        version: v.version,
        source,
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for fd in state.descriptors() {
        if fd < 3 {
            return Err(StateError::Stdio(fd));
        }
        if !seen.insert(fd) {
            return Err(StateError::Twice(fd));
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
            c.descriptors(&mut all);
        }
        all.extend(self.sandbox.iter().filter_map(|s| s.pidfd));
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
        assert_eq!(s.early_exits[0].status, 137);
    }

    #[test]
    fn refuses_newer_versions_and_garbage_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(&p, V1.replace("\"version\":1", "\"version\":4")).unwrap();
        let e = read(&p).unwrap_err();
        assert!(matches!(e, StateError::Newer(4)), "{e}");
        std::fs::write(&p, "not json").unwrap();
        assert!(matches!(read(&p), Err(StateError::NotState(_))));
        let missing = read(&dir.path().join("missing"));
        assert!(matches!(missing, Err(StateError::Read { .. })));
    }

    fn process(exec_id: &str, pidfd: Option<RawFd>) -> crate::process::ProcessRec {
        crate::process::ProcessRec {
            exec_id: exec_id.into(),
            stdio: Default::default(),
            spec: Vec::new(),
            pid: 42,
            pidfd,
            phase: crate::process::PhaseRec::Running,
            size: None,
            stdin_closed: false,
            io: None,
        }
    }

    #[test]
    fn pidfds_are_handed_over_and_counted() {
        let mut state = parse(V1.as_bytes()).unwrap();
        state.version = VERSION;
        state.containers.push(ContainerRec {
            id: "c".into(),
            namespace: "n".into(),
            bundle: "/b".into(),
            options: Default::default(),
            restore_from: None,
            rootfs_mounted: false,
            kill_all_on_exit: false,
            paused: false,
            oom_seen: None,
            init: process("", Some(8)),
            execs: vec![process("e", Some(9)), process("old", None)],
        });
        let data = serde_json::to_vec(&state).unwrap();
        let back = parse(&data).unwrap();
        assert_eq!(back.descriptors(), vec![3, 7, 8, 9]);
        assert_eq!(back.containers[0].execs[1].pidfd, None);
        // A pidfd named twice (here: the connection's number) is refused.
        let twice = String::from_utf8(data)
            .unwrap()
            .replace("\"pidfd\":9", "\"pidfd\":7");
        assert!(matches!(parse(twice.as_bytes()), Err(StateError::Twice(7))));
    }

    #[test]
    fn refuses_a_descriptor_named_twice_or_stdio() {
        let twice = V1.replace("\"fd\":7", "\"fd\":3");
        let e = parse(twice.as_bytes()).unwrap_err();
        assert!(matches!(e, StateError::Twice(3)), "{e}");
        let stdio = V1.replace("\"listener\":3", "\"listener\":2");
        let e = parse(stdio.as_bytes()).unwrap_err();
        assert!(matches!(e, StateError::Stdio(2)), "{e}");
        assert_eq!(parse(V1.as_bytes()).unwrap().descriptors(), vec![3, 7]);
    }
}

//! What a sandbox leaves in its bundle for `delete`, which runs with the
//! daemon gone: `tether-sandbox.json` (not `sandbox`: containerd writes
//! that name into container bundles). The holder's exit goes in the
//! bundle's `init.exit`, as an init's does, so `delete` reports it.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::records::write_replacing_now;

/// The record's file name in the sandbox bundle.
pub const SANDBOX_FILE: &str = "tether-sandbox.json";

/// A sandbox, as `delete` needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// The sandbox id.
    pub id: String,
    /// The holder's pid (0 before Start).
    pub pid: u32,
    /// The holder's start time (`/proc/<pid>/stat` field 22), so a reused
    /// pid is never taken for it.
    pub pid_start: u64,
    /// The holder's cgroup leaf, if it has one.
    pub cgroup_leaf: Option<String>,
    /// Whether the pod has a shm of its own.
    pub shm: bool,
    /// The pod's containers this shim created, with their bundles: with
    /// the shim dead, `delete` of the sandbox removes them too (containerd
    /// 2.3 runs no `delete` for a container it reached through the
    /// sandbox's shim).
    #[serde(default)]
    pub members: Vec<Member>,
}

/// A container of the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// Its bundle.
    pub bundle: std::path::PathBuf,
}

impl SandboxRecord {
    /// Saves the record (atomically, 0600) in `bundle`.
    pub fn save(&self, bundle: &Path) -> Result<()> {
        let data = serde_json::to_vec(self).expect("a SandboxRecord always serializes");
        write_replacing_now(&bundle.join(SANDBOX_FILE), &data, 0o600)
    }

    /// The record in `bundle`, if there is a readable one.
    pub fn load(bundle: &Path) -> Option<SandboxRecord> {
        serde_json::from_slice(&fs::read(bundle.join(SANDBOX_FILE)).ok()?).ok()
    }

    /// Whether the holder it names is still that process.
    pub fn holder_alive(&self) -> bool {
        self.pid != 0 && start_time(self.pid) == Some(self.pid_start)
    }
}

/// A process's start time in clock ticks since boot; None once it is gone.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after the command start at 3 (state): start time is 22.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first().is_some_and(|s| *s == "Z" || *s == "X") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_liveness() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let r = SandboxRecord {
            id: "pod".into(),
            pid: me,
            pid_start: start_time(me).unwrap(),
            cgroup_leaf: Some("/kubepods/pod".into()),
            shm: true,
            members: vec![Member {
                id: "c1".into(),
                bundle: "/b/c1".into(),
            }],
        };
        r.save(dir.path()).unwrap();
        let back = SandboxRecord::load(dir.path()).unwrap();
        assert_eq!(back, r);
        assert!(back.holder_alive());
        let stale = SandboxRecord {
            pid_start: r.pid_start + 1,
            ..r
        };
        assert!(!stale.holder_alive());
    }
}

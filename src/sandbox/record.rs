//! What a sandbox leaves in its bundle for `delete`, which runs with the
//! daemon gone: `tether-sandbox.json` (not `sandbox`: containerd writes
//! that name into container bundles). The holder's exit goes in the
//! bundle's `init.exit`, as an init's does, so `delete` reports it.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::records::{write_replacing_now, RuntimeRecord};

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
    /// Its OCI runtime (binary, root), a copy of the bundle's: containerd
    /// may remove that bundle before it runs `delete` of the sandbox (its
    /// CRI does, when the dead shim's Task Delete fails).
    #[serde(default)]
    pub runtime: Option<RuntimeRecord>,
}

impl Member {
    /// The runtime that runs the container: its bundle's record, or else
    /// the copy kept here.
    pub fn runtime(&self) -> Option<RuntimeRecord> {
        RuntimeRecord::load(&self.bundle).or_else(|| self.runtime.clone())
    }
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
                runtime: None,
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

    /// A member's runtime comes from its bundle while there is one, and
    /// from the sandbox's copy once containerd removed the bundle.
    #[test]
    fn a_member_s_runtime_outlives_its_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let on_disk = RuntimeRecord {
            binary: "/usr/bin/crun".into(),
            root: "/run/containerd/crun/k8s.io".into(),
            systemd_cgroup: false,
            shim_pid: 7,
        };
        on_disk.save(dir.path()).unwrap();
        let kept = RuntimeRecord {
            binary: "runc".into(),
            ..on_disk.clone()
        };
        let m = Member {
            id: "c1".into(),
            bundle: dir.path().to_path_buf(),
            runtime: Some(kept.clone()),
        };
        assert_eq!(m.runtime(), Some(on_disk));
        std::fs::remove_file(dir.path().join(crate::records::RUNTIME_FILE)).unwrap();
        assert_eq!(m.runtime(), Some(kept));
        let old = Member { runtime: None, ..m };
        assert_eq!(old.runtime(), None);
        // A record written before members kept their runtime still reads.
        let back: Member = serde_json::from_str(r#"{"id":"c1","bundle":"/b/c1"}"#).unwrap();
        assert_eq!(back.runtime, None);
    }
}

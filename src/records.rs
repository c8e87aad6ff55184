//! Files the shim keeps in the bundle: written atomically, read tolerantly.
//!
//! | file           | writer         | reader                         |
//! |----------------|----------------|--------------------------------|
//! | `config.json`  | containerd     | runc; `start` and Create read a little of it ([`SpecRecord`]) |
//! | `address`      | `start`        | containerd 1.6/1.7 on restart  |
//! | `init.pid`     | runc           | the daemon, `delete`           |
//! | `runtime.json` | the daemon     | `delete` (which runc, which root) |
//! | `log.json`     | runc           | the daemon, for error messages |

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The container's OCI spec.
pub const SPEC_FILE: &str = "config.json";
/// The file `start` writes the socket address to.
pub const ADDRESS_FILE: &str = "address";
/// runc's pid file for the container's init process.
pub const INIT_PID_FILE: &str = "init.pid";
/// How `delete` finds the runtime the daemon used.
pub const RUNTIME_FILE: &str = "runtime.json";
/// runc's JSON log.
pub const RUNC_LOG_FILE: &str = "log.json";
/// The init process's exit, kept for `delete` after the daemon is gone.
pub const INIT_EXIT_FILE: &str = "init.exit";

/// Writes `data` to `path` so that a reader sees the old content or the new,
/// never a part, even after a machine crash: temporary file, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_replacing(path, data, mode, true)
}

/// Like [`write_atomic`] without the fsync: atomic for readers and across
/// the writer's own death (the page cache outlives any process), not across
/// a machine crash, which no container survives either. For the records the
/// daemon writes on its runtime thread (the exit status, the runtime used):
/// no wait on the disk, and no thread hop on the exit path (measured: a hop
/// to the blocking pool made B6's last exit 20-30 % later).
pub fn write_replacing_now(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_replacing(path, data, mode, false)
}

fn write_replacing(path: &Path, data: &[u8], mode: u32, sync: bool) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::Io {
            op: "write",
            path: path.to_path_buf(),
            source: e,
        }
    })
}

/// Which OCI runtime manages a container, as `delete` needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    /// Runtime binary (name or path).
    pub binary: String,
    /// The runtime's `--root`.
    pub root: PathBuf,
    /// Whether `--systemd-cgroup` was passed.
    pub systemd_cgroup: bool,
    /// The daemon serving the container (0: unknown), so `delete` can tell
    /// a dead daemon's socket from a live one's.
    #[serde(default)]
    pub shim_pid: u32,
}

impl RuntimeRecord {
    /// Saves the record in `bundle`.
    pub fn save(&self, bundle: &Path) -> Result<()> {
        let data = serde_json::to_vec(self).expect("a RuntimeRecord always serializes");
        write_replacing_now(&bundle.join(RUNTIME_FILE), &data, 0o600)
    }

    /// Loads the record from `bundle`, if there is a readable one.
    pub fn load(bundle: &Path) -> Option<RuntimeRecord> {
        let data = fs::read(bundle.join(RUNTIME_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }
}

/// An exit as it is kept on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Format version of this record.
    pub version: u32,
    /// The pid that exited.
    pub pid: u32,
    /// Exit code, or 128 + signal.
    pub status: u32,
    /// Exit time, seconds since the epoch.
    pub seconds: i64,
    /// Exit time, nanoseconds within the second.
    pub nanos: u32,
}

impl ExitRecord {
    /// The record of `status` at `at`.
    pub fn new(pid: u32, status: u32, at: std::time::SystemTime) -> ExitRecord {
        let d = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        ExitRecord {
            version: 1,
            pid,
            status,
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }

    /// The exit time.
    pub fn at(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::new(self.seconds.max(0) as u64, self.nanos)
    }

    /// Saves the record (atomically, through the page cache, 0600) in `bundle`.
    pub fn save(&self, bundle: &Path) -> Result<()> {
        let data = serde_json::to_vec(self).expect("an ExitRecord always serializes");
        write_replacing_now(&bundle.join(INIT_EXIT_FILE), &data, 0o600)
    }

    /// The record in `bundle`, if there is a readable one.
    pub fn load(bundle: &Path) -> Option<ExitRecord> {
        let data = fs::read(bundle.join(INIT_EXIT_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }
}

/// What the shim itself reads of the bundle's OCI spec (the rest is runc's):
/// the one parse of `config.json` for `start` (the grouping annotations)
/// and Create (the pid namespace).
#[derive(Debug, Default, Deserialize)]
pub struct SpecRecord {
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    linux: Option<SpecLinux>,
}

#[derive(Debug, Default, Deserialize)]
struct SpecLinux {
    #[serde(default)]
    namespaces: Vec<SpecNamespace>,
}

#[derive(Debug, Deserialize)]
struct SpecNamespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

impl SpecRecord {
    /// The spec in `bundle`; None when it is missing or does not parse.
    pub fn load(bundle: &Path) -> Option<SpecRecord> {
        let data = fs::read(bundle.join(SPEC_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Whether the container gets a pid namespace of its own: one without a
    /// path (a new one), not one joined by path (e.g. the host's).
    pub fn has_own_pid_namespace(&self) -> bool {
        self.linux.as_ref().is_some_and(|l| {
            l.namespaces
                .iter()
                .any(|n| n.kind == "pid" && n.path.is_empty())
        })
    }
}

/// Reads a pid file as runc writes it; None when missing or unreadable.
pub fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("address");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left"
        );
    }

    #[test]
    fn exit_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ExitRecord::load(dir.path()), None);
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123);
        let r = ExitRecord::new(42, 7, at);
        r.save(dir.path()).unwrap();
        let back = ExitRecord::load(dir.path()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.at(), at);
    }

    #[test]
    fn spec_record_reads_annotations_and_the_pid_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let load = |s: &str| {
            fs::write(dir.path().join(SPEC_FILE), s).unwrap();
            SpecRecord::load(dir.path())
        };
        let own = |s: &str| load(s).unwrap().has_own_pid_namespace();
        assert!(own(
            r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#
        ));
        assert!(!own(r#"{"linux":{"namespaces":[{"type":"mount"}]}}"#));
        assert!(!own(
            r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#
        ));
        assert!(!own("{}"));
        let spec = load(r#"{"annotations":{"a":"b"},"process":{"args":["sh"]}}"#).unwrap();
        assert_eq!(spec.annotations.get("a").map(String::as_str), Some("b"));
        assert!(load("not json").is_none());
        fs::remove_file(dir.path().join(SPEC_FILE)).unwrap();
        assert!(SpecRecord::load(dir.path()).is_none());
    }

    #[test]
    fn runtime_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let r = RuntimeRecord {
            binary: "runc".into(),
            root: "/run/containerd/runc/default".into(),
            systemd_cgroup: false,
            shim_pid: 7,
        };
        r.save(dir.path()).unwrap();
        assert_eq!(RuntimeRecord::load(dir.path()), Some(r));
        assert_eq!(read_pid(&dir.path().join("nope")), None);
    }
}

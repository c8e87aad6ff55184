//! The OCI runtime spec: the one `tetherctl run --rootfs` writes (what
//! `runc spec` gives, made non-interactive and filled from the command
//! line), and [`BundleSpec`], the one reader of a bundle's config.json.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A bundle's config.json as tetherctl reads it: the fields it looks at or
/// changes, typed; every other field kept as it was, so writing it back or
/// passing its process on loses nothing.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BundleSpec {
    /// The container's root.
    #[serde(default)]
    pub root: Root,
    /// The container's process.
    #[serde(default)]
    pub process: Process,
    /// The rest of the spec.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `root`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Root {
    /// The root filesystem, absolute or relative to the bundle (none: the
    /// bundle's `rootfs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The rest of `root` (`readonly`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `process`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Process {
    /// Whether the process has a terminal.
    #[serde(default)]
    pub terminal: bool,
    /// Command and arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// The rest of `process` (env, cwd, user, capabilities, ...).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl BundleSpec {
    /// Reads `bundle`/config.json.
    pub fn read(bundle: &Path) -> Result<BundleSpec> {
        let path = bundle.join("config.json");
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// What the command line says about the container's process.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Command and arguments.
    pub args: Vec<String>,
    /// `K=V` pairs added to the default PATH.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: Option<String>,
    /// User and group ids.
    pub user: Option<(u32, u32)>,
    /// Whether the process gets a terminal.
    pub terminal: bool,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities a container gets by default (Docker's and runc's set).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The process object of a spec.
pub fn process(p: &ProcessOptions) -> Value {
    let mut env = vec![DEFAULT_PATH.to_string()];
    env.extend(p.env.iter().cloned());
    if p.terminal {
        env.push("TERM=xterm".into());
    }
    let (uid, gid) = p.user.unwrap_or((0, 0));
    json!({
        "terminal": p.terminal,
        "user": {"uid": uid, "gid": gid},
        "args": p.args,
        "env": env,
        "cwd": p.cwd.as_deref().unwrap_or("/"),
        "capabilities": {
            "bounding": CAPABILITIES,
            "effective": CAPABILITIES,
            "permitted": CAPABILITIES,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": true,
    })
}

/// The kernel's limit on a hostname (HOST_NAME_MAX); container ids may be
/// longer (76).
const HOSTNAME_MAX: usize = 64;

/// A whole spec for a container with its root at `rootfs` (absolute). The
/// hostname is `hostname` cut to what the kernel takes (ids are ASCII).
pub fn spec(hostname: &str, rootfs: &str, p: &ProcessOptions, memory: Option<u64>) -> Value {
    let hostname = hostname.get(..HOSTNAME_MAX).unwrap_or(hostname);
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(limit) = memory {
        resources["memory"] = json!({"limit": limit});
    }
    json!({
        "ociVersion": "1.0.2",
        "process": process(p),
        "root": {"path": rootfs, "readonly": false},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
        ],
        "linux": {
            "resources": resources,
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"},
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_the_command_line() {
        let p = ProcessOptions {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            cwd: Some("/tmp".into()),
            user: Some((1000, 100)),
            terminal: true,
        };
        let s = spec("c1", "/srv/rootfs", &p, Some(64 << 20));
        assert_eq!(s["process"]["args"][2], "echo hi");
        assert_eq!(s["process"]["env"][1], "A=1");
        assert_eq!(s["process"]["user"]["uid"], 1000);
        assert_eq!(s["process"]["cwd"], "/tmp");
        assert_eq!(s["process"]["terminal"], true);
        assert_eq!(s["root"]["path"], "/srv/rootfs");
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["hostname"], "c1");
        let long = "x".repeat(76);
        let s = spec(&long, "/srv/rootfs", &p, None);
        assert_eq!(s["hostname"], "x".repeat(64));
    }

    #[test]
    fn bundle_spec_keeps_what_it_does_not_type() {
        let p = ProcessOptions {
            args: vec!["true".into()],
            terminal: true,
            ..ProcessOptions::default()
        };
        let written = spec("c1", "/srv/rootfs", &p, None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), written.to_string()).unwrap();
        let read = BundleSpec::read(dir.path()).unwrap();
        assert!(read.process.terminal);
        assert_eq!(
            read.process.args.as_deref(),
            Some(&["true".to_string()][..])
        );
        assert_eq!(read.root.path.as_deref(), Some("/srv/rootfs"));
        assert_eq!(serde_json::to_value(&read).unwrap(), written);
    }

    #[test]
    fn bundle_spec_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"ociVersion": "1.0.2"}"#).unwrap();
        let read = BundleSpec::read(dir.path()).unwrap();
        assert!(!read.process.terminal);
        assert_eq!(read.process.args, None);
        assert_eq!(read.root.path, None);
        let err = BundleSpec::read(&dir.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("config.json"), "{err:#}");
    }
}

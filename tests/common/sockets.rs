//! Unix sockets on the host (from /proc/net/unix and /proc/<pid>/fd), the
//! shim socket directory /run/containerd/s, and connecting to a socket as
//! another user.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::procs::ProcInfo;
use super::SHIM_SOCKET_DIR;

/// `unix:///path` (or a bare absolute path) to the path; `None` for
/// abstract (`unix://@...`) or other addresses.
pub fn socket_path_of_address(addr: &str) -> Option<PathBuf> {
    let p = addr.strip_prefix("unix://").unwrap_or(addr);
    p.starts_with('/').then(|| PathBuf::from(p))
}

/// One socket from /proc/net/unix.
#[derive(Debug, Clone)]
pub struct UnixSocket {
    pub inode: u64,
    /// Bound name; abstract names start with `@`. `None` if unbound.
    pub path: Option<String>,
    pub line: String,
}

/// Parses /proc/net/unix (this network namespace).
pub fn unix_sockets() -> Vec<UnixSocket> {
    fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(UnixSocket {
                inode: f.get(6)?.parse().ok()?,
                path: f.get(7).map(|s| s.to_string()),
                line: l.to_string(),
            })
        })
        .collect()
}

/// Paths that some live socket is bound to.
pub fn bound_unix_paths() -> HashSet<String> {
    unix_sockets().into_iter().filter_map(|s| s.path).collect()
}

/// Sockets of /proc/net/unix owned (by fd) by process `pid`.
pub fn sockets_of(pid: i32) -> Vec<UnixSocket> {
    let Some(p) = ProcInfo::read(pid) else {
        return Vec::new();
    };
    let inodes: HashSet<u64> = p.socket_inodes().into_iter().collect();
    unix_sockets()
        .into_iter()
        .filter(|s| inodes.contains(&s.inode))
        .collect()
}

/// The entries of /run/containerd/s at one moment.
#[derive(Debug, Clone, Default)]
pub struct SocketDirSnapshot(pub BTreeSet<PathBuf>);

impl SocketDirSnapshot {
    /// Lists /run/containerd/s now.
    pub fn take() -> SocketDirSnapshot {
        SocketDirSnapshot(socket_dir_entries())
    }

    /// Entries of /run/containerd/s among `own` (the paths the test's own
    /// shims would use; other tests create shims there at the same time)
    /// that were not in the snapshot and that no live socket is bound to (a
    /// shim that exited and left its file).
    pub fn stale_new(&self, own: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
        let bound = bound_unix_paths();
        socket_dir_entries()
            .into_iter()
            .filter(|p| own.contains(p) && !self.0.contains(p))
            .filter(|p| !bound.contains(&p.display().to_string()))
            .collect()
    }
}

/// Entries of /run/containerd/s.
pub fn socket_dir_entries() -> BTreeSet<PathBuf> {
    match fs::read_dir(SHIM_SOCKET_DIR) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("reading {SHIM_SOCKET_DIR}: {e}"),
    }
}

/// Connects to `socket` as root with group `gid`; true when the shim closed
/// the connection at once (refused), false when it kept it open.
pub fn refused_for_gid(socket: &Path, gid: u32) -> bool {
    refused_for(socket, 0, gid)
}

/// Connects to `socket` as `uid`:`gid`; true when the connection was not
/// allowed (the socket's permissions) or the shim closed it at once.
pub fn refused_for(socket: &Path, uid: u32, gid: u32) -> bool {
    matches!(
        probe_connect(socket, uid, gid, false).as_str(),
        "denied" | "closed"
    )
}

/// Connects to `socket` as `uid`:`gid` (with CAP_DAC_OVERRIDE, to get past
/// the socket's mode bits, when `dac_override`) and says what happened:
/// "denied" (connect refused), "closed" (the shim closed it at once),
/// "open" (kept open for 2 s) or "data".
pub fn probe_connect(socket: &Path, uid: u32, gid: u32, dac_override: bool) -> String {
    let probe = "import socket,sys\n\
                 s=socket.socket(socket.AF_UNIX)\n\
                 try:\n    s.connect(sys.argv[1])\n\
                 except PermissionError:\n    print('denied'); sys.exit(0)\n\
                 s.settimeout(2)\n\
                 try:\n    print('closed' if s.recv(1)==b'' else 'data')\n\
                 except socket.timeout:\n    print('open')\n";
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups");
    if dac_override {
        cmd.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
    }
    let out = cmd
        .args(["/usr/bin/python3", "-c", probe])
        .arg(socket)
        .output()
        .expect("setpriv and python3 run the probe");
    let verdict = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        ["closed", "open", "denied", "data"].contains(&verdict.as_str()),
        "probe failed: {verdict} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    verdict
}

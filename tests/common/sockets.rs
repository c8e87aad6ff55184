//! Unix sockets (from /proc/<pid>/net/unix, the network namespace of a
//! process, and /proc/<pid>/fd), the shim socket directory
//! /run/containerd/s, and connecting to a socket as another user.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::procs::ProcInfo;

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
    unix_sockets_in("/proc/net/unix")
}

/// Parses the /proc/net/unix of the network namespace of process `pid`
/// (`/proc/<pid>/net/unix`).
pub fn unix_sockets_of_netns(pid: u32) -> Vec<UnixSocket> {
    unix_sockets_in(&format!("/proc/{pid}/net/unix"))
}

fn unix_sockets_in(file: &str) -> Vec<UnixSocket> {
    fs::read_to_string(file)
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

/// Paths that some live socket of this network namespace is bound to.
pub fn bound_unix_paths() -> HashSet<String> {
    unix_sockets().into_iter().filter_map(|s| s.path).collect()
}

/// Paths that some live socket of the network namespace of process `pid`
/// is bound to (as the binding process named them).
pub fn bound_unix_paths_of_netns(pid: u32) -> HashSet<String> {
    unix_sockets_of_netns(pid)
        .into_iter()
        .filter_map(|s| s.path)
        .collect()
}

/// Sockets owned (by fd) by process `pid`, from its network namespace's
/// /proc/net/unix.
pub fn sockets_of(pid: i32) -> Vec<UnixSocket> {
    let Some(p) = ProcInfo::read(pid) else {
        return Vec::new();
    };
    let inodes: HashSet<u64> = p.socket_inodes().into_iter().collect();
    unix_sockets_of_netns(pid as u32)
        .into_iter()
        .filter(|s| inodes.contains(&s.inode))
        .collect()
}

/// The entries of a shim socket directory at one moment (the paths as the
/// shims name them: `Containerd::socket_dir_snapshot` takes one of its
/// environment's /run/containerd/s).
#[derive(Debug, Clone, Default)]
pub struct SocketDirSnapshot(pub BTreeSet<PathBuf>);

/// The entries of `host_dir` (where the host reaches the directory), named
/// as under `dir` (where the shims see it).
pub fn socket_dir_entries(dir: &Path, host_dir: &Path) -> BTreeSet<PathBuf> {
    match fs::read_dir(host_dir) {
        Ok(entries) => entries.flatten().map(|e| dir.join(e.file_name())).collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("reading {}: {e}", host_dir.display()),
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

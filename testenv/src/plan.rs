//! What the supervisor hands the environment's init: a TOML file in the
//! environment's dir, read by `testenv __init PLAN`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::Hierarchy;

/// Everything init does, in order.
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The environment's private dir.
    pub dir: PathBuf,
    /// Init's command (empty: wait to be killed).
    pub command: Vec<String>,
    /// The command's extra environment.
    pub env: Vec<(String, String)>,
    /// The environment cgroup's `cgroup.procs` files (host paths).
    pub cgroup_procs: Vec<PathBuf>,
    /// Those a process joining the running environment writes to (host
    /// paths; see `Cgroup::member_procs_files`).
    #[serde(default)]
    pub member_procs: Vec<PathBuf>,
    /// The cgroup filesystems to mount again inside.
    pub hierarchies: Vec<Hierarchy>,
    /// The local registry, if any.
    pub registry: Option<Registry>,
    /// containerd, if any.
    pub containerd: Option<Daemon>,
}

/// The local registry (docker-registry) on 127.0.0.1 inside.
#[derive(Debug, Serialize, Deserialize)]
pub struct Registry {
    /// docker-registry.
    pub binary: PathBuf,
    /// Its config.yml.
    pub config: PathBuf,
    /// Its port.
    pub port: u16,
    /// Its log.
    pub log: PathBuf,
    /// OCI layouts with an images.txt (`REF NAME` a line) to push.
    pub images: Vec<PathBuf>,
}

/// containerd.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Daemon {
    /// The binary.
    pub binary: PathBuf,
    /// Its config.
    pub config: PathBuf,
    /// Its socket.
    pub address: PathBuf,
    /// Its PATH (the handlers' shims and runc first).
    pub path: String,
    /// More variables it runs with (e.g. `NOTIFY_SOCKET`).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Its log (appended to).
    pub log: PathBuf,
    /// Where its PID goes.
    pub pid_file: PathBuf,
    /// A cgroup of its own inside the environment's (`NAME`), if asked.
    pub cgroup: Option<String>,
}

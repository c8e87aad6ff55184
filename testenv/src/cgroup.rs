//! The environment's cgroup: one directory `testenv-ID` under the caller's
//! own cgroup in every hierarchy mounted under /sys/fs/cgroup (the v1
//! controllers, `name=systemd` and the unified v2 one alike).
//!
//! Everything an environment runs descends from its init, which joins this
//! cgroup and then takes a cgroup namespace rooted there, with the cgroup
//! filesystems mounted afresh inside. What it and its descendants see as
//! `/sys/fs/cgroup/HIERARCHY` is this directory: containerd's and runc's
//! absolute cgroup paths (`/k8s.io/ID`, `/NAMESPACE/ID`, kubelet's
//! `/kubepods`), a shim that moves itself, a container that nests its own
//! cgroups, all land below it. A process leaves a cgroup only for another
//! one it can see, so none leaves this subtree; double-forked shims keep the
//! cgroup they were forked in. Hence teardown is [`Cgroup::kill_all`]:
//! SIGKILL every process of the subtree (through `cgroup.kill` of the v2
//! directory and by PID from every v1 `cgroup.procs`), thaw every freezer
//! cgroup of it (a paused container dies only once thawed), until the subtree
//! is empty; then [`Cgroup::remove`].
//!
//! In a cgroup v2 hierarchy a cgroup whose children have controllers takes
//! no process of its own (only the real root may): the environment's own
//! processes (init, containerd, what joins later) live in its leaf
//! [`V2_LEAF`] there, so runc may enable controllers for the containers'
//! cgroups beside it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The leaf of the environment's cgroup, in a v2 hierarchy, where its own
/// processes are (`/init` as they see it).
pub const V2_LEAF: &str = "init";

/// A cgroup filesystem as mounted on the host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mountpoint: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// The mount data that names it again: the controllers (`cpu,cpuacct`)
    /// or `name=systemd`; empty for v2.
    pub data: String,
}

impl Hierarchy {
    /// Every cgroup hierarchy in `mountinfo` (the text of
    /// /proc/self/mountinfo), with the mount root of each.
    pub fn parse_mountinfo(mountinfo: &str) -> Vec<(Hierarchy, String)> {
        let mut out = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(mountpoint), Some(fstype), Some(opts)) =
                (left.get(3), left.get(4), right.first(), right.get(2))
            else {
                continue;
            };
            if *fstype != "cgroup" && *fstype != "cgroup2" {
                continue;
            }
            let data = if *fstype == "cgroup" {
                opts.split(',')
                    .filter(|o| *o != "rw" && *o != "ro")
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                String::new()
            };
            out.push((
                Hierarchy {
                    mountpoint: PathBuf::from(mountpoint),
                    fstype: fstype.to_string(),
                    data,
                },
                root.to_string(),
            ));
        }
        out
    }

    /// The controllers as /proc/PID/cgroup names them (`cpu,cpuacct`,
    /// `name=systemd`, empty for v2), as a sorted list.
    fn key(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .data
            .split(',')
            .filter(|o| !o.is_empty() && (!o.contains('=') || o.starts_with("name=")))
            .filter(|o| !V1_MOUNT_OPTIONS.contains(o))
            .map(str::to_string)
            .collect();
        k.sort();
        k
    }

    /// The freezer's own hierarchy.
    fn is_freezer(&self) -> bool {
        self.key().iter().any(|c| c == "freezer")
    }
}

/// cgroup v1 mount options that are not controllers.
const V1_MOUNT_OPTIONS: &[&str] = &[
    "none",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// The path of the process in hierarchy `h`, from /proc/PID/cgroup's text.
fn path_in(h: &Hierarchy, proc_cgroup: &str) -> Option<String> {
    let key = h.key();
    proc_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let mut c: Vec<String> = controllers
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        c.sort();
        (c == key).then(|| path.to_string())
    })
}

/// Gives a new v1 cpuset cgroup `dir` its parent's CPUs and memory nodes
/// (it starts with none, and no process could join it); elsewhere (v2,
/// where an empty set is the parent's) a no-op.
pub fn inherit_cpuset(dir: &Path, parent: &Path) -> io::Result<()> {
    if dir.join("cgroup.controllers").exists() {
        return Ok(());
    }
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if fs::read_to_string(dir.join(f)).is_ok_and(|v| v.trim().is_empty()) {
            fs::write(dir.join(f), fs::read_to_string(parent.join(f))?)?;
        }
    }
    Ok(())
}

/// One environment's cgroup directory in each hierarchy (host paths).
#[derive(Clone, Debug)]
pub struct Cgroup {
    /// (hierarchy, the directory).
    pub dirs: Vec<(Hierarchy, PathBuf)>,
}

impl Cgroup {
    /// Makes `NAME` under the calling process's cgroup in every hierarchy.
    /// A new v1 cpuset cgroup gets its parent's CPUs and memory nodes.
    pub fn create(name: &str) -> io::Result<Cgroup> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let own = fs::read_to_string("/proc/self/cgroup")?;
        let mut cg = Cgroup { dirs: Vec::new() };
        for (h, root) in Hierarchy::parse_mountinfo(&mountinfo) {
            let path = path_in(&h, &own).ok_or_else(|| {
                io::Error::other(format!("not in any cgroup of {}", h.mountpoint.display()))
            })?;
            let rel = Path::new(&path)
                .strip_prefix(&root)
                .unwrap_or(Path::new(""))
                .to_path_buf();
            let parent = h.mountpoint.join(rel);
            let dir = parent.join(name);
            fs::create_dir(&dir)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
            cg.dirs.push((h, dir.clone()));
            inherit_cpuset(&dir, &parent)?;
        }
        if cg.dirs.is_empty() {
            return Err(io::Error::other("no cgroup hierarchy is mounted"));
        }
        Ok(cg)
    }

    /// The `cgroup.procs` files a process writes its PID to, to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|(_, d)| d.join("cgroup.procs"))
            .collect()
    }

    /// The `cgroup.procs` files a process joining the running environment
    /// writes its PID to: the environment's directory in a v1 hierarchy,
    /// its leaf [`V2_LEAF`] in a v2 one.
    pub fn member_procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|(h, d)| match h.fstype.as_str() {
                "cgroup2" => d.join(V2_LEAF).join("cgroup.procs"),
                _ => d.join("cgroup.procs"),
            })
            .collect()
    }

    /// Every PID in the subtree, in any hierarchy.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .flat_map(|(_, d)| subtree(d))
            .flat_map(|d| {
                fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process of the subtree until there is none left, or
    /// fails after `timeout` naming the ones left.
    pub fn kill_all(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            for (h, d) in &self.dirs {
                if h.fstype == "cgroup2" {
                    // (ENOENT before Linux 5.14: the PIDs below do it.)
                    let _ = fs::write(d.join("cgroup.kill"), "1");
                }
            }
            let pids = self.pids();
            for &pid in &pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            for (h, d) in &self.dirs {
                if h.is_freezer() {
                    for c in subtree(d) {
                        let _ = fs::write(c.join("freezer.state"), "THAWED");
                    }
                }
            }
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "processes still in the cgroup after {timeout:?}: {pids:?}"
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes the (empty) subtree in every hierarchy, deepest first; fails
    /// after `timeout` naming what is left.
    pub fn remove(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut left = Vec::new();
            for (_, d) in &self.dirs {
                let mut dirs = subtree(d);
                dirs.reverse();
                for c in dirs {
                    if let Err(e) = fs::remove_dir(&c) {
                        if e.kind() != io::ErrorKind::NotFound {
                            left.push(format!("{}: {e}", c.display()));
                        }
                    }
                }
            }
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "cgroups left: {}",
                    left.join("; ")
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `dir` and every cgroup below it, parents before children.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out.retain(|d| d.exists());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
    const PROC_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/c6e6
1:cpu,cpuacct:/a
0::/b
";

    #[test]
    fn hierarchies_and_own_paths_come_from_proc() {
        let hs = Hierarchy::parse_mountinfo(MOUNTINFO);
        let found: Vec<(&str, &str, Option<String>)> = hs
            .iter()
            .map(|(h, _)| (h.fstype.as_str(), h.data.as_str(), path_in(h, PROC_CGROUP)))
            .collect();
        assert_eq!(
            found,
            [
                ("cgroup", "cpu,cpuacct", Some("/a".into())),
                ("cgroup", "memory", Some("/process_api/c6e6".into())),
                ("cgroup", "xattr,name=systemd", Some("/".into())),
                ("cgroup2", "", Some("/b".into())),
            ]
        );
        assert!(hs.iter().all(|(_, root)| root == "/"));
    }
}

//! A container's cgroups: where they are, and what they count.
//!
//! The paths are found once, from the init process's `/proc/<pid>/cgroup`
//! right after `runc create`, and kept: after the init exits that file is
//! gone. cgroup v1 (one directory per controller, resolved through the
//! host's cgroup mounts) and the unified v2 hierarchy are both read by hand:
//! every file involved is flat `key value` text.

mod kill;
pub mod kmsg;
pub mod oom;
pub mod stats;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a container's cgroup lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// cgroup v1: a directory per controller (`memory`, `cpuacct`, ...).
    V1(HashMap<String, PathBuf>),
    /// The unified hierarchy: one directory.
    V2(PathBuf),
}

/// The v2 mount point when the host runs the unified hierarchy only.
const UNIFIED_ROOT: &str = "/sys/fs/cgroup";

impl Cgroup {
    /// The cgroup of process `pid`.
    pub fn of_pid(pid: u32) -> Option<Cgroup> {
        let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        if Path::new(UNIFIED_ROOT).join("cgroup.controllers").exists() {
            let rel = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
            return Some(Cgroup::V2(join(Path::new(UNIFIED_ROOT), rel)));
        }
        let mounts = v1_mounts(&fs::read_to_string("/proc/self/mountinfo").ok()?);
        Some(Cgroup::V1(v1_dirs(&membership, &mounts)))
    }

    /// The directory of a v1 controller.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        match self {
            Cgroup::V1(dirs) => dirs.get(controller).map(PathBuf::as_path),
            Cgroup::V2(_) => None,
        }
    }

    /// How many times the kernel's OOM killer has killed in this cgroup, if
    /// the cgroup still exists. On v2, group kills (memory.oom.group) count
    /// too: the growth of either counter is a kill.
    pub fn oom_kills(&self) -> Option<u64> {
        match self {
            Cgroup::V1(dirs) => {
                let dir = dirs.get("memory")?;
                key_values(&dir.join("memory.oom_control"))
                    .get("oom_kill")
                    .copied()
            }
            Cgroup::V2(dir) => {
                let events = key_values(&dir.join("memory.events"));
                let kills = events.get("oom_kill").copied()?;
                Some(kills + events.get("oom_group_kill").copied().unwrap_or(0))
            }
        }
    }

    /// The cgroup's statistics, as the Any containerd expects from Stats.
    pub fn stats(&self) -> Result<protobuf::well_known_types::any::Any> {
        let gone = || Error::NotFound("the container's cgroup no longer exists".into());
        match self {
            Cgroup::V1(dirs) => {
                let own = ["memory", "cpuacct", "pids"]
                    .iter()
                    .filter_map(|c| dirs.get(*c));
                if !own.into_iter().any(|d| d.exists()) {
                    return Err(gone());
                }
                Ok(crate::events::any(&crate::cgroup::stats::v1(dirs)))
            }
            Cgroup::V2(dir) => {
                if !dir.exists() {
                    return Err(gone());
                }
                Ok(crate::events::any(&crate::cgroup::stats::v2(dir)))
            }
        }
    }
}

/// The directories of the cgroup at `path` (relative to the hierarchy
/// roots): one per v1 hierarchy, or the unified one. They need not exist.
pub fn hierarchy_dirs(path: &str) -> Result<Vec<PathBuf>> {
    if Path::new(UNIFIED_ROOT).join("cgroup.controllers").exists() {
        return Ok(vec![join(Path::new(UNIFIED_ROOT), path)]);
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(Error::io("read", "/proc/self/mountinfo"))?;
    Ok(v1_mounts(&mountinfo)
        .into_iter()
        .map(|m| join(&m.point, path))
        .collect())
}

impl Cgroup {
    /// The cgroup at `path` (relative to the hierarchy roots), in every
    /// hierarchy it is in.
    pub fn at(path: &str) -> Result<Cgroup> {
        if Path::new(UNIFIED_ROOT).join("cgroup.controllers").exists() {
            return Ok(Cgroup::V2(join(Path::new(UNIFIED_ROOT), path)));
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(Error::io("read", "/proc/self/mountinfo"))?;
        let mut dirs = HashMap::new();
        for m in v1_mounts(&mountinfo) {
            let dir = join(&m.point, path);
            for c in m.controllers {
                dirs.insert(c, dir.clone());
            }
        }
        Ok(Cgroup::V1(dirs))
    }
}

/// Moves `pid` into the cgroup at `path` (relative to the hierarchy roots),
/// in every hierarchy where that cgroup exists. Returns how many it joined.
pub fn add_pid(path: &str, pid: u32) -> Result<usize> {
    let mut joined = 0;
    for dir in hierarchy_dirs(path)?.iter().filter(|d| d.is_dir()) {
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(Error::io("write", &procs))?;
        joined += 1;
    }
    if joined == 0 {
        return Err(Error::InvalidArgument(format!(
            "cgroup {path:?} does not exist"
        )));
    }
    Ok(joined)
}

/// `root` joined with an absolute cgroup path.
fn join(root: &Path, rel: &str) -> PathBuf {
    root.join(rel.trim_start_matches('/'))
}

/// One cgroup v1 mount: the controllers it carries, its root within the
/// hierarchy, and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct V1Mount {
    controllers: Vec<String>,
    root: String,
    point: PathBuf,
}

/// The cgroup v1 mounts in a mountinfo text.
fn v1_mounts(mountinfo: &str) -> Vec<V1Mount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if r.first() != Some(&"cgroup") || l.len() < 5 {
            continue;
        }
        let options = r.get(2).copied().unwrap_or_default();
        // Controller names, and named hierarchies (name=systemd); other mount
        // options (rw, xattr, ...) never match a controller looked up later.
        let controllers = options
            .split(',')
            .filter_map(|o| match o.strip_prefix("name=") {
                Some(name) => Some(name.to_string()),
                None => (!o.contains('=')).then(|| o.to_string()),
            })
            .collect();
        mounts.push(V1Mount {
            controllers,
            root: l[3].to_string(),
            point: PathBuf::from(l[4]),
        });
    }
    mounts
}

/// Controller → directory for a process's `/proc/<pid>/cgroup` text.
fn v1_dirs(membership: &str, mounts: &[V1Mount]) -> HashMap<String, PathBuf> {
    let mut dirs = HashMap::new();
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        for controller in list.split(',').filter(|c| !c.is_empty()) {
            let name = controller.trim_start_matches("name=");
            let Some(m) = mounts
                .iter()
                .find(|m| m.controllers.iter().any(|c| c == name))
            else {
                continue;
            };
            let rel = path.strip_prefix(m.root.as_str()).unwrap_or(path);
            dirs.insert(name.to_string(), join(&m.point, rel));
        }
    }
    dirs
}

/// A file of `key value` lines (memory.stat, cpu.stat, memory.events, ...).
pub fn key_values(path: &Path) -> HashMap<String, u64> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A file holding one number; "max" (no limit) and absent files are None.
pub fn number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
32 25 0:29 /nested /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";

    #[test]
    fn resolves_v1_controllers_through_mounts() {
        let mounts = v1_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        let membership = "\
4:memory:/ns/c1
3:cpu,cpuacct:/ns/c1
2:pids:/nested/ns/c1
1:name=systemd:/system.slice
0::/
";
        let dirs = v1_dirs(membership, &mounts);
        assert_eq!(dirs["memory"], Path::new("/sys/fs/cgroup/memory/ns/c1"));
        assert_eq!(
            dirs["cpuacct"],
            Path::new("/sys/fs/cgroup/cpu,cpuacct/ns/c1")
        );
        assert_eq!(dirs["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct/ns/c1"));
        assert_eq!(dirs["pids"], Path::new("/sys/fs/cgroup/pids/ns/c1"));
        assert_eq!(
            dirs["systemd"],
            Path::new("/sys/fs/cgroup/systemd/system.slice")
        );
    }

    #[test]
    fn reads_key_values_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 2\nmax 5\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(dir.path().join("pids.max"), "max\n").unwrap();
        fs::write(dir.path().join("pids.current"), "3\n").unwrap();
        assert_eq!(key_values(&dir.path().join("memory.events"))["oom_kill"], 1);
        assert_eq!(number(&dir.path().join("pids.max")), None);
        assert_eq!(number(&dir.path().join("pids.current")), Some(3));
        assert_eq!(Cgroup::V2(dir.path().into()).oom_kills(), Some(1));
    }
}

//! Processes on the host, read from /proc: `ProcInfo` snapshots, finding
//! the processes of a test, waiting for them to go, their descriptors, and
//! killing them by PID (never by name).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::mounts::unescape_mountinfo;
use super::util::poll_until;

/// A snapshot of one process from /proc.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    /// Start time in clock ticks since boot (identifies the process across
    /// PID reuse).
    pub starttime: u64,
    pub comm: String,
    pub cmdline: Vec<String>,
    /// `/proc/<pid>/exe` (without a ` (deleted)` suffix).
    pub exe: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
}

impl ProcInfo {
    /// Reads /proc/<pid>; `None` if it is gone.
    pub fn read(pid: i32) -> Option<ProcInfo> {
        let base = PathBuf::from(format!("/proc/{pid}"));
        let stat = fs::read_to_string(base.join("stat")).ok()?;
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let state = rest.first()?.chars().next()?;
        let ppid = rest.get(1)?.parse().ok()?;
        let starttime = rest.get(19)?.parse().ok()?;
        let cmdline = fs::read(base.join("cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let strip = |p: PathBuf| {
            let s = p.display().to_string();
            match s.strip_suffix(" (deleted)") {
                Some(t) => PathBuf::from(t),
                None => p,
            }
        };
        Some(ProcInfo {
            pid,
            ppid,
            state,
            starttime,
            comm,
            cmdline,
            exe: fs::read_link(base.join("exe")).ok().map(strip),
            cwd: fs::read_link(base.join("cwd")).ok(),
        })
    }

    /// Zombies (and dead entries) are not running anything any more. PID 1 of
    /// this machine does not reap orphans, so zombies may linger forever.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// True if one argument equals `s` (or ends in `=s`).
    pub fn has_arg(&self, s: &str) -> bool {
        self.cmdline
            .iter()
            .any(|a| a == s || a.strip_suffix(s).is_some_and(|p| p.ends_with('=')))
    }

    /// Cgroup paths from /proc/<pid>/cgroup (one per hierarchy).
    pub fn cgroup_paths(&self) -> Vec<String> {
        fs::read_to_string(format!("/proc/{}/cgroup", self.pid))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
            .collect()
    }

    /// The source directory of the process's root mount as seen from its
    /// mount namespace (field 4 of the `/` line of its mountinfo). For a
    /// container whose rootfs is a bind of a host directory this is that
    /// directory; for host processes it is `/`.
    pub fn root_source(&self) -> Option<PathBuf> {
        let text = fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).ok()?;
        // The last `/` mount in mountinfo is the one on top.
        text.lines().rev().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.get(4) != Some(&"/") {
                return None;
            }
            f.get(3).map(|r| PathBuf::from(unescape_mountinfo(r)))
        })
    }

    /// Inodes of the sockets this process has open (`socket:[N]` fds).
    pub fn socket_inodes(&self) -> Vec<u64> {
        let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", self.pid)) else {
            return Vec::new();
        };
        fds.flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .filter_map(|target| {
                let t = target.display().to_string();
                t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
            })
            .collect()
    }

    /// True if the process's root (see `root_source`) or cwd is at or under
    /// `dir`.
    pub fn is_rooted_under(&self, dir: &Path) -> bool {
        self.cwd.as_deref().is_some_and(|c| c.starts_with(dir))
            || self.root_source().is_some_and(|r| r.starts_with(dir))
    }

    /// One line for diagnostics.
    pub fn describe(&self) -> String {
        format!(
            "pid {} ppid {} state {} exe {:?} cwd {:?} cmdline {:?}",
            self.pid, self.ppid, self.state, self.exe, self.cwd, self.cmdline
        )
    }
}

/// Every process in /proc.
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(ProcInfo::read)
        .collect()
}

/// True if the process `pid` that started at `starttime` still runs (is
/// neither gone nor a zombie).
pub fn process_alive(pid: i32, starttime: u64) -> bool {
    ProcInfo::read(pid).is_some_and(|p| p.starttime == starttime && !p.is_zombie())
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    ProcInfo::read(pid as i32).is_some_and(|p| !p.is_zombie())
}

/// Whether `pid` is gone (or a zombie) within `limit`.
pub fn gone_within(pid: u32, limit: Duration) -> bool {
    poll_until(limit, || (!alive(pid)).then_some(())).is_some()
}

/// Children of `pid` that are zombies.
pub fn zombie_children(pid: u32) -> Vec<u32> {
    all_processes()
        .into_iter()
        .filter(|p| p.state == 'Z' && p.ppid == pid as i32)
        .map(|p| p.pid as u32)
        .collect()
}

/// How many descriptors `pid` has open (0 once it is gone).
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// What the descriptors of `pid` point at (none once it is gone).
pub fn fd_targets(pid: u32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
                .map(|t| t.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs `pid`, whether or not it is still there.
pub fn sigkill(pid: u32) {
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Live processes whose root (see `ProcInfo::root_source`) or cwd is under `dir`.
pub fn processes_rooted_under(dir: &Path) -> Vec<ProcInfo> {
    let me = std::process::id() as i32;
    all_processes()
        .into_iter()
        .filter(|p| p.pid != me && !p.is_zombie() && p.is_rooted_under(dir))
        .collect()
}

/// SIGKILLs (by PID) every live process matching `pred`, and all their live
/// descendants, repeating until none is left (bounded). Never this process
/// or its ancestors. Returns the PIDs signalled.
pub fn kill_processes_where(pred: impl Fn(&ProcInfo) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut protected: HashSet<i32> = HashSet::from([me, 1]);
    let mut cur = ProcInfo::read(me).map(|p| p.ppid);
    while let Some(pid) = cur {
        if pid <= 1 || !protected.insert(pid) {
            break;
        }
        cur = ProcInfo::read(pid).map(|p| p.ppid);
    }
    let mut killed = Vec::new();
    for _round in 0..20 {
        let procs = all_processes();
        let mut targets: HashSet<i32> = procs
            .iter()
            .filter(|p| !p.is_zombie() && !protected.contains(&p.pid) && pred(p))
            .map(|p| p.pid)
            .collect();
        // Add descendants (e.g. container processes of a shim).
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for p in &procs {
            if !p.is_zombie() {
                children.entry(p.ppid).or_default().push(p.pid);
            }
        }
        let mut stack: Vec<i32> = targets.iter().copied().collect();
        while let Some(pid) = stack.pop() {
            for c in children.get(&pid).into_iter().flatten() {
                if !protected.contains(c) && targets.insert(*c) {
                    stack.push(*c);
                }
            }
        }
        if targets.is_empty() {
            break;
        }
        for pid in &targets {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            killed.push(*pid);
        }
        thread::sleep(Duration::from_millis(100));
    }
    killed.sort_unstable();
    killed.dedup();
    killed
}

/// SIGKILLs a child of this process by PID and reaps it.
pub(super) fn kill_and_reap(mut child: Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}

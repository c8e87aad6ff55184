//! Signalling every process of a container through its cgroup, without the
//! runtime: what Kill falls back to when `runc kill` hangs.
//!
//! SIGKILL on cgroup v2 writes `cgroup.kill`, which the kernel applies to
//! every process of the cgroup and of those forked meanwhile. Otherwise the
//! cgroup is frozen first, so no process forks past the signal, each pid in
//! `cgroup.procs` (of the cgroup and its descendants) is signalled, and the
//! cgroup is thawed: always after SIGKILL (a frozen process dies only when
//! thawed), else only if it was not frozen before (a paused container stays
//! paused). runc's own `kill --all` works the same way.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Cgroup;
use crate::error::{Error, Result};

/// How long freezing may take before the signals go out anyway.
const FREEZE_LIMIT: Duration = Duration::from_secs(2);

/// The controllers whose v1 directory lists the container's processes, in
/// order of preference (the freezer's is the one that gets frozen).
const V1_LISTS: &[&str] = &["freezer", "pids", "memory", "cpuacct", "devices"];

impl Cgroup {
    /// Sends `signal` to every process in the cgroup; returns how many
    /// processes were signalled (None: all of them, through `cgroup.kill`).
    pub async fn signal_all(&self, signal: i32) -> Result<Option<usize>> {
        let kill = signal == libc::SIGKILL;
        let (dir, freezer) = match self {
            Cgroup::V2(dir) => {
                let file = dir.join("cgroup.kill");
                if kill && file.exists() {
                    fs::write(&file, "1").map_err(Error::io("write", &file))?;
                    return Ok(None);
                }
                (dir.clone(), Some(Freezer::V2(dir.clone())))
            }
            Cgroup::V1(dirs) => {
                let dir = V1_LISTS
                    .iter()
                    .filter_map(|c| dirs.get(*c))
                    .find(|d| d.is_dir())
                    .cloned()
                    .ok_or_else(|| {
                        Error::NotFound("the container's cgroup no longer exists".into())
                    })?;
                let freezer = dirs.get("freezer").cloned().map(Freezer::V1);
                (dir, freezer)
            }
        };
        let was_frozen = freezer.as_ref().is_some_and(Freezer::is_frozen);
        if let Some(f) = &freezer {
            f.freeze().await?;
        }
        let mut signalled = 0;
        for pid in procs_under(&dir) {
            if crate::sys::send_signal(pid, signal).is_ok() {
                signalled += 1;
            }
        }
        if let Some(f) = &freezer {
            if kill || !was_frozen {
                f.thaw()?;
            }
        }
        Ok(Some(signalled))
    }

    /// Whether the cgroup is frozen, or freezing, by whoever froze it (a
    /// Pause, or `runc pause` behind the shim's back): what `runc kill`
    /// looks at to thaw after a SIGKILL.
    pub fn is_frozen(&self) -> bool {
        match self {
            Cgroup::V2(dir) => Freezer::V2(dir.clone()).is_frozen(),
            Cgroup::V1(dirs) => dirs.get("freezer").is_some_and(|d| {
                matches!(
                    read(&d.join("freezer.state")).as_str(),
                    "FROZEN" | "FREEZING"
                )
            }),
        }
    }
}

/// A cgroup's freezer.
enum Freezer {
    /// v1: `freezer.state` in the freezer hierarchy.
    V1(PathBuf),
    /// v2: `cgroup.freeze`, reported in `cgroup.events`.
    V2(PathBuf),
}

impl Freezer {
    fn is_frozen(&self) -> bool {
        match self {
            Freezer::V1(dir) => read(&dir.join("freezer.state")) == "FROZEN",
            Freezer::V2(dir) => read(&dir.join("cgroup.events"))
                .lines()
                .any(|l| l.trim() == "frozen 1"),
        }
    }

    fn set(&self, frozen: bool) -> Result<()> {
        let (file, value) = match self {
            Freezer::V1(dir) => (
                dir.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Freezer::V2(dir) => (dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
        };
        fs::write(&file, value).map_err(Error::io("write", &file))
    }

    /// Freezes, and waits (bounded) until every process is frozen. On v2
    /// the wait is on `cgroup.events`, which the kernel changes when the
    /// cgroup is frozen; v1 has no such notice and may stay FREEZING until
    /// asked again, so it asks again every few milliseconds.
    async fn freeze(&self) -> Result<()> {
        let until = Instant::now() + FREEZE_LIMIT;
        match self {
            Freezer::V2(dir) => {
                // Watched before freezing, so the change cannot slip past.
                let changes = Changes::of(&dir.join("cgroup.events"));
                self.set(true)?;
                while !self.is_frozen() {
                    let changed = match &changes {
                        Some(changes) => changes.next(until).await,
                        // Not watchable (out of inotify instances): look
                        // again shortly, as v1 does.
                        None => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            Instant::now() < until
                        }
                    };
                    if !changed {
                        break;
                    }
                }
            }
            Freezer::V1(_) => {
                self.set(true)?;
                while !self.is_frozen() && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    self.set(true)?;
                }
            }
        }
        Ok(())
    }

    fn thaw(&self) -> Result<()> {
        self.set(false)
    }
}

/// Changes to a cgroup file, through inotify.
struct Changes {
    inotify: nix::sys::inotify::Inotify,
    ready: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Changes {
    /// Watches `file` for changes; None if it cannot be watched.
    fn of(file: &Path) -> Option<Changes> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?;
        inotify.add_watch(file, AddWatchFlags::IN_MODIFY).ok()?;
        let dup = std::os::fd::AsFd::as_fd(&inotify)
            .try_clone_to_owned()
            .ok()?;
        let ready = crate::sys::async_fd(dup).ok()?;
        Some(Changes { inotify, ready })
    }

    /// Waits for the next change until `until`; says whether one came.
    async fn next(&self, until: Instant) -> bool {
        let ready = tokio::time::timeout_at(until.into(), self.ready.readable()).await;
        match ready {
            Ok(Ok(mut guard)) => {
                let _ = guard.try_io(|_| Ok(self.inotify.read_events()?));
                true
            }
            _ => false,
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The pids in `cgroup.procs` of `dir` and of every cgroup below it.
fn procs_under(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = read(&dir.join("cgroup.procs"))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(procs_under(&e.path()));
            }
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_processes_of_nested_cgroups() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.procs"), "10\n11\n").unwrap();
        fs::create_dir(dir.path().join("child")).unwrap();
        fs::write(dir.path().join("child/cgroup.procs"), "12\n").unwrap();
        let mut pids = procs_under(dir.path());
        pids.sort_unstable();
        assert_eq!(pids, vec![10, 11, 12]);
    }

    #[test]
    fn reads_freezer_states() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("freezer.state"), "FROZEN\n").unwrap();
        assert!(Freezer::V1(dir.path().into()).is_frozen());
        fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(!Freezer::V2(dir.path().into()).is_frozen());
    }
}

//! Watching a container's cgroup for OOM kills.
//!
//! The kernel's own counter of OOM kills (`oom_kill` in v1's
//! memory.oom_control, v2's memory.events) is the truth: an event is
//! published only when it has grown since last seen, so a notification with
//! no kill behind it (v1 also signals when the cgroup is removed) reports
//! nothing. The watcher wakes on the kernel's notification; the exit path
//! checks the counter once more before publishing the init's exit, so a
//! `/tasks/oom` always comes before the `/tasks/exit` it caused. A watcher
//! knows its container only by id: it sends a notice to the monitor, which
//! asks the container to count and report.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::sys::eventfd::EfdFlags;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::router::{Notice, Notices};

/// The OOM kills already reported for a container.
#[derive(Debug, Default)]
pub struct OomSeen(AtomicU64);

impl OomSeen {
    /// Starts from the counter as it is now (a new cgroup: zero).
    pub fn baseline(cgroup: &Cgroup) -> OomSeen {
        OomSeen(AtomicU64::new(cgroup.oom_kills().unwrap_or(0)))
    }

    /// Starts from a count an earlier shim had reported.
    pub fn from_count(count: u64) -> OomSeen {
        OomSeen(AtomicU64::new(count))
    }

    /// The count reported so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Whether the counter is past what was reported (nothing recorded).
    pub fn would_grow(&self, cgroup: &Cgroup) -> bool {
        cgroup.oom_kills().is_some_and(|now| now > self.count())
    }

    /// Whether the counter grew past what was reported; records it if so.
    /// True at most once per growth, whoever asks.
    pub fn grew(&self, cgroup: &Cgroup) -> bool {
        let Some(now) = cgroup.oom_kills() else {
            return false;
        };
        let before = self.0.fetch_max(now, Ordering::AcqRel);
        now > before
    }
}

/// A running watch; it ends when the cgroup is removed, the container is
/// gone, or the handle is dropped.
pub struct Watch(tokio::task::JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a watch reports to, and for whom.
pub struct Target {
    /// The container whose cgroup is watched.
    pub container: String,
    /// The OOM kills already reported for it (shared with its exit path).
    pub seen: Arc<OomSeen>,
    /// The monitor's channel.
    pub notices: Notices,
}

impl Target {
    fn notify(&self) {
        let _ = self.notices.send(Notice::Oom {
            container: self.container.clone(),
        });
    }
}

/// Starts watching a container's cgroup.
pub fn watch(target: Target, cgroup: &Cgroup) -> Result<Watch> {
    match cgroup {
        Cgroup::V1(_) => {
            let dir = cgroup
                .v1_dir("memory")
                .ok_or_else(|| Error::NotFound("no memory cgroup to watch".into()))?
                .to_path_buf();
            watch_v1(target, cgroup.clone(), dir)
        }
        Cgroup::V2(dir) => watch_v2(target, dir.clone()),
    }
}

/// v1: an eventfd registered for memory.oom_control through
/// cgroup.event_control.
fn watch_v1(target: Target, cgroup: Cgroup, dir: PathBuf) -> Result<Watch> {
    let control_path = dir.join("memory.oom_control");
    let control = File::open(&control_path).map_err(Error::io("open", &control_path))?;
    #[allow(deprecated)]
    let efd = nix::sys::eventfd::eventfd(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(Error::sys("eventfd"))?;
    let register = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    let event_control = dir.join("cgroup.event_control");
    fs::write(&event_control, register).map_err(Error::io("write", &event_control))?;
    let efd = crate::sys::async_fd(efd).map_err(Error::io("register eventfd", &event_control))?;
    Ok(Watch(tokio::spawn(async move {
        let _control = control;
        loop {
            let Ok(mut guard) = efd.readable().await else {
                return;
            };
            let mut buf = [0u8; 8];
            let _ = guard.try_io(|fd| Ok(nix::unistd::read(fd.as_raw_fd(), &mut buf)?));
            if !control_path.exists() {
                return;
            }
            // The notification comes when the cgroup runs out of memory, a
            // moment before the kernel picks and kills a victim: give the
            // kill counter a short while to move. The monitor, not this
            // task, counts and reports it.
            for _ in 0..KILL_WAIT_STEPS {
                if target.seen.would_grow(&cgroup) {
                    target.notify();
                    break;
                }
                tokio::time::sleep(KILL_WAIT_STEP).await;
            }
        }
    })))
}

/// How long (steps × step) an OOM notification waits for the kill it
/// announces; an OOM the kernel resolved without killing reports nothing.
const KILL_WAIT_STEPS: u32 = 50;
const KILL_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(10);

/// v2: inotify on memory.events.
fn watch_v2(target: Target, dir: PathBuf) -> Result<Watch> {
    let events = dir.join("memory.events");
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(Error::sys("inotify_init"))?;
    inotify
        .add_watch(&events, AddWatchFlags::IN_MODIFY)
        .map_err(Error::sys("inotify_add_watch"))?;
    // A second descriptor of the same inotify instance, owned, for readiness.
    let ready = std::os::fd::AsFd::as_fd(&inotify)
        .try_clone_to_owned()
        .map_err(Error::io("dup inotify", &events))?;
    let ready = crate::sys::async_fd(ready).map_err(Error::io("register inotify", &events))?;
    Ok(Watch(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = ready.readable().await else {
                return;
            };
            let read = guard.try_io(|_| Ok(inotify.read_events()?));
            if let Ok(Ok(evs)) = read {
                if evs
                    .iter()
                    .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                {
                    return;
                }
            }
            target.notify();
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_counts_only_kills_and_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        let write = |oom: u32, kills: u32| {
            let text = format!("low 0\nhigh 0\nmax 9\noom {oom}\noom_kill {kills}\n");
            fs::write(&events, text).unwrap();
        };
        write(0, 0);
        let cg = Cgroup::V2(dir.path().into());
        let seen = OomSeen::baseline(&cg);
        assert!(!seen.grew(&cg));
        // The limit was hit, but nothing was killed: no OOM to report.
        write(1, 0);
        assert!(!seen.grew(&cg));
        write(2, 1);
        assert!(seen.grew(&cg), "a kill is reported");
        assert!(!seen.grew(&cg), "and only once");
        // A cgroup that is gone reports nothing.
        fs::remove_file(&events).unwrap();
        assert!(!seen.grew(&cg));
    }
}

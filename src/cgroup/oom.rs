//! Watching a container's cgroup for OOM kills.
//!
//! The kernel's own counters of OOM kills (`oom_kill` in v1's
//! memory.oom_control; `oom_kill` plus `oom_group_kill` in v2's
//! memory.events) are the truth: an event is published only when they have
//! grown since last reported, so a notification with no kill behind it (v1
//! also signals when the cgroup is removed, v2 when the limit is merely hit)
//! reports nothing, and kills from before the container (a reused cgroup)
//! never count.
//!
//! Reading and reporting are apart. The counter is read ("observed") as
//! early as anything hints at a kill: when the kernel notifies the watcher,
//! when the cgroup empties, and when the reaper hands over the init's exit.
//! That matters where the cgroup disappears with its last process: with the
//! systemd cgroup driver, systemd removes an emptied scope within
//! milliseconds, while the kernel may hold back memory.events' notification
//! of the kill for up to 20 ms (it rate-limits them). What was observed is
//! reported later by the monitor, and the exit path reports it before the
//! init's exit, so a `/tasks/oom` always comes before the `/tasks/exit` it
//! caused. A watcher knows its container only by id: it sends a notice to
//! the monitor, which asks the container to report.
//!
//! Reading early narrows the race with the cgroup manager but cannot close
//! it: systemd hears that the scope emptied when the shim does, and on a busy
//! CPU removes it first. For that case the exit path asks the kernel log
//! (`kmsg`) whether the init's SIGKILL was the OOM killer's.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use nix::sys::eventfd::EfdFlags;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::router::{Notice, Notices};
use crate::tasks::Tasks;

/// A container's OOM kills: the most the counter was seen at, and how many
/// of those were reported; and whether the cgroup was already gone the last
/// time anyone looked.
#[derive(Debug, Default)]
pub struct OomSeen {
    observed: AtomicU64,
    reported: AtomicU64,
    gone: AtomicBool,
    /// The count the watch started from.
    start: u64,
    /// When the watch started, on the kernel log's clock.
    since_us: u64,
}

impl OomSeen {
    /// Starts from the counter as it is now (a new cgroup: zero).
    pub fn baseline(cgroup: &Cgroup) -> OomSeen {
        OomSeen::from_count(cgroup.oom_kills().unwrap_or(0))
    }

    /// Starts from a count an earlier shim had reported.
    pub fn from_count(count: u64) -> OomSeen {
        OomSeen {
            observed: AtomicU64::new(count),
            reported: AtomicU64::new(count),
            gone: AtomicBool::new(false),
            start: count,
            since_us: crate::cgroup::kmsg::now_us(),
        }
    }

    /// The count reported so far.
    pub fn count(&self) -> u64 {
        self.reported.load(Ordering::Acquire)
    }

    /// Reads the counter, if the cgroup is still there, and keeps it.
    pub fn observe(&self, cgroup: &Cgroup) {
        match cgroup.oom_kills() {
            Some(now) => {
                self.observed.fetch_max(now, Ordering::AcqRel);
            }
            None => self.gone.store(true, Ordering::Release),
        }
    }

    /// Whether the kernel log should be asked about the init's SIGKILL: the
    /// cgroup's counter could no longer be read the last time it was tried,
    /// and it never showed a kill. (Had it shown one, that may have been the
    /// init's, and asking again would count it twice; the container has its
    /// `/tasks/oom` either way.)
    pub fn unseen_kill_possible(&self) -> bool {
        self.gone.load(Ordering::Acquire) && self.observed.load(Ordering::Acquire) == self.start
    }

    /// Since when (the kernel log's clock, µs) kills are this container's.
    pub fn since_us(&self) -> u64 {
        self.since_us
    }

    /// Records one kill the counter never showed (the kernel log did).
    pub fn add_unseen_kill(&self) {
        let now = self.reported.fetch_add(1, Ordering::AcqRel) + 1;
        self.observed.fetch_max(now, Ordering::AcqRel);
    }

    /// Whether kills were observed that are not reported yet (nothing
    /// recorded).
    pub fn would_grow(&self, cgroup: &Cgroup) -> bool {
        self.observe(cgroup);
        self.observed.load(Ordering::Acquire) > self.count()
    }

    /// Whether the counter grew past what was reported, as read now or
    /// observed before; records it as reported if so. True at most once per
    /// growth, whoever asks.
    pub fn grew(&self, cgroup: &Cgroup) -> bool {
        self.observe(cgroup);
        let now = self.observed.load(Ordering::Acquire);
        let before = self.reported.fetch_max(now, Ordering::AcqRel);
        now > before
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

/// Starts watching a container's cgroup, in a task of `tasks` (the
/// container's): it ends when the cgroup is removed or the container's tasks
/// are cancelled.
pub fn watch(target: Target, cgroup: &Cgroup, tasks: &Tasks) -> Result<()> {
    match cgroup {
        Cgroup::V1(_) => {
            let dir = cgroup
                .v1_dir("memory")
                .ok_or_else(|| Error::NotFound("no memory cgroup to watch".into()))?
                .to_path_buf();
            watch_v1(target, cgroup.clone(), dir, tasks)
        }
        Cgroup::V2(dir) => watch_v2(target, cgroup.clone(), dir.clone(), tasks),
    }
}

/// v1: an eventfd registered for memory.oom_control through
/// cgroup.event_control.
fn watch_v1(target: Target, cgroup: Cgroup, dir: PathBuf, tasks: &Tasks) -> Result<()> {
    let control_path = dir.join("memory.oom_control");
    let control = File::open(&control_path).map_err(Error::io("open", &control_path))?;
    #[allow(deprecated)]
    let efd = nix::sys::eventfd::eventfd(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(Error::sys("eventfd"))?;
    let register = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    let event_control = dir.join("cgroup.event_control");
    fs::write(&event_control, register).map_err(Error::io("write", &event_control))?;
    let efd = crate::sys::async_fd(efd).map_err(Error::io("register eventfd", &event_control))?;
    tasks.spawn_until_cancelled(async move {
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
    });
    Ok(())
}

/// How long (steps × step) an OOM notification waits for the kill it
/// announces; an OOM the kernel resolved without killing reports nothing.
const KILL_WAIT_STEPS: u32 = 50;
const KILL_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(10);

/// v2: inotify on memory.events (the kill) and cgroup.events (the cgroup
/// emptied: the last moment to read the counter before a cgroup manager
/// removes it).
fn watch_v2(target: Target, cgroup: Cgroup, dir: PathBuf, tasks: &Tasks) -> Result<()> {
    let events = dir.join("memory.events");
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(Error::sys("inotify_init"))?;
    inotify
        .add_watch(&events, AddWatchFlags::IN_MODIFY)
        .map_err(Error::sys("inotify_add_watch"))?;
    // Without it the kill is still seen, only later; not worth failing for.
    let populated = dir.join("cgroup.events");
    if let Err(e) = inotify.add_watch(&populated, AddWatchFlags::IN_MODIFY) {
        tracing::debug!(container = %target.container, error = %e, "not watching cgroup.events");
    }
    // A second descriptor of the same inotify instance, owned, for readiness.
    let ready = std::os::fd::AsFd::as_fd(&inotify)
        .try_clone_to_owned()
        .map_err(Error::io("dup inotify", &events))?;
    let ready = crate::sys::async_fd(ready).map_err(Error::io("register inotify", &events))?;
    tasks.spawn_until_cancelled(async move {
        loop {
            let Ok(mut guard) = ready.readable().await else {
                return;
            };
            // The counter first, before anything else can let the cgroup go.
            target.seen.observe(&cgroup);
            let read = guard.try_io(|_| Ok(inotify.read_events()?));
            let removed = matches!(&read, Ok(Ok(evs)) if evs
                .iter()
                .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED)));
            if target.seen.would_grow(&cgroup) {
                target.notify();
            }
            if removed {
                return;
            }
        }
    });
    Ok(())
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

    #[test]
    fn v2_a_kill_observed_before_the_cgroup_went_is_still_reported() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        fs::write(&events, "oom 0\noom_kill 0\n").unwrap();
        let cg = Cgroup::V2(dir.path().into());
        let seen = OomSeen::baseline(&cg);
        fs::write(&events, "oom 1\noom_kill 1\n").unwrap();
        seen.observe(&cg);
        assert_eq!(seen.count(), 0, "observing reports nothing");
        fs::remove_file(&events).unwrap();
        assert!(seen.grew(&cg), "the observed kill is reported");
        assert!(!seen.grew(&cg), "once");
        assert_eq!(seen.count(), 1);
    }

    #[test]
    fn the_kernel_log_is_asked_only_when_the_counter_showed_nothing_and_went() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        fs::write(&events, "oom 0\noom_kill 2\n").unwrap();
        let cg = Cgroup::V2(dir.path().into());
        let seen = OomSeen::baseline(&cg);
        assert!(!seen.grew(&cg));
        assert!(!seen.unseen_kill_possible(), "the cgroup is there");
        fs::remove_file(&events).unwrap();
        assert!(!seen.grew(&cg));
        assert!(seen.unseen_kill_possible(), "gone, and no kill seen");
        seen.add_unseen_kill();
        assert_eq!(seen.count(), 3);
        assert!(!seen.unseen_kill_possible(), "once");

        // A kill the counter showed before the cgroup went: never again.
        fs::write(&events, "oom 0\noom_kill 0\n").unwrap();
        let seen = OomSeen::baseline(&cg);
        fs::write(&events, "oom 1\noom_kill 1\n").unwrap();
        assert!(seen.grew(&cg));
        fs::remove_file(&events).unwrap();
        assert!(!seen.grew(&cg));
        assert!(!seen.unseen_kill_possible());
    }

    #[test]
    fn v2_group_kills_count_and_older_kills_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        let write = |kills: u32, group: u32| {
            let text = format!("oom 5\noom_kill {kills}\noom_group_kill {group}\n");
            fs::write(&events, text).unwrap();
        };
        // A reused cgroup: kills from before this container never count.
        write(3, 1);
        let cg = Cgroup::V2(dir.path().into());
        let seen = OomSeen::baseline(&cg);
        assert!(!seen.grew(&cg));
        write(3, 2);
        assert!(seen.grew(&cg), "a group kill is a kill");
        write(5, 2);
        assert!(seen.grew(&cg));
        assert!(!seen.grew(&cg));
    }
}

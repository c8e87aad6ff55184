//! The kernel log as the last witness of an OOM kill.
//!
//! The cgroup's kill counter is the truth while the cgroup exists. Under the
//! systemd cgroup driver it may not exist long enough: systemd removes an
//! emptied scope as soon as it hears the cgroup emptied, which is the same
//! moment the shim hears it, and on a busy (or emulated) CPU systemd can win.
//! The counter is then gone before anyone read it.
//!
//! The kernel also logs every OOM kill, with the victim's pid, in a line that
//! is never rate-limited (`<reason>: Killed process <pid> (<comm>) ...`).
//! When a container's init died of SIGKILL and its cgroup was gone before its
//! counter could be read, that line, for that pid and logged after the
//! container started, says whether the OOM killer was the one. Reading
//! `/dev/kmsg` needs CAP_SYSLOG; without it the answer is "no".

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;

/// The kernel log's device: one record per read.
const KMSG: &str = "/dev/kmsg";

/// The longest record `/dev/kmsg` hands out (the kernel's limit for one
/// extended console record); a shorter buffer makes the read fail.
const RECORD_MAX: usize = 8192;

/// Microseconds on the clock the kernel log stamps its records with (the
/// monotonic clock, near enough: both count from boot and skip suspend).
pub fn now_us() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

/// Whether the kernel log holds an OOM kill of `pid` stamped at or after
/// `since_us` (see [`now_us`]). Reads the whole log, so it is for the rare
/// case only, and blocking: run it off the async thread.
pub fn oom_killed(pid: u32, since_us: u64) -> bool {
    let mut log = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(KMSG)
    {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the kernel log");
            return false;
        }
    };
    let mut buf = vec![0u8; RECORD_MAX];
    loop {
        match log.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                if matches!(kill_in(&buf[..n], pid), Some(at) if at >= since_us) {
                    return true;
                }
            }
            // Records were overwritten while we read: go on from the oldest
            // one left.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => {
                tracing::debug!(error = %e, "reading the kernel log");
                return false;
            }
        }
    }
}

/// The time stamp (µs) of `record` if it is the OOM killer's kill of `pid`.
/// A record is `PRIO,SEQ,USEC,FLAGS[,...];MESSAGE\n` followed by
/// continuation lines that start with a space.
fn kill_in(record: &[u8], pid: u32) -> Option<u64> {
    let text = std::str::from_utf8(record).ok()?;
    let (header, rest) = text.split_once(';')?;
    let at = header.split(',').nth(2)?.parse().ok()?;
    let message = rest.lines().next()?;
    let (reason, victim) = message.split_once(": Killed process ")?;
    if !reason.to_ascii_lowercase().ends_with("out of memory") {
        return None;
    }
    let (victim_pid, _) = victim.split_once(' ')?;
    (victim_pid.parse::<u32>().ok()? == pid).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_kill_of_the_pid_and_nothing_else() {
        let memcg = b"3,2041,457942971,-;Memory cgroup out of memory: Killed process 2469 (sh) total-vm:63708kB, anon-rss:32232kB, file-rss:1520kB, shmem-rss:0kB, UID:0 pgtables:104kB oom_score_adj:-998\n";
        assert_eq!(kill_in(memcg, 2469), Some(457942971));
        assert_eq!(kill_in(memcg, 246), None, "another pid");
        assert_eq!(kill_in(memcg, 24690), None, "another pid");
        let global = b"3,7,900,c;Out of memory: Killed process 12 (java) total-vm:1kB\n";
        assert_eq!(kill_in(global, 12), Some(900));
        // The kernel's other lines around a kill name the pid too, but are
        // not the kill.
        let summary =
            b"6,2040,457942970,-;oom-kill:constraint=CONSTRAINT_MEMCG,task=sh,pid=2469,uid=0\n";
        assert_eq!(kill_in(summary, 2469), None);
        let reaper = b"6,2042,457943000,-;oom_reaper: reaped process 2469 (sh), now anon-rss:0kB\n";
        assert_eq!(kill_in(reaper, 2469), None);
        let other = b"6,1,5,-;Killed process 2469 (sh) by a user: out of memory\n";
        assert_eq!(kill_in(other, 2469), None);
        assert_eq!(kill_in(b"garbage", 1), None);
        assert_eq!(kill_in(b"", 1), None);
    }

    #[test]
    fn reading_the_real_log_never_fails() {
        // Whatever this machine's log holds, a pid that cannot exist was
        // never killed.
        assert!(!oom_killed(u32::MAX, 0));
    }
}

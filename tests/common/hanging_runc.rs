//! A runc that hangs on command: `HangingRunc`, a wrapper around the runc
//! under test whose control file names the sub-command that sleeps for ever
//! instead (tests/hung_runc.rs), and the helpers its scenarios share: runtime
//! options naming it, freezing a container's cgroup behind the shim's back.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::containerd::Containerd;
use super::matrix::runc_binary;
use super::procs::ProcInfo;
use super::rootfs::Rootfs;
use super::util::{describe_output, poll_until};
use super::SETTLE_TIMEOUT;

/// What "answers promptly" means while a runc call hangs.
pub const PROMPT: Duration = Duration::from_secs(10);

/// The runc wrapper, its control file and the pids of the invocations it
/// hung.
pub struct HangingRunc {
    dir: tempfile::TempDir,
}

impl HangingRunc {
    /// A wrapper around the runc under test, and a runtime options file
    /// naming it, with `timeouts` (TOML lines) as its `RuncTimeouts`.
    pub fn new(timeouts: &str) -> HangingRunc {
        let dir = tempfile::Builder::new()
            .prefix("tether-hung-runc-")
            .tempdir()
            .unwrap();
        let h = HangingRunc { dir };
        let script = format!(
            r#"#!/bin/sh
# The runc under test, except that the sub-command named in {control}
# hangs (its pid recorded in {pids} first).
hang=$(cat '{control}' 2>/dev/null)
if [ "$hang" = exec-ignore-paused ]; then
    # runc exec into a frozen cgroup, which runc refuses by default.
    for a in "$@"; do
        shift
        set -- "$@" "$a"
        [ "$a" = exec ] && set -- "$@" --ignore-paused
    done
elif [ -n "$hang" ]; then
    for a in "$@"; do
        if [ "$a" = "$hang" ]; then
            echo $$ >> '{pids}'
            exec sleep 1000000
        fi
    done
fi
exec '{runc}' "$@"
"#,
            control = h.control().display(),
            pids = h.pids_file().display(),
            runc = runc_binary().display(),
        );
        std::fs::write(h.wrapper(), script).unwrap();
        std::fs::set_permissions(h.wrapper(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let options = format!(
            "BinaryName = \"{}\"\n[RuncTimeouts]\n{timeouts}\n",
            h.wrapper().display()
        );
        std::fs::write(h.options(), options).unwrap();
        h
    }

    pub fn wrapper(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    pub fn control(&self) -> PathBuf {
        self.dir.path().join("hang")
    }

    pub fn pids_file(&self) -> PathBuf {
        self.dir.path().join("hung-pids")
    }

    /// The runtime options file (`ctr run --runtime-config-path`).
    pub fn options(&self) -> PathBuf {
        self.dir.path().join("options.toml")
    }

    /// From now on, runc sub-command `cmd` hangs.
    pub fn hang_on(&self, cmd: &str) {
        std::fs::write(self.control(), cmd).unwrap();
    }

    /// runc answers again.
    pub fn release(&self) {
        std::fs::write(self.control(), "").unwrap();
    }

    /// The invocations hung so far: pid and start time.
    pub fn hung(&self) -> Vec<(i32, u64)> {
        std::fs::read_to_string(self.pids_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .map(|pid| (pid, ProcInfo::read(pid).map_or(0, |p| p.starttime)))
            .collect()
    }

    /// Waits until a runc invocation hangs; returns it.
    pub fn wait_hung(&self, cd: &Containerd) -> (i32, u64) {
        poll_until(SETTLE_TIMEOUT, || self.hung().first().copied())
            .unwrap_or_else(|| panic!("no runc invocation hung\n{}", cd.diagnostics()))
    }

    /// Whether the hung invocation `(pid, starttime)` still exists, running
    /// or as a zombie nobody reaped.
    pub fn exists(hung: (i32, u64)) -> bool {
        ProcInfo::read(hung.0).is_some_and(|p| p.starttime == hung.1)
    }

    /// Every hung invocation was killed and reaped.
    pub fn assert_none_left(&self, hung: &[(i32, u64)]) {
        assert!(!hung.is_empty(), "no runc invocation hung");
        let left = poll_until(PROMPT, || {
            hung.iter().all(|h| !HangingRunc::exists(*h)).then_some(())
        });
        let still: Vec<_> = hung
            .iter()
            .filter(|h| HangingRunc::exists(**h))
            .filter_map(|h| ProcInfo::read(h.0).map(|p| p.describe()))
            .collect();
        assert!(left.is_some(), "hung runc still there: {still:?}");
    }
}

/// `ctr run -d` with the wrapper's runtime options (and `extra` ctr flags);
/// returns the init's pid once the task runs.
pub fn run_with(
    cd: &Containerd,
    runc: &HangingRunc,
    rootfs: &Rootfs,
    id: &str,
    extra: &[&str],
) -> u32 {
    let options = runc.options().display().to_string();
    let mut opts = vec!["-d", "--runtime-config-path", &options];
    opts.extend_from_slice(extra);
    let out = cd.run(&opts, rootfs, id, &["/bin/sleep", "1000"]);
    assert!(
        out.status.success(),
        "ctr run {id}\n{}\n{}",
        describe_output(&out),
        cd.log_tail()
    );
    let row = cd.wait_task(id, SETTLE_TIMEOUT, |t| t.status == "RUNNING");
    let _ = cd.shim_socket(id);
    row.pid
}

/// Removes a stopped task and its container; returns the task's exit
/// status.
pub fn remove(cd: &Containerd, id: &str) -> i32 {
    let status = cd.task_delete(id);
    cd.ctr_ok(&["container", "rm", id]);
    status
}

/// The cgroup of a container's init, frozen behind the shim's back; thawed
/// again when dropped, so a failing test leaves nothing frozen.
pub struct Frozen {
    /// v1's `freezer.state` or v2's `cgroup.freeze`.
    file: PathBuf,
    thaw: &'static str,
}

impl Frozen {
    /// Freezes the cgroup of process `pid`.
    pub fn freeze(pid: u32) -> Frozen {
        let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let v1 = membership
            .lines()
            .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_string()));
        let (file, freeze, thaw) = match v1 {
            Some(path) => (
                Path::new("/sys/fs/cgroup/freezer")
                    .join(path.trim_start_matches('/'))
                    .join("freezer.state"),
                "FROZEN",
                "THAWED",
            ),
            None => {
                let path = membership
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .expect("a cgroup");
                (
                    Path::new("/sys/fs/cgroup")
                        .join(path.trim_start_matches('/'))
                        .join("cgroup.freeze"),
                    "1",
                    "0",
                )
            }
        };
        std::fs::write(&file, freeze).unwrap();
        Frozen { file, thaw }
    }

    /// The processes in the cgroup.
    pub fn members(&self) -> Vec<ProcInfo> {
        std::fs::read_to_string(self.file.with_file_name("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| ProcInfo::read(l.trim().parse().ok()?))
            .collect()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.file, self.thaw);
    }
}

/// `poll_until` for async code: polls `f` every 50 ms for up to
/// SETTLE_TIMEOUT without blocking the runtime.
pub async fn poll_until_async<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

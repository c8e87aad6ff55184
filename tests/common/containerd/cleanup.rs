//! What a `Containerd` leaves: the check that a task left nothing (seen
//! through the environment: its mounts, its /run, its network namespace's
//! sockets), and the teardown its `Drop` does, which is the environment's
//! (kill its cgroup, drop its namespaces, remove its dir): nothing on the
//! host is searched or diffed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;

use super::super::mounts::{mounts_in_under, mounts_under};
use super::super::procs::processes_rooted_under;
use super::super::rootfs::Rootfs;
use super::super::sockets::{bound_unix_paths_of_netns, socket_dir_entries, SocketDirSnapshot};
use super::super::util::poll_until;
use super::super::{SETTLE_TIMEOUT, SHIM_SOCKET_DIR};
use super::Containerd;

impl Containerd {
    /// The entries of the environment's /run/containerd/s now.
    pub fn socket_dir_snapshot(&self) -> SocketDirSnapshot {
        SocketDirSnapshot(self.socket_dir_entries())
    }

    fn socket_dir_entries(&self) -> BTreeSet<PathBuf> {
        let dir = Path::new(SHIM_SOCKET_DIR);
        socket_dir_entries(dir, &self.host_path(dir))
    }

    /// Mount points at or under `dir` in the environment's mount namespace
    /// (where containerd and the shims mount).
    pub fn mounts_under(&self, dir: &Path) -> Vec<String> {
        let init = self.env().init_pid();
        mounts_in_under(Path::new(&format!("/proc/{init}/mountinfo")), dir)
    }

    /// Entries of the environment's /run/containerd/s among `own` (the paths
    /// the test's own shims would use) that were not in `snapshot` and that
    /// no live socket of the environment is bound to (a shim that exited
    /// and left its file).
    fn stale_new_sockets(
        &self,
        snapshot: &SocketDirSnapshot,
        own: &BTreeSet<PathBuf>,
    ) -> Vec<PathBuf> {
        let bound = bound_unix_paths_of_netns(self.env().init_pid());
        self.socket_dir_entries()
            .into_iter()
            .filter(|p| own.contains(p) && !snapshot.0.contains(p))
            .filter(|p| !bound.contains(&p.display().to_string()))
            .collect()
    }

    /// Panics unless, within `SETTLE_TIMEOUT`, everything task `id` had is
    /// gone: shim and container processes of this namespace, processes
    /// rooted in `rootfs`, mounts under the bundle and the rootfs (in the
    /// environment's mount namespace and in the host's), the bundle
    /// directory, the task in `ctr task ls`, and the shim socket (paths as
    /// the shims name them): `socket` if given, the containerd-convention
    /// path, and, if `since` is given, every socket file that appeared in
    /// the environment's /run/containerd/s after that snapshot and that no
    /// live socket is bound to.
    pub fn assert_no_leftovers(
        &self,
        id: &str,
        rootfs: &Rootfs,
        socket: Option<&Path>,
        since: Option<&SocketDirSnapshot>,
    ) {
        let bundle = self.bundle_dir(id);
        let conventional = self.conventional_socket_path(id);
        let mut problems = Vec::new();
        let clean = poll_until(SETTLE_TIMEOUT, || {
            problems.clear();
            for p in self.shim_processes() {
                problems.push(format!("shim process left: {}", p.describe()));
            }
            for p in self.container_processes() {
                problems.push(format!("container process left: {}", p.describe()));
            }
            for p in processes_rooted_under(rootfs.path()) {
                problems.push(format!(
                    "process rooted in the rootfs left: {}",
                    p.describe()
                ));
            }
            for dir in [&bundle, rootfs.path()] {
                for m in self.mounts_under(dir) {
                    problems.push(format!("mount left: {m}"));
                }
                for m in mounts_under(dir) {
                    problems.push(format!("mount left on the host: {m}"));
                }
            }
            if bundle.exists() {
                problems.push(format!("bundle directory left: {}", bundle.display()));
            }
            for s in socket.into_iter().chain([conventional.as_path()]) {
                if fs::symlink_metadata(self.host_path(s)).is_ok() {
                    problems.push(format!("shim socket file left: {}", s.display()));
                }
            }
            let own = self.own_sockets();
            for s in since
                .map(|snap| self.stale_new_sockets(snap, &own))
                .unwrap_or_default()
            {
                problems.push(format!(
                    "socket file of this test's shims in {SHIM_SOCKET_DIR} appeared since the \
                     snapshot and no live socket is bound to it: {}",
                    s.display()
                ));
            }
            if let Some(t) = self.task(id) {
                problems.push(format!("task still listed: {t:?}"));
            }
            problems.is_empty().then_some(())
        });
        if clean.is_none() {
            panic!(
                "leftovers of {id} after {SETTLE_TIMEOUT:?}:\n  {}\n{}",
                problems.join("\n  "),
                self.diagnostics()
            );
        }
    }

    /// The environment's teardown: every process of its cgroup killed (its
    /// namespaces, mounts and /run go with the last), its cgroup and dir
    /// removed; then the NOTIFY_SOCKET file.
    fn teardown(&mut self) {
        if let Some(mut env) = self.env.take() {
            if let Err(e) = env.teardown() {
                eprintln!("[harness] teardown of {}: {e}", self.dir.display());
            }
        }
        let _ = fs::remove_file(&self.notify.0);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "[harness] test failed; diagnostics:\n{}",
                self.diagnostics()
            );
        }
        self.teardown();
    }
}

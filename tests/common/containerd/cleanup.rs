//! What a `Containerd` leaves: the check that a task left nothing, and the
//! cleanup its `Drop` does.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use super::super::matrix::runc_binary;
use super::super::mounts::{mounts_under, unmount_all_under};
use super::super::procs::{kill_processes_where, processes_rooted_under};
use super::super::rootfs::Rootfs;
use super::super::sockets::{bound_unix_paths, socket_path_of_address, SocketDirSnapshot};
use super::super::util::{output_with_timeout, poll_until};
use super::super::{SETTLE_TIMEOUT, SHIM_SOCKET_DIR};
use super::Containerd;

impl Containerd {
    /// Panics unless, within `SETTLE_TIMEOUT`, everything task `id` had is
    /// gone: shim and container processes of this namespace, processes
    /// rooted in `rootfs`, mounts under the bundle and the rootfs, the bundle
    /// directory, the task in `ctr task ls`, and the shim socket: `socket`
    /// if given, the containerd-convention path, and, if `since` is given,
    /// every socket file that appeared in /run/containerd/s after that
    /// snapshot and that no live socket is bound to.
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
            for m in mounts_under(&bundle)
                .into_iter()
                .chain(mounts_under(rootfs.path()))
            {
                problems.push(format!("mount left: {m}"));
            }
            if bundle.exists() {
                problems.push(format!("bundle directory left: {}", bundle.display()));
            }
            for s in socket.into_iter().chain([conventional.as_path()]) {
                if fs::symlink_metadata(s).is_ok() {
                    problems.push(format!("shim socket file left: {}", s.display()));
                }
            }
            let own = self.own_sockets();
            for s in since.map(|snap| snap.stale_new(&own)).unwrap_or_default() {
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

    /// Stops containerd and removes everything of this instance: processes
    /// (by PID), runc state and cgroups of the namespace, stale shim sockets,
    /// mounts and the temporary directory.
    fn cleanup(&mut self) {
        // Remember every shim socket before anything goes away.
        let mut sockets: BTreeSet<PathBuf> = self
            .known_sockets
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        if let Ok(entries) = fs::read_dir(self.tasks_state_dir()) {
            for e in entries.flatten() {
                let addr = self.shim_address(&e.file_name().to_string_lossy());
                if let Some(p) = addr.as_deref().and_then(socket_path_of_address) {
                    sockets.insert(p);
                }
            }
        }

        self.stop();

        // Safety net: kill whatever of this test still runs, by PID.
        let namespace = self.namespace.clone();
        let dir = self.dir.clone();
        let killed = kill_processes_where(|p| self.is_related(p));
        if !killed.is_empty() {
            eprintln!("[harness] killed leftover processes of namespace {namespace}: {killed:?}");
        }

        // runc state of this namespace only.
        let runc_root = self.runc_root();
        if let Ok(entries) = fs::read_dir(&runc_root) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().to_string();
                eprintln!("[harness] runc state left for {namespace}/{id}; deleting it");
                let _ = output_with_timeout(
                    Command::new(runc_binary())
                        .arg("--root")
                        .arg(&runc_root)
                        .args(["delete", "--force", &id])
                        .stdin(Stdio::null()),
                    Duration::from_secs(30),
                );
            }
        }
        let _ = fs::remove_dir(&runc_root);

        // Empty cgroups `/<namespace>/<id>` that ctr's default cgroup path
        // created in every hierarchy.
        if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let ns_dir = h.path().join(&namespace);
                if let Ok(children) = fs::read_dir(&ns_dir) {
                    for c in children.flatten() {
                        if c.file_type().is_ok_and(|t| t.is_dir()) {
                            let _ = fs::remove_dir(c.path());
                        }
                    }
                    let _ = fs::remove_dir(&ns_dir);
                }
            }
        }

        // Socket files of shims that were killed above cannot have been
        // removed by them; remove them unless something still listens.
        let bound = bound_unix_paths();
        for s in sockets {
            let is_socket = fs::symlink_metadata(&s).is_ok_and(|m| m.file_type().is_socket());
            if is_socket
                && s.starts_with(SHIM_SOCKET_DIR)
                && !bound.contains(&s.display().to_string())
            {
                eprintln!("[harness] removing stale shim socket {}", s.display());
                let _ = fs::remove_file(&s);
            }
        }

        unmount_all_under(&dir);
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = tmp.close() {
                eprintln!("[harness] removing {}: {e}", dir.display());
            }
        }
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
        self.cleanup();
    }
}

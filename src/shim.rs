//! The shim's table of containers, container creation, and the monitor that
//! routes reaped exits to the process they belong to.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::container::{Container, Parts, Services};
use crate::error::{Error, Result};
use crate::events::{Event, Publisher};
use crate::io::StdioPaths;
use crate::mount::{mount_all, unmount_all, Mount};
use crate::process::{ExitInfo, Process};
use crate::reaper::Reaper;
use crate::records::INIT_PID_FILE;
use crate::router::{Notice, Notices};
use crate::runc::RuntimeOptions;
use crate::tasks::Tasks;

/// A Create request in domain terms.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Mounts making up the rootfs (empty: the spec's root is used as is).
    pub rootfs: Vec<Mount>,
    /// Stdio paths.
    pub stdio: StdioPaths,
    /// Checkpoint to restore from.
    pub checkpoint: String,
    /// Runtime options.
    pub options: RuntimeOptions,
}

#[derive(Default)]
struct Table {
    containers: HashMap<String, Arc<Container>>,
    /// Ids whose Create is in progress.
    reserved: HashSet<String>,
    /// Shutdown was accepted: no new container.
    closing: bool,
    /// The socket file containerd reaches this daemon by.
    socket: Option<PathBuf>,
}

/// Everything the daemon serves.
pub struct Shim {
    /// containerd namespace.
    pub namespace: String,
    services: Services,
    table: Mutex<Table>,
    /// Cancelled once Shutdown is accepted: the daemon then winds down.
    shutdown: CancellationToken,
    upgrades: std::sync::atomic::AtomicU32,
}

impl Shim {
    /// A shim with no containers. Notices sent to `notices` (the reaper's
    /// unclaimed exits, OOM watchers) arrive on `inbox`. Its monitor is one
    /// of the daemon's `tasks`, and each container's are a child of them;
    /// `shutdown` is cancelled when Shutdown is accepted.
    pub fn new(
        namespace: String,
        (reaper, publisher): (Reaper, Publisher),
        (notices, inbox): (Notices, mpsc::UnboundedReceiver<Notice>),
        tasks: Tasks,
        shutdown: CancellationToken,
    ) -> Arc<Shim> {
        let shim = Arc::new(Shim {
            namespace,
            services: Services {
                publisher,
                reaper,
                router: Arc::default(),
                notices,
                tasks: tasks.clone(),
            },
            table: Mutex::default(),
            shutdown,
            upgrades: Default::default(),
        });
        tasks.spawn_until_cancelled(shim.clone().monitor(inbox));
        shim
    }

    /// Walks the task tree down at the end: every container's tasks, then
    /// the daemon's (the reaper, the monitor, the event sender), each
    /// cancelled and waited for within `limit`. Says whether all ended.
    pub async fn shut(&self, limit: std::time::Duration) -> bool {
        let mut ended = true;
        for c in self.containers() {
            ended &= c.tasks.shut(limit).await;
        }
        ended & self.services.tasks.shut(limit).await
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The container with this id.
    pub fn get(&self, id: &str) -> Result<Arc<Container>> {
        self.table()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| Error::ContainerNotFound(id.to_string()))
    }

    /// How many times this daemon was upgraded in place.
    pub fn upgrades(&self) -> u32 {
        self.upgrades.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records the upgrade count handed over.
    pub fn set_upgrades(&self, n: u32) {
        self.upgrades.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every container, for a handover.
    pub fn containers(&self) -> Vec<Arc<Container>> {
        self.table().containers.values().cloned().collect()
    }

    /// Takes a container an earlier shim served.
    pub fn adopt(&self, c: Arc<Container>) {
        self.table().containers.insert(c.id.clone(), c);
    }

    /// The services containers are built with.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Routes every notice to its container: an exit to the process it
    /// belongs to, an OOM to the container's count. Runs until the daemon
    /// ends (the shim holds a sender).
    async fn monitor(self: Arc<Self>, mut inbox: mpsc::UnboundedReceiver<Notice>) {
        while let Some(notice) = inbox.recv().await {
            match notice {
                Notice::Exit(exit) => {
                    let Some(key) = self.services.router.route(exit) else {
                        continue;
                    };
                    let found = self
                        .get(&key.container)
                        .and_then(|c| Ok((c.process(&key.exec)?, c)));
                    match found {
                        Ok((p, c)) => c.on_exit(p, exit),
                        Err(e) => {
                            tracing::debug!(pid = exit.pid, error = %e, "exit of a process no longer known")
                        }
                    }
                }
                Notice::Oom { container } => {
                    if let Ok(c) = self.get(&container) {
                        c.check_oom();
                    }
                }
                Notice::CaughtUp(done) => drop(done.send(())),
            }
        }
    }

    /// Returns once the monitor has handled every notice sent so far (so
    /// every exit reaped until now has reached its process).
    pub async fn monitor_caught_up(&self) {
        let (done, handled) = tokio::sync::oneshot::channel();
        if self.services.notices.send(Notice::CaughtUp(done)).is_ok() {
            let _ = handled.await;
        }
    }

    /// Creates a container: mounts, stdio, `runc create`, and `/tasks/create`.
    pub async fn create(&self, req: CreateRequest) -> Result<u32> {
        let _reservation = self.reserve(&req.id)?;
        let rootfs = req.bundle.join("rootfs");
        let mounted = !req.rootfs.is_empty();
        let parts = Parts {
            id: req.id.clone(),
            namespace: self.namespace.clone(),
            bundle: req.bundle.clone(),
            options: req.options.clone(),
            restore_from: (!req.checkpoint.is_empty()).then(|| PathBuf::from(&req.checkpoint)),
            rootfs_mounted: mounted,
            kill_all_on_exit: !has_own_pid_namespace(&req.bundle),
        };
        let init = Process::new(&req.id, String::new(), req.stdio.clone(), Vec::new());
        let tasks = self.services.tasks.child();
        let container = Container::assemble(parts, init, self.services.clone(), tasks);
        // With this daemon's pid, so `delete` can tell when it is gone.
        let record = crate::records::RuntimeRecord {
            shim_pid: std::process::id(),
            ..container.runc.record().clone()
        };
        record.save(&req.bundle)?;
        if mounted {
            // An idmapped rootfs (a pod with its own user namespace) needs a
            // user namespace with the pod's maps first.
            let userns = match crate::mount::idmap::needed(&req.rootfs)? {
                Some(maps) => {
                    Some(crate::mount::idmap::user_namespace(&maps, &self.services.reaper).await?)
                }
                None => None,
            };
            mount_all(&req.rootfs, &rootfs, userns.as_ref(), &self.services.reaper)?;
        }
        let pid_file = req.bundle.join(INIT_PID_FILE);
        let (c, opts, pid) = (&container, &req.options, &pid_file);
        let created = if container.restore_from.is_some() {
            // Restored at Start, as containerd's own shim does: no process yet.
            Ok(0)
        } else {
            container
                .spawn_with_io(
                    &container.init,
                    &pid_file,
                    true,
                    |sockets, stdio| async move {
                        c.runc
                            .create(&c.id, &c.bundle, pid, opts, &sockets, stdio)
                            .await
                    },
                )
                .await
        };
        let pid = match created {
            Ok(pid) => pid,
            Err(e) => {
                // Whatever runc left behind goes; a missing container is fine.
                let _ = container.runc.delete(&req.id, true).await;
                container.init.close_io();
                container.tasks.close();
                if mounted {
                    unmount_all(&rootfs);
                }
                return Err(e);
            }
        };
        self.table()
            .containers
            .insert(req.id.clone(), container.clone());
        let early = if pid == 0 {
            None
        } else {
            // Right after create, before anything runs: an OOM at start counts.
            container.watch_cgroup();
            container.register(&container.init)
        };
        self.services.publisher.publish(Event::Create {
            id: req.id,
            bundle: req.bundle.display().to_string(),
            rootfs: req.rootfs,
            stdio: req.stdio,
            checkpoint: req.checkpoint,
            pid,
        });
        if let Some(exit) = early {
            container.on_exit(container.init.clone(), exit);
        }
        Ok(pid)
    }

    /// Deletes an exec, or a container and forgets it.
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<(u32, ExitInfo)> {
        let c = self.get(id)?;
        let deleted = c.delete(exec_id).await?;
        if exec_id.is_empty() {
            self.table().containers.remove(id);
        }
        Ok(deleted)
    }

    /// Records the socket file this daemon listens on, which Shutdown removes.
    pub fn set_socket(&self, socket: Option<PathBuf>) {
        self.table().socket = socket;
    }

    /// Shuts the daemon down if it serves no container any more. The socket
    /// file goes at once, before the reply: a `start` for the same group that
    /// runs right after must bind a new socket and get a new daemon, not be
    /// handed this one, which is on its way out. Creates are refused from now.
    pub fn shutdown(&self) -> bool {
        let mut t = self.table();
        let idle = t.containers.is_empty() && t.reserved.is_empty();
        if idle {
            t.closing = true;
            if let Some(socket) = t.socket.take() {
                if let Err(e) = std::fs::remove_file(&socket) {
                    tracing::warn!(socket = %socket.display(), error = %e, "removing the socket");
                }
            }
            drop(t);
            self.shutdown.cancel();
        }
        idle
    }

    fn reserve(&self, id: &str) -> Result<Reservation<'_>> {
        let mut t = self.table();
        if t.closing {
            return Err(Error::FailedPrecondition(format!(
                "cannot create {id:?}: the shim is shutting down"
            )));
        }
        if t.containers.contains_key(id) || !t.reserved.insert(id.to_string()) {
            return Err(Error::AlreadyExists(id.to_string()));
        }
        Ok(Reservation {
            shim: self,
            id: id.to_string(),
        })
    }
}

/// An id held for a Create in progress; released when dropped.
struct Reservation<'a> {
    shim: &'a Shim,
    id: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.shim.table().reserved.remove(&self.id);
    }
}

/// Whether the bundle's spec gives the container a pid namespace of its own
/// (one without a path, i.e. a new one, or a path that is not the host's).
fn has_own_pid_namespace(bundle: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(default)]
        namespaces: Vec<Namespace>,
    }
    #[derive(serde::Deserialize)]
    struct Namespace {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        path: String,
    }
    let Ok(data) = std::fs::read(bundle.join("config.json")) else {
        return false;
    };
    let Ok(spec) = serde_json::from_slice::<Spec>(&data) else {
        return false;
    };
    spec.linux
        .map(|l| {
            l.namespaces
                .iter()
                .any(|n| n.kind == "pid" && n.path.is_empty())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_namespace_detection() {
        let dir = tempfile::tempdir().unwrap();
        let write = |s: &str| std::fs::write(dir.path().join("config.json"), s).unwrap();
        write(r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#);
        assert!(has_own_pid_namespace(dir.path()));
        write(r#"{"linux":{"namespaces":[{"type":"mount"}]}}"#);
        assert!(!has_own_pid_namespace(dir.path()));
        write(r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#);
        assert!(!has_own_pid_namespace(dir.path()));
    }
}

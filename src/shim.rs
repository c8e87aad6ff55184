//! The shim's table of containers (Create reserves an id in it; the
//! container creates itself), and the monitor that routes reaped exits to
//! the process they belong to.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::container::{Container, CreateRequest, Services};
use crate::error::{Error, Result};
use crate::events::Publisher;
use crate::process::ExitInfo;
use crate::reaper::Reaper;
use crate::router::{Notice, Notices};
use crate::sandbox::{CreateSandbox, Sandbox};
use crate::tasks::Tasks;

#[derive(Default)]
struct Table {
    containers: HashMap<String, Arc<Container>>,
    /// Ids whose Create is in progress.
    reserved: HashSet<String>,
    /// Shutdown was accepted: no new container.
    closing: bool,
    /// The socket file containerd reaches this daemon by.
    socket: Option<PathBuf>,
    /// The pod sandbox this daemon serves, from CreateSandbox to
    /// ShutdownSandbox.
    sandbox: Option<Arc<Sandbox>>,
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
            ended &= c.shut_tasks(limit).await;
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
        self.table().containers.insert(c.id().to_string(), c);
    }

    /// The services containers are built with.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Routes every notice to its container: an exit to the process it
    /// belongs to, an OOM to the container's count. Runs until the daemon's
    /// tasks are cancelled, its last act.
    async fn monitor(self: Arc<Self>, mut inbox: mpsc::UnboundedReceiver<Notice>) {
        while let Some(notice) = inbox.recv().await {
            match notice {
                Notice::Exit(exit) => {
                    let Some(key) = self.services.router.route(exit) else {
                        continue;
                    };
                    if let Ok(s) = self.sandbox(&key.container) {
                        s.exited(exit);
                        continue;
                    }
                    let handled = self
                        .get(&key.container)
                        .and_then(|c| c.reaped(&key.exec, exit));
                    if let Err(e) = handled {
                        tracing::debug!(pid = exit.pid, error = %e, "exit of a process no longer known");
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

    /// Creates a container (see [`Container::create`]) under an id no other
    /// container has or is being created with.
    pub async fn create(&self, req: CreateRequest) -> Result<u32> {
        let _reservation = self.reserve(&req.id)?;
        let list = |c: &Arc<Container>| {
            self.table()
                .containers
                .insert(c.id().to_string(), c.clone());
        };
        let (id, bundle) = (req.id.clone(), req.bundle.clone());
        let pid = Container::create(req, &self.namespace, self.services.clone(), list).await?;
        if let Some(s) = self.current_sandbox() {
            s.join(&id, &bundle);
        }
        Ok(pid)
    }

    /// Deletes an exec, or a container and forgets it.
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<(u32, ExitInfo)> {
        let c = self.get(id)?;
        let deleted = c.delete(exec_id).await?;
        if exec_id.is_empty() {
            self.table().containers.remove(id);
            if let Some(s) = self.current_sandbox() {
                s.leave(id);
            }
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
        let idle = t.containers.is_empty() && t.reserved.is_empty() && t.sandbox.is_none();
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

    /// Creates the pod sandbox this daemon serves (one at most).
    pub fn create_sandbox(&self, req: CreateSandbox) -> Result<()> {
        let mut t = self.table();
        if t.closing {
            return Err(Error::FailedPrecondition(format!(
                "cannot create sandbox {:?}: the shim is shutting down",
                req.id
            )));
        }
        if let Some(s) = &t.sandbox {
            return Err(Error::AlreadyExists(s.id().to_string()));
        }
        t.sandbox = Some(Arc::new(Sandbox::create(req)?));
        Ok(())
    }

    /// The sandbox with this id.
    pub fn sandbox(&self, id: &str) -> Result<Arc<Sandbox>> {
        self.table()
            .sandbox
            .clone()
            .filter(|s| s.id() == id)
            .ok_or_else(|| Error::NotFound(format!("sandbox {id:?} not found")))
    }

    /// The sandbox, whatever its id (for a live upgrade).
    pub fn current_sandbox(&self) -> Option<Arc<Sandbox>> {
        self.table().sandbox.clone()
    }

    /// Takes the sandbox an earlier binary served.
    pub fn adopt_sandbox(&self, s: Sandbox) {
        self.table().sandbox = Some(Arc::new(s));
    }

    /// Forgets the sandbox (it was shut down).
    pub fn remove_sandbox(&self, id: &str) {
        let mut t = self.table();
        if t.sandbox.as_ref().is_some_and(|s| s.id() == id) {
            t.sandbox = None;
        }
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

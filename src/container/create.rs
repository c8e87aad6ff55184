//! Create: a container from a bundle, up to `runc create` (or, for one
//! restored from a checkpoint, up to what Start restores) and
//! `/tasks/create`.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Container, Op, Parts, Services};
use crate::error::Result;
use crate::events::Event;
use crate::io::StdioPaths;
use crate::mount::{mount_all, unmount_all, Mount};
use crate::process::Process;
use crate::records::{SpecRecord, INIT_PID_FILE};
use crate::runc::RuntimeOptions;

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

impl Container {
    /// Creates a container: mounts, stdio, `runc create`, and
    /// `/tasks/create`. `list` puts it in the shim's table, once it exists
    /// and before its init's exit can be routed to it. Returns the init's
    /// pid (0 for a container restored at Start).
    pub async fn create(
        req: CreateRequest,
        namespace: &str,
        services: Services,
        list: impl FnOnce(&Arc<Container>),
    ) -> Result<u32> {
        let rootfs = req.bundle.join("rootfs");
        let mounted = !req.rootfs.is_empty();
        let parts = Parts {
            id: req.id.clone(),
            namespace: namespace.to_string(),
            bundle: req.bundle.clone(),
            options: req.options.clone(),
            restore_from: (!req.checkpoint.is_empty()).then(|| PathBuf::from(&req.checkpoint)),
            rootfs_mounted: mounted,
            kill_all_on_exit: !SpecRecord::load(&req.bundle)
                .is_some_and(|s| s.has_own_pid_namespace()),
            paused: false,
        };
        let init = Process::new(&req.id, String::new(), req.stdio.clone(), Vec::new());
        let tasks = services.tasks.child();
        let container = Container::assemble(parts, init, services, tasks);
        container.allow(Op::Create, &container.init)?;
        // With this daemon's pid, so `delete` can tell when it is gone.
        let record = crate::records::RuntimeRecord {
            shim_pid: std::process::id(),
            ..container.runc.record().clone()
        };
        record.save(&req.bundle)?;
        if mounted {
            // An idmapped rootfs (a pod with its own user namespace) needs a
            // user namespace with the pod's maps first.
            let reaper = &container.reaper;
            let userns = match crate::mount::idmap::needed(&req.rootfs)? {
                Some(maps) => Some(crate::mount::idmap::user_namespace(&maps, reaper).await?),
                None => None,
            };
            mount_all(&req.rootfs, &rootfs, userns.as_ref(), reaper)?;
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
        list(&container);
        let early = if pid == 0 {
            None
        } else {
            // Right after create, before anything runs: an OOM at start counts.
            container.watch_cgroup();
            container.register(&container.init)
        };
        container.publisher.publish(Event::Create {
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
}

//! The Task service: the one place that turns wire requests into domain calls
//! and domain results or errors into wire responses.

use std::path::PathBuf;
use std::sync::Arc;

use protobuf::well_known_types::empty::Empty;
use protobuf::{Message, MessageField};
use ttrpc::r#async::TtrpcContext;

use crate::error::{Error, Result};
use crate::events::timestamp;
use crate::ids::validate;
use crate::io::StdioPaths;
use crate::mount::Mount;
use crate::options::runtime_options;
use crate::process::Status;
use crate::protos::runc_options::{CheckpointOptions, ProcessDetails};
use crate::protos::shim::*;
use crate::protos::shim_ttrpc::Task;
use crate::protos::status::{ProcessInfo, Status as WireStatus};
use crate::runc::CheckpointArgs;
use crate::shim::{CreateRequest, Shim};

/// The version Connect reports.
pub const VERSION: &str = concat!("tether ", env!("CARGO_PKG_VERSION"));

/// The ttrpc Task service over a [`Shim`].
pub struct TaskService {
    shim: Arc<Shim>,
}

impl TaskService {
    /// Serves `shim`.
    pub fn new(shim: Arc<Shim>) -> TaskService {
        TaskService { shim }
    }
}

/// Logs a failed call once and converts it for the wire.
fn reply<T>(method: &'static str, id: &str, r: Result<T>) -> ttrpc::Result<T> {
    r.map_err(|e| {
        // containerd (CRI above all) routinely kills and deletes what has
        // already finished: NotFound is an answer, not a fault.
        if e.code() == ttrpc::Code::NOT_FOUND {
            tracing::debug!(method, id, error = %e, "request for something gone");
        } else {
            tracing::warn!(method, id, code = ?e.code(), error = %e, "request failed");
        }
        e.into()
    })
}

/// Checks a container id and, when present, an exec id.
pub(crate) fn validate_ids(id: &str, exec_id: &str) -> Result<()> {
    validate("container id", id)?;
    if !exec_id.is_empty() {
        validate("exec id", exec_id)?;
    }
    Ok(())
}

/// The type URL containerd gives an exec's OCI process spec.
const PROCESS_SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

fn wire_status(s: Status) -> WireStatus {
    match s {
        Status::Created => WireStatus::CREATED,
        Status::Running => WireStatus::RUNNING,
        Status::Stopped => WireStatus::STOPPED,
    }
}

impl TaskService {
    async fn do_create(&self, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
        validate("container id", &req.id)?;
        let bundle = PathBuf::from(&req.bundle);
        if !bundle.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "bundle {:?} is not an absolute path",
                req.bundle
            )));
        }
        let create = CreateRequest {
            id: req.id,
            bundle,
            rootfs: req
                .rootfs
                .into_iter()
                .map(|m| Mount {
                    kind: m.type_,
                    source: m.source,
                    options: m.options,
                })
                .collect(),
            stdio: StdioPaths {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
            },
            checkpoint: req.checkpoint,
            options: runtime_options(req.options.as_ref())?,
        };
        let pid = self.shim.create(create).await?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn do_state(&self, req: &StateRequest) -> Result<StateResponse> {
        validate_ids(&req.id, &req.exec_id)?;
        let c = self.shim.get(&req.id)?;
        let p = c.process(&req.exec_id)?;
        let phase = p.phase();
        let exit = phase.exit();
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: c.bundle.display().to_string(),
            pid: p.pid(),
            status: if p.is_init() && c.is_paused() && phase.status() == Status::Running {
                WireStatus::PAUSED
            } else {
                wire_status(phase.status())
            }
            .into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: exit.map_or(0, |e| e.status),
            exited_at: MessageField::some(timestamp(exit.map(|e| e.at))),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }
}

#[async_trait::async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let id = req.id.clone();
        let r = self.do_create(req).await;
        if let Ok(resp) = &r {
            tracing::info!(id, pid = resp.pid, "container created");
        }
        reply("Create", &id, r)
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let r = async {
            validate_ids(&req.id, &req.exec_id)?;
            let pid = self.shim.get(&req.id)?.start(&req.exec_id).await?;
            Ok(StartResponse {
                pid,
                ..Default::default()
            })
        };
        reply("Start", &req.id, r.await)
    }

    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        reply("State", &req.id, self.do_state(&req))
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let r = async {
            validate_ids(&req.id, &req.exec_id)?;
            let p = self.shim.get(&req.id)?.process(&req.exec_id)?;
            let exit = p.wait().await;
            Ok(WaitResponse {
                exit_status: exit.status,
                exited_at: MessageField::some(timestamp(Some(exit.at))),
                ..Default::default()
            })
        };
        reply("Wait", &req.id, r.await)
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        let r = async {
            validate_ids(&req.id, &req.exec_id)?;
            if req.signal == 0 || req.signal > 64 {
                return Err(Error::InvalidArgument(format!(
                    "signal {} is not a signal number",
                    req.signal
                )));
            }
            self.shim
                .get(&req.id)?
                .kill(&req.exec_id, req.signal, req.all)
                .await
        };
        reply("Kill", &req.id, r.await).map(|()| Empty::new())
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        let r = async {
            validate_ids(&req.id, &req.exec_id)?;
            let (pid, exit) = self.shim.delete(&req.id, &req.exec_id).await?;
            Ok(DeleteResponse {
                pid,
                exit_status: exit.status,
                exited_at: MessageField::some(timestamp(Some(exit.at))),
                ..Default::default()
            })
        };
        reply("Delete", &req.id, r.await)
    }

    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        let r = async {
            validate("container id", &req.id)?;
            let c = self.shim.get(&req.id)?;
            let pids = c.runc.ps(&req.id).await?;
            let execs: std::collections::HashMap<u32, String> = c
                .lock_execs()
                .values()
                .map(|p| (p.pid(), p.exec_id.clone()))
                .collect();
            Ok(PidsResponse {
                processes: pids
                    .into_iter()
                    .map(|pid| ProcessInfo {
                        pid,
                        info: execs
                            .get(&pid)
                            .map(|exec_id| {
                                crate::events::any(&ProcessDetails {
                                    exec_id: exec_id.clone(),
                                    ..Default::default()
                                })
                            })
                            .into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        };
        reply("Pids", &req.id, r.await)
    }

    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        let r = (|| {
            validate_ids(&req.id, &req.exec_id)?;
            let p = self.shim.get(&req.id)?.process(&req.exec_id)?;
            if req.stdin {
                p.close_stdin();
            }
            Ok(())
        })();
        reply("CloseIO", &req.id, r).map(|()| Empty::new())
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        let task_pid = self.shim.get(&req.id).map(|c| c.init.pid()).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: format!("{VERSION} (upgraded {} times)", self.shim.upgrades()),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        if self.shim.shutdown() {
            tracing::info!(id = req.id, "no containers left: shutting down");
        }
        Ok(Empty::new())
    }

    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let r = (|| {
            validate("container id", &req.id)?;
            validate("exec id", &req.exec_id)?;
            let spec = req
                .spec
                .as_ref()
                .filter(|s| s.type_url == PROCESS_SPEC_TYPE);
            let Some(spec) = spec else {
                return Err(Error::InvalidArgument(format!(
                    "exec needs a process spec of type {PROCESS_SPEC_TYPE}"
                )));
            };
            let stdio = StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            };
            self.shim
                .get(&req.id)?
                .add_exec(&req.exec_id, stdio, &spec.value)
        })();
        reply("Exec", &req.id, r).map(|()| Empty::new())
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        let r = (|| {
            validate_ids(&req.id, &req.exec_id)?;
            let p = self.shim.get(&req.id)?.process(&req.exec_id)?;
            let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
            p.resize(clamp(req.width), clamp(req.height))
        })();
        reply("ResizePty", &req.id, r).map(|()| Empty::new())
    }

    async fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        let r = async {
            validate("container id", &req.id)?;
            self.shim.get(&req.id)?.pause().await
        };
        reply("Pause", &req.id, r.await).map(|()| Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        let r = async {
            validate("container id", &req.id)?;
            self.shim.get(&req.id)?.resume().await
        };
        reply("Resume", &req.id, r.await).map(|()| Empty::new())
    }

    async fn checkpoint(
        &self,
        _: &TtrpcContext,
        req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        let r = async {
            validate("container id", &req.id)?;
            let c = self.shim.get(&req.id)?;
            let o = match req.options.as_ref().filter(|a| !a.type_url.is_empty()) {
                Some(a) if a.type_url.ends_with("containerd.runc.v1.CheckpointOptions") => {
                    CheckpointOptions::parse_from_bytes(&a.value)
                        .map_err(|e| Error::InvalidArgument(format!("checkpoint options: {e}")))?
                }
                Some(a) => {
                    return Err(Error::InvalidArgument(format!(
                        "checkpoint options of type {} are not supported",
                        a.type_url
                    )))
                }
                None => CheckpointOptions::new(),
            };
            let image = [req.path.as_str(), o.image_path.as_str()]
                .into_iter()
                .find(|p| !p.is_empty())
                .map(PathBuf::from)
                .or_else(|| c.default_image_path())
                .ok_or_else(|| Error::InvalidArgument("no checkpoint path".into()))?;
            let args = CheckpointArgs {
                image_path: image,
                work_path: if o.work_path.is_empty() {
                    c.default_work_path()
                } else {
                    PathBuf::from(&o.work_path)
                },
                exit: o.exit,
                open_tcp: o.open_tcp,
                external_unix_sockets: o.external_unix_sockets,
                terminal: o.terminal,
                file_locks: o.file_locks,
                empty_namespaces: o.empty_namespaces,
                cgroups_mode: o.cgroups_mode,
                parent_path: o.parent_path,
            };
            c.checkpoint(args).await
        };
        reply("Checkpoint", &req.id, r.await).map(|()| Empty::new())
    }

    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let r = async {
            validate("container id", &req.id)?;
            let resources = req.resources.as_ref().filter(|r| !r.value.is_empty());
            let Some(resources) = resources else {
                return Err(Error::InvalidArgument("update needs resources".into()));
            };
            self.shim.get(&req.id)?.update(&resources.value).await
        };
        reply("Update", &req.id, r.await).map(|()| Empty::new())
    }

    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let r = (|| {
            validate("container id", &req.id)?;
            let stats = self.shim.get(&req.id)?.stats()?;
            Ok(StatsResponse {
                stats: MessageField::some(stats),
                ..Default::default()
            })
        })();
        reply("Stats", &req.id, r)
    }
}

//! The Task service: the one place that turns wire requests into domain calls
//! and domain results or errors into wire responses.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::FutureExt;
use protobuf::well_known_types::empty::Empty;
use protobuf::{Message, MessageField};
use tracing::Instrument;
use ttrpc::r#async::TtrpcContext;

use crate::container::{CreateRequest, ProcessState};
use crate::error::{Error, Result};
use crate::events::timestamp;
use crate::ids::validate;
use crate::io::StdioPaths;
use crate::mount::Mount;
use crate::options::runtime_options;
use crate::process::{ExitInfo, Status};
use crate::protos::runc_options::{CheckpointOptions, ProcessDetails};
use crate::protos::shim::*;
use crate::protos::shim_ttrpc::Task;
use crate::protos::status::{ProcessInfo, Status as WireStatus};
use crate::runc::CheckpointArgs;
use crate::shim::Shim;

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

/// Runs one RPC, the one way every handler does: `call` validates and
/// converts the request, makes its one domain call and converts the result.
/// It runs in a span naming the method and the ids (so every log line of
/// the call carries them); a failure is logged once, in that span, and
/// converted for the wire.
///
/// A combinator, not an async fn: an async fn keeps its argument beside the
/// block it moves it into, so each layer held `call` once more (Create's
/// future was 3 times its call's 7 KiB, and its poll took 34 KiB of the
/// daemon's stack, which stays resident once touched).
pub(crate) fn handle<T, F>(
    method: &'static str,
    (id, exec_id): (&str, &str),
    call: F,
) -> impl Future<Output = ttrpc::Result<T>>
where
    F: Future<Output = Result<T>>,
{
    let span = tracing::info_span!("rpc", method, id, exec_id = tracing::field::Empty);
    if !exec_id.is_empty() {
        span.record("exec_id", exec_id);
    }
    call.map(|r| r.map_err(failed)).instrument(span)
}

/// A failed call's error for the wire, logged (in the call's span).
fn failed(e: Error) -> ttrpc::Error {
    // containerd (CRI above all) routinely kills and deletes what has
    // already finished: NotFound is an answer, not a fault.
    if e.code() == ttrpc::Code::NOT_FOUND {
        tracing::debug!(error = %e, "request for something gone");
    } else {
        tracing::warn!(code = ?e.code(), error = %e, "request failed");
    }
    e.into()
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
        Status::Paused => WireStatus::PAUSED,
    }
}

/// The Create request in domain terms.
fn create_request(req: CreateTaskRequest) -> Result<CreateRequest> {
    validate("container id", &req.id)?;
    let bundle = PathBuf::from(&req.bundle);
    if !bundle.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "bundle {:?} is not an absolute path",
            req.bundle
        )));
    }
    Ok(CreateRequest {
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
    })
}

/// State's reply.
fn state_response(id: &str, exec_id: &str, s: ProcessState) -> StateResponse {
    StateResponse {
        id: id.to_string(),
        bundle: s.bundle.display().to_string(),
        pid: s.pid,
        status: wire_status(s.status).into(),
        stdin: s.stdio.stdin,
        stdout: s.stdio.stdout,
        stderr: s.stdio.stderr,
        terminal: s.stdio.terminal,
        exit_status: s.exit.map_or(0, |e| e.status),
        exited_at: MessageField::some(timestamp(s.exit.map(|e| e.at))),
        exec_id: exec_id.to_string(),
        ..Default::default()
    }
}

/// Pids' reply: each exec's pid carries its exec id.
fn pids_response(pids: Vec<(u32, Option<String>)>) -> PidsResponse {
    PidsResponse {
        processes: pids
            .into_iter()
            .map(|(pid, exec_id)| ProcessInfo {
                pid,
                info: exec_id
                    .map(|exec_id| {
                        crate::events::any(&ProcessDetails {
                            exec_id,
                            ..Default::default()
                        })
                    })
                    .into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Checkpoint's request in domain terms (an empty path: the container's
/// default).
fn checkpoint_args(req: &CheckpointTaskRequest) -> Result<CheckpointArgs> {
    let o = match req.options.as_ref().filter(|a| !a.type_url.is_empty()) {
        Some(a) if a.type_url.ends_with("containerd.runc.v1.CheckpointOptions") => {
            CheckpointOptions::parse_from_bytes(&a.value)
                .map_err(Error::decode("checkpoint options"))?
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
        .unwrap_or_default();
    Ok(CheckpointArgs {
        image_path: PathBuf::from(image),
        work_path: PathBuf::from(&o.work_path),
        exit: o.exit,
        open_tcp: o.open_tcp,
        external_unix_sockets: o.external_unix_sockets,
        terminal: o.terminal,
        file_locks: o.file_locks,
        empty_namespaces: o.empty_namespaces,
        cgroups_mode: o.cgroups_mode,
        parent_path: o.parent_path,
    })
}

/// The exit in a wire reply.
fn exited_at(exit: ExitInfo) -> MessageField<protobuf::well_known_types::timestamp::Timestamp> {
    MessageField::some(timestamp(Some(exit.at)))
}

#[async_trait::async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let id = req.id.clone();
        handle("Create", (&id, ""), async {
            let pid = self.shim.create(create_request(req)?).await?;
            tracing::info!(pid, "container created");
            Ok(CreateTaskResponse {
                pid,
                ..Default::default()
            })
        })
        .await
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        handle("Start", (&req.id, &req.exec_id), async {
            validate_ids(&req.id, &req.exec_id)?;
            let pid = self.shim.get(&req.id)?.start(&req.exec_id).await?;
            Ok(StartResponse {
                pid,
                ..Default::default()
            })
        })
        .await
    }

    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        handle("State", (&req.id, &req.exec_id), async {
            validate_ids(&req.id, &req.exec_id)?;
            let state = self.shim.get(&req.id)?.state(&req.exec_id)?;
            Ok(state_response(&req.id, &req.exec_id, state))
        })
        .await
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        handle("Wait", (&req.id, &req.exec_id), async {
            validate_ids(&req.id, &req.exec_id)?;
            let exit = self.shim.get(&req.id)?.wait(&req.exec_id).await?;
            Ok(WaitResponse {
                exit_status: exit.status,
                exited_at: exited_at(exit),
                ..Default::default()
            })
        })
        .await
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        handle("Kill", (&req.id, &req.exec_id), async {
            validate_ids(&req.id, &req.exec_id)?;
            if req.signal == 0 || req.signal > 64 {
                return Err(Error::InvalidArgument(format!(
                    "signal {} is not a signal number",
                    req.signal
                )));
            }
            let c = self.shim.get(&req.id)?;
            c.kill(&req.exec_id, req.signal, req.all).await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        handle("Delete", (&req.id, &req.exec_id), async {
            validate_ids(&req.id, &req.exec_id)?;
            let (pid, exit) = self.shim.delete(&req.id, &req.exec_id).await?;
            Ok(DeleteResponse {
                pid,
                exit_status: exit.status,
                exited_at: exited_at(exit),
                ..Default::default()
            })
        })
        .await
    }

    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        handle("Pids", (&req.id, ""), async {
            validate("container id", &req.id)?;
            let pids = self.shim.get(&req.id)?.pids().await?;
            Ok(pids_response(pids))
        })
        .await
    }

    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        handle("CloseIO", (&req.id, &req.exec_id), async {
            validate_ids(&req.id, &req.exec_id)?;
            let c = self.shim.get(&req.id)?;
            if req.stdin {
                c.close_stdin(&req.exec_id)?;
            }
            Ok(Empty::new())
        })
        .await
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        handle("Connect", (&req.id, ""), async {
            // Any id: Connect is about the daemon (task_pid 0 if unknown).
            let task_pid = self.shim.get(&req.id).map_or(0, |c| c.init_pid());
            Ok(ConnectResponse {
                shim_pid: std::process::id(),
                task_pid,
                version: format!("{VERSION} (upgraded {} times)", self.shim.upgrades()),
                ..Default::default()
            })
        })
        .await
    }

    async fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        handle("Shutdown", (&req.id, ""), async {
            if self.shim.shutdown() {
                tracing::info!("no containers left: shutting down");
            }
            Ok(Empty::new())
        })
        .await
    }

    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        handle("Exec", (&req.id, &req.exec_id), async {
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
            let c = self.shim.get(&req.id)?;
            c.add_exec(&req.exec_id, stdio, &spec.value)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        handle("ResizePty", (&req.id, &req.exec_id), async {
            validate_ids(&req.id, &req.exec_id)?;
            let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
            let (width, height) = (clamp(req.width), clamp(req.height));
            self.shim
                .get(&req.id)?
                .resize(&req.exec_id, width, height)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        handle("Pause", (&req.id, ""), async {
            validate("container id", &req.id)?;
            self.shim.get(&req.id)?.pause().await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        handle("Resume", (&req.id, ""), async {
            validate("container id", &req.id)?;
            self.shim.get(&req.id)?.resume().await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn checkpoint(
        &self,
        _: &TtrpcContext,
        req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        handle("Checkpoint", (&req.id, ""), async {
            validate("container id", &req.id)?;
            let args = checkpoint_args(&req)?;
            self.shim.get(&req.id)?.checkpoint(args).await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        handle("Update", (&req.id, ""), async {
            validate("container id", &req.id)?;
            let resources = req.resources.as_ref().filter(|r| !r.value.is_empty());
            let Some(resources) = resources else {
                return Err(Error::InvalidArgument("update needs resources".into()));
            };
            self.shim.get(&req.id)?.update(&resources.value).await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        handle("Stats", (&req.id, ""), async {
            validate("container id", &req.id)?;
            let stats = self.shim.get(&req.id)?.stats()?;
            Ok(StatsResponse {
                stats: MessageField::some(stats),
                ..Default::default()
            })
        })
        .await
    }
}

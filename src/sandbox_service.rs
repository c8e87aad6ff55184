//! The Sandbox service (`containerd.runtime.sandbox.v1.Sandbox`): wire
//! requests to [`Sandbox`](crate::sandbox::Sandbox) calls and back, in the
//! one handler style of the Task service.

use std::path::PathBuf;
use std::sync::Arc;

use protobuf::MessageField;
use ttrpc::r#async::TtrpcContext;

use crate::error::{Error, Result};
use crate::events::timestamp;
use crate::protos::platform::{Metric, Platform};
use crate::protos::sandbox::*;
use crate::protos::sandbox_ttrpc::Sandbox as SandboxApi;
use crate::sandbox::{CreateSandbox, Phase};
use crate::service::handle;
use crate::shim::Shim;

/// The state names CRI knows (its PodSandboxState enum's).
const READY: &str = "SANDBOX_READY";
const NOT_READY: &str = "SANDBOX_NOTREADY";

/// The ttrpc Sandbox service over a [`Shim`].
pub struct SandboxService {
    shim: Arc<Shim>,
}

impl SandboxService {
    /// Serves `shim`'s sandbox.
    pub fn new(shim: Arc<Shim>) -> SandboxService {
        SandboxService { shim }
    }
}

/// This machine's architecture as Go (and so containerd) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `info["info"]` of a verbose SandboxStatus: JSON that CRI decodes into
/// its own sandbox info (so `crictl inspectp` shows `.info.pid`), with only
/// the scalars it knows; CRI adds the rest (config, netns, runtime).
fn verbose_info(st: &crate::sandbox::Status) -> String {
    let process = match st.phase {
        Phase::Created | Phase::Starting => "created",
        Phase::Ready => "running",
        Phase::Stopped => "stopped",
    };
    serde_json::json!({ "pid": st.pid, "processStatus": process }).to_string()
}

fn create_request(req: CreateSandboxRequest) -> Result<CreateSandbox> {
    crate::ids::validate("sandbox id", &req.sandbox_id)?;
    let bundle = PathBuf::from(&req.bundle_path);
    if !bundle.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "bundle {:?} is not an absolute path",
            req.bundle_path
        )));
    }
    if !req.rootfs.is_empty() {
        return Err(Error::InvalidArgument(
            "a sandbox with a rootfs: tether's sandbox has no image".into(),
        ));
    }
    Ok(CreateSandbox {
        id: req.sandbox_id,
        bundle,
        options: req.options.into_option().map(|a| (a.type_url, a.value)),
        netns: req.netns_path,
    })
}

#[async_trait::async_trait]
impl SandboxApi for SandboxService {
    async fn create_sandbox(
        &self,
        _: &TtrpcContext,
        req: CreateSandboxRequest,
    ) -> ttrpc::Result<CreateSandboxResponse> {
        let id = req.sandbox_id.clone();
        handle("CreateSandbox", (&id, ""), async {
            self.shim.create_sandbox(create_request(req)?)?;
            Ok(CreateSandboxResponse::new())
        })
        .await
    }

    async fn start_sandbox(
        &self,
        _: &TtrpcContext,
        req: StartSandboxRequest,
    ) -> ttrpc::Result<StartSandboxResponse> {
        handle("StartSandbox", (&req.sandbox_id, ""), async {
            let s = self.shim.sandbox(&req.sandbox_id)?;
            let (pid, at) = s.start(self.shim.services()).await?;
            Ok(StartSandboxResponse {
                pid,
                created_at: MessageField::some(timestamp(Some(at))),
                ..Default::default()
            })
        })
        .await
    }

    async fn platform(
        &self,
        _: &TtrpcContext,
        req: PlatformRequest,
    ) -> ttrpc::Result<PlatformResponse> {
        handle("Platform", (&req.sandbox_id, ""), async {
            self.shim.sandbox(&req.sandbox_id)?.heal();
            let platform = Platform {
                os: "linux".into(),
                architecture: go_arch().into(),
                ..Default::default()
            };
            Ok(PlatformResponse {
                platform: MessageField::some(platform),
                ..Default::default()
            })
        })
        .await
    }

    async fn stop_sandbox(
        &self,
        _: &TtrpcContext,
        req: StopSandboxRequest,
    ) -> ttrpc::Result<StopSandboxResponse> {
        handle("StopSandbox", (&req.sandbox_id, ""), async {
            self.shim.sandbox(&req.sandbox_id)?.stop().await?;
            Ok(StopSandboxResponse::new())
        })
        .await
    }

    async fn wait_sandbox(
        &self,
        _: &TtrpcContext,
        req: WaitSandboxRequest,
    ) -> ttrpc::Result<WaitSandboxResponse> {
        handle("WaitSandbox", (&req.sandbox_id, ""), async {
            let exit = self.shim.sandbox(&req.sandbox_id)?.wait().await;
            Ok(WaitSandboxResponse {
                exit_status: exit.status,
                exited_at: MessageField::some(timestamp(Some(exit.at))),
                ..Default::default()
            })
        })
        .await
    }

    async fn sandbox_status(
        &self,
        _: &TtrpcContext,
        req: SandboxStatusRequest,
    ) -> ttrpc::Result<SandboxStatusResponse> {
        handle("SandboxStatus", (&req.sandbox_id, ""), async {
            let st = self.shim.sandbox(&req.sandbox_id)?.status();
            let mut info = std::collections::HashMap::new();
            if req.verbose {
                info.insert("info".to_string(), verbose_info(&st));
            }
            Ok(SandboxStatusResponse {
                sandbox_id: req.sandbox_id.clone(),
                pid: st.pid,
                info,
                state: if st.phase == Phase::Ready {
                    READY
                } else {
                    NOT_READY
                }
                .into(),
                created_at: MessageField::some(timestamp(st.created_at)),
                exited_at: st.exited_at.map(|t| timestamp(Some(t))).into(),
                ..Default::default()
            })
        })
        .await
    }

    async fn ping_sandbox(
        &self,
        _: &TtrpcContext,
        req: PingRequest,
    ) -> ttrpc::Result<PingResponse> {
        handle("PingSandbox", (&req.sandbox_id, ""), async {
            self.shim.sandbox(&req.sandbox_id)?;
            Ok(PingResponse::new())
        })
        .await
    }

    async fn shutdown_sandbox(
        &self,
        _: &TtrpcContext,
        req: ShutdownSandboxRequest,
    ) -> ttrpc::Result<ShutdownSandboxResponse> {
        handle("ShutdownSandbox", (&req.sandbox_id, ""), async {
            // A second Shutdown finds nothing, and that is no error.
            if let Ok(s) = self.shim.sandbox(&req.sandbox_id) {
                s.shutdown().await?;
                self.shim.remove_sandbox(&req.sandbox_id);
            }
            if self.shim.shutdown() {
                tracing::info!("sandbox shut down and no containers left: shutting down");
            }
            Ok(ShutdownSandboxResponse::new())
        })
        .await
    }

    async fn sandbox_metrics(
        &self,
        _: &TtrpcContext,
        req: SandboxMetricsRequest,
    ) -> ttrpc::Result<SandboxMetricsResponse> {
        handle("SandboxMetrics", (&req.sandbox_id, ""), async {
            let data = self.shim.sandbox(&req.sandbox_id)?.metrics()?;
            let metric = Metric {
                timestamp: MessageField::some(timestamp(Some(std::time::SystemTime::now()))),
                id: req.sandbox_id.clone(),
                data: MessageField::some(data),
                ..Default::default()
            };
            Ok(SandboxMetricsResponse {
                metrics: MessageField::some(metric),
                ..Default::default()
            })
        })
        .await
    }

    async fn update_sandbox(
        &self,
        _: &TtrpcContext,
        req: UpdateSandboxRequest,
    ) -> ttrpc::Result<UpdateSandboxResponse> {
        handle("UpdateSandbox", (&req.sandbox_id, ""), async {
            Err(Error::Unimplemented(
                "UpdateSandbox: the pod's resources are its containers'".into(),
            ))
        })
        .await
    }
}

//! tetherctl's state directory: one bundle per container, nothing else to
//! trust. Whatever tetherctl needs later it reads from here or asks the shim.
//!
//! ```text
//! <state>/events.sock            served by a running `tetherctl events`
//! <state>/containers/<id>/       the bundle: config.json, address, log, ...
//! <state>/s/                     the shims' sockets (0700)
//! <state>/runc/                  runc's state (its --root)
//! ```
//!
//! Nothing goes outside it: the shims learn their socket directory and
//! runc root from the bootstrap params tetherctl writes to `start`, as
//! containerd 2.3+ writes them.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use tether::client::{connect, validate_id, ShimSpawn};
use tether_proto::shim::{ConnectRequest, ShutdownRequest};
use tether_proto::shim_ttrpc::TaskClient;

/// The namespace tetherctl's containers live in (runc root, events).
pub const NAMESPACE: &str = "tether";
/// The shim binary next to tetherctl, or on PATH.
const SHIM_BINARY: &str = "containerd-shim-tether-v2";

/// The state directory when none is given: `/run/tether` for root;
/// `$XDG_RUNTIME_DIR/tether` for anyone else who has a runtime directory
/// (a user's own, where they may create one), else `/run/tether` too.
pub fn default_root() -> PathBuf {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
    match xdg {
        Some(dir) if !nix::unistd::geteuid().is_root() => PathBuf::from(dir).join("tether"),
        _ => PathBuf::from("/run/tether"),
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    events: String,
}

impl Store {
    /// The store at `root`, created 0700 if missing, with its sockets'
    /// directory (0700).
    pub fn open(root: &Path) -> Result<Store> {
        for dir in [root.join("containers"), root.join("s")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating the state directory {}", dir.display()))?;
        }
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving {}", root.display()))?;
        let events = root.join("events.sock").display().to_string();
        Ok(Store { root, events })
    }

    /// Where `tetherctl events` listens and shims send events.
    pub fn events_socket(&self) -> PathBuf {
        PathBuf::from(&self.events)
    }

    /// The socket container `id`'s log driver serves `attach` on: in the
    /// sockets' directory, named by a hash of the id (a path in the bundle
    /// could pass the 108 bytes a socket path may have).
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(id.as_bytes());
        let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.root.join("s").join(format!("attach-{hex}"))
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bundle of container `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// Ids of all containers, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = fs::read_dir(self.root.join("containers"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Creates the bundle directory of a new container.
    pub fn create_bundle(&self, id: &str) -> Result<PathBuf> {
        validate_id("container id", id)?;
        let bundle = self.bundle(id);
        match fs::DirBuilder::new().mode(0o700).create(&bundle) {
            Ok(()) => Ok(bundle),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container id {id:?} is already in use")
            }
            Err(e) => Err(e).with_context(|| format!("creating {}", bundle.display())),
        }
    }

    /// How to start the shim for container `id`, as containerd would.
    pub fn spawn_args<'a>(
        &'a self,
        id: &'a str,
        bundle: &'a Path,
        shim: &'a Path,
    ) -> ShimSpawn<'a> {
        ShimSpawn {
            binary: shim,
            bundle,
            namespace: NAMESPACE,
            id,
            // Only hashed into the socket name; unique per state directory.
            address: self.root.to_str().unwrap_or("/run/tether"),
            ttrpc_address: &self.events,
            options: &[],
        }
    }

    /// What tetherctl writes to the shim's `start` for container `id`:
    /// containerd 2.3's BootstrapParams, with the socket directory and,
    /// among the extensions, runc options whose root is in the store.
    pub fn bootstrap(&self, id: &str, runtime: &str) -> Result<Vec<u8>> {
        use protobuf::Message;
        let any = self.runtime_options(runtime)?;
        let params = tether_proto::bootstrap::BootstrapParams {
            instance_id: id.to_string(),
            namespace: NAMESPACE.to_string(),
            containerd_ttrpc_address: self.events.clone(),
            extensions: vec![tether_proto::bootstrap::Extension {
                value: protobuf::MessageField::some(any),
                ..Default::default()
            }],
            socket_dir: Some(self.root.join("s").display().to_string()),
            ..Default::default()
        };
        Ok(params.write_to_bytes()?)
    }

    /// The runtime options of a container (in Create, as containerd sends
    /// them, and in the bootstrap params): the OCI runtime `runtime` (a name
    /// in PATH or a path; "" for runc), whose root is in the store.
    pub fn runtime_options(&self, runtime: &str) -> Result<protobuf::well_known_types::any::Any> {
        use protobuf::Message;
        let options = tether_proto::runc_options::Options {
            binary_name: runtime.to_string(),
            root: self.root.join("runc").display().to_string(),
            ..Default::default()
        };
        Ok(protobuf::well_known_types::any::Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: options.write_to_bytes()?,
            ..Default::default()
        })
    }

    /// The shim binary: next to this executable, else on PATH.
    pub fn shim_binary() -> PathBuf {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(SHIM_BINARY)))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(SHIM_BINARY))
    }

    /// A client for container `id`'s shim.
    pub async fn client(&self, id: &str) -> Result<ShimHandle> {
        validate_id("container id", id)?;
        let bundle = self.bundle(id);
        if !bundle.is_dir() {
            bail!("no such container: {id}");
        }
        let address = fs::read_to_string(bundle.join("address"))
            .with_context(|| format!("container {id} has no shim address"))?;
        let client = tokio::time::timeout(Duration::from_secs(5), connect(address.trim()))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to the shim of {id} timed out"))?
            .with_context(|| format!("the shim of container {id} is not reachable"))?;
        Ok(ShimHandle {
            id: id.to_string(),
            client,
        })
    }
}

/// A connected shim serving one container.
pub struct ShimHandle {
    /// The container id.
    pub id: String,
    /// The Task client.
    pub client: TaskClient,
}

/// A context with a generous deadline for calls that return promptly.
pub fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_duration(Duration::from_secs(30))
}

impl ShimHandle {
    /// The shim daemon's pid.
    pub async fn shim_pid(&self) -> Result<u32> {
        let req = ConnectRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        Ok(self.client.connect(ctx(), &req).await?.shim_pid)
    }

    /// Asks the shim to exit and waits (bounded) until it has.
    pub async fn shutdown(&self) {
        let pid = self.shim_pid().await.ok();
        let req = ShutdownRequest {
            id: self.id.clone(),
            now: false,
            special_fields: Default::default(),
        };
        let _ = self.client.shutdown(ctx(), &req).await;
        if let Some(pid) = pid {
            for _ in 0..250 {
                if !alive(pid) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Whether `pid` is a running process (not gone, not a zombie), from
/// `/proc/PID/stat`'s state field.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.is_empty() && !state.starts_with('Z')
        })
        .unwrap_or(false)
}

/// Writes a bundle file so that a reader (the shim, runc) sees the old
/// content or the new, never a part: a temporary file next to it, fsync,
/// rename.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Turns a ttrpc error into a message a person reads: what failed, and the
/// shim's own words.
pub fn rpc_err(what: impl std::fmt::Display) -> impl FnOnce(ttrpc::Error) -> anyhow::Error {
    move |e| match e {
        ttrpc::Error::RpcStatus(s) => anyhow::anyhow!("{what}: {}", s.message),
        other => anyhow::anyhow!("{what}: {other}"),
    }
}

//! `tetherctl run` and `tetherctl exec`: starting processes and connecting
//! the local terminal or stdio to them through FIFOs in the bundle.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use protobuf::well_known_types::any::Any;
use protobuf::MessageField;
use tether_proto::shim::{CreateTaskRequest, DeleteRequest, ExecProcessRequest, StartRequest};

use super::attach::{attach, resize, ClientEnds, Fifos, RawMode};
use super::commands::remove;
use super::detached::{self, DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE};
use super::exit_code;
use super::parse::{parse_size, parse_user};
use super::spec::{self, BundleSpec, Process, ProcessOptions};
use super::store::{ctx, rpc_err, write_atomic, ShimHandle, Store};

/// `run`'s options.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run in the background; output goes to the container's log (see
    /// `logs`), and `attach` joins it.
    #[arg(short, long)]
    detach: bool,
    /// With -d: keep the container's stdin open (a FIFO `attach` writes
    /// to); without it a detached container's stdin is empty. A foreground
    /// container always gets the local stdin.
    #[arg(short, long)]
    interactive: bool,
    /// Remove the container when it exits, however it ends (with -d, a
    /// watcher in its own session does it).
    #[arg(long)]
    rm: bool,
    /// With -d: the size one log file may reach before it is rotated
    /// (bytes, or with k, m, g).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = DEFAULT_LOG_MAX_SIZE)]
    log_max_size: u64,
    /// With -d: how many log files to keep, the current one included.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LOG_MAX_FILES, value_parser = clap::value_parser!(u32).range(1..))]
    log_max_files: u32,
    /// Give the process a terminal (the local one, in raw mode).
    #[arg(short, long)]
    tty: bool,
    /// Environment variable K=V (repeatable).
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Working directory in the container.
    #[arg(long)]
    cwd: Option<String>,
    /// User to run as: UID, or UID:GID.
    #[arg(short, long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Memory limit: bytes, or with a unit (k, m, g: 1024-based, as
    /// docker takes them; e.g. 32M).
    #[arg(short, long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// The OCI runtime: a name in PATH or a path (default runc).
    #[arg(long, value_name = "BINARY")]
    runtime: Option<String>,
    /// Root filesystem directory; tetherctl writes a default spec for it.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "bundle",
        conflicts_with = "bundle"
    )]
    rootfs: Option<PathBuf>,
    /// An OCI bundle (config.json, rootfs) to run instead.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Pass signals sent to tetherctl on to the container (foreground).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    sig_proxy: bool,
    /// Container id.
    id: String,
    /// Command and arguments (required with --rootfs).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `exec`'s options.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Give the process a terminal (the local one, in raw mode).
    #[arg(short, long)]
    tty: bool,
    /// The exec id (default: generated).
    #[arg(long)]
    exec_id: Option<String>,
    /// Container id.
    id: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Writes config.json for `args` into `bundle`.
fn write_spec(args: &RunArgs, bundle: &Path) -> Result<()> {
    let spec = if let Some(rootfs) = &args.rootfs {
        let meta = std::fs::metadata(rootfs);
        if !meta.map(|m| m.is_dir()).unwrap_or(false) {
            bail!(
                "rootfs {} does not exist or is not a directory",
                rootfs.display()
            );
        }
        if args.command.is_empty() {
            bail!("a command is required with --rootfs");
        }
        let rootfs = rootfs.canonicalize()?;
        let process = ProcessOptions {
            args: args.command.clone(),
            env: args.env.clone(),
            cwd: args.cwd.clone(),
            user: args.user.as_deref().map(parse_user).transpose()?,
            terminal: args.tty,
        };
        spec::spec(
            &args.id,
            &rootfs.display().to_string(),
            &process,
            args.memory,
        )
    } else {
        let dir = args
            .bundle
            .as_ref()
            .expect("clap requires --rootfs or --bundle");
        let mut spec = BundleSpec::read(dir)?;
        let root = dir
            .join(spec.root.path.as_deref().unwrap_or("rootfs"))
            .canonicalize()
            .context("resolving the bundle's root")?;
        spec.root.path = Some(root.display().to_string());
        spec.process.terminal = args.tty;
        if !args.command.is_empty() {
            spec.process.args = Some(args.command.clone());
        }
        serde_json::to_value(spec)?
    };
    let data = serde_json::to_vec_pretty(&spec)?;
    write_atomic(&bundle.join("config.json"), &data, 0o600).context("writing config.json")?;
    // The shim logs to <bundle>/log; a plain file keeps them for reading.
    write_atomic(&bundle.join("log"), b"", 0o600).context("creating the shim's log")?;
    Ok(())
}

/// `run`.
pub async fn run(store: &Store, args: RunArgs) -> Result<u8> {
    tether::client::validate_id("container id", &args.id)?;
    let bundle = store.create_bundle(&args.id)?;
    match run_in(store, &args, &bundle).await {
        Ok(code) => Ok(code),
        Err(e) => {
            // Leave nothing behind: no shim, no mount, no bundle.
            let _ = remove(store, &args.id, true).await;
            Err(e)
        }
    }
}

async fn run_in(store: &Store, args: &RunArgs, bundle: &Path) -> Result<u8> {
    write_spec(args, bundle)?;
    let fifos = (!args.detach)
        .then(|| Fifos::make(bundle, "", args.tty))
        .transpose()?;
    let shim_binary = Store::shim_binary();
    let address = store
        .spawn_args(&args.id, bundle, &shim_binary)
        .start_with(&store.bootstrap(&args.id, args.runtime.as_deref().unwrap_or(""))?)
        .with_context(|| format!("starting the shim {}", shim_binary.display()))?;
    let _ = address;
    let shim = store.client(&args.id).await?;
    let path = |p: &PathBuf| p.display().to_string();
    let mut req = CreateTaskRequest {
        id: args.id.clone(),
        bundle: bundle.display().to_string(),
        terminal: args.tty,
        options: MessageField::some(store.runtime_options(args.runtime.as_deref().unwrap_or(""))?),
        ..Default::default()
    };
    match &fifos {
        Some(f) => {
            req.stdin = path(&f.stdin);
            req.stdout = path(&f.stdout);
            req.stderr = if args.tty {
                String::new()
            } else {
                path(&f.stderr)
            };
        }
        None => detached::stdio(
            store,
            &args.id,
            bundle,
            args.interactive,
            (args.log_max_size, args.log_max_files),
            &mut req,
        )?,
    }
    // Our ends first: the shim opens its ends at Create, and the container
    // may be gone again before a later open could find them.
    let ends = fifos
        .as_ref()
        .map(|f| ClientEnds::open(f, args.tty))
        .transpose()?;
    shim.client
        .create(ctx(), &req)
        .await
        .map_err(rpc_err(format!("creating container {}", args.id)))?;
    let raw = match (&fifos, args.tty) {
        (Some(_), true) => {
            resize(&shim.client, &args.id, "").await;
            Some(RawMode::enter()?)
        }
        _ => None,
    };
    let start = StartRequest {
        id: args.id.clone(),
        ..Default::default()
    };
    shim.client
        .start(ctx(), &start)
        .await
        .map_err(rpc_err(format!("starting container {}", args.id)))?;
    let Some(ends) = ends else {
        if args.rm {
            detached::spawn_rm_on_exit(store, &args.id)?;
        }
        println!("{}", args.id);
        return Ok(0);
    };
    // SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to a
    // foreground tetherctl go to the container (as docker run's signal
    // proxy does, unless --sig-proxy=false); tetherctl goes on waiting, so
    // --rm still removes it once it exits.
    let proxy = args.sig_proxy.then(|| {
        tokio::spawn(forward_signals(
            shim.client.clone(),
            args.id.clone(),
            String::new(),
        ))
    });
    let status = attach(&shim, "", ends, args.tty).await;
    if let Some(p) = proxy {
        p.abort();
    }
    drop(raw);
    let status = status?;
    if args.rm {
        remove(store, &args.id, false).await?;
    }
    Ok(exit_code(status))
}

/// Sends each SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 this
/// process gets to process `exec_id` (the init when empty) of container
/// `id`, until aborted.
async fn forward_signals(
    client: tether_proto::shim_ttrpc::TaskClient,
    id: String,
    exec_id: String,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ];
    let mut streams = Vec::new();
    for kind in kinds {
        match signal(kind) {
            Ok(s) => streams.push((kind, s)),
            Err(e) => eprintln!(
                "tetherctl: cannot forward signal {}: {e}",
                kind.as_raw_value()
            ),
        }
    }
    loop {
        let next = futures_util::future::select_all(
            streams
                .iter_mut()
                .map(|(k, s)| Box::pin(async move { s.recv().await.map(|_| *k) })),
        );
        let (got, _, _) = next.await;
        let Some(kind) = got else { return };
        let req = tether_proto::shim::KillRequest {
            id: id.clone(),
            exec_id: exec_id.clone(),
            signal: kind.as_raw_value() as u32,
            ..Default::default()
        };
        if let Err(e) = client.kill(ctx(), &req).await {
            eprintln!("tetherctl: forwarding signal {}: {e}", kind.as_raw_value());
        }
    }
}

/// `exec`.
pub async fn exec(store: &Store, args: ExecArgs) -> Result<u8> {
    let shim = store.client(&args.id).await?;
    let exec_id = args.exec_id.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("exec-{}-{nanos}", std::process::id())
    });
    tether::client::validate_id("exec id", &exec_id)?;
    let bundle = store.bundle(&args.id);
    let mut process = BundleSpec::read(&bundle)
        .context("reading the container's spec")?
        .process;
    process.args = Some(args.command.clone());
    process.terminal = args.tty;
    // The exec's FIFOs are named after it: if they exist, that exec id is
    // in use (by a running `tetherctl exec`).
    if bundle.join(format!("{exec_id}-stdin")).exists() {
        anyhow::bail!(
            "exec id {exec_id} is already in use in container {}",
            args.id
        );
    }
    let fifos = Fifos::make(&bundle, &format!("{exec_id}-"), args.tty)?;
    let result = exec_in(&shim, &exec_id, process, &fifos, args.tty).await;
    fifos.remove();
    result
}

async fn exec_in(
    shim: &ShimHandle,
    exec_id: &str,
    process: Process,
    fifos: &Fifos,
    tty: bool,
) -> Result<u8> {
    let path = |p: &PathBuf| p.display().to_string();
    let req = ExecProcessRequest {
        id: shim.id.clone(),
        exec_id: exec_id.to_string(),
        terminal: tty,
        stdin: path(&fifos.stdin),
        stdout: path(&fifos.stdout),
        stderr: if tty {
            String::new()
        } else {
            path(&fifos.stderr)
        },
        spec: MessageField::some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&process)?,
            ..Default::default()
        }),
        ..Default::default()
    };
    // Our ends first, without waiting: the shim opens its ends at Start, and
    // the exec may be gone again before a later open could find them.
    let ends = ClientEnds::open(fifos, tty)?;
    shim.client
        .exec(ctx(), &req)
        .await
        .map_err(rpc_err("adding the exec"))?;
    let raw = if tty {
        resize(&shim.client, &shim.id, exec_id).await;
        Some(RawMode::enter()?)
    } else {
        None
    };
    let start = StartRequest {
        id: shim.id.clone(),
        exec_id: exec_id.to_string(),
        ..Default::default()
    };
    let started = shim.client.start(ctx(), &start).await;
    let status = match started {
        Ok(_) => {
            let proxy = tokio::spawn(forward_signals(
                shim.client.clone(),
                shim.id.clone(),
                exec_id.to_string(),
            ));
            let status = attach(shim, exec_id, ends, tty).await;
            proxy.abort();
            status
        }
        Err(e) => Err(rpc_err("starting the exec")(e)),
    };
    drop(raw);
    let del = DeleteRequest {
        id: shim.id.clone(),
        exec_id: exec_id.to_string(),
        ..Default::default()
    };
    let _ = shim.client.delete(ctx(), &del).await;
    Ok(exit_code(status?))
}

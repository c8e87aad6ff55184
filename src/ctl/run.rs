//! `tetherctl run` and `tetherctl exec`: starting processes and connecting
//! the local terminal or stdio to them through FIFOs in the bundle.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::stat::Mode;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use protobuf::well_known_types::any::Any;
use protobuf::MessageField;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use super::commands::remove;
use super::exit_code;
use super::spec::{self, ProcessOptions};
use super::store::{ctx, rpc_err, Shim, Store};
use crate::protos::shim::{
    CloseIORequest, CreateTaskRequest, DeleteRequest, ExecProcessRequest, ResizePtyRequest,
    StartRequest, WaitRequest,
};
use crate::state::write_atomic;

/// `run`'s options.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run in the background; output goes to <bundle>/output.log.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Give the process a terminal (the local one, in raw mode).
    #[arg(short, long)]
    tty: bool,
    /// Environment variable K=V (repeatable).
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Working directory in the container.
    #[arg(long)]
    cwd: Option<String>,
    /// UID[:GID] to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Memory limit in bytes.
    #[arg(short, long, value_name = "BYTES")]
    memory: Option<u64>,
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

fn parse_user(s: &str) -> Result<(u32, u32)> {
    let (u, g) = s.split_once(':').unwrap_or((s, "0"));
    let uid = u
        .parse()
        .with_context(|| format!("invalid user {s:?}: UID[:GID] expected"))?;
    let gid = g
        .parse()
        .with_context(|| format!("invalid user {s:?}: UID[:GID] expected"))?;
    Ok((uid, gid))
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
        let path = dir.join("config.json");
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut spec: serde_json::Value =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        let root = spec["root"]["path"]
            .as_str()
            .unwrap_or("rootfs")
            .to_string();
        let root = dir
            .join(root)
            .canonicalize()
            .context("resolving the bundle's root")?;
        spec["root"]["path"] = root.display().to_string().into();
        spec["process"]["terminal"] = args.tty.into();
        if !args.command.is_empty() {
            spec["process"]["args"] = args.command.clone().into();
        }
        spec
    };
    let data = serde_json::to_vec_pretty(&spec)?;
    write_atomic(&bundle.join("config.json"), &data, 0o600)?;
    // The shim logs to <bundle>/log; a plain file keeps them for reading.
    write_atomic(&bundle.join("log"), b"", 0o600)?;
    Ok(())
}

/// The client ends of a process's stdio FIFOs.
struct Fifos {
    stdin: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Fifos {
    fn make(dir: &Path, prefix: &str, tty: bool) -> Result<Fifos> {
        let f = Fifos {
            stdin: dir.join(format!("{prefix}stdin")),
            stdout: dir.join(format!("{prefix}stdout")),
            stderr: dir.join(format!("{prefix}stderr")),
        };
        let paths: &[&Path] = if tty {
            &[&f.stdin, &f.stdout]
        } else {
            &[&f.stdin, &f.stdout, &f.stderr]
        };
        for p in paths {
            nix::unistd::mkfifo(*p, Mode::from_bits_truncate(0o600))
                .with_context(|| format!("creating {}", p.display()))?;
        }
        Ok(f)
    }

    fn remove(&self) {
        for p in [&self.stdin, &self.stdout, &self.stderr] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Local terminal in raw mode for the lifetime of the guard.
struct RawMode(Termios);

impl RawMode {
    fn enter() -> Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).context("the local stdin is not a terminal")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
    }
}

/// The client ends of a process's FIFOs, being opened. Each open blocks
/// until the shim has opened its end (at Create for init, at Start for an
/// exec), so they are started before Start and complete around it; output
/// the process writes early waits in the FIFO for a reader that is coming.
struct Opening {
    outputs: Vec<(JoinHandle<std::io::Result<std::fs::File>>, bool)>,
    input: JoinHandle<std::io::Result<std::fs::File>>,
    paths: Vec<PathBuf>,
}

impl Opening {
    fn start(fifos: &Fifos, tty: bool) -> Opening {
        let open = |path: &Path, write: bool| {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || {
                let mut o = std::fs::OpenOptions::new();
                if write {
                    o.write(true);
                } else {
                    o.read(true);
                }
                o.custom_flags(libc::O_CLOEXEC).open(path)
            })
        };
        let mut outputs = vec![(open(&fifos.stdout, false), false)];
        if !tty {
            outputs.push((open(&fifos.stderr, false), true));
        }
        Opening {
            outputs,
            input: open(&fifos.stdin, true),
            paths: vec![
                fifos.stdin.clone(),
                fifos.stdout.clone(),
                fifos.stderr.clone(),
            ],
        }
    }

    /// Stops waiting for the shim (it failed before opening its ends):
    /// opening each FIFO read-write completes the blocked opens.
    fn abort(self) {
        for p in &self.paths {
            let _ = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(p);
        }
    }
}

async fn opened(h: JoinHandle<std::io::Result<std::fs::File>>) -> Result<std::fs::File> {
    Ok(h.await.context("opening a FIFO")??)
}

/// Copies the local stdio to and from a started process's FIFOs, forwards
/// window size changes, and returns the process's exit status once it has
/// exited and its output is all out.
async fn attach(shim: &Shim, exec_id: &str, fifos: Opening, tty: bool) -> Result<u32> {
    let mut outputs: Vec<JoinHandle<()>> = Vec::new();
    for (handle, is_err) in fifos.outputs {
        let mut rx = pipe::Receiver::from_file(opened(handle).await?)?;
        outputs.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = rx.read(&mut buf).await {
                let ok = if is_err {
                    tokio::io::stderr().write_all(&buf[..n]).await
                } else {
                    tokio::io::stdout().write_all(&buf[..n]).await
                };
                if ok.is_err() {
                    break;
                }
            }
            let _ = tokio::io::stdout().flush().await;
        }));
    }
    let mut tx = pipe::Sender::from_file(opened(fifos.input).await?)?;
    let (client, id, eid) = (shim.client.clone(), shim.id.clone(), exec_id.to_string());
    let input = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = stdin.read(&mut buf).await {
            if tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
        drop(tx);
        let req = CloseIORequest {
            id,
            exec_id: eid,
            stdin: true,
            ..Default::default()
        };
        let _ = client.close_io(ctx(), &req).await;
    });
    let resizer = tty.then(|| {
        let (client, id, eid) = (shim.client.clone(), shim.id.clone(), exec_id.to_string());
        tokio::spawn(async move {
            let kind = tokio::signal::unix::SignalKind::window_change();
            let Ok(mut winch) = tokio::signal::unix::signal(kind) else {
                return;
            };
            while winch.recv().await.is_some() {
                resize(&client, &id, &eid).await;
            }
        })
    });

    let req = WaitRequest {
        id: shim.id.clone(),
        exec_id: exec_id.to_string(),
        ..Default::default()
    };
    let exit = shim
        .client
        .wait(ttrpc::context::with_timeout(0), &req)
        .await;
    for o in outputs {
        let _ = tokio::time::timeout(Duration::from_secs(5), o).await;
    }
    input.abort();
    if let Some(r) = resizer {
        r.abort();
    }
    Ok(exit
        .map_err(rpc_err("waiting for the process"))?
        .exit_status)
}

/// Sends the local terminal's size to the process.
async fn resize(client: &crate::protos::shim_ttrpc::TaskClient, id: &str, exec_id: &str) {
    if let Some((width, height)) = crate::sys::get_winsize(std::io::stdin().as_raw_fd()) {
        let req = ResizePtyRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            width: width.into(),
            height: height.into(),
            ..Default::default()
        };
        let _ = client.resize_pty(ctx(), &req).await;
    }
}

/// `run`.
pub async fn run(store: &Store, args: RunArgs) -> Result<u8> {
    crate::ids::validate("container id", &args.id)?;
    if args.detach && args.rm {
        bail!("--rm and --detach cannot be used together");
    }
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
        .start()
        .with_context(|| format!("starting the shim {}", shim_binary.display()))?;
    let _ = address;
    let shim = store.client(&args.id).await?;
    let path = |p: &PathBuf| p.display().to_string();
    let mut req = CreateTaskRequest {
        id: args.id.clone(),
        bundle: bundle.display().to_string(),
        terminal: args.tty,
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
        None => req.stdout = format!("file://{}", bundle.join("output.log").display()),
    }
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
    let opening = fifos.as_ref().map(|f| Opening::start(f, args.tty));
    let start = StartRequest {
        id: args.id.clone(),
        ..Default::default()
    };
    shim.client
        .start(ctx(), &start)
        .await
        .map_err(rpc_err(format!("starting container {}", args.id)))?;
    let Some(opening) = opening else {
        println!("{}", args.id);
        return Ok(0);
    };
    let status = attach(&shim, "", opening, args.tty).await;
    drop(raw);
    let status = status?;
    if args.rm {
        remove(store, &args.id, false).await?;
    }
    Ok(exit_code(status))
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
    crate::ids::validate("exec id", &exec_id)?;
    let bundle = store.bundle(&args.id);
    let config =
        std::fs::read(bundle.join("config.json")).context("reading the container's spec")?;
    let config: serde_json::Value = serde_json::from_slice(&config)?;
    let mut process = config["process"].clone();
    process["args"] = args.command.clone().into();
    process["terminal"] = args.tty.into();
    let fifos = Fifos::make(&bundle, &format!("{exec_id}-"), args.tty)?;
    let result = exec_in(&shim, &exec_id, process, &fifos, args.tty).await;
    fifos.remove();
    result
}

async fn exec_in(
    shim: &Shim,
    exec_id: &str,
    process: serde_json::Value,
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
    let opening = Opening::start(fifos, tty);
    let started = shim.client.start(ctx(), &start).await;
    let status = match started {
        Ok(_) => attach(shim, exec_id, opening, tty).await,
        Err(e) => {
            opening.abort();
            Err(rpc_err("starting the exec")(e))
        }
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

//! `testenv exec [OPTIONS] -- COMMAND...`: runs COMMAND inside a private
//! containerd's environment (see the library) and tears it down; exits with
//! COMMAND's status (2 when the environment could not be set up, 128+N when
//! a signal N stopped it); no descriptor above stderr is passed on.
//! `testenv config [OPTIONS] DIR` writes a containerd config into DIR: a
//! private containerd's (its dirs under DIR), or with `--system` the system
//! containerd's (a node's containerd.service), with the CRI and its handlers
//! or without. `testenv enter DIR -- COMMAND...` runs COMMAND inside the
//! running environment of DIR (`$TESTENV_DIR`): its cgroup and namespaces.
//! `testenv __init PLAN` is the environment's init.

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{SigSet, Signal};
use testenv::config::{Cri, Handler, Settings};
use testenv::{Env, Options};

#[derive(Parser)]
#[command(
    name = "testenv",
    about = "A private containerd in namespaces and a cgroup of its own"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Set up, run COMMAND inside (CONTAINERD_ADDRESS, CRI_ENDPOINT, ... set), tear down.
    Exec(Box<ExecArgs>),
    /// Write a containerd config (and its side files) into DIR for that
    /// containerd's version; print its path.
    Config(ConfigArgs),
    /// Run COMMAND inside the running environment of DIR (its cgroup and
    /// namespaces), in the current directory.
    Enter {
        /// The environment's dir (`$TESTENV_DIR`).
        dir: PathBuf,
        /// The command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The environment's init (internal).
    #[command(name = "__init", hide = true)]
    Init { plan: PathBuf },
}

/// Which containerd.
#[derive(clap::Args)]
struct ContainerdArgs {
    /// `system`, a version under --peers-dir (e.g. 2.3.7) or a containerd binary.
    #[arg(long, default_value = "system")]
    containerd: String,
    /// scripts/peers.sh's cache.
    #[arg(
        long,
        env = "TETHER_PEERS_DIR",
        default_value = "/var/cache/tether-peers"
    )]
    peers_dir: PathBuf,
}

/// The CRI plugin.
#[derive(clap::Args)]
struct CriArgs {
    /// Turn on the CRI plugin.
    #[arg(long)]
    cri: bool,
    /// NAME=TYPE[:SHIM[:BINARY]][,SystemdCgroup=true][,ShimCgroup=PATH]
    /// [,Sandboxer=shim|podsandbox][,DisablePauseImagePull=true], e.g.
    /// tether=io.containerd.tether.v2:/path/shim (repeatable; Sandboxer
    /// needs containerd 2.x, DisablePauseImagePull 2.4 or newer).
    #[arg(long = "handler", value_parser = Handler::parse, requires = "cri")]
    handlers: Vec<Handler>,
    /// The CRI's default handler (default: the first).
    #[arg(long, requires = "cri")]
    default_handler: Option<String>,
    /// The sandbox image.
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    sandbox_image: String,
}

#[derive(clap::Args)]
struct ExecArgs {
    #[command(flatten)]
    containerd: ContainerdArgs,
    #[command(flatten)]
    cri: CriArgs,
    /// A local registry standing in for --mirror hosts (default registry.k8s.io, gcr.io).
    #[arg(long)]
    registry: bool,
    /// A registry the local one stands in for (repeatable).
    #[arg(long = "mirror")]
    mirrors: Vec<String>,
    /// An OCI layout with an images.txt to push to the registry (repeatable).
    #[arg(long = "images")]
    images: Vec<PathBuf>,
    /// A CNI bridge network for the CRI.
    #[arg(long)]
    cni: bool,
    /// The runc every shim runs (first in containerd's PATH).
    #[arg(long)]
    runc: Option<PathBuf>,
    /// containerd's log level.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// containerd's log file (default: in the private dir).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Start containerd in the cgroup /NAME (as seen inside).
    #[arg(long)]
    containerd_cgroup: Option<String>,
    /// Keep the private dir.
    #[arg(long)]
    keep: bool,
    /// The command.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct ConfigArgs {
    #[command(flatten)]
    containerd: ContainerdArgs,
    #[command(flatten)]
    cri: CriArgs,
    /// The system containerd's (a node's containerd.service): containerd's
    /// own root, state, socket and opt dir, and its CRI defaults; DIR gets
    /// only the config (e.g. /etc/containerd).
    #[arg(long)]
    system: bool,
    /// containerd's log level (default: info, or containerd's with --system).
    #[arg(long)]
    log_level: Option<String>,
    /// The dir (made if missing): without --system, root, state, opt and
    /// containerd.sock go there too.
    dir: PathBuf,
}

/// Marks every descriptor above stderr close-on-exec, so that nothing the
/// caller leaked (a shell's or a CI runner's pipes) reaches containerd, its
/// shims or the command: the benchmarks count the shims' descriptors.
fn drop_inherited_fds() -> Result<(), String> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("/proc/self/fd: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // The listing's own descriptor is closed by now (EBADF): ignored.
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(())
}

fn exec(a: ExecArgs) -> Result<i32, String> {
    drop_inherited_fds()?;
    let mut mirrors = a.mirrors;
    if mirrors.is_empty() {
        mirrors = Options::default().mirrors;
    }
    let o = Options {
        containerd: a.containerd.containerd,
        peers_dir: a.containerd.peers_dir,
        cri: a.cri.cri,
        cni: a.cni,
        registry: a.registry,
        mirrors,
        images: a.images,
        sandbox_image: a.cri.sandbox_image,
        handlers: a.cri.handlers,
        default_handler: a.cri.default_handler,
        runc: a.runc,
        log_level: a.log_level,
        log: a.log,
        containerd_cgroup: a.containerd_cgroup,
        containerd_env: Vec::new(),
        keep: a.keep,
    };
    // INT, TERM and HUP end the environment: a thread waits for them and
    // kills the cgroup, so init ends and the normal teardown runs.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut env = Env::start(&o, &me, &a.command).map_err(|e| e.to_string())?;
    eprintln!(
        "[testenv] containerd {}.{} on {} in {}",
        env.version.major,
        env.version.minor,
        env.address.display(),
        env.dir().display()
    );
    if let Some(cg) = env.cgroup().cloned() {
        thread::spawn(move || {
            if let Ok(sig) = signals.wait() {
                eprintln!("[testenv] {sig}: stopping the environment");
                let _ = cg.kill_all(Duration::from_secs(30));
            }
        });
    }
    let status = env.wait().map_err(|e| e.to_string())?;
    env.teardown().map_err(|e| e.to_string())?;
    Ok(status)
}

fn config(a: ConfigArgs) -> Result<i32, String> {
    let o = Options {
        containerd: a.containerd.containerd,
        peers_dir: a.containerd.peers_dir,
        ..Options::default()
    };
    let (_, version, _) = testenv::containerd_bins(&o).map_err(|e| e.to_string())?;
    let mut s = if a.system {
        Settings::system()
    } else {
        Settings::in_dir(&a.dir)
    };
    if a.log_level.is_some() {
        s.log_level = a.log_level;
    }
    if a.cri.cri {
        let c = a.cri;
        s.cri = Some(Cri::with_handlers(
            &c.sandbox_image,
            c.handlers,
            c.default_handler,
        ));
    } else {
        s.disable_cri(version);
    }
    let dir = &a.dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = testenv::config::write(&s, version, dir).map_err(|e| e.to_string())?;
    println!("{}", path.display());
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Exec(a) => exec(*a),
        Cmd::Config(a) => config(a),
        Cmd::Enter { dir, command } => Err(testenv::enter::enter(&dir, &command).to_string()),
        Cmd::Init { plan } => std::fs::read_to_string(&plan)
            .map_err(|e| format!("{}: {e}", plan.display()))
            .and_then(|t| toml::from_str(&t).map_err(|e| e.to_string()))
            .and_then(|p| testenv::init::run(&p).map_err(|e| e.to_string())),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("testenv: {e}");
            ExitCode::from(2)
        }
    }
}

//! `tetherctl`: runs containers through tether shims without containerd.
//!
//! It is daemonless: each command spawns or asks shims and reads the state
//! directory, so killing tetherctl never touches a container.

mod attach;
mod commands;
mod logs;
mod run;
pub mod spec;
pub mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run containers through tether shims, without containerd.
#[derive(Debug, Parser)]
#[command(
    name = "tetherctl",
    version,
    about = "Runs containers without containerd: each under its own tether shim (containerd-shim-tether-v2, found next to tetherctl or in PATH), with runc",
    long_about = None
)]
pub struct Cli {
    /// State directory: bundles, and the events socket.
    #[arg(
        long,
        global = true,
        env = "TETHER_STATE_DIR",
        default_value = "/run/tether"
    )]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create and start a container.
    Run(run::RunArgs),
    /// Run a command in a running container; exits with its status.
    Exec(run::ExecArgs),
    /// List containers.
    Ps {
        /// Print ids only.
        #[arg(short, long)]
        quiet: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one container's state.
    State {
        /// Container id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a signal to a container's init process (or all its processes).
    Kill {
        /// Signal name (KILL, SIGTERM, ...) or number.
        #[arg(short, long, default_value = "TERM")]
        signal: String,
        /// Signal every process in the container.
        #[arg(long)]
        all: bool,
        /// Container id.
        id: String,
    },
    /// Print a detached container's output (its stdout and stderr).
    Logs {
        /// Keep printing what it writes until it has exited.
        #[arg(short, long)]
        follow: bool,
        /// Container id.
        id: String,
    },
    /// Wait for a container to exit; prints and exits with its status.
    Wait {
        /// Container id.
        id: String,
    },
    /// Delete a container, stop its shim and remove its bundle.
    Rm {
        /// Kill it first if it is running.
        #[arg(short, long)]
        force: bool,
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print task events while running.
    Events,
    /// Replace the shim of a container with the binary now at its path,
    /// in place, while the container runs.
    Upgrade {
        /// Container id.
        id: String,
    },
}

/// Entry point of the `tetherctl` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tetherctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // Reading the local stdin may still block a thread: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tetherctl: {e:#}");
            ExitCode::from(125)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let store = store::Store::open(&cli.state_dir)?;
    match cli.command {
        Command::Run(args) => run::run(&store, args).await,
        Command::Exec(args) => run::exec(&store, args).await,
        Command::Ps { quiet, json } => commands::ps(&store, quiet, json).await,
        Command::State { id, json } => commands::state(&store, &id, json).await,
        Command::Kill { signal, all, id } => commands::kill(&store, &id, &signal, all).await,
        Command::Wait { id } => commands::wait(&store, &id).await,
        Command::Logs { follow, id } => logs::logs(&store, &id, follow).await,
        Command::Rm { force, ids } => commands::rm(&store, &ids, force).await,
        Command::Events => commands::events(&store).await,
        Command::Upgrade { id } => commands::upgrade(&store, &id).await,
    }
}

/// An exit status as a process exit code.
fn exit_code(status: u32) -> u8 {
    status.min(255) as u8
}

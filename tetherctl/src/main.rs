//! `tetherctl`: runs containers through tether shims without containerd.
//!
//! It is daemonless: each command spawns or asks shims and reads the state
//! directory, so killing tetherctl never touches a container.
//!
//! It is a client of the shim like containerd: it reaches shims only through
//! `tether::client` (spawn, connect, the id rule) and the wire types of
//! `tether_proto`, never the shim's internals. What it needs of the system
//! beyond that is its own (`sys` holds its `unsafe`).

mod attach;
mod commands;
mod detached;
mod driver;
mod logfile;
mod logs;
mod parse;
mod reattach;
mod run;
mod spec;
mod store;
mod sys;
mod timefmt;

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
    /// State directory: everything tetherctl and its shims create
    /// [default: /run/tether; $XDG_RUNTIME_DIR/tether when not root and
    /// that is set]
    #[arg(long, global = true, env = "TETHER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
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
        /// Only the last N lines of what is there already.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Only lines that began at or after a time: RFC 3339
        /// (2024-05-01T12:00:00Z), Unix seconds, or a duration back from
        /// now (10m, 1h30m).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Container id.
        id: String,
    },
    /// Join a detached container's output, input (with -i) and terminal.
    Attach(reattach::AttachArgs),
    /// Stop containers: SIGTERM, then SIGKILL to all their processes after
    /// --time seconds; prints each id stopped.
    Stop {
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(short, long, default_value_t = 10, value_name = "SECONDS")]
        time: u64,
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
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
    /// (internal) The log driver of a detached container; the shim starts it.
    #[command(hide = true)]
    LogDriver(driver::DriverArgs),
    /// (internal) Waits for a container to exit, then removes it (run -d --rm).
    #[command(hide = true)]
    RmOnExit {
        /// Container id.
        id: String,
    },
}

fn main() -> ExitCode {
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
    // The driver gets its paths from the shim, and no state directory.
    let command = match cli.command {
        Command::LogDriver(args) => return driver::run(args).await,
        other => other,
    };
    let root = cli.state_dir.unwrap_or_else(store::default_root);
    let store = store::Store::open(&root)?;
    match command {
        Command::Run(args) => run::run(&store, args).await,
        Command::Exec(args) => run::exec(&store, args).await,
        Command::Ps { quiet, json } => commands::ps(&store, quiet, json).await,
        Command::State { id, json } => commands::state(&store, &id, json).await,
        Command::Kill { signal, all, id } => commands::kill(&store, &id, &signal, all).await,
        Command::Wait { id } => commands::wait(&store, &id).await,
        Command::Logs {
            follow,
            tail,
            since,
            id,
        } => {
            let opts = logs::LogsOptions {
                follow,
                tail,
                since,
            };
            logs::logs(&store, &id, opts).await
        }
        Command::Attach(args) => reattach::attach(&store, args).await,
        Command::Stop { time, ids } => commands::stop(&store, &ids, time).await,
        Command::LogDriver(_) => unreachable!("handled above"),
        Command::RmOnExit { id } => detached::rm_on_exit(&store, &id).await,
        Command::Rm { force, ids } => commands::rm(&store, &ids, force).await,
        Command::Events => commands::events(&store).await,
        Command::Upgrade { id } => commands::upgrade(&store, &id).await,
    }
}

/// An exit status as a process exit code.
fn exit_code(status: u32) -> u8 {
    status.min(255) as u8
}

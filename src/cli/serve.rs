//! The daemon: serves the Task API on the socket `start` handed over, until
//! the last container is deleted and containerd asks it to shut down.
//!
//! Process-wide setup (subreaper, logging) happens before the tokio runtime
//! exists. The runtime is single-threaded: the shim's work is waiting, and one
//! thread keeps its footprint small.

use std::collections::HashMap;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use ttrpc::r#async::{Server, Service};

use super::Flags;
use crate::events::Publisher;
use crate::ids::validate;
use crate::protos::sandbox_ttrpc::create_sandbox;
use crate::protos::shim_ttrpc::create_task;
use crate::reaper::Reaper;
use crate::router::Notice;
use crate::sandbox_service::SandboxService;
use crate::service::TaskService;
use crate::shim::Shim;
use crate::tasks::Tasks;
use crate::transport::{self, Transport};
use crate::upgrade;

/// How long queued events may take to reach containerd at shutdown.
const FLUSH_LIMIT: Duration = Duration::from_secs(3);
/// How long an idle blocking-pool thread lives.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// How many I/O readiness events one poll of the driver takes (tokio's
/// default, 1024, is a 12 KiB array that every shim keeps; a shim watches
/// about ten descriptors a container, and events beyond these wait in the
/// kernel for the next poll).
const IO_EVENTS_PER_TICK: usize = 64;
/// How long blocking-pool work may take to end once the daemon is done.
const RUNTIME_END: Duration = Duration::from_secs(1);
const TASK_V2: &str = "containerd.task.v2.Task";
const TASK_V3: &str = "containerd.task.v3.Task";

/// Runs the daemon.
pub fn run(flags: &Flags) -> Result<()> {
    validate("namespace", &flags.namespace)?;
    validate("container id", &flags.id)?;
    // A live upgrade: the previous binary's state, and its listener.
    let taken_over = match std::env::var_os(upgrade::STATE_ENV) {
        Some(path) => {
            std::env::remove_var(upgrade::STATE_ENV);
            let path = PathBuf::from(path);
            let state = upgrade::snapshot::read(&path);
            let _ = std::fs::remove_file(&path);
            Some(state?)
        }
        None => None,
    };
    // One table takes every descriptor the state names, the listener first.
    let mut fds = crate::sys::FdTable::new();
    let listener = match &taken_over {
        Some(state) => fds.take(state.listener),
        None => crate::sys::take_listener(),
    }
    .context("taking the listening socket")?;
    let taken_over = taken_over.map(|state| (state, fds));
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    crate::logging::init("log".as_ref(), flags.debug);
    let exe = std::env::current_exe().context("finding the shim's own binary")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Blocking-pool threads (file copies and opens) go soon after their
        // work: an idle shim is back to its one thread within a second.
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .max_io_events_per_tick(IO_EVENTS_PER_TICK)
        .build()
        .context("building the runtime")?;
    let listener = StdUnixListener::from(listener);
    let result = runtime.block_on(serve(flags, listener, exe, taken_over));
    // The task tree was shut in `serve`; a copy loop stuck in a write to a
    // stalled filesystem is not waited for.
    runtime.shutdown_timeout(RUNTIME_END);
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "shim daemon failed");
    }
    result
}

async fn serve(
    flags: &Flags,
    listener: StdUnixListener,
    exe: PathBuf,
    taken_over: Option<(upgrade::snapshot::State, crate::sys::FdTable)>,
) -> Result<()> {
    let socket: Option<PathBuf> = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(PathBuf::from));
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;

    // The root of the task tree: every task of the daemon is below it.
    let tasks = Tasks::root();
    let (notices, inbox) = tokio::sync::mpsc::unbounded_channel();
    let to_monitor = notices.clone();
    let unclaimed = Arc::new(move |exit| drop(to_monitor.send(Notice::Exit(exit))));
    let reaper = Reaper::start(unclaimed, &tasks).context("installing the SIGCHLD handler")?;
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
    let publisher = match &taken_over {
        Some((state, _)) => Publisher::restored(
            ttrpc_address,
            flags.namespace.clone(),
            &state.events,
            &tasks,
        ),
        None => Publisher::start(ttrpc_address, flags.namespace.clone(), &tasks),
    };
    let shutdown = CancellationToken::new();
    let shim = Shim::new(
        flags.namespace.clone(),
        (reaper, publisher.clone()),
        (notices, inbox),
        tasks.clone(),
        shutdown.clone(),
    );
    shim.set_socket(socket);
    let service = Arc::new(TaskService::new(shim.clone()));
    let mut services: HashMap<String, Service> = create_task(service.clone());
    // containerd 2.x calls the same service under its v3 name.
    if let Some(v3) = create_task(service).remove(TASK_V2) {
        services.insert(TASK_V3.to_string(), v3);
    }
    services.extend(create_sandbox(Arc::new(SandboxService::new(shim.clone()))));
    let (transport, relayed) = Transport::new(tasks.branch());
    let mut server = Server::new()
        .add_listener(relayed)
        .register_service(services);
    server.start().await.context("starting the ttrpc server")?;
    if let Some((state, mut fds)) = taken_over {
        let upgrades = state.upgrades;
        upgrade::restore(&shim, &transport, state, &mut fds).context("taking over")?;
        tracing::info!(
            upgrades,
            version = env!("CARGO_PKG_VERSION"),
            "took over in place"
        );
    }
    let listener = Arc::new(listener);
    let accepting = tasks.branch();
    accepting.spawn(transport::accept_loop(
        listener.clone(),
        transport.clone(),
        accepting.token().clone(),
    ));
    tracing::info!(id = flags.id, pid = std::process::id(), "shim serving");

    let mut args = vec!["-namespace", &flags.namespace, "-id", &flags.id];
    args.extend(["-address", &flags.address]);
    if flags.debug {
        args.push("-debug");
    }
    let daemon = upgrade::Daemon {
        args: args.into_iter().map(String::from).collect(),
        exe,
        state_path: std::env::current_dir()?.join(".tether-upgrade.json"),
        shim,
        transport,
        listener,
    };
    let mut usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = usr2.recv() => {
                let why = daemon.upgrade().await;
                tracing::warn!(reason = %why, "live upgrade called off; still running the old binary");
            }
        }
    }
    // In order: no new connection; every reply, Shutdown's included, is
    // written to its client (a Wait left open has nothing to wait for any
    // more); then the server's connections close.
    accepting.cancel();
    if let Err(e) = daemon.transport.quiesce().await {
        tracing::warn!(error = %e, "shutting down with requests unanswered");
    }
    let _ = server.shutdown().await;
    // The socket file went with Shutdown (another daemon may own that path
    // by now).
    // Nobody to wait for when no events socket exists at all (tetherctl
    // with no `events` running): a containerd that is down, even killed,
    // leaves its socket file behind.
    let events_socket = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
    let events_socket = events_socket.trim_start_matches("unix://");
    let limit = if !events_socket.is_empty() && Path::new(events_socket).exists() {
        FLUSH_LIMIT
    } else {
        Duration::ZERO
    };
    publisher.flush(limit).await;
    // Then the task tree, top down: containers' tasks, then the daemon's.
    if !daemon.shim.shut(RUNTIME_END).await {
        tracing::warn!("tasks still running at exit (a copy to a stalled filesystem?)");
    }
    tracing::info!(id = flags.id, "shim exiting");
    Ok(())
}

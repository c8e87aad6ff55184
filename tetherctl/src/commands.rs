//! tetherctl's commands on existing containers.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use serde::Serialize;
use tether_proto::events as ev;
use tether_proto::forward::ForwardRequest;
use tether_proto::forward_ttrpc::{create_events, Events};
use tether_proto::shim::{DeleteRequest, KillRequest, StateRequest, WaitRequest};
use tether_proto::status::Status;

use super::exit_code;
use super::store::{ctx, rpc_err, ShimHandle, Store, NAMESPACE};

/// One row of `ps` / the body of `state`.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    pid: u32,
    status: String,
    exit_status: Option<u32>,
    bundle: String,
}

async fn row(store: &Store, id: &str) -> Row {
    let bundle = store.bundle(id).display().to_string();
    let state = async {
        let shim = store.client(id).await?;
        let req = StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        anyhow::Ok(shim.client.state(ctx(), &req).await?)
    };
    match state.await {
        Ok(s) => {
            let status = s.status.enum_value_or(Status::UNKNOWN);
            Row {
                id: id.to_string(),
                pid: s.pid,
                status: format!("{status:?}"),
                exit_status: (status == Status::STOPPED).then_some(s.exit_status),
                bundle,
            }
        }
        Err(_) => Row {
            id: id.to_string(),
            pid: 0,
            status: "UNKNOWN".into(),
            exit_status: None,
            bundle,
        },
    }
}

/// `ps`.
pub async fn ps(store: &Store, quiet: bool, json: bool) -> Result<u8> {
    let ids = store.ids()?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for id in ids {
            writeln!(out, "{id}")?;
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for id in &ids {
        rows.push(row(store, id).await);
    }
    if json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(out, "{:<24} {:<8} STATUS", "ID", "PID")?;
    for r in rows {
        let status = match r.exit_status {
            Some(code) => format!("{} ({code})", r.status),
            None => r.status,
        };
        writeln!(out, "{:<24} {:<8} {status}", r.id, r.pid)?;
    }
    Ok(0)
}

/// `state ID`.
pub async fn state(store: &Store, id: &str, json: bool) -> Result<u8> {
    store.client(id).await?;
    let r = row(store, id).await;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "id:      {}\npid:     {}\nstatus:  {}",
            r.id, r.pid, r.status
        )?;
        if let Some(code) = r.exit_status {
            writeln!(out, "exit:    {code}")?;
        }
        writeln!(out, "bundle:  {}", r.bundle)?;
    }
    Ok(0)
}

/// Reads a signal given as a number or a name, with or without `SIG`.
pub fn parse_signal(s: &str) -> Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal number {n}");
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map(|sig| sig as u32)
        .map_err(|_| anyhow::anyhow!("invalid signal name {s:?}"))
}

/// `kill`.
pub async fn kill(store: &Store, id: &str, signal: &str, all: bool) -> Result<u8> {
    let signal = parse_signal(signal)?;
    let shim = store.client(id).await?;
    let req = KillRequest {
        id: id.to_string(),
        signal,
        all,
        ..Default::default()
    };
    shim.client
        .kill(ctx(), &req)
        .await
        .map_err(rpc_err(format!("signalling {id}")))?;
    Ok(0)
}

/// `wait`.
pub async fn wait(store: &Store, id: &str) -> Result<u8> {
    let shim = store.client(id).await?;
    let req = WaitRequest {
        id: id.to_string(),
        ..Default::default()
    };
    let exit = shim
        .client
        .wait(ttrpc::context::with_timeout(0), &req)
        .await
        .map_err(rpc_err(format!("waiting for {id}")))?;
    println!("{}", exit.exit_status);
    Ok(exit_code(exit.exit_status))
}

/// `rm`: removes each id it can; exits 125, as every other command does on
/// an error, when one could not be removed.
pub async fn rm(store: &Store, ids: &[String], force: bool) -> Result<u8> {
    let mut failed = false;
    for id in ids {
        if let Err(e) = remove(store, id, force).await {
            eprintln!("tetherctl: {e:#}");
            failed = true;
        }
    }
    Ok(if failed { 125 } else { 0 })
}

/// Deletes the task, stops the shim, cleans up as containerd would after a
/// shim is gone (the shim's `delete`), and removes the bundle.
pub async fn remove(store: &Store, id: &str, force: bool) -> Result<()> {
    tether::client::validate_id("container id", id)?;
    let bundle = store.bundle(id);
    if !bundle.is_dir() {
        bail!("no such container: {id}");
    }
    if let Ok(shim) = store.client(id).await {
        let state = StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let status = match shim.client.state(ctx(), &state).await {
            Ok(s) => s.status.enum_value_or(Status::UNKNOWN),
            Err(_) => Status::UNKNOWN,
        };
        if matches!(status, Status::RUNNING | Status::PAUSED) {
            if !force {
                bail!("container {id} is running: stop it first or use rm -f");
            }
            let kill = KillRequest {
                id: id.to_string(),
                signal: libc::SIGKILL as u32,
                all: true,
                ..Default::default()
            };
            let _ = shim.client.kill(ctx(), &kill).await;
            let wait = WaitRequest {
                id: id.to_string(),
                ..Default::default()
            };
            let _ = shim.client.wait(ctx(), &wait).await;
        }
        let del = DeleteRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let _ = shim.client.delete(ctx(), &del).await;
        shim.shutdown().await;
    }
    let shim_binary = Store::shim_binary();
    let _ = store.spawn_args(id, &bundle, &shim_binary).delete();
    // The log driver removes its socket when it ends; not if it was killed.
    let _ = std::fs::remove_file(store.attach_socket(id));
    std::fs::remove_dir_all(&bundle).with_context(|| format!("removing {}", bundle.display()))
}

/// `stop`: stops each id it can; exits 125 when one could not be stopped.
/// Prints each id stopped (or found stopped already).
pub async fn stop(store: &Store, ids: &[String], time: u64) -> Result<u8> {
    let mut failed = false;
    for id in ids {
        match stop_one(store, id, Duration::from_secs(time)).await {
            Ok(()) => println!("{id}"),
            Err(e) => {
                eprintln!("tetherctl: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 125 } else { 0 })
}

/// How long a container has to go once SIGKILLed before `stop` gives up.
const KILL_WAIT: Duration = Duration::from_secs(30);
/// How long `stop` gives a remover that cut its Wait short to remove the
/// bundle.
const GONE_WAIT: Duration = Duration::from_secs(5);

/// SIGTERM to the init process; after `grace`, SIGKILL to every process.
async fn stop_one(store: &Store, id: &str, grace: Duration) -> Result<()> {
    let shim = store.client(id).await?;
    // A Wait that fails because the shim went away is an exit too when the
    // container went with it (`run -d --rm`'s watcher removes it at once).
    // The remover deletes the task and stops the shim before it removes the
    // bundle, so a Wait it cut short waits for the bundle to go, briefly.
    let gone = || !store.bundle(id).exists();
    let gone_soon = || async move {
        let deadline = tokio::time::Instant::now() + GONE_WAIT;
        while !gone() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gone()
    };
    let status = |shim: &ShimHandle| {
        let req = StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let client = shim.client.clone();
        async move {
            let s = client.state(ctx(), &req).await;
            s.map(|s| s.status.enum_value_or(Status::UNKNOWN))
                .map_err(rpc_err(format!("asking for the state of {id}")))
        }
    };
    if status(&shim).await? == Status::STOPPED {
        return Ok(());
    }
    let signal = |signal: i32, all: bool| {
        let req = KillRequest {
            id: id.to_string(),
            signal: signal as u32,
            all,
            ..Default::default()
        };
        let client = shim.client.clone();
        async move { client.kill(ctx(), &req).await }
    };
    let wait = || {
        let req = WaitRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let client = shim.client.clone();
        async move { client.wait(ttrpc::context::with_timeout(0), &req).await }
    };
    if let Err(e) = signal(libc::SIGTERM, false).await {
        // It may have exited since: that is stopped too.
        if gone() {
            return Ok(());
        }
        if status(&shim).await? != Status::STOPPED {
            return Err(rpc_err(format!("signalling {id}"))(e));
        }
        return Ok(());
    }
    if let Ok(exit) = tokio::time::timeout(grace, wait()).await {
        return match exit {
            Err(_) if gone_soon().await => Ok(()),
            exit => exit
                .map(|_| ())
                .map_err(rpc_err(format!("waiting for {id}"))),
        };
    }
    if let Err(e) = signal(libc::SIGKILL, true).await {
        if gone() {
            return Ok(());
        }
        if status(&shim).await? != Status::STOPPED {
            return Err(rpc_err(format!("killing {id}"))(e));
        }
    }
    match tokio::time::timeout(KILL_WAIT, wait()).await {
        Ok(Err(e)) => {
            if gone_soon().await {
                Ok(())
            } else {
                Err(rpc_err(format!("waiting for {id}"))(e))
            }
        }
        Ok(exit) => exit
            .map(|_| ())
            .map_err(rpc_err(format!("waiting for {id}"))),
        Err(_) => bail!("container {id} did not exit within {KILL_WAIT:?} of SIGKILL"),
    }
}

/// `upgrade`: SIGUSR2 to the shim, then waits until it reports one more
/// upgrade (Connect's version says how many).
pub async fn upgrade(store: &Store, id: &str) -> Result<u8> {
    let shim = store.client(id).await?;
    let upgrades = |v: &str| -> u32 {
        v.split("upgraded ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let req = tether_proto::shim::ConnectRequest {
        id: id.to_string(),
        ..Default::default()
    };
    let before = shim
        .client
        .connect(ctx(), &req)
        .await
        .map_err(rpc_err("asking the shim"))?;
    let count = upgrades(&before.version);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before.shim_pid as i32),
        Signal::SIGUSR2,
    )?;
    for _ in 0..300 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // The connection survives the upgrade; a call may need a retry.
        if let Ok(now) = shim.client.connect(ctx(), &req).await {
            if upgrades(&now.version) > count {
                println!(
                    "{id}: shim {} upgraded in place: {}",
                    now.shim_pid, now.version
                );
                return Ok(0);
            }
        }
    }
    bail!(
        "the shim of {id} did not take the upgrade; its log says why: {}",
        store.bundle(id).join("log").display()
    )
}

/// Prints events as shims forward them.
struct Printer;

#[async_trait::async_trait]
impl Events for Printer {
    async fn forward(
        &self,
        _: &ttrpc::r#async::TtrpcContext,
        req: ForwardRequest,
    ) -> ttrpc::Result<protobuf::well_known_types::empty::Empty> {
        if let Some(env) = req.envelope.as_ref() {
            let body = env.event.as_ref().map(describe).unwrap_or_default();
            let ts = env.timestamp.as_ref();
            let when = ts
                .map(|t| format!("{}.{:09}", t.seconds, t.nanos))
                .unwrap_or_default();
            println!("{when} {} {} {body}", env.namespace, env.topic);
        }
        Ok(Default::default())
    }
}

fn describe(any: &protobuf::well_known_types::any::Any) -> String {
    fn text<M: protobuf::MessageFull>(bytes: &[u8]) -> String {
        M::parse_from_bytes(bytes)
            .map(|m| protobuf::text_format::print_to_string(&m))
            .unwrap_or_else(|e| format!("<undecodable: {e}>"))
    }
    let v = &any.value;
    match any.type_url.as_str() {
        "containerd.events.TaskCreate" => text::<ev::TaskCreate>(v),
        "containerd.events.TaskStart" => text::<ev::TaskStart>(v),
        "containerd.events.TaskExit" => text::<ev::TaskExit>(v),
        "containerd.events.TaskDelete" => text::<ev::TaskDelete>(v),
        "containerd.events.TaskExecAdded" => text::<ev::TaskExecAdded>(v),
        "containerd.events.TaskExecStarted" => text::<ev::TaskExecStarted>(v),
        "containerd.events.TaskOOM" => text::<ev::TaskOOM>(v),
        "containerd.events.TaskPaused" => text::<ev::TaskPaused>(v),
        "containerd.events.TaskResumed" => text::<ev::TaskResumed>(v),
        other => format!("<{other}>"),
    }
}

/// `events`: serves the events socket until interrupted.
pub async fn events(store: &Store) -> Result<u8> {
    let path = store.events_socket();
    claim_socket(&path)?;
    let url = format!("unix://{}", path.display());
    let mut server = ttrpc::r#async::Server::new()
        .bind(&url)
        .with_context(|| format!("listening on {}", path.display()))?
        .register_service(create_events(Arc::new(Printer)));
    server.start().await?;
    eprintln!("tetherctl: printing events of namespace {NAMESPACE} (Ctrl-C to stop)");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(0)
}

/// Removes a stale events socket; refuses if another `events` serves it.
fn claim_socket(path: &Path) -> Result<()> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("another `tetherctl events` is already running");
        }
        std::fs::remove_file(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("BOGUS")
            .unwrap_err()
            .to_string()
            .contains("BOGUS"));
        assert!(parse_signal("0").is_err());
    }
}

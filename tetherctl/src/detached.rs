//! What a detached container (`run -d`) gets: a stdin FIFO with `-i`, its
//! output through a log driver ([`super::driver`]), and with `--rm` a
//! watcher that removes it once it has exited, however it ends.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use nix::sys::stat::Mode;
use tether_proto::shim::{CreateTaskRequest, WaitRequest};

use super::commands::remove;
use super::logs::LOG_NAME;
use super::store::Store;

/// The log cap of a detached container: the kubelet's defaults for CRI
/// logs (containerLogMaxSize 10Mi, containerLogMaxFiles 5).
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 << 20;
/// How many log files are kept, the current one included.
pub const DEFAULT_LOG_MAX_FILES: u32 = 5;

/// Fills the stdio of a detached container's Create: `<bundle>/stdin` (a
/// FIFO) when `interactive`, and the log driver as stdout.
pub fn stdio(
    store: &Store,
    id: &str,
    bundle: &Path,
    interactive: bool,
    log: (u64, u32),
    req: &mut CreateTaskRequest,
) -> Result<()> {
    if interactive {
        let fifo = bundle.join("stdin");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))
            .with_context(|| format!("creating {}", fifo.display()))?;
        req.stdin = fifo.display().to_string();
    }
    let tetherctl = std::env::current_exe().context("finding tetherctl's own path")?;
    req.stdout = super::driver::uri(
        &tetherctl,
        &[
            ("log", bundle.join(LOG_NAME).display().to_string()),
            ("attach", store.attach_socket(id).display().to_string()),
            ("max-size", log.0.to_string()),
            ("max-files", log.1.to_string()),
        ],
    );
    Ok(())
}

/// Starts `tetherctl rm-on-exit ID` in a session of its own, so that it
/// outlives this tetherctl and no terminal's signals reach it. Its errors go
/// to `<bundle>/rm-on-exit.log` (which stays if it could not remove).
pub fn spawn_rm_on_exit(store: &Store, id: &str) -> Result<()> {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(store.bundle(id).join("rm-on-exit.log"))
        .context("creating rm-on-exit.log")?;
    let tetherctl = std::env::current_exe().context("finding tetherctl's own path")?;
    let mut cmd = Command::new(tetherctl);
    cmd.arg("--state-dir")
        .arg(store.root())
        .args(["rm-on-exit", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    crate::sys::new_session(&mut cmd);
    // Not waited for: it exits when its work is done, and init reaps it
    // once this tetherctl has exited.
    cmd.spawn().context("starting the --rm watcher")?;
    Ok(())
}

/// `rm-on-exit ID`: waits for the container's exit, then removes it (if
/// nobody removed it first).
pub async fn rm_on_exit(store: &Store, id: &str) -> Result<u8> {
    if let Ok(shim) = store.client(id).await {
        let req = WaitRequest {
            id: id.to_string(),
            ..Default::default()
        };
        // An error here is the shim gone: someone removed it, or it died.
        let _ = shim
            .client
            .wait(ttrpc::context::with_timeout(0), &req)
            .await;
    }
    if store.bundle(id).is_dir() {
        remove(store, id, false).await?;
    }
    Ok(0)
}

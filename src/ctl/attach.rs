//! Connecting the local terminal or stdio to a process through the FIFOs in
//! its bundle, for `tetherctl run` and `tetherctl exec`.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::stat::Mode;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use super::store::{ctx, rpc_err, ShimHandle};
use crate::protos::shim::{CloseIORequest, ResizePtyRequest, WaitRequest};

/// The client ends of a process's stdio FIFOs.
pub(super) struct Fifos {
    pub(super) stdin: PathBuf,
    pub(super) stdout: PathBuf,
    pub(super) stderr: PathBuf,
}

impl Fifos {
    pub(super) fn make(dir: &Path, prefix: &str, tty: bool) -> Result<Fifos> {
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

    pub(super) fn remove(&self) {
        for p in [&self.stdin, &self.stdout, &self.stderr] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Local terminal in raw mode for the lifetime of the guard.
pub(super) struct RawMode(Termios);

impl RawMode {
    pub(super) fn enter() -> Result<RawMode> {
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
pub(super) struct Opening {
    outputs: Vec<(JoinHandle<std::io::Result<std::fs::File>>, bool)>,
    input: JoinHandle<std::io::Result<std::fs::File>>,
    paths: Vec<PathBuf>,
}

impl Opening {
    pub(super) fn start(fifos: &Fifos, tty: bool) -> Opening {
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
    pub(super) fn abort(self) {
        for p in &self.paths {
            let _ = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(p);
        }
    }
}

pub(super) async fn opened(h: JoinHandle<std::io::Result<std::fs::File>>) -> Result<std::fs::File> {
    Ok(h.await.context("opening a FIFO")??)
}

/// Copies the local stdio to and from a started process's FIFOs, forwards
/// window size changes, and returns the process's exit status once it has
/// exited and its output is all out.
pub(super) async fn attach(
    shim: &ShimHandle,
    exec_id: &str,
    fifos: Opening,
    tty: bool,
) -> Result<u32> {
    let mut outputs: Vec<JoinHandle<()>> = Vec::new();
    for (handle, is_err) in fifos.outputs {
        let mut rx = pipe::Receiver::from_file(opened(handle).await?)?;
        outputs.push(tokio::spawn(async move {
            // One handle for the whole stream: tokio's stdout writes on the
            // blocking pool, and two handles' writes may overtake each other.
            let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = if is_err {
                Box::new(tokio::io::stderr())
            } else {
                Box::new(tokio::io::stdout())
            };
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = rx.read(&mut buf).await {
                if out.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = out.flush().await;
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
pub(super) async fn resize(
    client: &crate::protos::shim_ttrpc::TaskClient,
    id: &str,
    exec_id: &str,
) {
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

//! Connecting the local terminal or stdio to a process through the FIFOs in
//! its bundle, for `tetherctl run` and `tetherctl exec`.

use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::stat::Mode;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use tether_proto::shim::{CloseIORequest, ResizePtyRequest, WaitRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use super::store::{ctx, rpc_err, ShimHandle};

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

/// The client ends of a process's FIFOs, opened before the request that
/// makes the shim open its ends (Create for init, Start for an exec), and
/// without waiting for it: a FIFO open that waits for a partner hangs for
/// good if the shim opens and closes its end first (a process that exits
/// within milliseconds), so none of these opens waits.
///
/// A read end opened with O_NONBLOCK needs no writer; until a writer has
/// opened, reading it reports EOF, so the outputs are only read once the
/// shim's Create or Start has returned (see [`attach`]): its writers are
/// open by then, and what they wrote before closing stays in the FIFO,
/// which our read end keeps alive. A write end needs a reader, so stdin
/// is opened with a reader of our own, held until the shim's reader is
/// open.
pub(super) struct ClientEnds {
    /// Stdout, and (without a terminal) stderr: the read end and whether
    /// it is stderr.
    outputs: Vec<(std::fs::File, bool)>,
    input: std::fs::File,
    /// A reader of the stdin FIFO, so that opening its write end did not
    /// wait; dropped once the shim's reader is open.
    input_reader: std::fs::File,
}

impl ClientEnds {
    pub(super) fn open(fifos: &Fifos, tty: bool) -> Result<ClientEnds> {
        let open = |path: &Path, write: bool| {
            let mut o = std::fs::OpenOptions::new();
            if write {
                o.write(true);
            } else {
                o.read(true);
            }
            o.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))
        };
        let mut outputs = vec![(open(&fifos.stdout, false)?, false)];
        if !tty {
            outputs.push((open(&fifos.stderr, false)?, true));
        }
        let input_reader = open(&fifos.stdin, false)?;
        let input = open(&fifos.stdin, true)?;
        Ok(ClientEnds {
            outputs,
            input,
            input_reader,
        })
    }
}

/// Copies the local stdio to and from a started process's FIFOs, forwards
/// window size changes, and returns the process's exit status once it has
/// exited and its output is all out. Only called once the process's Start
/// has returned: the shim's ends of the FIFOs are open (or were, and were
/// closed after the last byte), so EOF on an output is the real one.
pub(super) async fn attach(
    shim: &ShimHandle,
    exec_id: &str,
    ends: ClientEnds,
    tty: bool,
) -> Result<u32> {
    drop(ends.input_reader);
    let mut outputs: Vec<JoinHandle<()>> = Vec::new();
    for (file, is_err) in ends.outputs {
        let mut rx = pipe::Receiver::from_file(file)?;
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
    let mut tx = pipe::Sender::from_file(ends.input)?;
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
pub(super) async fn resize(client: &tether_proto::shim_ttrpc::TaskClient, id: &str, exec_id: &str) {
    if let Some((width, height)) = crate::sys::get_winsize(std::io::stdin().as_fd()) {
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

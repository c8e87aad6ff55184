//! A process's stdio: the paths the client gave (usually FIFOs it reads and
//! writes), the pipes the container actually holds, and the copy tasks in
//! between.
//!
//! Output copying ends when the container side of the pipe is closed by every
//! process holding it; only then is the client's FIFO closed, so the client
//! reads every byte and then EOF. The daemon waits for that (see
//! [`ProcessIo::drain`]) before it reports the exit.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::runc::ProcessStdio;

/// The client's view of a process's stdio, as sent in Create or Exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// Path the shim reads the process's input from ("" for none).
    pub stdin: String,
    /// Path the shim writes the process's output to ("" for none).
    pub stdout: String,
    /// Path the shim writes the process's errors to ("" for none).
    pub stderr: String,
    /// Whether the process has a terminal.
    pub terminal: bool,
}

/// The shim's side of a running process's stdio.
pub struct ProcessIo {
    /// Kept open so the stdin FIFO does not report EOF while a client is
    /// between writers; dropping it (CloseIO) lets EOF through.
    stdin_holder: Option<File>,
    input: Option<JoinHandle<()>>,
    outputs: Vec<JoinHandle<()>>,
    progress: Arc<AtomicU64>,
}

/// How long output may make no progress before the exit is reported anyway
/// (a reader that went away must not hold an exit back forever; copying goes
/// on in the background).
const DRAIN_STALL: Duration = Duration::from_secs(5);
const COPY_BUF: usize = 64 * 1024;

impl ProcessIo {
    /// Opens the client's paths, makes the pipes, and starts copying. Returns
    /// the container's ends for the runtime to hand over.
    pub fn open(paths: &StdioPaths) -> Result<(ProcessIo, ProcessStdio)> {
        let progress = Arc::new(AtomicU64::new(0));
        let mut io = ProcessIo {
            stdin_holder: None,
            input: None,
            outputs: Vec::new(),
            progress: progress.clone(),
        };
        let mut stdio = ProcessStdio {
            stdin: None,
            stdout: None,
            stderr: None,
        };

        if !paths.stdin.is_empty() {
            let path = Path::new(&paths.stdin);
            let source = open_input(path)?;
            // Opened after the reader, so it cannot block.
            io.stdin_holder = Some(
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(path)
                    .map_err(Error::io("open stdin for writing", path))?,
            );
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(Error::sys("pipe2"))?;
            let sink = pipe::Sender::from_owned_fd(w).map_err(Error::io("stdin pipe", path))?;
            stdio.stdin = Some(r);
            io.input = Some(tokio::spawn(copy(source, sink, None)));
        }
        for (target, path) in [
            (&mut stdio.stdout, &paths.stdout),
            (&mut stdio.stderr, &paths.stderr),
        ] {
            if path.is_empty() {
                continue;
            }
            let sink = open_output(Path::new(path))?;
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(Error::sys("pipe2"))?;
            let source =
                pipe::Receiver::from_owned_fd(r).map_err(Error::io("output pipe", path))?;
            *target = Some(w);
            io.outputs
                .push(tokio::spawn(copy(source, sink, Some(progress.clone()))));
        }
        Ok((io, stdio))
    }

    /// Closes the process's stdin once the client's writers are gone.
    pub fn close_stdin(&mut self) {
        self.stdin_holder = None;
    }

    /// Waits until every output has been copied to EOF, or until output has
    /// made no progress for a while.
    pub async fn drain(&mut self) {
        let mut last = self.progress.load(Ordering::Relaxed);
        for handle in &mut self.outputs {
            loop {
                match tokio::time::timeout(DRAIN_STALL, &mut *handle).await {
                    Ok(_) => break,
                    Err(_) => {
                        let now = self.progress.load(Ordering::Relaxed);
                        if now == last {
                            tracing::warn!("output made no progress for {DRAIN_STALL:?}; reporting the exit anyway");
                            return;
                        }
                        last = now;
                    }
                }
            }
        }
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        for h in self.outputs.iter().chain(&self.input) {
            h.abort();
        }
    }
}

type Sink = Box<dyn AsyncWrite + Send + Unpin>;
type Source = Box<dyn AsyncRead + Send + Unpin>;

/// Opens an input path for reading without waiting for a writer.
fn open_input(path: &Path) -> Result<Source> {
    let meta = std::fs::metadata(path).map_err(Error::io("stat stdin", path))?;
    if meta.file_type().is_fifo() {
        let rx = pipe::OpenOptions::new()
            .open_receiver(path)
            .map_err(Error::io("open stdin", path))?;
        Ok(Box::new(rx))
    } else {
        let f = File::open(path).map_err(Error::io("open stdin", path))?;
        Ok(Box::new(tokio::fs::File::from_std(f)))
    }
}

/// Opens an output path: a FIFO read-write (so writing never fails for want of
/// a reader while clients come and go), anything else for appending.
fn open_output(path: &Path) -> Result<Sink> {
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => {
            let tx = pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(path)
                .map_err(Error::io("open output", path))?;
            Ok(Box::new(tx))
        }
        _ => {
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(Error::io("open output", path))?;
            Ok(Box::new(tokio::fs::File::from_std(f)))
        }
    }
}

/// Copies until EOF on `from` (or an error on `to`), then closes `to`.
async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    progress: Option<Arc<AtomicU64>>,
) {
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Err(e) = to.write_all(&buf[..n]).await {
            tracing::warn!(error = %e, "stdio copy stopped");
            break;
        }
        if let Some(p) = &progress {
            p.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    let _ = to.flush().await;
}

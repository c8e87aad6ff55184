//! A process's stdio: the paths the client gave (usually FIFOs it reads and
//! writes, or a log URI), the pipes or terminal the container actually holds,
//! and the copy tasks in between.
//!
//! Output copying ends when the container side is closed by every process
//! holding it (EOF on a pipe, EIO on a pty master); only then is the client's
//! FIFO closed, so the client reads every byte and then EOF. The daemon waits
//! for that (see [`ProcessIo::drain`]) before it reports the exit.

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::console::{Console, ConsoleSocket};
use crate::error::{Error, Result};
use crate::logger::{Logger, Target};
use crate::reaper::Reaper;
use crate::runc::ProcessStdio;

/// The client's view of a process's stdio, as sent in Create or Exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// Path the shim reads the process's input from ("" for none).
    pub stdin: String,
    /// Path or log URI for the process's output ("" for none).
    pub stdout: String,
    /// Path for the process's errors ("" for none; unused with a log URI).
    pub stderr: String,
    /// Whether the process has a terminal.
    pub terminal: bool,
}

/// Who the process belongs to, for loggers' environment.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// Container id.
    pub id: &'a str,
    /// containerd namespace.
    pub namespace: &'a str,
    /// uid and gid to own the container's stdio pipes (0, 0: root's).
    pub io_owner: (u32, u32),
}

type Sink = Box<dyn AsyncWrite + Send + Unpin>;
type Source = Box<dyn AsyncRead + Send + Unpin>;

/// The shim's side of a process's stdio.
pub struct ProcessIo {
    /// Kept open so the stdin FIFO does not report EOF while a client is
    /// between writers; dropping it (CloseIO) lets EOF through.
    stdin_holder: Option<File>,
    input: Option<JoinHandle<()>>,
    outputs: Vec<JoinHandle<()>>,
    progress: Arc<AtomicU64>,
    console: Option<Arc<Console>>,
    /// Terminal only: input and output waiting for the pty master.
    pending: Option<(Option<Source>, Option<Sink>)>,
    /// A size set before the terminal existed.
    pending_size: Option<(u16, u16)>,
    _logger: Option<Logger>,
}

/// How long output may make no progress before the exit is reported anyway
/// (a reader that went away must not hold an exit back forever; copying goes
/// on in the background).
const DRAIN_STALL: Duration = Duration::from_secs(5);
const COPY_BUF: usize = 64 * 1024;

impl ProcessIo {
    /// Opens the client's paths, makes the pipes (or the console socket for a
    /// terminal), starts a logger for `binary://`, and starts copying.
    /// Returns the container's ends for the runtime.
    pub async fn open(
        paths: &StdioPaths,
        owner: Owner<'_>,
        reaper: &Reaper,
    ) -> Result<(ProcessIo, ProcessStdio, Option<ConsoleSocket>)> {
        let target = Target::parse(&paths.stdout)?;
        let mut io = ProcessIo {
            stdin_holder: None,
            input: None,
            outputs: Vec::new(),
            progress: Arc::default(),
            console: None,
            pending: None,
            pending_size: None,
            _logger: None,
        };
        let mut stdio = ProcessStdio::default();

        let input = match paths.stdin.as_str() {
            "" => None,
            p => {
                let (source, holder) = open_input(Path::new(p))?;
                io.stdin_holder = holder;
                Some(source)
            }
        };
        // Where stdout and stderr go: a sink each (None: nowhere).
        let (out_sink, err_sink): (Option<Sink>, Option<Sink>) = match &target {
            Target::Paths => (open_output(&paths.stdout)?, open_output(&paths.stderr)?),
            Target::File(path) => {
                let path = Path::new(path);
                if let Some(dir) = path.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(dir)
                        .map_err(Error::io("create log directory", dir))?;
                }
                (Some(append(path)?), Some(append(path)?))
            }
            Target::Binary(binary, args) => {
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                let ids = (owner.id, owner.namespace);
                io._logger = Some(Logger::start(reaper, binary, args, ids, out_r, err_r).await?);
                let out: Sink = Box::new(sender(out_w)?);
                let err: Sink = Box::new(sender(err_w)?);
                (Some(out), Some(err))
            }
        };

        if paths.terminal {
            io.pending = Some((input, out_sink));
            drop(err_sink);
            return Ok((io, stdio, Some(ConsoleSocket::new()?)));
        }
        if let Some(source) = input {
            let (r, w) = owned_pipe(owner.io_owner)?;
            stdio.stdin = Some(r);
            let sink = sender(w)?;
            io.input = Some(tokio::spawn(copy(source, sink, None)));
        }
        for (slot, sink) in [(&mut stdio.stdout, out_sink), (&mut stdio.stderr, err_sink)] {
            let Some(sink) = sink else { continue };
            let (r, w) = owned_pipe(owner.io_owner)?;
            *slot = Some(w);
            let source = pipe::Receiver::from_owned_fd(r).map_err(Error::io("pipe", "output"))?;
            let progress = Some(io.progress.clone());
            io.outputs.push(tokio::spawn(copy(source, sink, progress)));
        }
        Ok((io, stdio, None))
    }

    /// Takes the pty master runc sent and starts copying through it.
    pub fn attach_console(&mut self, master: OwnedFd) -> Result<()> {
        let console = Arc::new(Console::new(master)?);
        if let Some((w, h)) = self.pending_size.take() {
            console.resize(w, h)?;
        }
        let (input, output) = self.pending.take().unwrap_or((None, None));
        if let Some(mut source) = input {
            let c = console.clone();
            self.input = Some(tokio::spawn(async move {
                let mut buf = vec![0u8; COPY_BUF];
                loop {
                    match source.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                // The client closed stdin: end the terminal's input.
                c.send_eof().await;
            }));
        }
        if let Some(mut sink) = output {
            let c = console.clone();
            let progress = self.progress.clone();
            self.outputs.push(tokio::spawn(async move {
                let mut buf = vec![0u8; COPY_BUF];
                while let Ok(n @ 1..) = c.read(&mut buf).await {
                    if sink.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    progress.fetch_add(n as u64, Ordering::Relaxed);
                }
                let _ = sink.flush().await;
            }));
        }
        self.console = Some(console);
        Ok(())
    }

    /// Resizes the terminal, now or as soon as it exists. No-op without one.
    pub fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        match &self.console {
            Some(c) => c.resize(width, height),
            None if self.pending.is_some() => {
                self.pending_size = Some((width, height));
                Ok(())
            }
            None => Ok(()),
        }
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
                            tracing::warn!(
                                "output made no progress for {DRAIN_STALL:?}; reporting the exit anyway"
                            );
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

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(Error::sys("pipe2"))
}

/// A pipe for the container's stdio, owned by `owner` so that a process in a
/// user namespace can reopen it (e.g. through /dev/stdout).
fn owned_pipe(owner: (u32, u32)) -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe()?;
    if owner != (0, 0) {
        let (uid, gid) = (
            Some(nix::unistd::Uid::from_raw(owner.0)),
            Some(nix::unistd::Gid::from_raw(owner.1)),
        );
        for fd in [&r, &w] {
            nix::unistd::fchown(std::os::fd::AsRawFd::as_raw_fd(fd), uid, gid)
                .map_err(Error::sys("fchown stdio pipe"))?;
        }
    }
    Ok((r, w))
}

fn sender(fd: OwnedFd) -> Result<pipe::Sender> {
    pipe::Sender::from_owned_fd(fd).map_err(Error::io("pipe", "stdio"))
}

/// Opens an input path for reading without waiting for a writer. For a FIFO,
/// also returns a writer the shim holds (see [`ProcessIo::close_stdin`]).
fn open_input(path: &Path) -> Result<(Source, Option<File>)> {
    let meta = std::fs::metadata(path).map_err(Error::io("stat stdin", path))?;
    if !meta.file_type().is_fifo() {
        let f = File::open(path).map_err(Error::io("open stdin", path))?;
        return Ok((Box::new(tokio::fs::File::from_std(f)), None));
    }
    let rx = pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(Error::io("open stdin", path))?;
    // Opened after the reader, so it cannot block.
    let holder = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(Error::io("open stdin for writing", path))?;
    Ok((Box::new(rx), Some(holder)))
}

/// Opens an output path: a FIFO read-write (so writing never fails for want
/// of a reader while clients come and go), anything else for appending.
fn open_output(path: &str) -> Result<Option<Sink>> {
    if path.is_empty() {
        return Ok(None);
    }
    let path = Path::new(path);
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => {
            let tx = pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(path)
                .map_err(Error::io("open output", path))?;
            Ok(Some(Box::new(tx)))
        }
        _ => append(path).map(Some),
    }
}

fn append(path: &Path) -> Result<Sink> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(Error::io("open output", path))?;
    Ok(Box::new(tokio::fs::File::from_std(f)))
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

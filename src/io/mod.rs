//! A process's stdio: the paths the client gave (usually FIFOs it reads and
//! writes, or a log URI), the pipes or terminal the container actually holds,
//! and the copy tasks in between.
//!
//! Output copying ends when the container side is closed by every process
//! holding it (EOF on a pipe, EIO on a pty master); only then is the client's
//! FIFO closed, so the client reads every byte and then EOF. The daemon waits
//! for that (see [`ProcessIo::drain`]) before it reports the exit.

pub mod console;
pub mod copy;
pub mod file_copy;
mod handover;
pub mod log_uri;
pub mod progress;
pub mod spill;

pub use handover::IoRec;

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::io::console::{Console, ConsoleSocket};
use crate::io::copy::{copy, copy_output, Sink, Source, Stopped};
use crate::io::file_copy::{copy_blocking, StopSignal};
use crate::io::log_uri::{Logger, Target};
use crate::io::progress::Progress;
use crate::io::spill::{Spill, SpillConf, SpillTail};
use crate::reaper::Reaper;
use crate::runc::ProcessStdio;
use crate::tasks::Tasks;

/// The client's view of a process's stdio, as sent in Create or Exec.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Who the process belongs to: for loggers' environment, and the task tree
/// its copy loops join.
#[derive(Clone, Copy)]
pub struct Owner<'a> {
    /// Container id.
    pub id: &'a str,
    /// containerd namespace.
    pub namespace: &'a str,
    /// uid and gid to own the container's stdio pipes (0, 0: root's).
    pub io_owner: (u32, u32),
    /// The container's bundle: where output spills while its reader is
    /// away (see [`spill`]).
    pub bundle: &'a Path,
    /// The most each output stream spills, in bytes (`OutputSpillMax`; 0:
    /// no spill).
    pub spill_max: u64,
    /// The container's tasks: the copy loops are a branch of them.
    pub tasks: &'a Tasks,
    /// The process's span (`Process::span`).
    pub span: &'a tracing::Span,
}

/// The shim's side of a process's stdio.
pub struct ProcessIo {
    /// Kept open so the stdin FIFO does not report EOF while a client is
    /// between writers; dropping it (CloseIO) lets EOF through.
    stdin_holder: Option<File>,
    input: Option<Loop>,
    outputs: Vec<Loop>,
    progress: Arc<Progress>,
    /// The copy loops' owner: a branch of the container's task tree,
    /// cancelled to stop them (a live upgrade, or this stdio dropped).
    tasks: Tasks,
    /// The span the copy loops run in: the process's (container id, exec
    /// id, and the pid once it has one).
    span: tracing::Span,
    console: Option<Arc<Console>>,
    /// Terminal only: input and output waiting for the pty master.
    pending: Option<(Option<Source>, Option<Sink>)>,
    logger: Option<Logger>,
    /// Wakes the loops on the blocking pool (made with the first of them);
    /// set when `tasks` is cancelled.
    file_stop: Option<Arc<StopSignal>>,
    /// Where output to a pipe or FIFO spills while its reader is away
    /// (None: a process handed over by a binary that had no spill; its
    /// output waits for the reader, as it did there).
    spill: Option<SpillConf>,
}

/// A running copy loop; what it hands back when stopped.
type Loop = JoinHandle<Option<Stopped>>;

/// How long output may make no progress before the exit is reported anyway
/// (a reader that went away must not hold an exit back forever; copying goes
/// on in the background).
const DRAIN_STALL: Duration = Duration::from_secs(5);

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
        let mut io = ProcessIo::empty(owner.tasks.branch(), owner.span.clone());
        io.spill = (owner.spill_max > 0).then(|| SpillConf {
            dir: owner.bundle.to_path_buf(),
            max: owner.spill_max,
        });
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
            Target::Paths => {
                let out = open_output(&paths.stdout).await?;
                // One file for both streams: one open file, one offset.
                let err = match &out {
                    Some(Sink::File(f)) if paths.stderr == paths.stdout => Some(Sink::File(
                        f.try_clone()
                            .map_err(Error::io("dup output", &paths.stdout))?,
                    )),
                    _ => open_output(&paths.stderr).await?,
                };
                (out, err)
            }
            Target::File(path) => {
                let path = std::path::PathBuf::from(path);
                let at = path.clone();
                let out = off_thread(move || {
                    if let Some(dir) = path.parent() {
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o755)
                            .create(dir)
                            .map_err(Error::io("create log directory", dir))?;
                    }
                    append(&path)
                })
                .await?;
                let err = out.try_clone().map_err(Error::io("dup log file", at))?;
                (Some(Sink::File(out)), Some(Sink::File(err)))
            }
            Target::Binary(binary, args) => {
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                let ids = (owner.id, owner.namespace);
                let logger = Logger::start(reaper, &io.tasks, binary, args, ids, out_r, err_r);
                io.logger = Some(logger.await?);
                (
                    Some(Sink::Pipe(sender(out_w)?)),
                    Some(Sink::Pipe(sender(err_w)?)),
                )
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
            let sink = Sink::Pipe(sender(w)?);
            io.input = Some(io.spawn(source, sink, Vec::new(), false)?);
        }
        for (slot, sink) in [(&mut stdio.stdout, out_sink), (&mut stdio.stderr, err_sink)] {
            let Some(sink) = sink else { continue };
            let (r, w) = owned_pipe(owner.io_owner)?;
            *slot = Some(w);
            let source = pipe::Receiver::from_owned_fd(r).map_err(Error::io("pipe", "output"))?;
            let output = io.spawn(Source::Pipe(source), sink, Vec::new(), true)?;
            io.outputs.push(output);
        }
        Ok((io, stdio, None))
    }

    fn empty(tasks: Tasks, span: tracing::Span) -> ProcessIo {
        ProcessIo {
            stdin_holder: None,
            input: None,
            outputs: Vec::new(),
            progress: Arc::default(),
            tasks,
            span,
            console: None,
            pending: None,
            logger: None,
            file_stop: None,
            spill: None,
        }
    }

    /// Starts a copy loop: on the runtime thread, or on the blocking pool if
    /// either end is a regular file (see [`crate::io::file_copy`]). Output
    /// to a pipe or FIFO goes through a spill (see [`copy_output`]).
    fn spawn(&mut self, from: Source, to: Sink, pending: Vec<u8>, output: bool) -> Result<Loop> {
        self.resume(from, to, pending, None, output)
    }

    /// [`ProcessIo::spawn`], with the file part of a spill handed over.
    fn resume(
        &mut self,
        from: Source,
        to: Sink,
        mut pending: Vec<u8>,
        tail: Option<SpillTail>,
        output: bool,
    ) -> Result<Loop> {
        use tracing::Instrument;
        let progress = output.then(|| self.progress.clone());
        let span = self.span.clone();
        if !matches!(from, Source::File(_)) && !matches!(to, Sink::File(_)) {
            let stop = self.tasks.token().clone();
            return Ok(match (to, &self.spill) {
                (Sink::Pipe(p), Some(conf)) if output => {
                    let spill = Spill::resume(conf.clone(), pending, tail);
                    let task = copy_output(from, p, spill, progress, stop);
                    self.tasks.spawn(task.instrument(span))
                }
                (to, _) => {
                    if let Some(t) = tail {
                        pending.extend(
                            spill::read_tail(&t)
                                .map_err(Error::io("read the output spill", "handed over"))?,
                        );
                    }
                    let task = copy(from, to, pending, progress, stop);
                    self.tasks.spawn(task.instrument(span))
                }
            });
        }
        let stop = match &self.file_stop {
            Some(s) => s.clone(),
            None => {
                let s = StopSignal::new().map_err(Error::io("eventfd", "stdio"))?;
                self.file_stop = Some(s.clone());
                // The token is the one way to stop: it sets the eventfd
                // the blocking loops poll.
                let (token, wake) = (self.tasks.token().clone(), s.clone());
                self.tasks.spawn(async move {
                    token.cancelled().await;
                    wake.signal()
                });
                s
            }
        };
        Ok(self.tasks.spawn_blocking(move || {
            let _entered = span.enter();
            copy_blocking(from, to, pending, progress, stop)
        }))
    }

    /// Stops every copy loop, wherever it runs.
    fn stop_loops(&self) {
        self.tasks.cancel();
    }

    /// Takes the pty master runc sent and starts copying through it.
    pub fn attach_console(&mut self, master: OwnedFd) -> Result<()> {
        let console = Arc::new(Console::new(master)?);
        let (input, output) = self.pending.take().unwrap_or((None, None));
        if let Some(source) = input {
            // The client closing stdin ends the terminal's input (VEOF).
            self.input =
                Some(self.spawn(source, Sink::Console(console.clone()), Vec::new(), false)?);
        }
        if let Some(sink) = output {
            let l = self.spawn(Source::Console(console.clone()), sink, Vec::new(), true)?;
            self.outputs.push(l);
        }
        self.console = Some(console);
        Ok(())
    }

    /// Resizes the terminal. No-op without one. (A size asked for before the
    /// process had stdio is kept by the process and applied once the
    /// terminal is attached: see `Process::set_running_io`.)
    pub fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        match &self.console {
            Some(c) => c.resize(width, height),
            None => Ok(()),
        }
    }

    /// Closes the process's stdin once the client's writers are gone.
    pub fn close_stdin(&mut self) {
        self.stdin_holder = None;
    }

    /// Waits until every output has been copied to EOF, until output has
    /// made no progress for [`DRAIN_STALL`], or until `deadline` (if any).
    /// Says whether every output reached its end.
    ///
    /// The deadline is for a source still open (a child left behind holds
    /// it): once every output's source has ended, what the loops still hold
    /// (a terminal read ahead into the spill, for one) goes to the reader
    /// for as long as the reader takes it, however long past the deadline.
    pub async fn drain(&mut self, deadline: Option<Instant>) -> bool {
        let outputs = self.outputs.len();
        let open = |p: &Progress| p.sources_ended() < outputs;
        let (mut last, mut since) = (self.progress.bytes(), Instant::now());
        for handle in &mut self.outputs {
            loop {
                let mut wait = DRAIN_STALL.saturating_sub(since.elapsed());
                if let Some(d) = deadline.filter(|_| open(&self.progress)) {
                    wait = wait.min(d.saturating_duration_since(Instant::now()));
                }
                if tokio::time::timeout(wait, &mut *handle).await.is_ok() {
                    break;
                }
                let now = self.progress.bytes();
                if now != last {
                    (last, since) = (now, Instant::now());
                }
                if deadline.is_some_and(|d| Instant::now() >= d) && open(&self.progress) {
                    tracing::warn!(
                        "output still open at the drain deadline (a child left behind holds it?); reporting the exit and closing it"
                    );
                    return false;
                }
                if since.elapsed() >= DRAIN_STALL {
                    tracing::warn!(
                        "output made no progress for {DRAIN_STALL:?}; reporting the exit anyway"
                    );
                    return false;
                }
            }
        }
        true
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        // Every loop, on the runtime thread or the blocking pool, ends at
        // its next wait and drops its ends.
        self.stop_loops();
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
        return Ok((Source::File(f), None));
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
    Ok((Source::Pipe(rx), Some(holder)))
}

/// Opens an output path: a FIFO read-write (so writing never fails for want
/// of a reader while clients come and go), anything else for appending.
async fn open_output(path: &str) -> Result<Option<Sink>> {
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
            Ok(Some(Sink::Pipe(tx)))
        }
        _ => {
            let path = path.to_path_buf();
            off_thread(move || append(&path))
                .await
                .map(|f| Some(Sink::File(f)))
        }
    }
}

/// Runs a filesystem call on the blocking pool: a stalled filesystem must
/// not stall the runtime thread.
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::io("run on the blocking pool", "")(
            std::io::Error::other(e),
        ))
    })
}

/// Opens a log file for appending. When both streams go to one file they
/// share this one open file (`try_clone`).
fn append(path: &Path) -> Result<File> {
    open_append(path).map_err(Error::io("open output", path))
}

/// A log file opened for appending (created 0640, close-on-exec): the
/// shim's `file://` outputs and tetherctl's container logs.
pub(crate) fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

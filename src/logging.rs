//! The daemon's log: tracing lines written to the bundle's `log` FIFO, which
//! containerd reads and copies to its own log.
//!
//! The FIFO is opened non-blocking and write errors are dropped: while
//! containerd is down nobody reads it, and logging must never stall the shim.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use tracing::Level;

/// A writer that never blocks and never fails.
struct LogWriter(Arc<File>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match (&*self.0).write(buf) {
            Ok(n) => Ok(n),
            // Full, or nobody reading: the line is dropped.
            Err(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends tracing output (and anything written to stderr, such as a panic) to
/// `path`. Without a readable FIFO there, logs go nowhere.
pub fn init(path: &Path, debug: bool) {
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .or_else(|_| OpenOptions::new().write(true).open("/dev/null"));
    let Ok(file) = file else { return };
    // stderr is /dev/null in the daemon; point it at the log for panics.
    let _ = nix::unistd::dup2(file.as_raw_fd(), libc::STDERR_FILENO);
    let file = Arc::new(file);
    let level = if debug { Level::DEBUG } else { Level::INFO };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false)
        .with_writer(move || LogWriter(file.clone()))
        .try_init();
}

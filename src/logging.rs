//! The daemon's log: tracing lines written to the bundle's `log` FIFO, which
//! containerd reads and copies to its own log.
//!
//! The FIFO is opened non-blocking and write errors are dropped: while
//! containerd is down nobody reads it, and logging must never stall the shim.
//!
//! Levels come from `TETHER_LOG` (tracing's `RUST_LOG` directives, such as
//! `info,tether::transport=trace`) when containerd's environment sets it;
//! otherwise containerd's `-debug` flag decides between debug and info.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// The variable holding log directives (`RUST_LOG` syntax).
pub const LOG_ENV: &str = "TETHER_LOG";

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
    let directives = std::env::var(LOG_ENV).unwrap_or_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(&directives, debug))
        .with_ansi(false)
        .with_target(false)
        .with_writer(move || LogWriter(file.clone()))
        .try_init();
}

/// The filter for `directives` (invalid ones are reported on stderr, which
/// is the log by then, and skipped); without any, debug or info as `debug`
/// says. Field values are matched as plain strings, never as regexes.
fn filter(directives: &str, debug: bool) -> EnvFilter {
    let default = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    EnvFilter::builder()
        .with_regex(false)
        .with_default_directive(default.into())
        .parse_lossy(directives)
}

#[cfg(test)]
mod tests {
    use super::filter;

    #[test]
    fn the_debug_flag_decides_without_directives() {
        assert_eq!(filter("", false).to_string(), "info");
        assert_eq!(filter("", true).to_string(), "debug");
    }

    #[test]
    fn directives_win_over_the_flag() {
        let f = filter("warn,tether::transport=trace", true).to_string();
        assert!(f.contains("tether::transport=trace"), "{f}");
        assert!(f.contains("warn"), "{f}");
        assert!(!f.contains("debug"), "{f}");
    }
}

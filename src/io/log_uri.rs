//! `binary://` log URIs: a logger process the shim starts with the
//! container's stdout and stderr as fds 3 and 4 and a readiness pipe as fd 5.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{pipe2, Pid};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::error::{Error, Result};
use crate::reaper::{ExitFuture, Reaper};
use crate::tasks::Tasks;

/// How long a logger has to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a logger has to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(12);

/// Where a process's output goes, from the client's stdout URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Plain paths (FIFOs or files) for stdout and stderr.
    Paths,
    /// `file:///path`: both streams appended to one file.
    File(String),
    /// `binary:///path?k=v`: a logger process and its arguments.
    Binary(String, Vec<String>),
}

impl Target {
    /// Reads the stdout value of a request.
    pub fn parse(stdout: &str) -> Result<Target> {
        let bad = |why: &str| Error::InvalidArgument(format!("log URI {stdout:?}: {why}"));
        let (scheme, rest) = match stdout.split_once("://") {
            Some((s, r)) if !s.contains('/') => (s, r),
            _ => return Ok(Target::Paths),
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        // As Go's net/url reads them: '+' is itself in a path, a space only
        // in the query.
        let path = percent_decode(path, false).ok_or_else(|| bad("bad percent-encoding"))?;
        match scheme {
            "fifo" => Ok(Target::Paths),
            "file" | "binary" if !path.starts_with('/') => Err(bad("the path must be absolute")),
            "file" => Ok(Target::File(path)),
            "binary" => {
                let mut args = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    args.push(percent_decode(k, true).ok_or_else(|| bad("bad percent-encoding"))?);
                    if !v.is_empty() {
                        args.push(
                            percent_decode(v, true).ok_or_else(|| bad("bad percent-encoding"))?,
                        );
                    }
                }
                Ok(Target::Binary(path, args))
            }
            other => Err(bad(&format!("unsupported scheme {other:?}"))),
        }
    }
}

/// `%XX` escapes decoded; `+` becomes a space when `plus_is_space` (query
/// parts), and stays itself otherwise (paths).
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A running logger; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Logger {
    pid: u32,
    exit: Option<ExitFuture>,
    /// The owner of the task that stops it once it is dropped.
    tasks: Tasks,
}

impl Logger {
    /// Starts `binary` with `stdout`/`stderr` (read ends) as fds 3 and 4 and
    /// waits until it reports ready (one byte or EOF on fd 5).
    pub async fn start(
        reaper: &Reaper,
        tasks: &Tasks,
        binary: &str,
        args: &[String],
        ids: (&str, &str),
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Logger> {
        let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(Error::sys("pipe2"))?;
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env_clear()
            .env("CONTAINER_ID", ids.0)
            .env("CONTAINER_NAMESPACE", ids.1)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        crate::sys::pass_fds(
            &mut cmd,
            [stdout.as_raw_fd(), stderr.as_raw_fd(), ready_w.as_raw_fd()],
        );
        let (child, exit) = reaper.spawn(&mut cmd).map_err(|source| Error::Helper {
            what: "starting the logger",
            binary: binary.into(),
            source,
        })?;
        drop((cmd, stdout, stderr, ready_w));
        let logger = Logger {
            pid: child.id(),
            exit: Some(exit),
            tasks: tasks.clone(),
        };
        let mut ready = pipe::Receiver::from_owned_fd(ready_r)
            .map_err(Error::io("logger readiness pipe", binary))?;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(READY_TIMEOUT, ready.read(&mut byte)).await {
            Ok(Ok(_)) => Ok(logger),
            Ok(Err(e)) => Err(Error::io("waiting for the logger", binary)(e)),
            Err(_) => Err(Error::Helper {
                what: "the logger did not report ready",
                binary: binary.into(),
                source: std::io::ErrorKind::TimedOut.into(),
            }),
        }
    }
}

impl Logger {
    /// Lets go of the logger without stopping it (a live upgrade); its pid.
    pub fn snapshot(mut self) -> u32 {
        self.exit = None;
        std::mem::take(&mut self.pid)
    }

    /// Takes charge of a running logger a snapshot handed over.
    pub fn restore(pid: u32, tasks: Tasks) -> Logger {
        Logger {
            pid,
            exit: None,
            tasks,
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        if self.pid == 0 {
            return;
        }
        let pid = Pid::from_raw(self.pid as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let exit = self.exit.take();
        // Adopted (its exit goes to the shim's reaper as an unclaimed one):
        // its pidfd tells when it is gone. No pidfd: it is gone already.
        let adopted = match exit {
            Some(_) => None,
            None => crate::sys::pidfd_open(self.pid)
                .and_then(crate::sys::async_fd)
                .ok(),
        };
        // Not cancelled with its owner: stopping it is bounded, and a logger
        // left running would hold the container's output for ever.
        self.tasks.spawn(async move {
            let stopped = match (exit, adopted) {
                (Some(exit), _) => tokio::time::timeout(STOP_GRACE, exit.wait()).await.is_ok(),
                (None, Some(pidfd)) => {
                    // A pidfd is readable once its process has exited.
                    tokio::time::timeout(STOP_GRACE, pidfd.readable())
                        .await
                        .is_ok()
                }
                (None, None) => true,
            };
            if !stopped {
                let _ = kill(pid, Signal::SIGKILL);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_uris() {
        assert_eq!(Target::parse("/run/fifo/x-stdout").unwrap(), Target::Paths);
        assert_eq!(Target::parse("").unwrap(), Target::Paths);
        assert_eq!(
            Target::parse("file:///var/log/c%201.log").unwrap(),
            Target::File("/var/log/c 1.log".into())
        );
        assert_eq!(
            Target::parse("binary:///usr/bin/logger?tag=web&verbose").unwrap(),
            Target::Binary(
                "/usr/bin/logger".into(),
                vec!["tag".into(), "web".into(), "verbose".into()]
            )
        );
        // '+' is a plus in the path and a space in the query, as containerd's
        // Go shim reads them.
        assert_eq!(
            Target::parse("file:///tmp/a+b.log").unwrap(),
            Target::File("/tmp/a+b.log".into())
        );
        assert_eq!(
            Target::parse("binary:///bin/l+g?tag=a+b%2Bc").unwrap(),
            Target::Binary("/bin/l+g".into(), vec!["tag".into(), "a b+c".into()])
        );
        assert!(Target::parse("file://relative/x").is_err());
        assert!(Target::parse("gopher:///x").is_err());
    }
}

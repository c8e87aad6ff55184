//! `tetherctl log-driver`: the logger of a detached container.
//!
//! `run -d` gives the shim `binary://<tetherctl>?log-driver&...` as the
//! container's stdout, so the shim starts this with the container's stdout
//! and stderr as fds 3 and 4 and a readiness pipe as fd 5 (containerd's
//! logging-binary protocol). It lives as long as the container's output:
//! it stores the output in the capped, rotated log ([`super::logfile`]) and
//! relays it live to every `tetherctl attach` connected to its socket.
//!
//! The socket speaks frames: one byte (1 stdout, 2 stderr, 0 "you fell
//! behind and are dropped"), a big-endian u32 length, then the bytes.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::logfile::{RotatingLog, Stream};
use super::timefmt::unix_nanos;

/// Frame kind: the client fell behind and is disconnected.
pub const FRAME_DROPPED: u8 = 0;
/// Frame kind: stdout bytes.
pub const FRAME_STDOUT: u8 = 1;
/// Frame kind: stderr bytes.
pub const FRAME_STDERR: u8 = 2;

/// How many chunks of output an attached client may be behind before it
/// is dropped (a slow terminal must not hold the container's output back).
const CLIENT_BACKLOG: usize = 1024;
/// After SIGTERM (the shim deleting the process), how long to go on
/// reading what is still in the pipes.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long attached clients get to take the last output at the end.
const CLIENT_FLUSH: Duration = Duration::from_secs(2);

/// `log-driver`'s arguments (given by `run -d` in the URI's query).
#[derive(Debug, clap::Args)]
pub struct DriverArgs {
    /// The log file (rotated as `<log>.1`, `<log>.2`, ...).
    #[arg(long)]
    log: PathBuf,
    /// The socket `tetherctl attach` connects to.
    #[arg(long)]
    attach: PathBuf,
    /// Size cap of one log file, in bytes.
    #[arg(long)]
    max_size: u64,
    /// How many log files to keep, the current one included.
    #[arg(long)]
    max_files: u32,
}

type Chunk = (u8, Arc<[u8]>);

/// Runs the driver until both output pipes reach their end.
pub async fn run(args: DriverArgs) -> Result<u8> {
    let take = crate::sys::take_inherited_pipe;
    let stdout = take(3).context("taking the stdout pipe (fd 3)")?;
    let stderr = take(4).context("taking the stderr pipe (fd 4)")?;
    let ready = take(5).context("taking the readiness pipe (fd 5)")?;
    let mut log = RotatingLog::open(&args.log, args.max_size, args.max_files)
        .with_context(|| format!("opening {}", args.log.display()))?;
    let _ = std::fs::remove_file(&args.attach);
    let listener = UnixListener::bind(&args.attach)
        .with_context(|| format!("listening on {}", args.attach.display()))?;
    std::fs::set_permissions(&args.attach, std::fs::Permissions::from_mode(0o600))?;
    // Ready: the shim goes on with Create once fd 5 is closed.
    drop(ready);

    let mut out = pipe::Receiver::from_owned_fd(stdout)?;
    let mut err = pipe::Receiver::from_owned_fd(stderr)?;
    let (tx, _) = broadcast::channel::<Chunk>(CLIENT_BACKLOG);
    let mut clients = JoinSet::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut deadline: Option<tokio::time::Instant> = None;
    let (mut out_open, mut err_open) = (true, true);
    let mut out_buf = vec![0u8; 64 * 1024];
    let mut err_buf = vec![0u8; 64 * 1024];
    while out_open || err_open {
        let (stream, n) = tokio::select! {
            // Connections first: output that follows a client's connecting
            // (an answer to its input) must reach it.
            biased;
            conn = listener.accept() => {
                if let Ok((conn, _)) = conn {
                    clients.spawn(serve(conn, tx.subscribe()));
                }
                continue;
            }
            r = out.read(&mut out_buf), if out_open => (Stream::Stdout, r.unwrap_or(0)),
            r = err.read(&mut err_buf), if err_open => (Stream::Stderr, r.unwrap_or(0)),
            _ = term.recv(), if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + TERM_GRACE);
                continue;
            }
            _ = sleep_until(deadline) => break,
        };
        let (buf, open, kind) = match stream {
            Stream::Stdout => (&out_buf, &mut out_open, FRAME_STDOUT),
            Stream::Stderr => (&err_buf, &mut err_open, FRAME_STDERR),
        };
        if n == 0 {
            *open = false;
            continue;
        }
        let data = &buf[..n];
        // The log is the record: a failing write is worth the driver's exit
        // (the shim then reports the output's end), not a silent gap.
        log.write(stream, data, unix_nanos(SystemTime::now()))
            .with_context(|| format!("writing {}", args.log.display()))?;
        let _ = tx.send((kind, Arc::from(data)));
    }
    let _ = std::fs::remove_file(&args.attach);
    drop(tx);
    let _ = tokio::time::timeout(CLIENT_FLUSH, async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    Ok(0)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sends one attached client every chunk from now on, until the output
/// ends, it goes away, or it falls [`CLIENT_BACKLOG`] chunks behind.
async fn serve(mut conn: UnixStream, mut rx: broadcast::Receiver<Chunk>) {
    loop {
        let (kind, data) = match rx.recv().await {
            Ok(chunk) => chunk,
            Err(broadcast::error::RecvError::Lagged(_)) => (FRAME_DROPPED, Arc::from(&b""[..])),
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let mut head = [0u8; 5];
        head[0] = kind;
        head[1..].copy_from_slice(&(data.len() as u32).to_be_bytes());
        if conn.write_all(&head).await.is_err() || conn.write_all(&data).await.is_err() {
            return;
        }
        if kind == FRAME_DROPPED {
            break;
        }
    }
    let _ = conn.shutdown().await;
}

/// The stdout URI that makes the shim start this driver for a container:
/// `binary://<tetherctl>?log-driver&--log=...` (percent-encoded).
pub fn uri(tetherctl: &std::path::Path, args: &[(&str, String)]) -> String {
    let mut uri = format!(
        "binary://{}?log-driver",
        encode(&tetherctl.display().to_string())
    );
    for (k, v) in args {
        uri.push('&');
        uri.push_str(&encode(&format!("--{k}={v}")));
    }
    uri
}

/// Percent-encodes everything but unreserved characters and '/'.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shim parses this URI (its `binary://` log target); that it reads it
    // back as this binary with these arguments is proven end to end by
    // tests/tetherctl.rs, which runs detached containers through the driver.
    #[test]
    fn the_uri_names_the_binary_and_its_arguments_percent_encoded() {
        let u = uri(
            std::path::Path::new("/opt/my bin/tetherctl"),
            &[
                ("log", "/run/t/c 1/output.log".into()),
                ("max-files", "5".into()),
            ],
        );
        assert_eq!(
            u,
            "binary:///opt/my%20bin/tetherctl?log-driver\
             &--log%3D/run/t/c%201/output.log&--max-files%3D5"
        );
    }
}

//! `tetherctl attach`: the local terminal or stdio joined to a detached
//! container. Output comes live from the container's log driver (its
//! socket, see [`super::driver`]); input goes into the container's stdin
//! FIFO (made by `run -d -i`; the shim holds a writer of it too, so
//! attaching and detaching never ends the container's input); a terminal's
//! size follows the local one (ResizePty on each SIGWINCH). The detach keys
//! (ctrl-p,ctrl-q unless `--detach-keys` says otherwise) leave the
//! container running.

use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tether_proto::shim::{StateRequest, WaitRequest};
use tether_proto::status::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use super::attach::{resize, RawMode};
use super::driver::{FRAME_DROPPED, FRAME_STDERR};
use super::exit_code;
use super::spec::BundleSpec;
use super::store::{ctx, rpc_err, Store};

/// `attach`'s options.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Keys that detach, leaving the container running: comma-separated
    /// `ctrl-<c>` or single characters; "" for none.
    #[arg(long, default_value = "ctrl-p,ctrl-q", value_name = "KEYS")]
    detach_keys: String,
    /// Do not pass the local stdin on.
    #[arg(long)]
    no_stdin: bool,
    /// Container id.
    id: String,
}

/// Why a detach-keys value was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid detach key {key:?} in {value:?}: use ctrl-<a-z, @, [, \\, ], ^, _> or one character, separated by commas")]
pub struct BadDetachKeys {
    key: String,
    value: String,
}

/// Reads podman's detach-keys notation into the bytes it stands for.
pub fn parse_detach_keys(value: &str) -> Result<Vec<u8>, BadDetachKeys> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|key| {
            let bad = || BadDetachKeys {
                key: key.to_string(),
                value: value.to_string(),
            };
            match key.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                    b @ b'a'..=b'z' => Ok(b - b'a' + 1),
                    b @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_') => Ok(b - b'@'),
                    _ => Err(bad()),
                },
                None if key.len() == 1 => Ok(key.as_bytes()[0]),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// Finds the detach sequence in input: bytes that may begin it are held
/// back until it is clear whether they do.
#[derive(Debug)]
pub struct DetachMatcher {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachMatcher {
    /// A matcher for `keys` (empty: never detaches).
    pub fn new(keys: Vec<u8>) -> DetachMatcher {
        DetachMatcher { keys, matched: 0 }
    }

    /// Feeds input; the bytes to pass on, and whether the keys were typed.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b != self.keys[self.matched] && self.matched > 0 {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// `attach`.
pub async fn attach(store: &Store, args: AttachArgs) -> Result<u8> {
    let keys = parse_detach_keys(&args.detach_keys)?;
    let id = args.id.as_str();
    let shim = store.client(id).await?;
    let state = StateRequest {
        id: id.to_string(),
        ..Default::default()
    };
    let status = shim
        .client
        .state(ctx(), &state)
        .await
        .map_err(rpc_err(format!("asking for the state of {id}")))?
        .status
        .enum_value_or(Status::UNKNOWN);
    if status != Status::RUNNING {
        bail!("container {id} is not running ({status:?})");
    }
    let bundle = store.bundle(id);
    let tty = BundleSpec::read(&bundle)
        .context("reading the container's spec")?
        .process
        .terminal;
    let conn = UnixStream::connect(store.attach_socket(id))
        .await
        .map_err(|_| {
            anyhow::anyhow!("container {id} cannot be attached to: only a detached container (run -d) can, while its output is open")
        })?;
    let stdin_fifo = bundle.join("stdin");
    let input = if args.no_stdin || !stdin_fifo.exists() {
        None
    } else {
        // The shim holds the FIFO's read end: opening cannot block.
        Some(
            pipe::OpenOptions::new()
                .open_sender(&stdin_fifo)
                .with_context(|| format!("opening {}", stdin_fifo.display()))?,
        )
    };
    let local_tty = nix::unistd::isatty(std::io::stdin().as_raw_fd()).unwrap_or(false);
    let raw = if tty && local_tty {
        resize(&shim.client, id, "").await;
        Some(RawMode::enter()?)
    } else {
        None
    };
    let resizer = (tty && local_tty).then(|| {
        let (client, id) = (shim.client.clone(), id.to_string());
        tokio::spawn(async move {
            let kind = tokio::signal::unix::SignalKind::window_change();
            let Ok(mut winch) = tokio::signal::unix::signal(kind) else {
                return;
            };
            while winch.recv().await.is_some() {
                resize(&client, &id, "").await;
            }
        })
    });
    let mut output = tokio::spawn(relay_output(conn));
    let (detach_tx, detach_rx) = oneshot::channel();
    let input = input.map(|fifo| tokio::spawn(relay_input(fifo, keys, detach_tx)));
    let detached = async {
        if detach_rx.await.is_err() {
            // The input ended without the keys: only the exit ends attach.
            std::future::pending::<()>().await;
        }
    };
    let wait = WaitRequest {
        id: id.to_string(),
        ..Default::default()
    };
    let result = tokio::select! {
        _ = detached => Ok(None),
        exit = shim.client.wait(ttrpc::context::with_timeout(0), &wait) => {
            // Its output ends with it: print what is still coming.
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut output).await;
            exit.map(Some).map_err(rpc_err(format!("waiting for {id}")))
        }
    };
    output.abort();
    if let Some(i) = input {
        i.abort();
    }
    if let Some(r) = resizer {
        r.abort();
    }
    drop(raw);
    match result? {
        Some(exit) => Ok(exit_code(exit.exit_status)),
        None => {
            eprintln!("\r\ntetherctl: detached from {id}; it goes on running\r");
            Ok(0)
        }
    }
}

/// Prints the driver's frames: stdout's to stdout, stderr's to stderr
/// (one writer each), until the driver closes the connection.
async fn relay_output(mut conn: UnixStream) {
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut data = Vec::new();
    loop {
        let mut head = [0u8; 5];
        if conn.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        data.resize(len, 0);
        if conn.read_exact(&mut data).await.is_err() {
            break;
        }
        let written = match head[0] {
            FRAME_DROPPED => {
                let _ = stderr
                    .write_all(b"\r\ntetherctl: output fell too far behind; no more output will be shown\r\n")
                    .await;
                break;
            }
            FRAME_STDERR => stderr.write_all(&data).await,
            _ => stdout.write_all(&data).await,
        };
        if written.is_err() {
            break;
        }
        let _ = stdout.flush().await;
    }
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
}

/// Copies the local stdin into the container's stdin FIFO until the local
/// input ends (which leaves the container's stdin open) or the detach keys
/// are typed (which `detach` is told about).
async fn relay_input(mut fifo: pipe::Sender, keys: Vec<u8>, detach: oneshot::Sender<()>) {
    let mut matcher = DetachMatcher::new(keys);
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = stdin.read(&mut buf).await {
        let (pass, detached) = matcher.feed(&buf[..n]);
        if !pass.is_empty() && fifo.write_all(&pass).await.is_err() {
            return;
        }
        if detached {
            let _ = detach.send(());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_podman_writes_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), [0x10, 0x11]);
        assert_eq!(parse_detach_keys("ctrl-@,x,ctrl-_").unwrap(), [0, b'x', 31]);
        assert!(parse_detach_keys("").unwrap().is_empty());
        let e = parse_detach_keys("ctrl-pp").unwrap_err().to_string();
        assert!(e.contains("ctrl-pp"), "{e}");
        assert!(parse_detach_keys("alt-x").is_err());
    }

    #[test]
    fn the_sequence_is_held_back_and_found_across_reads() {
        let mut m = DetachMatcher::new(vec![0x10, 0x11]);
        assert_eq!(m.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // A false start is passed on, with what broke it.
        assert_eq!(m.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(m.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(m.feed(b"\x11rest"), (Vec::new(), true));
        let mut none = DetachMatcher::new(Vec::new());
        assert_eq!(none.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}

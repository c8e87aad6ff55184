//! Generic helpers: unique names, polling, numbers from the environment,
//! running a command with a hang guard, and data helpers (deterministic test
//! data, streaming comparison, SHA-256).

use std::io::{ErrorKind, Read};
use std::process::{ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::POLL;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A number never returned before by this test process.
pub(super) fn next_serial() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// A name unique to this test process and call: `tether-test-<pid>-<n>`.
/// Used for namespaces, so the machine-wide runc root
/// (`/run/containerd/runc/<namespace>`) and cgroups never collide.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), next_serial())
}

/// Polls `f` until it returns `Some`, or `None` once `timeout` has passed.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// Panics unless `f` holds within 10 s (checked every `POLL`), naming
/// `what` it waited for.
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let held = poll_until(Duration::from_secs(10), || f().then_some(()));
    assert!(held.is_some(), "timed out waiting until {what}");
}

/// The number in environment variable `name`, or `default` when it is unset
/// or not a number.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// Spawns `cmd` with stdout and stderr piped, hands stdout to `consume` on a
/// separate thread, collects stderr, and waits at most `timeout` for the
/// command to exit. On timeout the command is killed (by PID) and this panics.
pub fn spawn_and_wait<T: Send + 'static>(
    cmd: &mut Command,
    timeout: Duration,
    consume: impl FnOnce(ChildStdout) -> T + Send + 'static,
) -> (ExitStatus, T, Vec<u8>) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_thread = thread::spawn(move || consume(stdout));
    let err_thread = thread::spawn(move || read_all(stderr));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let err = err_thread.join().unwrap_or_default();
                panic!(
                    "{cmd:?} did not finish within {timeout:?}; killed it (pid {}). stderr so far:\n{}",
                    child.id(),
                    String::from_utf8_lossy(&err)
                );
            }
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    let out = out_thread.join().expect("stdout reader thread panicked");
    let err = err_thread.join().expect("stderr reader thread panicked");
    (status, out, err)
}

/// Reads `r` to the end, keeping what was read before an error.
fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    buf
}

/// Like `Command::output`, with a hang guard of `timeout`.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let (status, stdout, stderr) = spawn_and_wait(cmd, timeout, read_all);
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Human-readable summary of an `Output`.
pub fn describe_output(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// Data helpers
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*), so large outputs are not
/// constant and misplaced or repeated chunks are detected.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compares a stream with `expected` chunk by chunk without buffering it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCompare {
    /// Total bytes read.
    pub len: u64,
    /// Offset of the first byte that differs from `expected`, if any
    /// (including the first byte beyond `expected`).
    pub first_mismatch: Option<u64>,
}

/// Reads `r` to the end, comparing it against `expected`.
pub fn compare_stream(mut r: impl Read, expected: &Arc<Vec<u8>>) -> StreamCompare {
    let mut buf = vec![0u8; 1 << 16];
    let mut len: u64 = 0;
    let mut first_mismatch = None;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading stream: {e}"),
        };
        if first_mismatch.is_none() {
            let start = len as usize;
            let exp = expected.get(start..).unwrap_or(&[]);
            let exp = &exp[..exp.len().min(n)];
            if exp != &buf[..exp.len()] {
                let i = exp
                    .iter()
                    .zip(&buf[..n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                first_mismatch = Some(len + i as u64);
            } else if exp.len() < n {
                first_mismatch = Some(len + exp.len() as u64);
            }
        }
        len += n as u64;
    }
    StreamCompare {
        len,
        first_mismatch,
    }
}

/// Lower-case hex SHA-256, used for containerd's socket naming.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `cmd` with a fresh pseudo-terminal as its stdin, stdout and stderr
/// (what `ctr ... -t` insists on), and returns its exit status and everything
/// it wrote, read from the master until the terminal closes (EIO), so no
/// tail is lost to a reader that stops early.
pub fn output_in_pty(cmd: &mut Command) -> (std::process::ExitStatus, Vec<u8>) {
    output_in_pty_paced(cmd, None)
}

/// [`output_in_pty`] for a slow terminal: with `pace`, the master is read
/// 4 KiB at a time with `pace` between reads (4 KiB per millisecond is
/// about 4 MB/s), so the command's writes wait for the reader.
pub fn output_in_pty_paced(
    cmd: &mut Command,
    pace: Option<Duration>,
) -> (std::process::ExitStatus, Vec<u8>) {
    use std::os::fd::OwnedFd;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave: OwnedFd = pty.slave;
    cmd.stdin(Stdio::from(slave.try_clone().expect("dup pty slave")))
        .stdout(Stdio::from(slave.try_clone().expect("dup pty slave")))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("spawning a command on a pty");
    // The spawn's copies of the slave are in the child only now.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let step = if pace.is_some() { 4096 } else { buf.len() };
    loop {
        match master.read(&mut buf[..step]) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if let Some(pace) = pace {
                    std::thread::sleep(pace);
                }
            }
            // EIO: every slave descriptor is closed.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the pty master: {e}"),
        }
    }
    let status = child.wait().expect("waiting for the command");
    (status, out)
}

//! Processes that exit at once, under CPU load: `run --rm` and `exec` must
//! neither hang nor lose output however their exit races tetherctl's opening
//! of the stdio FIFOs (issue #22: about 1 in 15-86 `run --rm` hung).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{code, stderr, Ctl};

/// How long one quick run may take before it counts as hung (it takes
/// well under a second; this is for a loaded machine).
const HANG: Duration = Duration::from_secs(20);

/// Busy loops that compete with tetherctl for the CPUs, widening the race;
/// killed by pid on drop.
pub(super) struct Load(Vec<Child>);

impl Load {
    pub(super) fn start(n: usize) -> Load {
        Load(
            (0..n)
                .map(|_| {
                    Command::new("/bin/busybox")
                        .args(["sh", "-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("starting a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` to the end or for [`HANG`]; a run that takes longer is
/// SIGKILLed (by pid; not SIGTERM, which `run` would pass on to the
/// container) and reported as None.
fn run_bounded(mut cmd: Command) -> Option<(i32, String, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read on threads: a full pipe must not look like a hang.
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    status.map(|s| (s.code().unwrap_or(-1), out, err))
}

/// `QUICK_EXIT_RUNS` (default 200) or `QUICK_EXIT_EXECS` (default 100).
fn rounds(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// Loops `cmd(i)` and expects stdout `want(i)` and status 0 each time;
/// stops after 3 hangs. Returns the hangs and the other failures.
fn quick_loop(
    n: usize,
    cmd: impl Fn(usize) -> Command,
    want: impl Fn(usize) -> String,
) -> (Vec<usize>, Vec<String>) {
    let _load = Load::start(2);
    let (mut hangs, mut bad) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for i in 0..n {
        match run_bounded(cmd(i)) {
            None => hangs.push(i),
            Some((0, out, _)) if out == want(i) => {}
            Some((status, out, err)) => bad.push(format!(
                "round {i}: status {status}, stdout {out:?}, stderr {err:?}"
            )),
        }
        if hangs.len() >= 3 {
            break;
        }
    }
    eprintln!(
        "{n} quick rounds: {} hung ({hangs:?}), {} failed, {:?}",
        hangs.len(),
        bad.len(),
        started.elapsed()
    );
    (hangs, bad)
}

/// `run --rm` of a process that exits at once, many times under load:
/// each returns, with the output and status, and removes the container.
#[test]
fn run_rm_of_a_quick_process_never_hangs() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let n = rounds("QUICK_EXIT_RUNS", 200);
    let (hangs, bad) = quick_loop(
        n,
        |i| {
            c.cmd(&[
                "run",
                "--rm",
                "--rootfs",
                &rootfs,
                &format!("q{i}"),
                "/bin/echo",
                &i.to_string(),
            ])
        },
        |i| format!("{i}\n"),
    );
    assert!(
        hangs.is_empty(),
        "{} hung (of up to {n}): rounds {hangs:?}",
        hangs.len()
    );
    assert!(bad.is_empty(), "{bad:?}");
    c.assert_nothing_left();
}

/// The same for `exec` into a running container.
#[test]
fn exec_of_a_quick_process_never_hangs() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    c.ok(&["run", "-d", "--rootfs", &rootfs, "host", "sleep", "3600"]);
    let n = rounds("QUICK_EXIT_EXECS", 100);
    let (hangs, bad) = quick_loop(
        n,
        |i| c.cmd(&["exec", "host", "/bin/echo", &i.to_string()]),
        |i| format!("{i}\n"),
    );
    assert!(
        hangs.is_empty(),
        "{} hung (of up to {n}): rounds {hangs:?}",
        hangs.len()
    );
    assert!(bad.is_empty(), "{bad:?}");
    let out = c.run(&["rm", "-f", "host"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    c.assert_nothing_left();
}

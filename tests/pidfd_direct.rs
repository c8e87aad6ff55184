//! Kill through pidfds (issue #21, item 5), driven over ttrpc with real
//! runc: with a runc that takes `--pidfd-socket` (the newest of
//! tests/peers/runc-matrix) the shim holds a pidfd for the init and for each
//! exec, signals them through it (Kill of the init runs no `runc kill`), and
//! hands the pidfds over across a live upgrade; with Debian's runc 1.1.5,
//! which lacks the flag, it signals as before (`runc kill` for the init, the
//! pid for an exec). Either way a finished process is NotFound.
//!
//! Each fixture runs its runc through a wrapper that records every
//! invocation's arguments, so the tests see what the shim asked of runc.
//! That a pidfd never reaches a process that reused the pid is shown at the
//! unit level (`process::tests`), where the pid can be made to be reused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::direct::*;
use common::{find_in_path, runc_dir, NEWEST_RUNC};
use protobuf::Message;
use tether::protos::shim::*;

/// A runc wrapper that appends its arguments, one line per invocation, to
/// the log next to it.
struct Recorded {
    _dir: tempfile::TempDir,
    wrapper: PathBuf,
    log: PathBuf,
}

impl Recorded {
    fn new(runc: &Path) -> Recorded {
        let dir = tempfile::Builder::new()
            .prefix("tether-pidfd-runc-")
            .tempdir()
            .unwrap();
        let wrapper = dir.path().join("runc");
        let log = dir.path().join("calls");
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            runc.display()
        );
        std::fs::write(&wrapper, script).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Recorded {
            _dir: dir,
            wrapper,
            log,
        }
    }

    /// The runtime options naming the wrapper (for `start` and Create).
    fn options(&self) -> Vec<u8> {
        let o = tether::protos::runc_options::Options {
            binary_name: self.wrapper.display().to_string(),
            ..Default::default()
        };
        common::runc_options(o).write_to_bytes().unwrap()
    }

    /// The invocations so far, as argument lists.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').map(String::from).collect())
            .collect()
    }

    /// The invocations of sub-command `sub` (the first argument that is not
    /// a global flag or its value).
    fn of(&self, sub: &str) -> Vec<Vec<String>> {
        self.calls()
            .into_iter()
            .filter(|c| subcommand(c) == Some(sub))
            .collect()
    }
}

fn subcommand(call: &[String]) -> Option<&str> {
    let mut args = call.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" | "--log" | "--log-format" | "--criu" => {
                args.next();
            }
            "--systemd-cgroup" | "--debug" => {}
            other => return Some(other),
        }
    }
    None
}

/// A fixture whose container runs `sleep`, created and started with the
/// wrapped runc; returns it with the init's pid.
async fn running(runc: &Recorded) -> (Fixture, u32) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let options = runc.options();
    // A cgroup of its own: without cgroupsPath runc uses /<id>, and other
    // test binaries' fixtures run containers named c0, c1, ... too.
    let cgroup = format!("/tether-pidfd-{}-{n}", std::process::id());
    let edit = |spec: &mut serde_json::Value| spec["linux"]["cgroupsPath"] = cgroup.into();
    let f = Fixture::build(&["/bin/sleep", "1000"], edit, &options).await;
    let mut req = f.create_request();
    req.options = protobuf::MessageField::some(Message::parse_from_bytes(&options).unwrap());
    let pid = f.client.create(ctx(), &req).await.unwrap().pid;
    assert_eq!(f.start().await, pid);
    (f, pid)
}

/// The pids the pidfds that `pid` holds name (from fdinfo), sorted.
fn pidfds_of(pid: u32) -> Vec<i64> {
    let mut named: Vec<i64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            if target != Path::new("anon_inode:[pidfd]") {
                return None;
            }
            let fd = e.file_name();
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_str()?)).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("Pid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    named.sort();
    named
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort();
    v
}

/// An exec running `sleep` in `f`'s container, started; returns its pid.
async fn sleeper<'a>(f: &'a Fixture, exec_id: &str) -> (Exec<'a>, u32) {
    let e = Exec::add(f, exec_id, &["/bin/sleep", "100"], ("", "")).await;
    let pid = e.start().await.unwrap();
    (e, pid)
}

/// SIGTERM ends the exec (143), and signalling it again is NotFound; its
/// Delete closes its pidfd.
async fn term_exec(e: &Exec<'_>) {
    e.kill(libc::SIGTERM as u32).await.unwrap();
    assert_eq!(e.wait().await, 143);
    let (code, msg) = code_of(e.kill(libc::SIGTERM as u32).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{msg}");
    e.delete().await.unwrap();
}

/// SIGKILL ends the init (137), and signalling it again is NotFound.
async fn kill_init(f: &Fixture) {
    f.kill(libc::SIGKILL as u32).await;
    assert_eq!(f.wait().await, 137);
    let req = KillRequest {
        id: f.id.clone(),
        signal: libc::SIGKILL as u32,
        ..Default::default()
    };
    let (code, msg) = code_of(f.client.kill(ctx(), &req).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{msg}");
}

#[tokio::test(flavor = "current_thread")]
async fn with_a_runc_that_sends_pidfds_kill_goes_through_them() {
    let runc = Recorded::new(&runc_dir(NEWEST_RUNC).join("runc"));
    let (f, init) = running(&runc).await;
    // Asked once, by `--help`, before the first create.
    assert_eq!(runc.of("create").len(), 2, "{:?}", runc.calls());
    assert!(runc.of("create")[0].contains(&"--help".to_string()));
    assert_eq!(runc.of("exec").len(), 1, "{:?}", runc.calls());
    let create = &runc.of("create")[1];
    assert!(create.contains(&"--pidfd-socket".into()), "{create:?}");
    assert_eq!(pidfds_of(f.shim_pid), vec![init as i64]);

    let (e, pid) = sleeper(&f, "sleeper").await;
    let exec = runc.of("exec").pop().unwrap();
    assert!(exec.contains(&"--pidfd-socket".into()), "{exec:?}");
    assert_eq!(pidfds_of(f.shim_pid), sorted(vec![init as i64, pid as i64]));
    term_exec(&e).await;
    assert_eq!(pidfds_of(f.shim_pid), vec![init as i64]);

    kill_init(&f).await;
    assert!(
        runc.of("kill").is_empty(),
        "Kill of the init ran runc: {:?}",
        runc.of("kill")
    );
    assert_eq!(
        runc.of("create").len(),
        2,
        "asked again: {:?}",
        runc.calls()
    );
    f.delete().await;
    assert_eq!(pidfds_of(f.shim_pid), Vec::<i64>::new());
}

#[tokio::test(flavor = "current_thread")]
async fn with_runc_1_1_kill_signals_as_before() {
    let system = find_in_path("runc").expect("runc in PATH");
    let runc = Recorded::new(&system);
    let (f, _init) = running(&runc).await;
    let create = runc.of("create").pop().unwrap();
    assert!(!create.contains(&"--pidfd-socket".into()), "{create:?}");
    assert_eq!(pidfds_of(f.shim_pid), Vec::<i64>::new());

    let (e, _) = sleeper(&f, "sleeper").await;
    let exec = runc.of("exec").pop().unwrap();
    assert!(!exec.contains(&"--pidfd-socket".into()), "{exec:?}");
    assert_eq!(pidfds_of(f.shim_pid), Vec::<i64>::new());
    term_exec(&e).await;

    kill_init(&f).await;
    assert!(!runc.of("kill").is_empty(), "{:?}", runc.calls());
    f.delete().await;
}

#[tokio::test(flavor = "current_thread")]
async fn pidfds_are_handed_over_across_a_live_upgrade() {
    let runc = Recorded::new(&runc_dir(NEWEST_RUNC).join("runc"));
    let (f, init) = running(&runc).await;
    let (e, pid) = sleeper(&f, "sleeper").await;
    let held = sorted(vec![init as i64, pid as i64]);
    assert_eq!(pidfds_of(f.shim_pid), held);
    // Counted from the first upgrade on: the event connection is made
    // again only when the next event goes out.
    let mut fds = None;
    for round in 1..=2 {
        let shim = nix::unistd::Pid::from_raw(f.shim_pid as i32);
        nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGUSR2).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while f.upgrades().await < round {
            assert!(
                Instant::now() < deadline,
                "upgrade {round} did not complete"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(pidfds_of(f.shim_pid), held, "after upgrade {round}");
        // No descriptor is left behind or lost from one upgrade to the next.
        let now = common::fd_count(f.shim_pid);
        assert_eq!(*fds.get_or_insert(now), now, "after upgrade {round}");
    }
    term_exec(&e).await;
    kill_init(&f).await;
    assert!(runc.of("kill").is_empty(), "{:?}", runc.of("kill"));
    f.delete().await;
}

/// What `runc kill` does beyond signalling the init still goes through it:
/// SIGKILL of a frozen container (runc thaws the cgroup; on v1 a frozen
/// process would not die) runs `runc kill`, and the container dies, whether
/// it was paused through the shim or frozen behind its back.
#[tokio::test(flavor = "current_thread")]
async fn sigkill_of_a_frozen_container_still_goes_through_runc() {
    for behind_its_back in [false, true] {
        let runc = Recorded::new(&runc_dir(NEWEST_RUNC).join("runc"));
        let (f, init) = running(&runc).await;
        assert_eq!(pidfds_of(f.shim_pid), vec![init as i64]);
        let frozen = if behind_its_back {
            Some(common::Frozen::freeze(init))
        } else {
            f.pause().await;
            None
        };
        f.kill(libc::SIGKILL as u32).await;
        assert_eq!(
            f.wait().await,
            137,
            "frozen behind its back: {behind_its_back}"
        );
        assert_eq!(runc.of("kill").len(), 1, "{:?}", runc.calls());
        drop(frozen);
        f.delete().await;
    }
}

/// Where a shim writes down whether `binary` takes `--pidfd-socket`:
/// `/run/tether/runtime-flags/<sha256 of its path and its device, inode,
/// size, mtime and ctime>` (see `runc::pidfd_store`).
fn known_answer_file(binary: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(binary).unwrap();
    let mut digest = Sha256::new();
    digest.update(binary.as_os_str().as_encoded_bytes());
    let file = [
        m.dev() as i64,
        m.ino() as i64,
        m.size() as i64,
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ];
    for n in file {
        digest.update(b"\0");
        digest.update(n.to_string().as_bytes());
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Path::new("/run/tether/runtime-flags").join(hex)
}

#[tokio::test(flavor = "current_thread")]
async fn a_later_shim_reads_the_answer_instead_of_asking_the_runtime_again() {
    let runc = Recorded::new(&runc_dir(NEWEST_RUNC).join("runc"));
    let answer = known_answer_file(&runc.wrapper);
    let (first, _) = running(&runc).await;
    let asked = runc
        .calls()
        .iter()
        .filter(|c| c.contains(&"--help".into()))
        .count();
    assert_eq!(asked, 2, "create and exec --help: {:?}", runc.calls());
    let written = std::fs::read_to_string(&answer).unwrap();
    assert_eq!(written, format!("yes\n{}\n", runc.wrapper.display()));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&answer), 0o600);
    assert_eq!(mode(answer.parent().unwrap()), 0o700);

    // A second shim (a new process, nothing in memory) with the same runtime.
    let (second, _) = running(&runc).await;
    let asked_again = runc
        .calls()
        .iter()
        .filter(|c| c.contains(&"--help".into()))
        .count();
    assert_eq!(asked_again, 2, "the second shim asked: {:?}", runc.calls());
    let create = runc.of("create").pop().unwrap();
    assert!(create.contains(&"--pidfd-socket".into()), "{create:?}");
    assert_eq!(pidfds_of(second.shim_pid).len(), 1);

    for f in [&first, &second] {
        kill_init(f).await;
        f.delete().await;
    }
    std::fs::remove_file(&answer).unwrap();
}

/// containerd deletes a task, and may shut its shim down, when it hears the
/// exit; a Kill whose reply comes after that fails with "ttrpc: closed". So
/// an exit caused by a Kill through `runc kill` is published only once that
/// Kill has returned: here `runc kill` lingers 0.5 s after signalling.
#[tokio::test(flavor = "current_thread")]
async fn an_exit_is_published_after_the_kill_that_caused_it_returned() {
    let system = find_in_path("runc").expect("runc in PATH");
    let runc = Recorded::new(&system);
    let done = runc.log.with_file_name("kill-done");
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{log}'\ncase \" $* \" in\n*\" kill \"*) '{runc}' \"$@\"; rc=$?; sleep 0.5; date +%s%N >> '{done}'; exit $rc;;\nesac\nexec '{runc}' \"$@\"\n",
        log = runc.log.display(),
        runc = system.display(),
        done = done.display(),
    );
    std::fs::write(&runc.wrapper, script).unwrap();
    let (f, _init) = running(&runc).await;
    kill_init(&f).await;
    assert!(
        !runc.of("kill").is_empty(),
        "through runc: {:?}",
        runc.calls()
    );
    f.wait_for_topic("/tasks/exit", 1).await;
    // The first `runc kill`'s end (kill_init's second Kill may run another).
    let stamps = std::fs::read_to_string(&done).unwrap();
    let killed: i128 = stamps.lines().next().unwrap().parse().unwrap();
    let published = f.sink.published.lock().unwrap().clone();
    let (_, exit_at) = published
        .iter()
        .find(|(topic, _)| topic == "/tasks/exit")
        .expect("the exit was published");
    assert!(
        *exit_at > killed,
        "the exit was published {} ms before runc kill returned",
        (killed - exit_at) / 1_000_000
    );
    f.delete().await;
}

//! tetherctl end to end: real shims, real runc, a private state directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{all_processes, make_rootfs, mounts_under, require_root_and_runc, sigkill};

/// The binary under test: this tree's, or `$TETHERCTL_UNDER_TEST` (to run
/// these tests against another build, e.g. an older one; its shim must sit
/// next to it).
///
/// tetherctl is another crate of the workspace, so cargo gives these tests
/// no `CARGO_BIN_EXE_tetherctl`: its binary is the one built next to this
/// package's shim (the shim it runs). `cargo test` at the root builds both;
/// `cargo test --test tetherctl` alone needs `cargo build -p tetherctl`.
fn tetherctl() -> String {
    if let Ok(under_test) = std::env::var("TETHERCTL_UNDER_TEST") {
        return under_test;
    }
    let shim = Path::new(env!("CARGO_BIN_EXE_containerd-shim-tether-v2"));
    let ctl = shim.with_file_name("tetherctl");
    assert!(
        ctl.is_file(),
        "{} is not built: run `cargo test` at the workspace root, or \
         `cargo build -p tetherctl` first",
        ctl.display()
    );
    ctl.display().to_string()
}

#[path = "tetherctl/attach.rs"]
mod attach;
#[path = "tetherctl/bundle.rs"]
mod bundle;
#[path = "tetherctl/events.rs"]
mod events;
#[path = "tetherctl/logs.rs"]
mod logs;
#[path = "tetherctl/output.rs"]
mod output;
#[path = "tetherctl/quick_exit.rs"]
mod quick_exit;
#[path = "tetherctl/signals.rs"]
mod signals;
#[path = "tetherctl/state_dir.rs"]
mod state_dir;
#[path = "tetherctl/stop.rs"]
mod stop;
#[path = "tetherctl/terminal.rs"]
mod terminal;

/// A state directory and a rootfs; on drop every container in it is removed
/// and any shim still serving it is killed by pid.
struct Ctl {
    dir: tempfile::TempDir,
}

impl Ctl {
    fn new() -> Ctl {
        require_root_and_runc();
        let dir = tempfile::tempdir().unwrap();
        make_rootfs(&dir.path().join("rootfs"));
        Ctl { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn rootfs(&self) -> String {
        self.dir.path().join("rootfs").display().to_string()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tetherctl());
        c.arg("--state-dir").arg(self.state()).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "tetherctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Pids of processes whose working directory is under the state dir:
    /// the shims (their cwd is the bundle).
    fn shims(&self) -> Vec<u32> {
        let state = self.state();
        all_processes()
            .into_iter()
            .filter(|p| !p.is_zombie() && p.cwd.as_ref().is_some_and(|c| c.starts_with(&state)))
            .map(|p| p.pid as u32)
            .collect()
    }

    fn bundles(&self) -> Vec<String> {
        std::fs::read_dir(self.state().join("containers"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn mounts_under_state(&self) -> usize {
        mounts_under(&self.state()).len()
    }

    fn assert_nothing_left(&self) {
        assert_eq!(self.bundles(), Vec::<String>::new(), "bundles left");
        assert_eq!(self.shims(), Vec::<u32>::new(), "shims left");
        assert_eq!(self.mounts_under_state(), 0, "mounts left");
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        for id in self.bundles() {
            let _ = self.run(&["rm", "-f", &id]);
        }
        for pid in self.shims() {
            sigkill(pid);
        }
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_rm_prints_output_and_exits_with_the_status() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let out = c.run(&[
        "run",
        "--rm",
        "--rootfs",
        &rootfs,
        "t1",
        "sh",
        "-c",
        "echo hi; echo err >&2; exit 5",
    ]);
    assert_eq!(code(&out), 5, "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(stderr(&out), "err\n");
    // The longest id containerd allows (76) runs too; its hostname is the
    // first 64 characters (the kernel's limit).
    let long = "l".repeat(76);
    let out = c.run(&[
        "run",
        "--rm",
        "--rootfs",
        &rootfs,
        &long,
        "cat",
        "/proc/sys/kernel/hostname",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "l".repeat(64));
    c.assert_nothing_left();
}

/// 64 MiB of random bytes through `run --rm` to a pipe come out exact, and
/// so does `seq 1 2000000` (tetherctl once wrote each chunk through a new
/// stdout handle, and tokio reordered them).
#[test]
fn large_output_is_exact() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let data = common::pseudo_random_bytes(64 << 20, 3);
    std::fs::write(Path::new(&rootfs).join("data.bin"), &data).unwrap();
    let out = c.run(&[
        "run",
        "--rm",
        "--rootfs",
        &rootfs,
        "big",
        "/bin/cat",
        "/data.bin",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "the 64 MiB came out altered");
    let out = c.run(&[
        "run", "--rm", "--rootfs", &rootfs, "seq", "seq", "1", "2000000",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut want = 1u64;
    for line in text.lines() {
        assert_eq!(
            line.parse::<u64>().ok(),
            Some(want),
            "line {want} is {line:?}"
        );
        want += 1;
    }
    assert_eq!(want, 2_000_001);
    c.assert_nothing_left();
}

#[test]
fn detached_containers_ps_exec_kill_wait_rm() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    for id in ["a", "b", "c"] {
        assert_eq!(
            c.ok(&["run", "-d", "--rootfs", &rootfs, id, "sleep", "1000"])
                .trim(),
            id
        );
    }
    let ps = c.ok(&["ps"]);
    for id in ["a", "b", "c"] {
        let line = ps.lines().find(|l| l.starts_with(id)).expect(&ps);
        assert!(line.ends_with("RUNNING"), "{ps}");
    }
    assert_eq!(c.ok(&["ps", "-q"]), "a\nb\nc\n");
    // Everything stays in the state directory: the shims' sockets (0600 in
    // a 0700 dir) and runc's state.
    let sockets: Vec<_> = std::fs::read_dir(c.state().join("s"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with("attach-"))
        .collect();
    assert_eq!(sockets.len(), 3, "{sockets:?}");
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&c.state().join("s")), 0o700);
    for id in ["a", "b", "c"] {
        assert!(c
            .state()
            .join("runc/tether")
            .join(id)
            .join("state.json")
            .is_file());
        assert!(!Path::new("/run/containerd/runc/tether").join(id).exists());
    }
    let json: serde_json::Value = serde_json::from_str(&c.ok(&["ps", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert!(json[0]["pid"].as_u64().unwrap() > 0);

    let out = c.run(&["exec", "b", "sh", "-c", "exit 4"]);
    assert_eq!(code(&out), 4, "{out:?}");
    let out = c.run(&["exec", "b", "sh", "-c", "echo from-exec"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-exec\n");

    c.ok(&["kill", "-s", "KILL", "a"]);
    let out = c.run(&["wait", "a"]);
    assert_eq!(code(&out), 137);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "137");
    let state = c.ok(&["state", "a", "--json"]);
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["status"], "STOPPED");
    assert_eq!(state["exit_status"], 137);

    // A running container is not removed without -f.
    let out = c.run(&["rm", "b"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("running"), "{}", stderr(&out));
    c.ok(&["rm", "a"]);
    c.ok(&["rm", "-f", "b", "c"]);
    c.assert_nothing_left();
}

#[test]
fn a_killed_foreground_tetherctl_leaves_the_container_and_its_status() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let mut fg = c
        .cmd(&[
            "run",
            "--rootfs",
            &rootfs,
            "f1",
            "sh",
            "-c",
            "until [ -e /go ]; do sleep 0.1; done; exit 9",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let running = common::poll_until(Duration::from_secs(30), || {
        c.ok(&["ps"])
            .lines()
            .any(|l| l.contains("f1") && l.contains("RUNNING"))
            .then_some(())
    });
    assert!(running.is_some(), "f1 never ran: {}", c.ok(&["ps"]));
    fg.kill().unwrap();
    fg.wait().unwrap();
    // The container exits 9 once told to, after its tetherctl is gone.
    std::fs::write(Path::new(&rootfs).join("go"), b"").unwrap();
    let out = c.run(&["wait", "f1"]);
    assert_eq!(code(&out), 9, "{out:?}");
    c.ok(&["rm", "f1"]);
    c.assert_nothing_left();
}

#[test]
fn bad_input_is_named_and_leaves_nothing_behind() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--rm", "--rootfs", "/no/such/rootfs", "x1", "true"],
            "/no/such/rootfs",
        ),
        (
            &["run", "--rm", "--rootfs", &rootfs, "x2", "/no/such/cmd"],
            "/no/such/cmd",
        ),
        (
            &["run", "--rm", "--rootfs", &rootfs, "../x", "true"],
            "invalid container id",
        ),
        (&["wait", "nosuch"], "no such container: nosuch"),
        (&["kill", "nosuch"], "no such container: nosuch"),
        (&["exec", "nosuch", "true"], "no such container: nosuch"),
        (&["rm", "nosuch"], "no such container: nosuch"),
    ];
    for (args, needle) in cases {
        let out = c.run(args);
        // 125: tetherctl's own error, for every command.
        assert_eq!(code(&out), 125, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        c.assert_nothing_left();
    }
    c.ok(&["run", "-d", "--rootfs", &rootfs, "used", "sleep", "1000"]);
    let out = c.run(&["run", "--rootfs", &rootfs, "used", "true"]);
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    let out = c.run(&["kill", "-s", "BOGUS", "used"]);
    assert!(
        stderr(&out).contains("invalid signal name \"BOGUS\""),
        "{}",
        stderr(&out)
    );
    // An exec id in use by a running exec is named, not a raw EEXIST.
    let mut first = c
        .cmd(&["exec", "--exec-id", "dup", "used", "sleep", "1000"])
        .spawn()
        .unwrap();
    let fifo = c.state().join("containers/used/dup-stdin");
    let seen = common::poll_until(Duration::from_secs(10), || fifo.exists().then_some(()));
    assert!(seen.is_some(), "the first exec did not start");
    let out = c.run(&["exec", "--exec-id", "dup", "used", "true"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exec id dup is already in use"),
        "{}",
        stderr(&out)
    );
    sigkill(first.id());
    let _ = first.wait();
    // Still running, untouched by the failed commands.
    assert!(c.ok(&["ps"]).contains("RUNNING"));
    c.ok(&["rm", "-f", "used"]);
    c.assert_nothing_left();
}

#[test]
fn upgrade_replaces_the_shim_in_place() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    c.ok(&["run", "-d", "--rootfs", &rootfs, "up", "sleep", "1000"]);
    let pid_before = c.shims();
    for n in 1..=2 {
        let out = c.ok(&["upgrade", "up"]);
        assert!(out.contains(&format!("upgraded {n} times")), "{out}");
    }
    assert_eq!(c.shims(), pid_before, "the shim's pid changed");
    let out = c.run(&["exec", "up", "sh", "-c", "exit 6"]);
    assert_eq!(code(&out), 6);
    assert!(c.ok(&["ps"]).contains("RUNNING"));
    c.ok(&["rm", "-f", "up"]);
    c.assert_nothing_left();
}

/// `logs` prints a detached container's output, `logs -f` until it exits;
/// `--runtime` picks the OCI runtime (here a wrapper that records its calls
/// and runs runc).
#[test]
fn logs_and_a_chosen_runtime() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let wrapper = c.dir.path().join("runc-logged");
    let calls = c.dir.path().join("calls");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >>{}\nexec runc \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let runtime = wrapper.display().to_string();
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        &runtime,
        "--rootfs",
        &rootfs,
        "talker",
        "sh",
        "-c",
        "echo one; sleep 0.3; echo two >&2; sleep 1; echo three",
    ]);
    let followed = c.ok(&["logs", "-f", "talker"]);
    assert_eq!(followed, "one\ntwo\nthree\n");
    assert_eq!(c.ok(&["logs", "talker"]), "one\ntwo\nthree\n");
    let recorded = std::fs::read_to_string(&calls).unwrap();
    assert!(
        recorded.lines().any(|l| l.contains(" create ")),
        "{recorded}"
    );
    let out = c.run(&["logs", "nosuch"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    c.ok(&["rm", "talker"]);
    c.assert_nothing_left();
}

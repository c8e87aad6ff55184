//! End-to-end tests of the shim against a real containerd and runc.
//!
//! Every test runs its own private containerd (see `common::Containerd`) with
//! a unique namespace, so tests can run in parallel and the restart tests
//! cannot disturb the others. They need root, containerd, ctr, runc and
//! /bin/busybox, and fail (never skip) without them.
//!
//! The runtime under test is the tether shim unless `TETHER_TEST_RUNTIME` names
//! another one, e.g. `TETHER_TEST_RUNTIME=io.containerd.runc.v2` for the Go
//! reference shim.
//!
//! Exit statuses are observed through three independent channels, depending
//! on what the scenario allows:
//! * `ctr run --rm` exits with the container's exit status;
//! * `ctr task rm` returns the status from the shim's Delete response (ctr
//!   1.6 prints `task <id> exit with non-zero exit code <N>`);
//! * `ctr events`, streamed to a file, carries `/tasks/exit` (published by
//!   the shim) and `/tasks/delete` (published by containerd from Delete).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{
    compare_stream, describe_output, poll_until, process_alive, pseudo_random_bytes,
    socket_path_of_address, sockets_of, spawn_and_wait, Containerd, ProcInfo, Rootfs, CTR_TIMEOUT,
    SETTLE_TIMEOUT,
};

/// How long `ctr task ls` may take to show a reloaded task right after a
/// containerd restart.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// (a) stdout and stderr of a container reach ctr's stdout and stderr
/// separately, and ctr exits with the container's exit status.
fn run_rm_forwards_stdout_stderr_and_exit_status() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("stdio");
    let sockets_before = cd.socket_dir_snapshot();
    let out = cd.run(
        &["--rm"],
        &rootfs,
        &id,
        &["/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
    );
    let stdout = lines(&out.stdout);
    let stderr = lines(&out.stderr);
    let ctx = || format!("{}\n{}", describe_output(&out), cd.log_tail());
    assert!(
        stdout.iter().any(|l| l == "out"),
        "container stdout `out` missing from ctr's stdout\n{}",
        ctx()
    );
    assert!(
        stderr.iter().any(|l| l == "err"),
        "container stderr `err` missing from ctr's stderr\n{}",
        ctx()
    );
    assert!(
        !stdout.iter().any(|l| l == "err"),
        "container stderr leaked into ctr's stdout\n{}",
        ctx()
    );
    assert!(
        !stderr.iter().any(|l| l == "out"),
        "container stdout leaked into ctr's stderr\n{}",
        ctx()
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "ctr run --rm must exit with the container's status 3\n{}",
        ctx()
    );
    cd.assert_no_leftovers(&id, &rootfs, None, Some(&sockets_before));
    assert!(
        !cd.containers().contains(&id),
        "ctr run --rm left container {id}"
    );
}

/// (b) 64 MiB written to stdout by a container that exits right after arrive
/// byte-exact, 20 times out of 20.
fn large_stdout_is_complete_and_exact_when_container_exits_right_after() {
    const SIZE: usize = 64 << 20;
    const RUNS: usize = 20;
    let rootfs = Rootfs::new();
    let data = Arc::new(pseudo_random_bytes(SIZE, 0x7e7e_4e12_5eed_0001));
    rootfs.write_file("data.bin", &data);
    let cd = Containerd::start();
    let sockets_before = cd.socket_dir_snapshot();

    let mut failures = Vec::new();
    let mut ids = Vec::new();
    for run in 0..RUNS {
        let id = cd.unique_id("bulk");
        ids.push(id.clone());
        let expected = Arc::clone(&data);
        let (status, cmp, stderr) = spawn_and_wait(
            &mut cd.run_command(&["--rm"], &rootfs, &id, &["/bin/cat", "/data.bin"]),
            CTR_TIMEOUT,
            move |stdout| compare_stream(stdout, &expected),
        );
        if !status.success() || cmp.len != SIZE as u64 || cmp.first_mismatch.is_some() {
            failures.push(format!(
                "run {run} ({id}): ctr {status}, got {} of {SIZE} bytes, first differing byte at {:?}, stderr: {}",
                cmp.len,
                cmp.first_mismatch,
                String::from_utf8_lossy(&stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {RUNS} runs did not deliver the 64 MiB exactly:\n  {}\n{}",
        failures.len(),
        failures.join("\n  "),
        cd.log_tail()
    );
    for id in &ids {
        cd.assert_no_leftovers(id, &rootfs, None, Some(&sockets_before));
    }
}

/// (c) A detached container keeps running, with the same pid, across two
/// SIGKILL+restart cycles of containerd; SIGKILL then yields exit status 137
/// and removing task and container leaves nothing behind.
fn detached_task_survives_containerd_sigkill_and_reports_137() {
    let rootfs = Rootfs::new();
    let mut cd = Containerd::start();
    let id = cd.unique_id("survivor");
    let task = cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);
    let pid = task.pid;
    // Start has returned, but the init may not have exec'd sleep yet
    // (`runc init` a moment longer on a loaded machine).
    let is_sleep = |p: &ProcInfo| p.cmdline.iter().any(|a| a.ends_with("sleep"));
    let proc0 = common::poll_until(Duration::from_secs(10), || {
        ProcInfo::read(pid as i32).filter(is_sleep)
    })
    .unwrap_or_else(|| {
        panic!(
            "task pid {pid} of {id} is not the container's sleep after 10 s: {}\n{}",
            ProcInfo::read(pid as i32).map_or("gone".into(), |p| p.describe()),
            cd.diagnostics()
        )
    });
    let socket = cd.shim_socket(&id);
    let shims_before: Vec<i32> = cd.shim_processes().iter().map(|p| p.pid).collect();
    assert!(
        !shims_before.is_empty(),
        "no shim process found for {id}\n{}",
        cd.diagnostics()
    );

    for round in 1..=2 {
        cd.kill9();
        assert!(
            process_alive(pid as i32, proc0.starttime),
            "round {round}: the container process died with containerd\n{}",
            cd.diagnostics()
        );
        cd.restart();
        cd.wait_task(&id, RELOAD_TIMEOUT, |t| {
            t.status == "RUNNING" && t.pid == pid
        });
        assert!(
            process_alive(pid as i32, proc0.starttime),
            "round {round}: the container process is gone after the restart"
        );
    }

    let events = cd.events();
    cd.ctr_ok(&["task", "kill", "-s", "KILL", &id]);
    let stopped = cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    assert_eq!(stopped.pid, pid, "STOPPED task reports another pid");

    let exit = events.wait_for("/tasks/exit", &id, SETTLE_TIMEOUT);
    assert_eq!(
        exit.exit_status(),
        137,
        "/tasks/exit event must carry 128+SIGKILL: {}",
        exit.line
    );
    assert_eq!(
        exit.pid(),
        Some(pid as i64),
        "/tasks/exit for another pid: {}",
        exit.line
    );

    let deleted_status = cd.task_delete(&id);
    assert_eq!(
        deleted_status, 137,
        "`ctr task rm` (the shim's Delete response) must report 137"
    );
    let del = events.wait_for("/tasks/delete", &id, SETTLE_TIMEOUT);
    assert_eq!(
        del.exit_status(),
        137,
        "/tasks/delete event must carry 137: {}",
        del.line
    );
    cd.ctr_ok(&["container", "rm", &id]);
    assert!(
        !cd.containers().contains(&id),
        "container {id} still listed"
    );
    cd.assert_no_leftovers(&id, &rootfs, Some(&socket), None);
    for shim in shims_before {
        assert!(
            !ProcInfo::read(shim).is_some_and(|p| !p.is_zombie()),
            "shim pid {shim} still runs"
        );
    }
}

/// (d) A container that exits while containerd is down reports its true exit
/// status once containerd is back.
fn exit_while_containerd_is_down_is_reported_after_restart() {
    let rootfs = Rootfs::new();
    let mut cd = Containerd::start();
    let id = cd.unique_id("offline-exit");
    // The container exits with 7 once the test creates /tmp/exit-now, so its
    // exit provably happens while containerd is down.
    let task = cd.run_detached(
        &rootfs,
        &id,
        &[
            "/bin/sh",
            "-c",
            "while [ ! -e /tmp/exit-now ]; do sleep 0.1; done; exit 7",
        ],
    );
    let pid = task.pid as i32;
    let proc0 = ProcInfo::read(pid)
        .unwrap_or_else(|| panic!("task pid {pid} does not exist\n{}", cd.diagnostics()));
    let socket = cd.shim_socket(&id);

    cd.kill9();
    assert!(
        process_alive(pid, proc0.starttime),
        "the container died with containerd"
    );
    rootfs.write_file("tmp/exit-now", b"");
    assert!(
        poll_until(SETTLE_TIMEOUT, || (!process_alive(pid, proc0.starttime))
            .then_some(()))
        .is_some(),
        "the container did not exit after /tmp/exit-now appeared"
    );
    // The shim has seen the exit (and queued its event for a containerd
    // that is not there) once it has reaped the container: no zombie left.
    assert!(
        poll_until(SETTLE_TIMEOUT, || (!ProcInfo::read(pid)
            .is_some_and(|p| p.starttime == proc0.starttime))
        .then_some(()))
        .is_some(),
        "the shim did not reap the container while containerd was down"
    );
    cd.restart();

    // containerd 1.6 reloads the stopped task. From 1.7 on, containerd reaps,
    // at start-up, a shim whose task has no process left ("cleaning leaked
    // shim process": it calls Delete and Shutdown itself), whatever the shim;
    // the status the shim reported to that Delete is then in its log.
    let leaked = format!("msg=\"cleaning leaked shim process\" id={id} ");
    let outcome = poll_until(RELOAD_TIMEOUT, || {
        if let Some(t) = cd.task(&id).filter(|t| t.status == "STOPPED") {
            return Some(Some(t));
        }
        let log = fs::read_to_string(cd.log_file()).unwrap_or_default();
        (log.contains(&leaked) && cd.task(&id).is_none()).then_some(None)
    });
    match outcome {
        Some(Some(stopped)) => {
            assert_eq!(stopped.pid, task.pid, "STOPPED task reports another pid");
            let events = cd.events();
            let status = cd.task_delete(&id);
            assert_eq!(
                status, 7,
                "`ctr task rm` (the shim's Delete response) must report the container's exit status 7"
            );
            let del = events.wait_for("/tasks/delete", &id, SETTLE_TIMEOUT);
            assert_eq!(
                del.exit_status(),
                7,
                "/tasks/delete event must carry 7: {}",
                del.line
            );
            // A /tasks/exit published late (after the restart) is optional,
            // but if one arrives it must be truthful too.
            for exit in events.find("/tasks/exit", &id) {
                assert_eq!(exit.exit_status(), 7, "wrong /tasks/exit: {}", exit.line);
            }
        }
        Some(None) => {
            if common::runtime() == common::shim_path().display().to_string() {
                let log = fs::read_to_string(cd.log_file()).unwrap_or_default();
                let deleted = format!("topic=\"/tasks/delete\" event=Delete {{ id: \"{id}\"");
                let line = log
                    .lines()
                    .find(|l| l.contains(&deleted))
                    .unwrap_or_else(|| {
                        panic!(
                            "containerd reaped {id} but no shim Delete is logged\n{}",
                            cd.log_tail()
                        )
                    });
                assert!(
                    line.contains("status: 7,"),
                    "the shim's Delete must report the container's exit status 7: {line}"
                );
            }
        }
        None => panic!(
            "after the restart, {id} is neither STOPPED nor reaped by containerd\n{}",
            cd.diagnostics()
        ),
    }
    cd.ctr_ok(&["container", "rm", &id]);
    cd.assert_no_leftovers(&id, &rootfs, Some(&socket), None);
}

/// (e) The shim's socket is a filesystem socket with mode 0600 in a 0700
/// directory, and the shim owns no abstract unix socket.
fn shim_socket_is_private_and_not_abstract() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("sockperm");
    cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);

    let address = cd.shim_address(&id).expect("bundle has an address file");
    let socket = socket_path_of_address(&address)
        .unwrap_or_else(|| panic!("shim address {address:?} is not a unix:// filesystem path"));
    cd.shim_socket(&id); // remembered for cleanup
    let mut problems = Vec::new();

    // (The socket is in the environment's /run; the host reaches it
    // through the environment's init.)
    match fs::symlink_metadata(cd.host_path(&socket)) {
        Ok(m) => {
            if !m.file_type().is_socket() {
                problems.push(format!("{} is not a socket", socket.display()));
            }
            let mode = m.permissions().mode() & 0o7777;
            if mode != 0o600 {
                problems.push(format!(
                    "socket {} has mode {mode:04o}, want 0600",
                    socket.display()
                ));
            }
        }
        Err(e) => problems.push(format!("stat {}: {e}", socket.display())),
    }
    let dir = socket.parent().expect("socket has a parent").to_path_buf();
    match fs::metadata(cd.host_path(&dir)) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o7777;
            if mode != 0o700 {
                problems.push(format!(
                    "socket directory {} has mode {mode:04o}, want 0700",
                    dir.display()
                ));
            }
        }
        Err(e) => problems.push(format!("stat {}: {e}", dir.display())),
    }

    let shims = cd.shim_processes();
    assert!(
        !shims.is_empty(),
        "no shim process found for {id}\n{}",
        cd.diagnostics()
    );
    for shim in &shims {
        eprintln!("shim process: {}", shim.describe());
    }
    let socket_str = socket.display().to_string();
    let mut listens_on_address = false;
    for shim in &shims {
        for s in sockets_of(shim.pid) {
            match s.path.as_deref() {
                Some(p) if p.starts_with('@') => problems.push(format!(
                    "shim pid {} owns abstract socket {p} ({})",
                    shim.pid, s.line
                )),
                Some(p) if p == socket_str => listens_on_address = true,
                _ => {}
            }
        }
    }
    if !listens_on_address {
        problems.push(format!(
            "no shim process ({:?}) owns a socket bound to its address {socket_str}",
            shims.iter().map(|p| p.pid).collect::<Vec<_>>()
        ));
    }

    cd.ctr_ok(&["task", "kill", "-s", "KILL", &id]);
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    let status = cd.task_delete(&id);
    cd.ctr_ok(&["container", "rm", &id]);
    cd.assert_no_leftovers(&id, &rootfs, Some(&socket), None);

    assert!(
        problems.is_empty(),
        "shim socket of {id} ({address}):\n  {}",
        problems.join("\n  ")
    );
    assert_eq!(status, 137, "`ctr task rm` after SIGKILL must report 137");
}

/// (f) A missing executable fails `ctr run` with an error naming it, and
/// leaves no shim process, no mount under the bundle and no socket file.
fn missing_executable_fails_cleanly() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("missing");
    let address_file = cd.bundle_dir(&id).join("address");

    // Record whatever shim address shows up in the bundle while ctr runs, so
    // the socket check does not depend on how the shim names its socket.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let watcher = {
        let stop = Arc::clone(&stop);
        let seen = Arc::clone(&seen);
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(a) = fs::read_to_string(&address_file) {
                    if !a.trim().is_empty() {
                        seen.lock().expect("lock").insert(a.trim().to_string());
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let sockets_before = cd.socket_dir_snapshot();
    let out = cd.run(&["--rm"], &rootfs, &id, &["/nonexistent-binary"]);
    stop.store(true, Ordering::SeqCst);
    watcher.join().expect("address watcher panicked");

    assert!(
        !out.status.success(),
        "running a missing executable must fail\n{}",
        describe_output(&out)
    );
    let all_output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all_output.contains("nonexistent-binary"),
        "the error must name the missing executable\n{}\n{}",
        describe_output(&out),
        cd.log_tail()
    );

    let seen: Vec<String> = seen.lock().expect("lock").iter().cloned().collect();
    let sockets: Vec<PathBuf> = seen
        .iter()
        .filter_map(|a| socket_path_of_address(a))
        .collect();
    for s in &sockets {
        cd.assert_no_leftovers(&id, &rootfs, Some(s), Some(&sockets_before));
    }
    cd.assert_no_leftovers(&id, &rootfs, None, Some(&sockets_before));
    assert!(
        !cd.containers().contains(&id),
        "ctr run --rm left container {id}"
    );
    assert!(
        cd.mounts_under(cd.dir()).is_empty(),
        "mounts left under {}: {:?}",
        cd.dir().display(),
        cd.mounts_under(cd.dir())
    );
    eprintln!("shim addresses seen during the failed run: {seen:?}");
}

crate::containerd_matrix!(
    run_rm_forwards_stdout_stderr_and_exit_status,
    large_stdout_is_complete_and_exact_when_container_exits_right_after,
    detached_task_survives_containerd_sigkill_and_reports_137,
    exit_while_containerd_is_down_is_reported_after_restart,
    shim_socket_is_private_and_not_abstract,
    missing_executable_fails_cleanly,
);

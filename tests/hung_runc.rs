//! A runc that hangs, through a real containerd and real runc (issue #21,
//! item 1): a wrapper runs the runc under test, except that the sub-command
//! named in its control file sleeps for ever instead. Each scenario gives that
//! sub-command a short deadline (`RuncTimeouts` in the runtime options, from
//! `ctr run --runtime-config-path`) and checks what the shim does about it:
//!
//! - hung `runc kill`: `ctr task kill -s KILL` still kills the container
//!   (through its cgroup), the exit is published, Delete completes; also
//!   in a shared pid namespace, where only the cgroup reaches a child;
//! - hung `runc delete`: Delete fails naming `runc delete`, the task stays,
//!   and a retry once runc answers deletes it;
//! - hung `runc exec` when the init is SIGKILLed: the init's exit is handled
//!   and published, the exec's Start fails, Delete works;
//! - hung `runc update`: Update fails with DeadlineExceeded naming
//!   `runc update`, while State, Pids, Stats, Wait and another container of
//!   the same shim answer meanwhile;
//! - `runc init` stuck in a frozen cgroup: the exec's Start fails naming
//!   `runc exec`, and the stuck `runc init` is reaped once the cgroup thaws.
//!
//! Every scenario ends with the hung runc killed and reaped (not even a
//! zombie left) and nothing of the containers left. The time bounds are
//! generous correctness bounds ("answers while runc hangs"), not performance
//! limits.

mod common;

use std::process::Stdio;
use std::time::Instant;

use common::direct::code_of;
use common::{
    describe_output, linux_resources, poll_until, poll_until_async, processes_rooted_under, remove,
    run_with, sigkill, Containerd, Frozen, HangingRunc, ProcInfo, Rootfs, CTR_TIMEOUT, PROMPT,
    SETTLE_TIMEOUT,
};
use tether::protos::shim::*;

/// SIGKILL through Kill gets past a hung `runc kill`: the container dies,
/// its exit is published, Delete completes, and the hung runc is gone.
/// With a runc that takes `--pidfd-socket`, the shim signals the init
/// through its pidfd and runs no `runc kill` at all: the Kill is prompt and
/// nothing hangs.
fn kill_gets_past_a_hung_runc_kill() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let runc = HangingRunc::new("Kill = 3");
    let events = cd.events();
    let id = cd.unique_id("hungkill");
    let pid = run_with(&cd, &runc, &rootfs, &id, &[]);
    runc.hang_on("kill");
    if takes_pidfd_socket() {
        let asked = Instant::now();
        let kill = cd.ctr(&["task", "kill", "-s", "KILL", &id]);
        assert!(kill.status.success(), "{}", describe_output(&kill));
        assert!(asked.elapsed() < PROMPT, "Kill took {:?}", asked.elapsed());
        cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
        let exit = events.wait_for("/tasks/exit", &id, SETTLE_TIMEOUT);
        assert_eq!(exit.exit_status(), 137, "{}", exit.line);
        assert!(runc.hung().is_empty(), "runc kill ran: {:?}", runc.hung());
        assert_eq!(remove(&cd, &id), 137);
        cd.assert_no_leftovers(&id, &rootfs, None, None);
        return;
    }
    let kill = std::thread::scope(|s| {
        let kill = s.spawn(|| cd.ctr(&["task", "kill", "-s", "KILL", &id]));
        runc.wait_hung(&cd);
        // State answers while runc kill hangs.
        let asked = Instant::now();
        let row = cd.task(&id).expect("task listed");
        assert!(asked.elapsed() < PROMPT, "State took {:?}", asked.elapsed());
        assert!(
            ["RUNNING", "STOPPED"].contains(&row.status.as_str()),
            "{row:?}"
        );
        kill.join().unwrap()
    });
    assert!(
        kill.status.success(),
        "ctr task kill with a hung runc kill\n{}\n{}",
        describe_output(&kill),
        cd.log_tail()
    );
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    let exit = events.wait_for("/tasks/exit", &id, SETTLE_TIMEOUT);
    assert_eq!(exit.exit_status(), 137, "{}", exit.line);
    assert!(
        ProcInfo::read(pid as i32).is_none(),
        "init {pid} not reaped"
    );
    runc.assert_none_left(&runc.hung());
    assert_eq!(remove(&cd, &id), 137);
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

/// Whether the runc under test takes `--pidfd-socket` (as the shim finds
/// out: its `create --help` lists it).
fn takes_pidfd_socket() -> bool {
    let out = std::process::Command::new(common::runc_binary())
        .args(["create", "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("--pidfd-socket")
}

/// The same in a container that joins another's pid namespace (a pod that
/// shares one), with a child beside its init: nothing but the cgroup reaches
/// that child once `runc kill` and `runc kill --all` hang (signalling the
/// init alone would leave it running). The other container, in another
/// cgroup, lives on.
fn kill_gets_past_a_hung_runc_kill_in_a_shared_pid_namespace() {
    let (rootfs, own) = (Rootfs::new(), Rootfs::new());
    let cd = Containerd::start();
    let runc = HangingRunc::new("Kill = 3");
    let events = cd.events();
    let (first, id) = (cd.unique_id("hungkillpod"), cd.unique_id("hungkillns"));
    let first_pid = run_with(&cd, &runc, &rootfs, &first, &[]);
    let ns = format!("pid:/proc/{first_pid}/ns/pid");
    let options = runc.options().display().to_string();
    let opts = ["-d", "--runtime-config-path", &options, "--with-ns", &ns];
    let argv = ["/bin/sh", "-c", "sleep 1000 & exec sleep 1001"];
    let out = cd.run(&opts, &own, &id, &argv);
    assert!(
        out.status.success(),
        "{}\n{}",
        describe_output(&out),
        cd.log_tail()
    );
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "RUNNING");
    let _ = cd.shim_socket(&id);
    let procs = poll_until(SETTLE_TIMEOUT, || {
        let p = processes_rooted_under(own.path());
        (p.len() == 2).then_some(p)
    });
    let procs = procs.unwrap_or_else(|| panic!("not 2 processes\n{}", cd.diagnostics()));
    runc.hang_on("kill");
    let kill = cd.ctr(&["task", "kill", "-s", "KILL", &id]);
    assert!(
        kill.status.success(),
        "{}\n{}",
        describe_output(&kill),
        cd.log_tail()
    );
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    let exit = events.wait_for("/tasks/exit", &id, SETTLE_TIMEOUT);
    assert_eq!(exit.exit_status(), 137, "{}", exit.line);
    for p in &procs {
        // Dead is enough: the child's new parent, the first container's
        // init (a plain sleep, not a pause that reaps), leaves it a zombie.
        let left =
            || ProcInfo::read(p.pid).is_some_and(|q| q.starttime == p.starttime && !q.is_zombie());
        let gone = poll_until(PROMPT, || (!left()).then_some(()));
        assert!(gone.is_some(), "container process left: {}", p.describe());
    }
    runc.assert_none_left(&runc.hung());
    let row = cd.task(&first).expect("the other container is listed");
    assert_eq!(row.status, "RUNNING", "the other container was killed too");
    runc.release();
    assert_eq!(remove(&cd, &id), 137);
    cd.ctr_ok(&["task", "kill", "-s", "KILL", &first]);
    cd.wait_task(&first, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    assert_eq!(remove(&cd, &first), 137);
    cd.assert_no_leftovers(&id, &own, None, None);
    cd.assert_no_leftovers(&first, &rootfs, None, None);
}

/// A hung `runc delete`: Delete fails, naming the command, and changes
/// nothing; the hung runc is gone; a retry once runc answers deletes.
fn delete_with_a_hung_runc_delete_fails_and_can_be_retried() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let runc = HangingRunc::new("Delete = 3");
    let id = cd.unique_id("hungdel");
    run_with(&cd, &runc, &rootfs, &id, &[]);
    cd.ctr_ok(&["task", "kill", "-s", "KILL", &id]);
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    runc.hang_on("delete");
    let out = cd.ctr(&["task", "rm", &id]);
    assert!(
        !out.status.success(),
        "Delete succeeded with a hung runc delete"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("delete timed out after 3s"),
        "the error does not name runc delete: {}",
        describe_output(&out)
    );
    runc.assert_none_left(&runc.hung());
    let row = cd.task(&id).expect("the task is still there");
    assert_eq!(row.status, "STOPPED");
    runc.release();
    assert_eq!(remove(&cd, &id), 137);
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

/// The init SIGKILLed while `runc exec` hangs: the init's exit is handled
/// and published, the exec's Start fails, the hung runc is gone, Delete
/// works.
fn init_exit_is_handled_while_runc_exec_hangs() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    // The deadline is not what ends the exec here: the init's exit is.
    let runc = HangingRunc::new("Exec = 600");
    let events = cd.events();
    let id = cd.unique_id("hungexec");
    let pid = run_with(&cd, &runc, &rootfs, &id, &[]);
    runc.hang_on("exec");
    // The exec's FIFOs in the test's own dir: ctr is stopped before it can
    // remove them.
    let fifo = cd.fifo_dir.display().to_string();
    let mut exec = cd.ctr_command();
    exec.args(["task", "exec", "--fifo-dir", &fifo, "--exec-id", "e1", &id])
        .args(["/bin/sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut exec = exec.spawn().unwrap();
    let hung = runc.wait_hung(&cd);
    sigkill(pid);
    let exit = events.wait_for("/tasks/exit", &id, SETTLE_TIMEOUT);
    assert_eq!(exit.exit_status(), 137, "{}", exit.line);
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    let ended = poll_until(SETTLE_TIMEOUT, || exec.try_wait().unwrap());
    let Some(status) = ended else {
        let _ = exec.kill();
        let _ = exec.wait();
        panic!(
            "the exec's Start never returned after the init died\n{}",
            cd.diagnostics()
        );
    };
    let out = exec.wait_with_output().unwrap();
    assert!(
        !status.success(),
        "the exec started: {}",
        describe_output(&out)
    );
    runc.assert_none_left(&[hung]);
    runc.release();
    assert_eq!(remove(&cd, &id), 137);
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

/// A hung `runc update`: Update fails with DeadlineExceeded naming the
/// command; meanwhile State, Pids, Stats and Wait answer, and another
/// container of the same shim is killed, waited for and deleted.
fn update_times_out_while_the_shim_keeps_answering() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    // Long enough for everything below to happen while runc update hangs.
    let runc = HangingRunc::new("Update = 20");
    let (a, b) = (cd.unique_id("hungupd-a"), cd.unique_id("hungupd-b"));
    let group = format!("io.containerd.runc.v2.group={a}");
    run_with(&cd, &runc, &rootfs, &a, &["--annotation", &group]);
    let b_pid = run_with(&cd, &runc, &rootfs, &b, &["--annotation", &group]);
    let address = cd.shim_address(&a).expect("shim address");
    assert_eq!(Some(&address), cd.shim_address(&b).as_ref(), "not one shim");
    // (The socket is in containerd's environment: reached through its init.)
    let address = cd.shim_host_address(&a).expect("shim address");
    runc.hang_on("update");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let long = || ttrpc::context::with_duration(CTR_TIMEOUT);
    let (update, hung) = rt.block_on(async {
        let client = tether::client::connect(&address).await.unwrap();
        let req = UpdateTaskRequest {
            id: a.clone(),
            resources: linux_resources(serde_json::json!({"pids": {"limit": 500}})),
            ..Default::default()
        };
        let update = tokio::spawn({
            let client = client.clone();
            async move { client.update(long(), &req).await }
        });
        let hung = poll_until_async(|| runc.hung().first().copied()).await;
        let hung = hung.unwrap_or_else(|| panic!("runc update never ran\n{}", cd.diagnostics()));
        let prompt = |what: &'static str, started: Instant| {
            assert!(
                started.elapsed() < PROMPT,
                "{what} took {:?} while runc update hung",
                started.elapsed()
            )
        };
        let t = Instant::now();
        let state = client
            .state(
                long(),
                &StateRequest {
                    id: a.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        prompt("State", t);
        assert_eq!(
            state.status.enum_value(),
            Ok(tether::protos::status::Status::RUNNING)
        );
        let t = Instant::now();
        let pids = client
            .pids(
                long(),
                &PidsRequest {
                    id: a.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        prompt("Pids", t);
        assert!(
            pids.processes.iter().any(|p| p.pid == state.pid),
            "{pids:?}"
        );
        let t = Instant::now();
        client
            .stats(
                long(),
                &StatsRequest {
                    id: a.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        prompt("Stats", t);
        // The other container of the shim: killed, waited for.
        let t = Instant::now();
        let kill = KillRequest {
            id: b.clone(),
            signal: 9,
            ..Default::default()
        };
        client.kill(long(), &kill).await.unwrap();
        let wait = WaitRequest {
            id: b.clone(),
            ..Default::default()
        };
        let waited = client.wait(long(), &wait).await.unwrap();
        prompt("Kill and Wait of the other container", t);
        assert_eq!(waited.exit_status, 137);
        assert!(
            !update.is_finished(),
            "Update returned before the checks were done"
        );
        assert!(
            HangingRunc::exists(hung),
            "runc update ended before the checks were done"
        );
        (update.await.unwrap(), hung)
    });
    let (code, message) = code_of(update);
    assert_eq!(code, ttrpc::Code::DEADLINE_EXCEEDED, "{message}");
    assert!(message.contains("update timed out after 20s"), "{message}");
    runc.assert_none_left(&[hung]);
    // The other container deletes through containerd, with runc update hung
    // no more than before; then the first updates and stops normally.
    assert!(ProcInfo::read(b_pid as i32).is_none(), "{b} not reaped");
    assert_eq!(remove(&cd, &b), 137);
    runc.release();
    let updated = rt.block_on(async {
        let client = tether::client::connect(&address).await.unwrap();
        let req = UpdateTaskRequest {
            id: a.clone(),
            resources: linux_resources(serde_json::json!({"pids": {"limit": 500}})),
            ..Default::default()
        };
        client.update(long(), &req).await
    });
    assert!(updated.is_ok(), "Update once runc answers: {updated:?}");
    cd.ctr_ok(&["task", "kill", "-s", "KILL", &a]);
    cd.wait_task(&a, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    assert_eq!(remove(&cd, &a), 137);
    cd.assert_no_leftovers(&a, &rootfs, None, None);
    cd.assert_no_leftovers(&b, &rootfs, None, None);
}

/// `runc init` stuck in a frozen cgroup (the container frozen behind the
/// shim's back, runc told to exec anyway): the exec's Start fails with a
/// deadline error naming `runc exec`, State answers meanwhile, the stuck
/// `runc init` dies and is reaped once the cgroup thaws, and the container
/// then takes execs again.
fn runc_init_stuck_in_a_frozen_cgroup() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let runc = HangingRunc::new("Exec = 5");
    let id = cd.unique_id("frozenexec");
    let pid = run_with(&cd, &runc, &rootfs, &id, &[]);
    runc.hang_on("exec-ignore-paused");
    let frozen = Frozen::freeze(pid);
    let fifo = cd.fifo_dir.display().to_string();
    let exec = cd.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e1",
        &id,
        "/bin/true",
    ]);
    let stuck: Vec<ProcInfo> = frozen
        .members()
        .into_iter()
        .filter(|p| p.pid != pid as i32)
        .collect();
    let asked = Instant::now();
    let row = cd.task(&id);
    let answered = asked.elapsed();
    drop(frozen);
    assert!(
        !exec.status.success(),
        "exec into a frozen cgroup succeeded: {}",
        describe_output(&exec)
    );
    assert!(
        String::from_utf8_lossy(&exec.stderr).contains("exec timed out after 5s"),
        "the error does not name runc exec: {}",
        describe_output(&exec)
    );
    assert!(answered < PROMPT, "State took {answered:?}");
    assert_eq!(row.map(|r| r.status), Some("RUNNING".to_string()));
    assert!(
        stuck
            .iter()
            .any(|p| p.cmdline.get(1).is_some_and(|a| a == "init")),
        "no runc init in the frozen cgroup: {:?}",
        stuck.iter().map(ProcInfo::describe).collect::<Vec<_>>()
    );
    let gone = poll_until(PROMPT, || {
        stuck
            .iter()
            .all(|p| !ProcInfo::read(p.pid).is_some_and(|q| q.starttime == p.starttime))
            .then_some(())
    });
    assert!(
        gone.is_some(),
        "runc init left after the thaw (running or unreaped): {:?}",
        stuck.iter().map(ProcInfo::describe).collect::<Vec<_>>()
    );
    runc.release();
    cd.ctr_ok(&["task", "exec", "--exec-id", "e2", &id, "/bin/true"]);
    cd.ctr_ok(&["task", "kill", "-s", "KILL", &id]);
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    assert_eq!(remove(&cd, &id), 137);
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

containerd_matrix!(
    kill_gets_past_a_hung_runc_kill,
    kill_gets_past_a_hung_runc_kill_in_a_shared_pid_namespace,
    delete_with_a_hung_runc_delete_fails_and_can_be_retried,
    init_exit_is_handled_while_runc_exec_hangs,
    update_times_out_while_the_shim_keeps_answering,
    runc_init_stuck_in_a_frozen_cgroup,
);

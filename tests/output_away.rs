//! Output never blocks the workload (#21): while the reader of a
//! container's output is away (its `ctr` client SIGKILLed, containerd
//! SIGKILLed, nobody attached), the shim keeps reading the container's pipe
//! into its spill, so the container's writes go on; when a reader comes
//! back it gets everything, in order. Each scenario runs on every
//! containerd of the matrix.
//!
//! Before the spill, the shim wrote straight into the client's FIFO: once
//! that FIFO and the container's pipe were full (64 KiB each), the
//! container's next write blocked until a reader came back, forever for a
//! killed `ctr` (a container writing 200,000 lines stopped at about line
//! 7,000; containerd's Go shim at about 13,000).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{poll_until, sigkill, Containerd, Rootfs, CTR_TIMEOUT, SETTLE_TIMEOUT};

/// Lines each container writes (`seq 1 LINES`: 1,288,895 bytes, more than
/// the spill keeps in memory, so its file is used too).
const LINES: u32 = 200_000;
/// How long the container may take to write them with nobody reading. A
/// guard against a container that never finishes, not a performance bound:
/// unhindered, it takes well under a second.
const FINISH: Duration = Duration::from_secs(60);
/// How long `ctr task ls` may take to show a reloaded task after a restart.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads `child`'s stdout on a thread, checking that line i is `i`, until
/// `want` lines or the end; the lines read come back on the receiver, and
/// the first line out of order as an error.
fn read_numbered(child: &mut Child, want: u32) -> mpsc::Receiver<Result<u32, String>> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut got = 0u32;
        let mut line = String::new();
        let mut r = BufReader::new(stdout);
        let result = loop {
            if got == want {
                break Ok(got);
            }
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break Ok(got),
                Ok(_) => {}
            }
            got += 1;
            if line.trim_end() != got.to_string() {
                break Err(format!(
                    "line {got} is {:?}, after {} lines in order",
                    line.trim_end(),
                    got - 1
                ));
            }
        };
        let _ = tx.send(result);
    });
    rx
}

fn finished(rootfs: &Rootfs) -> bool {
    poll_until(FINISH, || {
        rootfs.host_path("finished").exists().then_some(())
    })
    .is_some()
}

/// `ctr run` (not detached) of a container writing 200,000 lines; its
/// `ctr` is SIGKILLed after 20,000 of them. The container must finish
/// writing, exit 0 and be reported STOPPED, with nobody ever reading the
/// rest.
fn container_finishes_after_its_ctr_client_is_sigkilled() {
    const KILL_AT: u32 = 20_000;
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("client-killed");
    let script = format!("seq 1 {LINES}; touch /finished");
    let mut client = cd
        .run_command(&[], &rootfs, &id, &["/bin/sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning ctr run");
    let read = read_numbered(&mut client, KILL_AT).recv_timeout(CTR_TIMEOUT);
    sigkill(client.id());
    let _ = client.wait();
    let read = read.unwrap_or_else(|_| panic!("no output from ctr run\n{}", cd.log_tail()));
    assert_eq!(
        read,
        Ok(KILL_AT),
        "ctr's output before the kill\n{}",
        cd.log_tail()
    );
    assert!(
        finished(&rootfs),
        "the container did not finish writing {LINES} lines within {FINISH:?} of its ctr \
         client's SIGKILL: its writes block on the output nobody reads\n{}",
        cd.diagnostics()
    );
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "STOPPED");
    assert_eq!(cd.task_delete(&id), 0, "exit status of the container");
    cd.ctr_ok(&["container", "rm", &id]);
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

/// `ctr run -d` of a container that, once told to, writes 200,000 lines
/// and then sleeps; `ctr run -d` has exited, so its stdout FIFO has no
/// reader. containerd is SIGKILLed, the container told to write, and it
/// must finish while containerd is down; containerd is restarted, and
/// `ctr task attach` (which reopens the same FIFO) must get every line, in
/// order, from the first.
fn detached_output_waits_in_the_spill_across_a_containerd_sigkill() {
    let rootfs = Rootfs::new();
    let mut cd = Containerd::start();
    let id = cd.unique_id("spill-restart");
    let script = format!(
        "while [ ! -e /go ]; do sleep 0.1; done; seq 1 {LINES}; touch /finished; exec sleep 1000"
    );
    let task = cd.run_detached(&rootfs, &id, &["/bin/sh", "-c", &script]);
    cd.kill9();
    rootfs.write_file("go", b"");
    assert!(
        finished(&rootfs),
        "the container did not finish writing {LINES} lines within {FINISH:?} with containerd \
         down and its output unread: its writes block\n{}",
        cd.diagnostics()
    );
    cd.restart();
    cd.wait_task(&id, RELOAD_TIMEOUT, |t| {
        t.status == "RUNNING" && t.pid == task.pid
    });
    let mut attach = cd
        .ctr_command()
        .args(["task", "attach", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning ctr task attach");
    let read = read_numbered(&mut attach, LINES).recv_timeout(CTR_TIMEOUT);
    cd.ctr(&["task", "kill", "-s", "KILL", &id]);
    if poll_until(SETTLE_TIMEOUT, || attach.try_wait().ok().flatten()).is_none() {
        sigkill(attach.id());
        let _ = attach.wait();
    }
    let read = read.unwrap_or_else(|_| panic!("ctr task attach gave nothing\n{}", cd.log_tail()));
    assert_eq!(
        read,
        Ok(LINES),
        "the lines `ctr task attach` got after the restart\n{}",
        cd.log_tail()
    );
    // `ctr task attach` deletes the task once it exits (some versions):
    // the task is either STOPPED or gone.
    let settled = poll_until(SETTLE_TIMEOUT, || match cd.task(&id) {
        None => Some(None),
        Some(t) if t.status == "STOPPED" => Some(Some(t)),
        Some(_) => None,
    })
    .unwrap_or_else(|| {
        panic!(
            "the task was neither STOPPED nor gone within {SETTLE_TIMEOUT:?} of its SIGKILL: {:?}\n{}",
            cd.task(&id),
            cd.log_tail()
        )
    });
    if settled.is_some() {
        assert_eq!(cd.task_delete(&id), 137, "exit status of the container");
    }
    cd.ctr_ok(&["container", "rm", &id]);
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

crate::containerd_matrix!(
    container_finishes_after_its_ctr_client_is_sigkilled,
    detached_output_waits_in_the_spill_across_a_containerd_sigkill,
);

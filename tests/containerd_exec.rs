//! Exec, terminals and log URIs through a real containerd and `ctr`.

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use common::{describe_output, output_in_pty, poll_until, pseudo_random_bytes, Containerd, Rootfs};

fn ctr_exec_statuses_stdin_round_trip_and_kill() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("exec");
    cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);

    let out = cd.ctr(&["task", "exec", "--exec-id", "e0", &id, "/bin/true"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let out = cd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e7",
        &id,
        "/bin/sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", describe_output(&out));

    // stdin piped into cat comes back exactly, and cat ends at EOF.
    let data = pseudo_random_bytes(512 * 1024, 7);
    let mut cat = cd.ctr_command();
    cat.args(["task", "exec", "--exec-id", "cat", &id, "/bin/cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cat.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = data.clone();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).unwrap();
    });
    let mut echoed = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut echoed)
        .unwrap();
    writer.join().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "stdin came back altered");

    // An exec killed with SIGKILL reports 137.
    let mut sleeper = cd.ctr_command();
    sleeper
        .args(["task", "exec", "--exec-id", "k", &id, "/bin/sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut child = sleeper.spawn().unwrap();
    let killed = poll_until(Duration::from_secs(30), || {
        let out = cd.ctr(&["task", "kill", "--exec-id", "k", "-s", "KILL", &id]);
        out.status.success().then_some(())
    });
    assert!(killed.is_some(), "the exec never became killable");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    cd.kill_and_remove(&id, &rootfs);
}

/// 100 terminal execs of `seq -s " " 1000000` (6.9 MB) through `ctr task
/// exec -t`: every one exits 0, and its output is complete in at least 97.
///
/// Known, open: about one exec in 250 loses a few KiB of its tail, with
/// containerd's Go shim as well (seen on 1.7 under load). The shim now keeps
/// the FIFO open until ctr has read it empty (see copy.rs), which removed the
/// loss that containerd's client causes by closing its FIFOs on Delete; the
/// rest is not yet explained, so the test counts it instead of hiding it.
fn terminal_exec_output_is_complete() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("tty");
    cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);
    let mut short = Vec::new();
    for i in 0..100 {
        let mut ctr = cd.ctr_command();
        ctr.args(["task", "exec", "-t", "--exec-id", &format!("s{i}"), &id]);
        ctr.args(["/bin/seq", "-s", " ", "1000000"]);
        let (status, out) = output_in_pty(&mut ctr);
        let text = String::from_utf8_lossy(&out);
        let tail = text.trim_end();
        assert!(status.success(), "run {i}: ctr {status}");
        // The head must always be there; only the tail has ever been short.
        assert!(
            text.contains("1 2 3 4 5 6 7 8 9 10 ") && text.len() > 6_800_000,
            "run {i}: {} bytes of output",
            text.len()
        );
        if !tail.ends_with("999999 1000000") {
            short.push(format!(
                "run {i}: ends with {:?}",
                &tail[tail.len().saturating_sub(40)..]
            ));
        }
    }
    eprintln!(
        "terminal execs with a short tail: {} of 100 {short:?}",
        short.len()
    );
    if short.len() > 3 {
        let log = std::fs::read_to_string(cd.log_file()).unwrap_or_default();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains("level=warn"))
            .collect();
        panic!(
            "{} of 100 terminal execs lost their tail:\n{}\nwarnings:\n{}",
            short.len(),
            short.join("\n"),
            warnings.join("\n")
        );
    }
    cd.kill_and_remove(&id, &rootfs);
}

fn file_log_uri_is_byte_exact_through_ctr() {
    let rootfs = Rootfs::new();
    let data = pseudo_random_bytes(8 << 20, 11);
    rootfs.write_file("blob", &data);
    let cd = Containerd::start();
    let id = cd.unique_id("log");
    let log = cd.dir().join("logs").join("out.log");
    let uri = format!("file://{}", log.display());
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runtime",
        &common::runtime(),
        "--rootfs",
        &rootfs.path().display().to_string(),
        &id,
        "/bin/cat",
        "/blob",
    ]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let got = std::fs::read(&log).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "file:// output differs");
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

/// An exec whose command leaves a child behind that holds its stdout, quiet
/// or writing every 100 ms, still returns: the shim closes the exec's
/// output a bounded time (5 s) after the exec's own process exited, with
/// everything it wrote before.
fn exec_returns_despite_a_child_holding_its_output() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("linger");
    cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);
    for (exec_id, script) in [
        ("quiet", "sleep 1000 & echo done"),
        (
            "ticking",
            "(while true; do echo tick; sleep 0.1; done) & echo done",
        ),
    ] {
        let start = std::time::Instant::now();
        let out = cd.ctr(&[
            "task",
            "exec",
            "--exec-id",
            exec_id,
            &id,
            "/bin/sh",
            "-c",
            script,
        ]);
        let took = start.elapsed();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{exec_id}: {}",
            describe_output(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.lines().any(|l| l == "done"),
            "{exec_id}: {}",
            describe_output(&out)
        );
        eprintln!("[test] exec {exec_id} returned after {took:?}");
    }
    cd.kill_and_remove(&id, &rootfs);
}

crate::containerd_matrix!(
    exec_returns_despite_a_child_holding_its_output,
    ctr_exec_statuses_stdin_round_trip_and_kill,
    terminal_exec_output_is_complete,
    file_log_uri_is_byte_exact_through_ctr,
);

//! Signals to a foreground `run` or `exec`: passed on to the container's
//! process, or (`--sig-proxy=false`) left to tetherctl.

use std::process::Stdio;

use super::Ctl;

/// SIGTERM (or Ctrl-C's SIGINT) sent to a foreground `run --rm` reaches the
/// container, and tetherctl still removes it once it exits, with its status.
#[test]
fn signals_to_a_foreground_run_reach_the_container_and_rm_still_happens() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    for (signal, status) in [
        (nix::sys::signal::Signal::SIGTERM, 3),
        (nix::sys::signal::Signal::SIGINT, 4),
        (nix::sys::signal::Signal::SIGUSR1, 5),
    ] {
        let script =
            "trap 'exit 3' TERM; trap 'exit 4' INT; trap 'exit 5' USR1; echo ready; while :; do sleep 0.1; done";
        let mut child = c
            .cmd(&[
                "run", "--rm", "--rootfs", &rootfs, "sig", "sh", "-c", script,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        signal_when_ready(&mut child, signal);
        let done = child.wait().unwrap();
        assert_eq!(done.code(), Some(status), "{signal:?}");
        c.assert_nothing_left();
    }
    // --sig-proxy=false: the signal is tetherctl's own (it dies of it), and
    // the container runs on.
    let script = "trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done";
    let mut child = c
        .cmd(&[
            "run",
            "--sig-proxy=false",
            "--rootfs",
            &rootfs,
            "noproxy",
            "sh",
            "-c",
            script,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    signal_when_ready(&mut child, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        child.wait().unwrap().code(),
        None,
        "tetherctl should die of SIGTERM"
    );
    assert!(c.ok(&["ps"]).contains("RUNNING"));
    c.ok(&["rm", "-f", "noproxy"]);
    c.assert_nothing_left();
    // The same for a foreground exec: the signal reaches the exec's process.
    c.ok(&["run", "-d", "--rootfs", &rootfs, "host", "sleep", "1000"]);
    let script = "trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done";
    let mut child = c
        .cmd(&["exec", "host", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    signal_when_ready(&mut child, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(3));
    c.ok(&["rm", "-f", "host"]);
    c.assert_nothing_left();
}

/// Waits for `child`'s first line, "ready", then sends it `signal`.
fn signal_when_ready(child: &mut std::process::Child, signal: nix::sys::signal::Signal) {
    use std::io::{BufRead, BufReader};
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

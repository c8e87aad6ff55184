//! `attach`: output, input, detach keys, terminals.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use super::terminal::under_pty_steps;
use super::{code, stderr, tetherctl, Ctl};

/// Output is relayed live, input reaches the container's stdin, the detach
/// keys leave it running, a second attach works, the local stdin ending
/// does not end the container's, and the attach ends with the exit.
#[test]
fn attach_relays_output_and_input_and_detaches() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let script = "while read l; do echo got-$l; echo err-$l >&2; done";
    c.ok(&[
        "run", "-d", "-i", "--rootfs", &rootfs, "a1", "sh", "-c", script,
    ]);
    let attach = || {
        c.cmd(&["attach", "a1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = attach();
    let mut input = first.stdin.take().unwrap();
    let mut out = BufReader::new(first.stdout.take().unwrap());
    input.write_all(b"one\n").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got-one\n");
    input.write_all(b"\x10\x11").unwrap();
    let done = first.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert!(c.ok(&["ps"]).contains("RUNNING"));

    let mut second = attach();
    let mut input = second.stdin.take().unwrap();
    let mut out = BufReader::new(second.stdout.take().unwrap());
    input.write_all(b"two\n").unwrap();
    drop(input);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got-two\n");
    // Letting time pass is the point: an attach that ended with its stdin
    // would be gone by now.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        second.try_wait().unwrap().is_none(),
        "attach ended with its stdin"
    );
    // The container's stdin is still open: it still reads.
    // (The two streams come through two pipes: in order each, not
    // necessarily with each other.)
    let logged = c.ok(&["logs", "a1"]);
    let mut lines: Vec<&str> = logged.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["err-one", "err-two", "got-one", "got-two"],
        "{logged}"
    );
    c.ok(&["kill", "-s", "KILL", "a1"]);
    let done = second.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(137));
    // stderr comes to stderr.
    assert!(stderr(&done).contains("err-two"), "{}", stderr(&done));

    let out = c.run(&["attach", "a1"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
    let out = c.run(&["attach", "--detach-keys", "alt-x", "a1"]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("invalid detach key"),
        "{}",
        stderr(&out)
    );
    c.ok(&["rm", "a1"]);
    c.assert_nothing_left();
}

/// A terminal container: the local terminal's size is passed on, typed
/// input arrives, and ctrl-p ctrl-q detaches.
#[test]
fn attach_to_a_terminal() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    c.ok(&["run", "-d", "-i", "-t", "--rootfs", &rootfs, "t1", "sh"]);
    let t = tetherctl();
    let line = format!("stty cols 99 rows 33; {t} attach t1");
    // The first line is typed ahead (the terminal keeps it until the attach
    // reads it); the detach keys only once it has relayed that line's
    // output, so the terminal is raw by then (a cooked one would take
    // ctrl-q as flow control).
    let (out, status) = under_pty_steps(
        &c,
        &line,
        &[
            ("", "stty size; echo typed-$((6*7))\n"),
            ("typed-42", "\x10\x11"),
        ],
    );
    assert!(out.contains("33 99"), "size not passed on: {out:?}");
    assert!(out.contains("typed-42"), "input did not arrive: {out:?}");
    assert_eq!(status, 0, "{out:?}");
    assert!(c.ok(&["ps"]).contains("RUNNING"));
    c.ok(&["rm", "-f", "t1"]);
    c.assert_nothing_left();
}

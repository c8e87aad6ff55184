//! `stop`, and `--rm` however the container ends.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{code, common, stderr, Ctl};

/// A container that ends on SIGTERM (its trap exits 7) stops at once; one
/// that ignores SIGTERM is SIGKILLed after --time; `stop` prints the ids,
/// and a stopped container stops again without complaint.
#[test]
fn stop_terms_then_kills_after_time() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let polite = "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done";
    let stubborn = "trap '' TERM; echo ready; while :; do sleep 0.1; done";
    c.ok(&[
        "run", "-d", "--rootfs", &rootfs, "polite", "sh", "-c", polite,
    ]);
    c.ok(&[
        "run", "-d", "--rootfs", &rootfs, "stubborn", "sh", "-c", stubborn,
    ]);
    // The shells have installed their traps once they say so.
    for id in ["polite", "stubborn"] {
        let ready = common::poll_until(Duration::from_secs(30), || {
            (c.ok(&["logs", id]) == "ready\n").then_some(())
        });
        assert!(
            ready.is_some(),
            "{id} never got ready: {:?}",
            c.ok(&["logs", id])
        );
    }
    let t = Instant::now();
    assert_eq!(c.ok(&["stop", "polite"]), "polite\n");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(code(&c.run(&["wait", "polite"])), 7);

    let t = Instant::now();
    assert_eq!(c.ok(&["stop", "--time", "2", "stubborn"]), "stubborn\n");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(code(&c.run(&["wait", "stubborn"])), 137);
    // Already stopped: fine, both at once.
    assert_eq!(c.ok(&["stop", "polite", "stubborn"]), "polite\nstubborn\n");
    let out = c.run(&["stop", "nosuch"]);
    assert_eq!(code(&out), 125, "{out:?}");
    assert!(stderr(&out).contains("no such container: nosuch"));
    c.ok(&["rm", "polite", "stubborn"]);
    c.assert_nothing_left();
}

/// A foreground `run --rm` whose container is stopped or killed from
/// elsewhere removes it; so does a detached `run -d --rm`, whether its
/// container exits by itself or is stopped.
#[test]
fn rm_is_honoured_however_the_container_ends() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let script = "echo ready; while :; do sleep 0.1; done";
    for (how, status) in [
        (&["stop", "--time", "1", "fg"][..], 137),
        (&["kill", "-s", "KILL", "fg"][..], 137),
    ] {
        let mut fg = c
            .cmd(&["run", "--rm", "--rootfs", &rootfs, "fg", "sh", "-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(fg.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line, "ready\n");
        c.ok(how);
        assert_eq!(fg.wait().unwrap().code(), Some(status), "{how:?}");
        c.assert_nothing_left();
    }
    c.ok(&[
        "run", "-d", "--rm", "--rootfs", &rootfs, "bg1", "sh", "-c", "exit 3",
    ]);
    c.ok(&[
        "run", "-d", "--rm", "--rootfs", &rootfs, "bg2", "sh", "-c", script,
    ]);
    c.ok(&["stop", "--time", "1", "bg2"]);
    let gone = common::poll_until(Duration::from_secs(20), || {
        c.bundles().is_empty().then_some(())
    });
    assert!(gone.is_some(), "left: {:?}", c.bundles());
    let cleaned = common::poll_until(Duration::from_secs(10), || {
        (c.shims().is_empty() && c.mounts_under_state() == 0).then_some(())
    });
    assert!(cleaned.is_some(), "shims {:?}", c.shims());
    c.assert_nothing_left();
}

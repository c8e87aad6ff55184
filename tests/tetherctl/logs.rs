//! `logs --tail/--since`, and the detached log's format, cap and rotation.

use std::time::Duration;

use super::{code, common, stderr, Ctl};

/// The log is CRI's format; it is rotated at --log-max-size and keeps
/// --log-max-files files; `logs` prints what is kept in order, `--tail`
/// the last lines, `--since` what began at or after a time.
#[test]
fn logs_tail_since_format_and_rotation() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    c.ok(&[
        "run",
        "-d",
        "--log-max-size",
        "4k",
        "--log-max-files",
        "3",
        "--rootfs",
        &rootfs,
        "rot",
        "sh",
        "-c",
        "seq 1 3000; sleep 1.2; printf 'late\\nno newline'",
    ]);
    assert_eq!(code(&c.run(&["wait", "rot"])), 0);
    // `logs -f` returns once everything is stored.
    let all = c.ok(&["logs", "-f", "rot"]);
    let bundle = c.state().join("containers/rot");
    let mut names: Vec<String> = std::fs::read_dir(&bundle)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("output.log"))
        .collect();
    names.sort();
    assert_eq!(names, ["output.log", "output.log.1", "output.log.2"]);
    for n in &names {
        let text = std::fs::read_to_string(bundle.join(n)).unwrap();
        assert!(text.len() <= 4096, "{n} is {} bytes", text.len());
        for record in text.lines() {
            let f: Vec<&str> = record.splitn(4, ' ').collect();
            assert!(
                f.len() == 4 && f[1] == "stdout" && (f[2] == "F" || f[2] == "P"),
                "{record:?}"
            );
            assert!(
                f[0].len() == 30 && f[0].ends_with('Z') && f[0].as_bytes()[10] == b'T',
                "{record:?}"
            );
        }
    }
    // What is kept is the end of the output, whole and in order.
    let (numbers, tail) = all.split_once("late\n").expect(&all);
    assert_eq!(tail, "no newline");
    let numbers: Vec<u32> = numbers.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(*numbers.last().unwrap(), 3000);
    assert!(
        numbers.len() > 100 && numbers.len() < 3000,
        "{}",
        numbers.len()
    );
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(c.ok(&["logs", "rot"]), all);

    assert_eq!(
        c.ok(&["logs", "--tail", "3", "rot"]),
        "3000\nlate\nno newline"
    );
    assert_eq!(c.ok(&["logs", "--tail", "0", "rot"]), "");
    // --since: the record of "late" carries its time.
    let current = std::fs::read_to_string(bundle.join("output.log")).unwrap();
    let late = current.lines().find(|l| l.ends_with(" late")).unwrap();
    let when = late.split(' ').next().unwrap();
    assert_eq!(c.ok(&["logs", "--since", when, "rot"]), "late\nno newline");
    assert_eq!(c.ok(&["logs", "--since", "10m", "rot"]), all);
    // Once its last record is over a second old, `--since 1s` has nothing.
    let aged = common::poll_until(Duration::from_secs(10), || {
        c.ok(&["logs", "--since", "1s", "rot"])
            .is_empty()
            .then_some(())
    });
    assert!(
        aged.is_some(),
        "logs --since 1s still prints: {:?}",
        c.ok(&["logs", "--since", "1s", "rot"])
    );
    let out = c.run(&["logs", "--since", "yesterday", "rot"]);
    assert_eq!(code(&out), 125);
    assert!(
        stderr(&out).contains("\"yesterday\" is not a time"),
        "{}",
        stderr(&out)
    );
    c.ok(&["rm", "rot"]);
    c.assert_nothing_left();
}

/// Plain `logs` right after `wait` has all the output, under CPU load: the
/// exit is reported once the output is in the log driver's pipes, and
/// `logs` waits for the driver to store it (it missed the last bytes in 2
/// of 30 rounds).
#[test]
fn logs_right_after_wait_has_everything() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let want: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    let _load = super::quick_exit::Load::start(2);
    let mut bad = Vec::new();
    for round in 0..30 {
        c.ok(&["run", "-d", "--rootfs", &rootfs, "w", "seq", "1", "20000"]);
        assert_eq!(c.ok(&["wait", "w"]), "0\n");
        let got = c.ok(&["logs", "w"]);
        if got != want {
            bad.push(format!("round {round}: {} lines", got.lines().count()));
        }
        c.ok(&["rm", "w"]);
    }
    assert!(bad.is_empty(), "{bad:?}");
    c.assert_nothing_left();
}

//! `tetherctl events`: the shims' events, streamed while it runs.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{code, common, Ctl};

#[test]
fn events_are_streamed_while_tetherctl_events_runs() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let mut events = c
        .cmd(&["events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = c.state().join("events.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&sock).exists() {
        assert!(Instant::now() < deadline, "events socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = c.run(&[
        "run", "--rm", "--rootfs", &rootfs, "ev1", "sh", "-c", "exit 2",
    ]);
    assert_eq!(code(&out), 2);
    // Stopped once the last event of the run has been printed.
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let printed = std::sync::Arc::clone(&printed);
        let stdout = events.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                let mut p = printed.lock().unwrap();
                p.push_str(&line);
                p.push('\n');
            }
        })
    };
    let deleted = common::poll_until(Duration::from_secs(30), || {
        printed
            .lock()
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(2) == Some("/tasks/delete"))
            .then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(events.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = events.wait();
    reader.join().unwrap();
    let text = printed.lock().unwrap().clone();
    assert!(deleted.is_some(), "no /tasks/delete event printed: {text}");
    let topics: Vec<&str> = text.lines().filter_map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{text}"
    );
    assert!(text.contains("exit_status: 2"), "{text}");
    c.assert_nothing_left();
}

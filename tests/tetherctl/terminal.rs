//! A container with a terminal, under a real pty (`script`): the local
//! terminal's size reaches it, typed input arrives, and the local terminal
//! is restored afterwards.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{tetherctl, Ctl};

/// Runs `script` (a pty) around a shell command line; returns its output
/// and exit status. `input` is typed once `ready` shows in the output.
fn under_pty(c: &Ctl, line: &str, ready: &str, input: &str) -> (String, i32) {
    under_pty_steps(c, line, &[(ready, input)])
}

/// [`under_pty`] with input typed in steps: each `(ready, input)` types
/// `input` once the output so far contains `ready` (at once when it is
/// empty), and fails naming `ready` when it does not show within 30 s.
pub(super) fn under_pty_steps(c: &Ctl, line: &str, steps: &[(&str, &str)]) -> (String, i32) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let line = format!(
        "export {TETHERCTL_ENV}={}; {line}",
        c.state().display(),
        TETHERCTL_ENV = "TETHER_STATE_DIR"
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let transcript = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = {
        let mut stdout = child.stdout.take().unwrap();
        let transcript = Arc::clone(&transcript);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                transcript.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = |t: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&t.lock().unwrap()).into_owned();
    let mut stdin = child.stdin.take().unwrap();
    let steps: Vec<(String, String)> = steps
        .iter()
        .map(|(r, i)| (r.to_string(), i.to_string()))
        .collect();
    // Hands stdin back: it stays open until the command has ended.
    let writer = {
        let transcript = Arc::clone(&transcript);
        std::thread::spawn(move || {
            for (ready, input) in steps {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !text(&transcript).contains(&ready) {
                    if Instant::now() >= deadline {
                        return Err(format!("{ready:?} never showed: {:?}", text(&transcript)));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = stdin.write_all(input.as_bytes());
            }
            Ok(stdin)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("script did not finish: {:?}", text(&transcript));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    if let Err(e) = writer.join().unwrap() {
        panic!("{e}");
    }
    reader.join().unwrap();
    let out = text(&transcript);
    (out, status.code().unwrap_or(-1))
}

#[test]
fn terminal_size_input_and_restore() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let before = c.dir.path().join("before");
    let after = c.dir.path().join("after");
    let t = tetherctl();
    let line = format!(
        "stty cols 101 rows 41; stty -g > {b}; {t} run -t --rm --rootfs {rootfs} t1 stty size; stty -g > {a}",
        b = before.display(),
        a = after.display()
    );
    let (out, _) = under_pty(&c, &line, "", "");
    assert!(
        out.contains("41 101"),
        "terminal size not passed on: {out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&before).unwrap(),
        std::fs::read_to_string(&after).unwrap(),
        "the local terminal was not restored"
    );

    let line = format!("{t} run -t --rm --rootfs {rootfs} t2 sh");
    // Typed once the container's shell has started (its banner shows; its
    // prompt comes only with the first input).
    let (out, status) = under_pty(&c, &line, "Enter 'help'", "echo typed-$((6*7))\nexit 3\n");
    assert!(
        out.contains("typed-42"),
        "typed input did not arrive: {out:?}"
    );
    assert_eq!(status, 3);
    c.assert_nothing_left();
}

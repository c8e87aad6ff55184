//! Output exactness: stdout and stderr interleaved, and 64 MiB many times.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use super::{code, common, stderr, Ctl};

/// A process writing stdout and stderr in turn: each stream arrives whole
/// and in order, to pipes (foreground) and in the detached log.
#[test]
fn stdout_and_stderr_interleaved_stay_whole() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let script = "i=0; while [ $i -lt 3000 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); done";
    let want = |p: &str| (0..3000).map(|i| format!("{p}-{i}\n")).collect::<String>();
    let out = c.run(&["run", "--rm", "--rootfs", &rootfs, "il", "sh", "-c", script]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout) == want("out"),
        "stdout altered"
    );
    assert!(stderr(&out) == want("err"), "stderr altered");
    c.ok(&["run", "-d", "--rootfs", &rootfs, "ild", "sh", "-c", script]);
    let logged = c.ok(&["logs", "-f", "ild"]);
    let pick = |p: &str| -> String {
        logged
            .lines()
            .filter(|l| l.starts_with(p))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert!(
        pick("out-") == want("out") && pick("err-") == want("err"),
        "log altered"
    );
    c.ok(&["rm", "ild"]);
    c.assert_nothing_left();
}

/// 64 MiB through `run --rm` come out exact to a pipe and to a file, in
/// every one of `TETHERCTL_LARGE_ROUNDS` (default 20) rounds each.
#[test]
fn large_output_20_of_20_to_a_pipe_and_a_file() {
    let rounds: usize = std::env::var("TETHERCTL_LARGE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let data = common::pseudo_random_bytes(64 << 20, 7);
    std::fs::write(Path::new(&rootfs).join("data.bin"), &data).unwrap();
    let file = c.dir.path().join("out.bin");
    let started = Instant::now();
    let mut bad = Vec::new();
    for round in 0..rounds {
        let args = [
            "run",
            "--rm",
            "--rootfs",
            &rootfs,
            "big",
            "/bin/cat",
            "/data.bin",
        ];
        let out = c.run(&args);
        if code(&out) != 0 || out.stdout != data {
            bad.push(format!(
                "pipe round {round}: status {}, {} bytes",
                code(&out),
                out.stdout.len()
            ));
        }
        let sink = std::fs::File::create(&file).unwrap();
        let status = c.cmd(&args).stdout(Stdio::from(sink)).status().unwrap();
        let got = std::fs::read(&file).unwrap();
        if status.code() != Some(0) || got != data {
            bad.push(format!(
                "file round {round}: status {status:?}, {} bytes",
                got.len()
            ));
        }
    }
    eprintln!(
        "{rounds} rounds of 64 MiB to a pipe and to a file: {:?}",
        started.elapsed()
    );
    assert!(bad.is_empty(), "{bad:?}");
    c.assert_nothing_left();
}

//! For tests that run a check script printing `PASS|FAIL HANDLER CHECK [why]`
//! lines and `N passed, M failed` last (tests/cri/pods.sh,
//! scripts/kube/checks.sh): run it under timeout(1) and read its verdicts.

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::SHIM;

/// Runs `bash <repo>/<script> --containerd <containerd> --shim <the tether
/// shim> <args...>` as `run` does.
pub fn run_script(
    script: &str,
    containerd: &str,
    args: &[&str],
    limit: Duration,
    grace: Duration,
) -> Output {
    let script = repo_path(script);
    let mut argv = vec!["bash", &script, "--containerd", containerd, "--shim", SHIM];
    argv.extend_from_slice(args);
    run(&argv, limit, grace)
}

/// The absolute path of `rel`, a path in the repository.
pub fn repo_path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` (its argv) under `timeout --foreground` (SIGTERM to the script
/// alone, whose traps stop what it started by PID, then SIGKILL after
/// `grace`), echoes its stderr (but crictl's warnings) and stdout, and
/// returns its output.
pub fn run(cmd: &[impl AsRef<OsStr>], limit: Duration, grace: Duration) -> Output {
    let start = Instant::now();
    let out = Command::new("timeout")
        .arg("--foreground")
        .arg("--signal=TERM")
        .arg(format!("--kill-after={}", grace.as_secs()))
        .arg(limit.as_secs().to_string())
        .args(cmd)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the check script");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| !l.contains("level=warning")) {
        eprintln!("{line}");
    }
    println!("{}", String::from_utf8_lossy(&out.stdout));
    println!("took {:.1} s", start.elapsed().as_secs_f64());
    out
}

/// The `HANDLER CHECK` pairs without a PASS line, each with its FAIL line or
/// "(no result line)".
pub fn missing(stdout: &str, handlers: &[&str], checks: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    for h in handlers {
        for c in checks {
            if !stdout.lines().any(|l| l == format!("PASS {h} {c}")) {
                let got = stdout
                    .lines()
                    .find(|l| l.starts_with(&format!("FAIL {h} {c}:")))
                    .unwrap_or("(no result line)");
                missing.push(format!("{h} {c}: {got}"));
            }
        }
    }
    missing
}

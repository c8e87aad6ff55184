//! Kubernetes end to end: `scripts/kube-e2e.sh` builds (or takes from the
//! cache) etcd and Kubernetes from the Go module proxy, starts a one-node
//! cluster on a private containerd 2.3.7 with the CRI plugin, and runs pods
//! through the RuntimeClasses `tether` (this shim) and `runc` (containerd's
//! Go shim) side by side. Every check must pass for both; the checks are
//! listed in scripts/kube/checks.sh.
//!
//! Needs root; about four minutes once the binaries are cached.

use std::path::Path;
use std::process::Command;

const HANDLERS: [&str; 2] = ["tether", "runc"];
const CHECKS: [&str; 10] = [
    "running",
    "logs",
    "exec",
    "liveness",
    "oom",
    "job",
    "exit-code",
    "two-containers",
    "containerd-restart",
    "graceful-delete",
];

#[test]
fn kubernetes_node_runs_pods_on_tether_and_runc() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the Kubernetes test needs root (it runs a kubelet, containerd, CNI and runc); \
         run it as root instead of skipping it"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shim = env!("CARGO_BIN_EXE_containerd-shim-tether-v2");
    let start = std::time::Instant::now();
    // timeout(1) sends SIGTERM on a hang, to the script alone
    // (--foreground), whose traps then stop what it started, by PID.
    let out = Command::new("timeout")
        .args([
            "--foreground",
            "--signal=TERM",
            "--kill-after=180",
            "2700",
            "bash",
        ])
        .arg(root.join("scripts/kube-e2e.sh"))
        .args(["--containerd", "2.3.7", "--shim", shim])
        .current_dir(root)
        .output()
        .expect("run scripts/kube-e2e.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| !l.contains("level=warning")) {
        eprintln!("{line}");
    }
    println!("{stdout}");
    println!("took {:.1} s", start.elapsed().as_secs_f64());

    let mut missing = Vec::new();
    for h in HANDLERS {
        for c in CHECKS {
            if !stdout.lines().any(|l| l == format!("PASS {h} {c}")) {
                let got = stdout
                    .lines()
                    .find(|l| l.starts_with(&format!("FAIL {h} {c}:")))
                    .unwrap_or("(no result line)");
                missing.push(format!("{h} {c}: {got}"));
            }
        }
    }
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        missing.is_empty() && out.status.success(),
        "Kubernetes checks failed ({}; last line {last:?}):\n{}",
        out.status,
        missing.join("\n")
    );
    assert_eq!(
        last,
        format!("{} passed, 0 failed", HANDLERS.len() * CHECKS.len())
    );
}

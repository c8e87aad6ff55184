//! Kubernetes end to end: `scripts/kube-e2e.sh` builds (or takes from the
//! cache) etcd and Kubernetes from the Go module proxy, starts a one-node
//! cluster on a private containerd 2.3.7 with the CRI plugin, and runs pods
//! through the RuntimeClasses `tether` (this shim), `tether-sandbox` (this
//! shim as the pods' sandbox, no pause) and `runc` (containerd's Go shim)
//! side by side, both running the newest runc of
//! tests/peers/runc-matrix. Every check must pass for both; the checks are
//! listed in scripts/kube/checks.sh (among them a `hostUsers: false` pod).
//!
//! Needs root; about four minutes once the binaries are cached.

mod common;

use std::time::Duration;

use common::script_checks;

const HANDLERS: [&str; 3] = ["tether", "tether-sandbox", "runc"];
const CHECKS: [&str; 12] = [
    "running",
    "describe",
    "logs",
    "exec",
    "liveness",
    "oom",
    "job",
    "exit-code",
    "two-containers",
    "containerd-restart",
    "graceful-delete",
    "userns",
];

#[test]
fn kubernetes_node_runs_pods_on_tether_and_runc() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the Kubernetes test needs root (it runs a kubelet, containerd, CNI and runc); \
         run it as root instead of skipping it"
    );
    let out = script_checks::run_script(
        "scripts/kube-e2e.sh",
        "2.3.7",
        &["--runc", common::NEWEST_RUNC],
        Duration::from_secs(2700),
        Duration::from_secs(180),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let missing = script_checks::missing(&stdout, &HANDLERS, &CHECKS);
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

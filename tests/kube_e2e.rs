//! Kubernetes end to end: `scripts/kube-e2e.sh` builds (or takes from the
//! cache) etcd and Kubernetes from the Go module proxy, starts a one-node
//! cluster on a private containerd 2.3.7 with the CRI plugin, and runs pods
//! through the RuntimeClasses `tether` (this shim) and `runc` (containerd's
//! Go shim) side by side. Every check must pass for both; the checks are
//! listed in scripts/kube/checks.sh.
//!
//! Needs root; about four minutes once the binaries are cached.

mod script_checks;

use std::path::Path;
use std::time::Duration;

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
    let script = root.join("scripts/kube-e2e.sh");
    let out = script_checks::run(
        &[
            "bash".as_ref(),
            script.as_os_str(),
            "--containerd".as_ref(),
            "2.3.7".as_ref(),
            "--shim".as_ref(),
            shim.as_ref(),
        ],
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

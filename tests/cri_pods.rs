//! Kubernetes-style pods through containerd's CRI plugin, with the tether shim
//! and, for comparison, runc's shim, in one run:
//! `scripts/critest.sh --containerd VERSION --exec -- bash tests/cri/pods.sh`,
//! on containerd 2.3.7 with the newest runc of tests/peers/runc-matrix and on
//! Debian's 1.6.20 with Debian's runc 1.1.5 (critest.sh sets up a private
//! containerd with the CRI plugin, a local registry, a CNI bridge and the
//! runtime handlers `runc`, `tether`, `tether-crun` and `tether-wrapped`;
//! tests/cri/pods.sh drives crictl). Each check runs for the handlers
//! `tether` and `runc`:
//!
//! - one-shim-per-pod: a pod with two containers has one shim process, which
//!   exits after `crictl stopp` + `crictl rmp`
//! - oom: a container over its 32 MiB memory limit ends with reason OOMKilled
//! - exec-timeout: `crictl exec --sync --timeout 2 CID sleep 10` fails in ~2 s
//! - exec-status: `crictl exec --sync CID sh -c 'exit 3'` reports status 3
//! - logs: `crictl logs` (and the CRI log file) has the container's stdout and
//!   stderr lines
//! - stats: `crictl stats` / `crictl statsp` have entries with CPU and memory
//! - restart: containerd SIGKILLed and restarted with a pod of each handler
//!   running: pod Ready, container Running with the same PID, exec works
//!
//! and, for `tether-wrapped` only, options: the handler's TOML `BinaryName`
//! (a wrapper that logs its calls and runs runc) is what the shim runs (on
//! 1.6 through the options table's `ConfigPath`, the only key 1.6 passes to a
//! runtime type other than io.containerd.runc.*).
//!
//! Not checked here: the `tether-crun` handler. Debian's crun 1.8.1 refuses
//! containerd 2.x's config.json ("unknown version specified": it only takes
//! ociVersion 1.0.x) and, on this host, any cgroup setup ("cgroups in hybrid
//! mode not supported": the cgroup v2 hierarchy has the hugetlb controller).
//! pods.sh has the check (CRI_PODS_CHECKS=crun) for a host where crun works.
//!
//! Needs root; the run takes about half a minute.
//!
//! Separately, `cri_output_away_*` runs the output group (#21): containerd
//! SIGKILLed for 30 s while a pod of each handler writes a numbered line
//! about every millisecond; for tether no write of the container may take
//! over 100 ms (the container times its own writes) and the CRI log must
//! hold every line in order. The Go shim's result is printed (`SEEN runc
//! output-away: ...`), not asserted: its container blocks once its pipe and
//! FIFO are full. About 75 s each.

mod common;

use std::time::Duration;

use common::script_checks;

const HANDLERS: [&str; 2] = ["tether", "runc"];
const CHECKS: [&str; 7] = [
    "one-shim-per-pod",
    "oom",
    "exec-timeout",
    "exec-status",
    "logs",
    "stats",
    "restart",
];

#[test]
fn cri_pods_tether_and_runc_containerd_2_3() {
    pods("2.3.7", common::NEWEST_RUNC);
}

#[test]
fn cri_pods_tether_and_runc_containerd_1_6() {
    pods("system", "system");
}

#[test]
fn cri_output_away_containerd_2_3() {
    output_away("2.3.7", common::NEWEST_RUNC);
}

#[test]
fn cri_output_away_containerd_1_6() {
    output_away("system", "system");
}

fn output_away(version: &str, runc: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the CRI tests need root; run them as root instead of skipping them"
    );
    let out = run_pods(version, runc, "output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let missing = script_checks::missing(&stdout, &["tether"], &["output-away"]);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        missing.is_empty() && out.status.success() && last == "1 passed, 0 failed",
        "CRI output-away on containerd {version} failed ({}; last line {last:?}):\n{}",
        out.status,
        missing.join("\n")
    );
}

fn pods(version: &str, runc: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the CRI pod tests need root (they run a real containerd, CNI and runc); \
         run them as root instead of skipping them"
    );
    let out = run_pods(version, runc, "pods options restart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut missing = script_checks::missing(&stdout, &HANDLERS, &CHECKS);
    if !stdout.lines().any(|l| l == "PASS tether-wrapped options") {
        missing.push("tether-wrapped options: no PASS line".to_string());
    }
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        missing.is_empty() && out.status.success(),
        "CRI pod checks on containerd {version} failed ({}; last line {last:?}):\n{}",
        out.status,
        missing.join("\n")
    );
    let n = HANDLERS.len() * CHECKS.len() + 1;
    assert_eq!(last, format!("{n} passed, 0 failed"));
}

/// tests/cri/pods.sh's CHECKS groups through `scripts/critest.sh --exec` on
/// containerd VERSION with runc RUNC.
fn run_pods(version: &str, runc: &str, checks: &str) -> std::process::Output {
    let pods = script_checks::repo_path("tests/cri/pods.sh");
    let checks = format!("CRI_PODS_CHECKS={checks}");
    script_checks::run_script(
        "scripts/critest.sh",
        version,
        &[
            "--runc",
            runc,
            "--handler",
            "tether",
            "--exec",
            "--",
            "env",
            &checks,
            "bash",
            &pods,
        ],
        Duration::from_secs(900),
        Duration::from_secs(120),
    )
}

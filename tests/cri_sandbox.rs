//! Pods without pause (issue #24): the handler `tether-sandbox`, the tether
//! shim as the pods' sandbox controller (`sandboxer = "shim"`: containerd's
//! Sandbox API, no pause container; a holder process the shim forks holds
//! the pod's namespaces), through containerd 2.3.7's CRI plugin with the
//! newest runc of tests/peers/runc-matrix:
//! `scripts/critest.sh --containerd 2.3.7 --exec -- bash tests/cri/sandbox.sh`
//! (critest.sh's private containerd, registry, CNI bridge and handlers;
//! tests/cri/sandbox.sh drives crictl and ctr). Each check runs for
//! `tether-sandbox` and, so that a difference shows, the pause-based
//! `tether`; all must pass for both:
//!
//! - run: runp, create + start of two busybox containers, exec
//! - namespaces: the container's net, ipc and uts namespaces are the
//!   sandbox pid's (not the environment's); `hostname` is the pod's
//! - files: resolv.conf from the pod's dns_config; /etc/hosts, /etc/hostname
//!   and /dev/shm (a tmpfs) are CRI's files of the pod
//! - pid-share: in the pod's pid namespace, pid 1 is the sandbox pid (the
//!   holder, or pause), not the container's command; a container with its
//!   own pid namespace is its own pid 1
//! - stop-remove: stopp gives SANDBOX_NOTREADY at once; after rmp no shim,
//!   holder, mount, CRI dir, bundle or cgroup of the pod is left
//!
//! and, for `tether-sandbox` only, no-pause: the pod is a sandbox in `ctr
//! sandboxes ls` but no container in `ctr containers ls`, no process runs
//! pause, one shim serves the pod and the sandbox pid is its holder.
//!
//! Needs root; the run takes about 15 s.

mod common;

use std::time::Duration;

use common::script_checks;

const HANDLERS: [&str; 2] = ["tether-sandbox", "tether"];
const CHECKS: [&str; 5] = ["run", "namespaces", "files", "pid-share", "stop-remove"];

#[test]
fn cri_pods_without_pause_containerd_2_3() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the CRI sandbox tests need root (they run a real containerd, CNI and runc); \
         run them as root instead of skipping them"
    );
    let script = script_checks::repo_path("tests/cri/sandbox.sh");
    let out = script_checks::run_script(
        "scripts/critest.sh",
        "2.3.7",
        &[
            "--runc",
            common::NEWEST_RUNC,
            "--handler",
            "tether-sandbox",
            "--exec",
            "--",
            "bash",
            &script,
        ],
        Duration::from_secs(600),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut missing = script_checks::missing(&stdout, &HANDLERS, &CHECKS);
    missing.extend(script_checks::missing(
        &stdout,
        &["tether-sandbox"],
        &["no-pause"],
    ));
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        missing.is_empty() && out.status.success(),
        "CRI sandbox checks on containerd 2.3.7 failed ({}; last line {last:?}):\n{}",
        out.status,
        missing.join("\n")
    );
    // Every check ran, and no other: the summary counts them all.
    let n = HANDLERS.len() * CHECKS.len() + 1;
    assert_eq!(last, format!("{n} passed, 0 failed"));
}

//! Pods without pause (issue #24): the handler `tether-sandbox`, the tether
//! shim as the pods' sandbox controller (`sandboxer = "shim"`: containerd's
//! Sandbox API, no pause container; a holder process the shim forks holds
//! the pod's namespaces), through the CRI plugin of containerd 2.3.7 and of
//! 2.4.2 (there with `disable_pause_image_pull = true`) with the newest runc
//! of tests/peers/runc-matrix:
//! `scripts/critest.sh --containerd VERSION --exec -- bash tests/cri/sandbox.sh`
//! (critest.sh's private containerd, registry, CNI bridge and handlers;
//! tests/cri/sandbox.sh and tests/cri/sandbox-groups.sh drive crictl and
//! ctr). Each check runs for `tether-sandbox` and, so that a difference
//! shows, the pause-based `tether`; all must pass for both:
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
//! - restart, restart-new, restart-stop: containerd SIGKILLed and started
//!   again under a running two-container pod: the pod stays READY with its
//!   sandbox pid, exec into the old containers works; a new container gets
//!   the pod's resolv.conf, hosts, hostname, namespaces and /dev/shm (with a
//!   file written before the restart), although CRI's restart clean-up
//!   removed tether-sandbox's files; stopp is seen in CRI's own store
//!   within 5 s (WaitSandbox armed again); after rmp nothing is left
//!
//! and, for `tether-sandbox` only:
//!
//! - no-pause: the pod is a sandbox in `ctr sandboxes ls` but no container
//!   in `ctr containers ls`, no process runs pause, one shim serves the pod
//!   and the sandbox pid is its holder
//! - shim-kill, shim-kill-rm: the pod's shim SIGKILLed under a container in
//!   a pid namespace of its own: within 10 s the pod is NOTREADY and the
//!   holder and the container are gone (the shim's `delete` of the sandbox
//!   bundle); `rmp -f` works and leaves nothing (for `tether` these are only
//!   shown: containerd 2.3.7 runs no `delete` for a container it reached
//!   through its pod's shim, so there the container outlives it, as it does
//!   with containerd's runc shim)
//! - no-pause-pull (2.4.2): with the pause image gone from containerd's
//!   image store and from the registry, the pod runs, and no image or
//!   content is created meanwhile (2.3.7 has no such switch: its CRI pulls
//!   the pause image for every pod, so there runp would fail)
//!
//! Needs root; each run takes about 2 minutes.

mod common;

use std::time::Duration;

use common::script_checks;

const HANDLERS: [&str; 2] = ["tether-sandbox", "tether"];
/// The checks both handlers must pass.
const CHECKS: [&str; 8] = [
    "run",
    "namespaces",
    "files",
    "pid-share",
    "stop-remove",
    "restart",
    "restart-new",
    "restart-stop",
];
/// The checks counted for tether-sandbox alone.
const SANDBOX_CHECKS: [&str; 3] = ["no-pause", "shim-kill", "shim-kill-rm"];

#[test]
fn cri_pods_without_pause_containerd_2_3() {
    pods_without_pause("2.3.7", "smoke restart shim-kill", &[]);
}

#[test]
fn cri_pods_without_pause_containerd_2_4() {
    pods_without_pause(
        "2.4.2",
        "smoke restart shim-kill no-pause-pull",
        &["no-pause-pull"],
    );
}

/// tests/cri/sandbox.sh's GROUPS on containerd VERSION: every check of
/// [`CHECKS`] passes for both handlers, every one of [`SANDBOX_CHECKS`]
/// and `more` for tether-sandbox, and no other check is counted.
fn pods_without_pause(version: &str, groups: &str, more: &[&str]) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the CRI sandbox tests need root (they run a real containerd, CNI and runc); \
         run them as root instead of skipping them"
    );
    let script = script_checks::repo_path("tests/cri/sandbox.sh");
    let groups = format!("CRI_SANDBOX_CHECKS={groups}");
    let out = script_checks::run_script(
        "scripts/critest.sh",
        version,
        &[
            "--runc",
            common::NEWEST_RUNC,
            "--handler",
            "tether-sandbox",
            "--exec",
            "--",
            "env",
            &groups,
            "bash",
            &script,
        ],
        Duration::from_secs(900),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sandbox_only: Vec<&str> = SANDBOX_CHECKS.iter().chain(more).copied().collect();
    let mut missing = script_checks::missing(&stdout, &HANDLERS, &CHECKS);
    missing.extend(script_checks::missing(
        &stdout,
        &["tether-sandbox"],
        &sandbox_only,
    ));
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        missing.is_empty() && out.status.success(),
        "CRI sandbox checks on containerd {version} failed ({}; last line {last:?}):\n{}",
        out.status,
        missing.join("\n")
    );
    // Every check ran, and no other: the summary counts them all.
    let n = HANDLERS.len() * CHECKS.len() + sandbox_only.len();
    assert_eq!(last, format!("{n} passed, 0 failed"));
}

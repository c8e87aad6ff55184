//! Kubernetes' own node conformance suite: `scripts/node-conformance.sh`
//! runs the `[NodeConformance]` specs of k8s.io/kubernetes v1.34.4's
//! test/e2e_node (without `[Serial]`, `[Slow]`, `[Flaky]`, `[Disruptive]`
//! and AppArmor) offline, against a private containerd 2.3.7 whose default
//! runtime is the handler under test running runc 1.5.3, with the suite's
//! own API server and kubelet, with tether as the handler.
//!
//! Spec by spec, a spec that passed with containerd's Go shim (`--handler
//! runc`) must pass with tether (failed, skipped at run time or not run alike
//! fail the test). The runc side is a recorded full run on this machine,
//! tests/node/runc-baseline/results.tsv (its README says when and how it was
//! made, and how to make it again): a live runc run would double the test's
//! 13 minutes, which CI's budget does not have. Some specs fail with runc too
//! (kernel options, stand-in images, the host's cgroup layout): they are
//! listed, not failed on. Each run must have run at least `MIN_RAN` specs
//! (a run that runs nothing must not pass), the baseline included.
//!
//! Needs root; about 13 minutes once the binaries are cached (8 ginkgo
//! processes). The builds come first (scripts/node/build.sh, which
//! .ci/run runs before the tests: 87 s from an empty Go cache once the
//! kubelet's packages are built).

mod common;

use std::time::Duration;

use common::script_checks;
use common::specs::{assert_tether_passes_where_runc_does, SpecResults};

/// Specs that must run (pass or fail) with each handler; a full run here
/// runs 234.
const MIN_RAN: usize = 200;

/// Runs the suite with `handler`; returns the results dir and its results.
fn node_conformance(handler: &str, run: &str) -> (String, SpecResults) {
    let results = format!("/tmp/tether-node-conformance/{run}-{handler}");
    let script = script_checks::repo_path("scripts/node-conformance.sh");
    let out = script_checks::run(
        &[
            "bash",
            &script,
            "--handler",
            handler,
            "--shim",
            common::SHIM,
            "--results",
            &results,
        ],
        Duration::from_secs(3 * 3600),
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    let counts: Vec<usize> = last
        .split(", ")
        .filter_map(|part| part.split(' ').next()?.parse().ok())
        .collect();
    // 0: none failed, 1: some failed (compared by the caller), 2: no run.
    assert!(
        counts.len() == 3 && matches!(out.status.code(), Some(0 | 1)),
        "{handler}: the suite did not run: no `N passed, M failed, K skipped` line last \
         ({last:?}; status {}); see {results}",
        out.status
    );
    let specs = SpecResults::read(std::path::Path::new(&results));
    assert_eq!(
        (specs.passed(), specs.failed()),
        (counts[0], counts[1]),
        "{handler}: {results}/results.tsv and the summary line {last:?} disagree"
    );
    (results, specs)
}

#[test]
fn node_conformance_on_tether_passes_wherever_on_runc() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the node conformance test needs root (it runs a kubelet, containerd, CNI and runc); \
         run it as root instead of skipping it"
    );
    let run = format!(
        "cargo-test-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
    );
    let baseline = script_checks::repo_path("tests/node/runc-baseline");
    let runc = SpecResults::read(std::path::Path::new(&baseline));
    let (results, tether) = node_conformance("tether", &run);
    let failures = std::fs::read_to_string(format!("{results}/failures.txt")).unwrap_or_default();
    assert_tether_passes_where_runc_does(
        &format!("node conformance (results in {results}; runc's in {baseline})"),
        &runc,
        &tether,
        MIN_RAN,
        &failures,
    );
}

//! Kubernetes' own node conformance suite: `scripts/node-conformance.sh
//! --handler tether` runs the `[NodeConformance]` specs of k8s.io/kubernetes
//! v1.34.4's test/e2e_node (without `[Serial]`, `[Slow]`, `[Flaky]`,
//! `[Disruptive]` and AppArmor) offline, against a private containerd 2.3.7
//! whose default runtime is tether running runc 1.5.3, with the suite's own
//! API server and kubelet.
//!
//! Some specs fail on this machine with containerd's Go shim too (kernel
//! options, stand-in images, the host's cgroup layout): they are listed in
//! tests/node/runc-failures.txt, written by
//! `scripts/node-conformance.sh --handler runc --write-runc-failures`. The
//! test fails when a spec outside that list fails with tether, or when fewer
//! than 100 specs ran (a run that runs nothing must not pass).
//!
//! Needs root; about 13 minutes once the binaries are cached (8 ginkgo
//! processes). The builds come first (scripts/node/build.sh, which .ci/run
//! runs before the tests: 87 s from an empty Go cache once the kubelet's
//! packages are built).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::script_checks;

const MIN_SPECS: usize = 100;

#[test]
fn node_conformance_on_tether_fails_only_where_runc_fails() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the node conformance test needs root (it runs a kubelet, containerd, CNI and runc); \
         run it as root instead of skipping it"
    );
    let results = format!(
        "/tmp/tether-node-conformance/cargo-test-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
    );
    let script = script_checks::repo_path("scripts/node-conformance.sh");
    let out = script_checks::run(
        &[
            "bash",
            &script,
            "--handler",
            "tether",
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
    assert_eq!(
        counts.len(),
        3,
        "no `N passed, M failed, K skipped` line last ({last:?}; status {})",
        out.status
    );
    let (passed, failed) = (counts[0], counts[1]);
    assert!(
        passed + failed >= MIN_SPECS,
        "only {} specs ran (at least {MIN_SPECS} expected); last line {last:?}, results in {results}",
        passed + failed
    );

    let allowed: BTreeSet<String> =
        std::fs::read_to_string(script_checks::repo_path("tests/node/runc-failures.txt"))
            .expect("read tests/node/runc-failures.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
    let tsv = std::fs::read_to_string(format!("{results}/results.tsv"))
        .unwrap_or_else(|e| panic!("read {results}/results.tsv: {e}"));
    let mut failed_specs = Vec::new();
    for line in tsv.lines() {
        let Some((state, spec)) = line.split_once('\t') else {
            continue;
        };
        if state != "passed" && state != "skipped" {
            failed_specs.push(spec.to_string());
        }
    }
    assert_eq!(
        failed_specs.len(),
        failed,
        "results.tsv and the summary line disagree"
    );
    let new: Vec<&String> = failed_specs
        .iter()
        .filter(|s| !allowed.contains(*s))
        .collect();
    assert!(
        new.is_empty(),
        "{} spec(s) failed with tether that do not fail with runc (see {results}/failures.txt):\n{}",
        new.len(),
        new.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

//! Kubernetes' CRI validation suite (critest, from cri-tools) against a
//! private containerd's CRI plugin, with containerd's own runc handler and
//! the tether handler in the same run, on containerd 2.3 with the newest runc
//! of tests/peers/runc-matrix and on Debian's 1.6.20 with Debian's runc
//! 1.1.5; on 2.3 also the handler `tether-sandbox` (tether as the pods'
//! sandbox controller, `sandboxer = "shim"`: no pause container). Spec by
//! spec, a spec that passes with runc must pass with each tether handler
//! (failed, skipped or not run alike fail the test); each run must have run
//! at least `MIN_RAN` specs. With the newest runc, containerd 2.3's CRI
//! learns from each handler's features (tether's through `-info`) that it
//! can run user namespaces, so critest's user-namespace specs run, and they
//! must not be skipped.
//!
//! `scripts/critest.sh` does the work (registry, images, CNI, containerd,
//! critest, clean-up by PID); see its header. Specs that fail with both
//! handlers are environment limits (e.g. a pull by an upstream digest, no
//! AppArmor here) and are listed, not failed on.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::specs::{assert_tether_passes_where_runc_does, SpecResults};

/// Fewer specs than this run (passed or failed) with either handler, and
/// the run proves nothing: it fails. A full run on 2.3.7 with runc 1.5.3
/// runs 99 (14 skip themselves).
const MIN_RAN: usize = 80;

/// Runs critest with `handler` on containerd `version` and runc `runc`;
/// returns the results and the summary line.
fn critest(version: &str, runc: &str, handler: &str, results: &Path) -> (SpecResults, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/critest.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args([
            "--handler",
            handler,
            "--containerd",
            version,
            "--runc",
            runc,
        ])
        .arg("--shim")
        .arg(common::shim_path())
        .arg("--results")
        .arg(results)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/critest.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or_default().to_string();
    // 0: all passed, 1: some spec failed (compared below), 2: no run.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "critest.sh --handler {handler} --containerd {version} could not run ({})\n{stdout}",
        out.status
    );
    assert!(
        summary.starts_with(&format!("critest {handler}: ")),
        "unexpected last line {summary:?}"
    );
    (SpecResults::read(results), summary)
}

/// Runs critest with `runc`, then with each of `handlers` (the same runc
/// run for all), and compares each with the runc run: every spec that
/// passes with runc must pass with the handler. Every handler runs and is
/// compared before the first failed comparison fails the test. Returns the
/// runc results and each handler's, in order.
fn compare(version: &str, runc: &str, handlers: &[&str]) -> (SpecResults, Vec<SpecResults>) {
    let dir = tempfile::Builder::new()
        .prefix("tether-critest-")
        .tempdir()
        .expect("tempdir");
    let (runc_results, runc_line) = critest(version, runc, "runc", &dir.path().join("runc"));
    let mut runs = Vec::new();
    for handler in handlers {
        let results_dir = dir.path().join(handler);
        let (results, line) = critest(version, runc, handler, &results_dir);
        eprintln!("containerd {version}: {line}");
        runs.push((handler, results_dir, results));
    }
    eprintln!("containerd {version}: {runc_line}");
    let mut first_failure = None;
    for (handler, results_dir, results) in &runs {
        let failures =
            std::fs::read_to_string(results_dir.join("failures.txt")).unwrap_or_default();
        let outcome = std::panic::catch_unwind(|| {
            assert_tether_passes_where_runc_does(
                &format!("critest on containerd {version}, runc {runc}, handler {handler}"),
                &runc_results,
                results,
                MIN_RAN,
                &failures,
            )
        });
        if let Err(panic) = outcome {
            first_failure.get_or_insert(panic);
        }
    }
    if let Some(panic) = first_failure {
        std::panic::resume_unwind(panic);
    }
    (runc_results, runs.into_iter().map(|(_, _, r)| r).collect())
}

/// The 2.3.7 run also has `tether-sandbox`: the tether shim as the pods'
/// sandbox controller (`sandboxer = "shim"`, no pause container), held to
/// the same runc run.
#[test]
fn critest_passes_with_tether_wherever_with_runc_containerd_2_3() {
    common::require_environment();
    let handlers = ["tether", "tether-sandbox"];
    let (runc, runs) = compare("2.3.7", common::NEWEST_RUNC, &handlers);
    // The user-namespace specs (critest's `UserNamespaces` context) ran,
    // and passed, with every handler.
    let all = std::iter::once(("runc", &runc)).chain(handlers.into_iter().zip(&runs));
    for (name, results) in all {
        let specs = results.matching("usernamespaces");
        eprintln!("user-namespace specs with {name}: {specs:#?}");
        assert!(
            !specs.is_empty(),
            "critest has no user-namespace spec in its results"
        );
        let not_passed: Vec<_> = specs
            .iter()
            .filter(|(_, states)| states.iter().any(|s| s != "passed"))
            .collect();
        assert!(
            not_passed.is_empty(),
            "user-namespace specs that did not pass with {name} on runc {}: {not_passed:#?}",
            common::NEWEST_RUNC
        );
    }
}

#[test]
fn critest_passes_with_tether_wherever_with_runc_containerd_1_6() {
    common::require_environment();
    compare("system", "system", &["tether"]);
}

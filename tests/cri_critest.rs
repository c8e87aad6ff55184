//! Kubernetes' CRI validation suite (critest, from cri-tools) against a
//! private containerd's CRI plugin, with containerd's own runc handler and
//! the tether handler in the same run, on containerd 2.3 with the newest runc
//! of tests/peers/runc-matrix and on Debian's 1.6.20 with Debian's runc
//! 1.1.5. A spec that passes with runc must pass with tether. With the newest
//! runc, containerd 2.3's CRI learns from each handler's features (tether's
//! through `-info`) that it can run user namespaces, so critest's
//! user-namespace specs run, and they must not be skipped.
//!
//! `scripts/critest.sh` does the work (registry, images, CNI, containerd,
//! critest, clean-up by PID); see its header. Specs that fail with both
//! handlers are environment limits (e.g. a pull by an upstream digest, no
//! AppArmor here) and are listed, not failed on.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs critest with `handler` on containerd `version` and runc `runc`;
/// returns the results (spec → state) and the summary line.
fn critest(
    version: &str,
    runc: &str,
    handler: &str,
    results: &Path,
) -> (BTreeMap<String, String>, String) {
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
    let tsv = std::fs::read_to_string(results.join("results.tsv")).expect("results.tsv");
    let states = tsv
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let state = f.next()?.to_string();
            let _secs = f.next()?;
            Some((f.next()?.to_string(), state))
        })
        .collect();
    (states, summary)
}

/// The critest specs about user namespaces (critest's `UserNamespaces`
/// context).
fn userns_specs(m: &BTreeMap<String, String>) -> Vec<(&String, &String)> {
    m.iter()
        .filter(|(spec, _)| spec.to_lowercase().contains("usernamespaces"))
        .collect()
}

fn compare(version: &str, runc: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let dir = tempfile::Builder::new()
        .prefix("tether-critest-")
        .tempdir()
        .expect("tempdir");
    let runc_dir: PathBuf = dir.path().join("runc");
    let tether_dir: PathBuf = dir.path().join("tether");
    let (runc_results, runc_line) = critest(version, runc, "runc", &runc_dir);
    let (tether, tether_line) = critest(version, runc, "tether", &tether_dir);
    let runc = &runc_results;
    eprintln!("containerd {version}: {runc_line}");
    eprintln!("containerd {version}: {tether_line}");
    let passed = |m: &BTreeMap<String, String>| m.values().filter(|s| *s == "passed").count();
    assert!(
        passed(runc) > 50,
        "critest passed too little with runc: {runc_line}"
    );
    let mut regressions = Vec::new();
    for (spec, state) in runc {
        if state == "passed" && tether.get(spec).map(String::as_str) != Some("passed") {
            regressions.push(format!(
                "{spec}: {}",
                tether.get(spec).map(String::as_str).unwrap_or("not run")
            ));
        }
    }
    let both_failed: Vec<&String> = runc
        .iter()
        .filter(|(s, st)| *st == "failed" && tether.get(*s).map(String::as_str) == Some("failed"))
        .map(|(s, _)| s)
        .collect();
    eprintln!("failed with both handlers (not tether's): {both_failed:#?}");
    let failures = std::fs::read_to_string(tether_dir.join("failures.txt")).unwrap_or_default();
    assert!(
        regressions.is_empty(),
        "containerd {version}: specs that pass with runc and not with tether:\n  {}\n\n{failures}",
        regressions.join("\n  ")
    );
    (runc_results, tether)
}

#[test]
fn critest_passes_with_tether_wherever_with_runc_containerd_2_3() {
    common::require_environment();
    let (runc, tether) = compare("2.3.7", common::NEWEST_RUNC);
    // The user-namespace specs ran, and passed, with both handlers.
    for (name, results) in [("runc", &runc), ("tether", &tether)] {
        let specs = userns_specs(results);
        eprintln!("user-namespace specs with {name}: {specs:#?}");
        assert!(
            !specs.is_empty(),
            "critest has no user-namespace spec in its results"
        );
        let not_passed: Vec<_> = specs.iter().filter(|(_, st)| *st != "passed").collect();
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
    compare("system", "system");
}

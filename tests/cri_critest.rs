//! Kubernetes' CRI validation suite (critest, from cri-tools) against a
//! private containerd's CRI plugin, with containerd's own runc handler and
//! the tether handler in the same run, on containerd 2.3 and on Debian's
//! 1.6.20. A spec that passes with runc must pass with tether.
//!
//! `scripts/critest.sh` does the work (registry, images, CNI, containerd,
//! critest, clean-up by PID); see its header. Specs that fail with both
//! handlers are environment limits (e.g. a pull by an upstream digest, no
//! AppArmor here) and are listed, not failed on.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs critest with `handler` on containerd `version`; returns the
/// results (spec → state) and the summary line.
fn critest(version: &str, handler: &str, results: &Path) -> (BTreeMap<String, String>, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/critest.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--handler", handler, "--containerd", version])
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

fn compare(version: &str) {
    let dir = tempfile::Builder::new()
        .prefix("tether-critest-")
        .tempdir()
        .expect("tempdir");
    let runc_dir: PathBuf = dir.path().join("runc");
    let tether_dir: PathBuf = dir.path().join("tether");
    let (runc, runc_line) = critest(version, "runc", &runc_dir);
    let (tether, tether_line) = critest(version, "tether", &tether_dir);
    eprintln!("containerd {version}: {runc_line}");
    eprintln!("containerd {version}: {tether_line}");
    let passed = |m: &BTreeMap<String, String>| m.values().filter(|s| *s == "passed").count();
    assert!(
        passed(&runc) > 50,
        "critest passed too little with runc: {runc_line}"
    );
    let mut regressions = Vec::new();
    for (spec, state) in &runc {
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
}

#[test]
fn critest_passes_with_tether_wherever_with_runc_containerd_2_3() {
    common::require_environment();
    compare("2.3.7");
}

#[test]
fn critest_passes_with_tether_wherever_with_runc_containerd_1_6() {
    common::require_environment();
    compare("system");
}

//! Per-spec results of a Kubernetes suite run with each runtime handler
//! (critest, node conformance), and their comparison: a spec that passes
//! with runc must pass with tether; specs that fail with both are listed,
//! not failed on; a run that ran too few specs fails.
//!
//! The results come from the `results.tsv` that scripts/cri/report.py and
//! scripts/node/report.py write from ginkgo's JSON report: one line a spec,
//! `STATE<TAB>SECONDS<TAB>name` (critest) or `STATE<TAB>name` (node
//! conformance). STATE is ginkgo's: `passed`, `skipped`, `pending`, or a
//! failure (`failed`, `panicked`, `timedout`, ...).

use std::collections::BTreeMap;
use std::path::Path;

/// The states of one run, by spec name (a name ginkgo reports more than
/// once keeps every state).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SpecResults(BTreeMap<String, Vec<String>>);

/// Whether `state` is a failure of the spec (not passed, not skipped).
pub fn is_failure(state: &str) -> bool {
    !matches!(state, "passed" | "skipped" | "pending")
}

impl SpecResults {
    /// Parses a `results.tsv`; panics on a line that is not one.
    pub fn parse(tsv: &str) -> SpecResults {
        let mut specs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in tsv.lines().filter(|l| !l.trim().is_empty()) {
            let (state, rest) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("not a results.tsv line: {line:?}"));
            // critest's lines carry the seconds before the name.
            let name = match rest.split_once('\t') {
                Some((secs, name)) if secs.parse::<f64>().is_ok() => name,
                _ => rest,
            };
            assert!(
                !state.is_empty() && !name.is_empty(),
                "not a results.tsv line: {line:?}"
            );
            specs
                .entry(name.to_string())
                .or_default()
                .push(state.to_string());
        }
        for states in specs.values_mut() {
            states.sort();
        }
        SpecResults(specs)
    }

    /// Reads and parses `dir/results.tsv`.
    pub fn read(dir: &Path) -> SpecResults {
        let path = dir.join("results.tsv");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        SpecResults::parse(&text)
    }

    fn states(&self) -> impl Iterator<Item = &str> {
        self.0.values().flatten().map(String::as_str)
    }

    /// Specs that passed.
    pub fn passed(&self) -> usize {
        self.states().filter(|s| *s == "passed").count()
    }

    /// Specs that failed.
    pub fn failed(&self) -> usize {
        self.states().filter(|s| is_failure(s)).count()
    }

    /// Specs that ran (passed or failed; not skipped).
    pub fn ran(&self) -> usize {
        self.passed() + self.failed()
    }

    /// The specs whose name contains `needle` (case-insensitive), with
    /// their states.
    pub fn matching(&self, needle: &str) -> Vec<(&str, &[String])> {
        let needle = needle.to_lowercase();
        self.0
            .iter()
            .filter(|(name, _)| name.to_lowercase().contains(&needle))
            .map(|(name, states)| (name.as_str(), states.as_slice()))
            .collect()
    }

    fn of(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or_default()
    }
}

/// A tether run against a runc run of the same suite.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Specs that pass with runc and not with tether (`name: tether's
    /// states`, "not run" when tether's run has no such spec).
    pub regressions: Vec<String>,
    /// Specs that fail with both handlers: environment limits, listed.
    pub both_failed: Vec<String>,
}

/// Compares spec by spec (a name reported several times: tether must pass
/// it as many times as runc does).
pub fn compare(runc: &SpecResults, tether: &SpecResults) -> Comparison {
    let passes = |s: &[String]| s.iter().filter(|s| *s == "passed").count();
    let mut c = Comparison::default();
    for (name, states) in &runc.0 {
        let theirs = tether.of(name);
        if passes(theirs) < passes(states) {
            let got = if theirs.is_empty() {
                "not run".to_string()
            } else {
                theirs.join(", ")
            };
            c.regressions.push(format!("{name}: {got}"));
        }
        if states.iter().any(|s| is_failure(s)) && theirs.iter().any(|s| is_failure(s)) {
            c.both_failed.push(name.clone());
        }
    }
    c
}

/// The outcome of a suite run with runc and with tether: prints what
/// failed with both, and panics when either run ran fewer than `min_ran`
/// specs or when a spec passes with runc and not with tether. `what` names
/// the run, `failures` is tether's failure details (failures.txt).
pub fn assert_tether_passes_where_runc_does(
    what: &str,
    runc: &SpecResults,
    tether: &SpecResults,
    min_ran: usize,
    failures: &str,
) {
    for (name, run) in [("runc", runc), ("tether", tether)] {
        eprintln!(
            "{what}, {name}: {} passed, {} failed, {} ran",
            run.passed(),
            run.failed(),
            run.ran()
        );
        assert!(
            run.ran() >= min_ran,
            "{what}: the {name} run ran {} specs ({} passed), fewer than {min_ran}: \
             a run that runs (almost) nothing proves nothing",
            run.ran(),
            run.passed()
        );
    }
    let c = compare(runc, tether);
    eprintln!(
        "{what}: {} spec(s) failed with both handlers (not tether's):\n  {}",
        c.both_failed.len(),
        c.both_failed.join("\n  ")
    );
    assert!(
        c.regressions.is_empty(),
        "{what}: {} spec(s) pass with runc and not with tether:\n  {}\n\n{failures}",
        c.regressions.len(),
        c.regressions.join("\n  ")
    );
}

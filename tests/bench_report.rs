//! The benchmark harness's Python tests (bench/tests, pytest): the report
//! built from bench/results/latest.json has every benchmark's rows, ratios
//! that are tether/Go, targets met or not as the values say, a well-formed
//! table, and reproduces docs/benchmarks.md; plus the cgroup and /proc
//! readers. Needs python3-pytest (.ci/run installs it); fails without it.

use std::path::Path;
use std::process::Command;

#[test]
fn bench_report_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("/usr/bin/python3")
        // No .pytest_cache or __pycache__ left in the checkout.
        .args(["-m", "pytest", "-q", "bench/tests"])
        .args(["-p", "no:cacheprovider"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(root)
        .output()
        .expect("run /usr/bin/python3 -m pytest");
    assert!(
        out.status.success(),
        "pytest bench/tests failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

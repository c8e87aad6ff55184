//! Every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for 10 s on top of its
//! committed corpus, two at a time: a crash, leak or timeout fails the test
//! and leaves its input in fuzz/artifacts/. Needs cargo-fuzz and a nightly
//! toolchain (.ci/run installs cargo-fuzz); fails, never skips, without them.
//! `TETHER_FUZZ_SECONDS` changes the time per target (`scripts/soak.sh` runs
//! 30 s).

use std::path::Path;
use std::process::Command;

#[test]
fn every_fuzz_target_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seconds = std::env::var("TETHER_FUZZ_SECONDS").unwrap_or_else(|_| "10".into());
    let out = Command::new("bash")
        .arg(root.join("fuzz/run.sh"))
        .args(["--seconds", &seconds, "--jobs", "2"])
        .current_dir(root)
        // The fuzz build has its own target dir and toolchain; cargo test's
        // settings must not leak into it.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO")
        .output()
        .expect("run fuzz/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(out.status.success(), "fuzzing failed:\n{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    // The fuzz targets, as fuzz/run.sh finds them (a unit test of
    // src/fuzzing.rs checks they are the entry points, one each).
    let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
    let all = manifest.matches("[[bin]]").count();
    assert!(all > 0, "no fuzz targets in fuzz/Cargo.toml");
    assert_eq!(last, format!("{all} targets passed, 0 failed"), "summary");
}

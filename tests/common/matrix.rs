//! The containerd versions the containerd tests run against, and where each
//! one's binaries are. `system` is Debian's containerd from $PATH; every other
//! version is built from the Go module proxy by `scripts/peers.sh` (when the
//! cache lacks it) and run from the cache.
//!
//! A scenario is a plain `fn()`; `containerd_matrix!` turns it into one
//! `#[test]` per version (`<scenario>::v2_3`, `<scenario>::v1_6`, …), each of
//! which runs it with that version current, so `Containerd::start()` starts
//! the right daemon. A run is narrowed by test name, as any other:
//! `cargo test --test containerd_e2e v2_3` runs the 2.3.7 tests (and their
//! `v2_3_runc_newest` variants; `-- --skip runc_newest` leaves those out).
//! A version left out is not run at all, so it is never counted as passed.
//!
//! The runc dimension: every scenario runs with Debian's runc 1.1.5
//! ("system", the runc in $PATH) on every containerd, and once more on the
//! main target with the newest runc of tests/peers/runc-matrix
//! (`<scenario>::v2_3_runc_newest`, built from the Go module proxy by
//! `scripts/peers.sh runc`). That runc's directory goes first in containerd's
//! PATH, so both the Go shim and tether (which run `runc` from PATH) use it,
//! and so do the harness's own runc calls (`runc_binary()`).
//! `TETHER_RUNC=1.4.4` runs those variants with another built runc instead.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// (test name suffix, version), main target first. Must list the versions of
/// tests/peers/containerd-matrix, in its order (harness_selftest checks).
pub const MATRIX: &[(&str, &str)] = &[
    ("v2_3", "2.3.7"),
    ("v1_6", "system"),
    ("v2_0", "2.0.14"),
    ("v2_4", "2.4.2"),
    ("v1_7", "1.7.35"),
];

/// The newest runc of tests/peers/runc-matrix (its first line; the
/// harness self-test checks).
pub const NEWEST_RUNC: &str = "1.5.3";

thread_local! {
    static CURRENT: RefCell<Option<&'static str>> = const { RefCell::new(None) };
    static CURRENT_RUNC: RefCell<Option<&'static str>> = const { RefCell::new(None) };
}

/// One `#[test]` per containerd version for each scenario named. An
/// attribute written first (e.g. `#[ignore = "why"]`) goes on every one.
#[macro_export]
macro_rules! containerd_matrix {
    (#[$attr:meta] $($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[$attr] #[test] fn v2_3() { $crate::common::run_on("v2_3", super::$scenario) }
            #[$attr] #[test] fn v1_6() { $crate::common::run_on("v1_6", super::$scenario) }
            #[$attr] #[test] fn v2_0() { $crate::common::run_on("v2_0", super::$scenario) }
            #[$attr] #[test] fn v2_4() { $crate::common::run_on("v2_4", super::$scenario) }
            #[$attr] #[test] fn v1_7() { $crate::common::run_on("v1_7", super::$scenario) }
            #[$attr] #[test] fn v2_3_runc_newest() {
                $crate::common::run_on_with_runc("v2_3", $crate::common::NEWEST_RUNC, super::$scenario)
            }
        }
    )*};
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test] fn v2_3() { $crate::common::run_on("v2_3", super::$scenario) }
            #[test] fn v1_6() { $crate::common::run_on("v1_6", super::$scenario) }
            #[test] fn v2_0() { $crate::common::run_on("v2_0", super::$scenario) }
            #[test] fn v2_4() { $crate::common::run_on("v2_4", super::$scenario) }
            #[test] fn v1_7() { $crate::common::run_on("v1_7", super::$scenario) }
            #[test] fn v2_3_runc_newest() {
                $crate::common::run_on_with_runc("v2_3", $crate::common::NEWEST_RUNC, super::$scenario)
            }
        }
    )*};
}

/// Runs `scenario` with the containerd of matrix entry `key` and runc
/// `runc` (a version of tests/peers/runc-matrix) current.
/// `TETHER_RUNC=1.4.4` (a version `scripts/peers.sh runc` builds) puts that
/// runc in place of the newest.
pub fn run_on_with_runc(key: &str, runc: &'static str, scenario: fn()) {
    let runc: &'static str = match std::env::var("TETHER_RUNC") {
        Ok(v) if runc == NEWEST_RUNC && !v.trim().is_empty() => {
            Box::leak(v.trim().to_string().into_boxed_str())
        }
        _ => runc,
    };
    CURRENT_RUNC.with(|c| *c.borrow_mut() = Some(runc));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT_RUNC.with(|c| *c.borrow_mut() = None);
        }
    }
    let _reset = Reset;
    if runc != "system" {
        eprintln!("[harness] runc {runc}");
    }
    run_on(key, scenario);
}

/// Runs `scenario` with the containerd of matrix entry `key` current.
pub fn run_on(key: &str, scenario: fn()) {
    let version = MATRIX
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no containerd {key} in the matrix"));
    CURRENT.with(|c| *c.borrow_mut() = Some(version));
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = None);
        }
    }
    let _reset = Reset;
    scenario();
}

/// The containerd version current on this thread: the one a matrix test
/// runs, else the main target.
pub fn current_version() -> &'static str {
    CURRENT.with(|c| *c.borrow()).unwrap_or(MATRIX[0].1)
}

/// A containerd's binaries.
#[derive(Debug, Clone)]
pub struct ContainerdBins {
    /// `system` or a version number.
    pub version: &'static str,
    /// The directory holding them, put first in the daemon's PATH (so its
    /// own `containerd-shim-runc-v2` is the Go shim of the same version).
    pub dir: PathBuf,
    pub containerd: PathBuf,
    pub ctr: PathBuf,
}

impl ContainerdBins {
    /// The major.minor line, e.g. (2, 3); Debian's is (1, 6).
    pub fn line(&self) -> (u32, u32) {
        let v = if self.version == "system" {
            "1.6"
        } else {
            self.version
        };
        let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// containerd 2.x.
    pub fn is_v2(&self) -> bool {
        self.line().0 >= 2
    }
}

/// The binaries of the current version, building them when missing.
pub fn current_bins() -> ContainerdBins {
    bins(current_version())
}

/// The binaries of `version`, building them when missing (once per test
/// process).
pub fn bins(version: &'static str) -> ContainerdBins {
    static FOUND: Mutex<BTreeMap<&'static str, ContainerdBins>> = Mutex::new(BTreeMap::new());
    let mut found = FOUND.lock().unwrap_or_else(|p| p.into_inner());
    found
        .entry(version)
        .or_insert_with(|| locate(version))
        .clone()
}

fn locate(version: &'static str) -> ContainerdBins {
    if version == "system" {
        let containerd = super::find_in_path("containerd").expect(
            "the end-to-end tests need Debian's containerd in $PATH (apt-get install containerd)",
        );
        let ctr = super::find_in_path("ctr").expect("`ctr` is missing from $PATH");
        let dir = containerd
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        return ContainerdBins {
            version,
            dir,
            containerd,
            ctr,
        };
    }
    let dir = peers_build("containerd", version);
    let b = ContainerdBins {
        version,
        containerd: dir.join("containerd"),
        ctr: dir.join("ctr"),
        dir,
    };
    for p in [&b.containerd, &b.ctr] {
        assert!(
            p.is_file(),
            "containerd {version}: {} is missing",
            p.display()
        );
    }
    b
}

/// The runc version current on this thread: the one a matrix test runs,
/// else "system" (Debian's, in $PATH).
pub fn current_runc_version() -> &'static str {
    CURRENT_RUNC.with(|c| *c.borrow()).unwrap_or("system")
}

/// The directory of the current runc when it is not the one in $PATH: it
/// goes first in containerd's PATH.
pub fn current_runc_dir() -> Option<PathBuf> {
    match current_runc_version() {
        "system" => None,
        v => Some(runc_dir(v)),
    }
}

/// The runc binary the current test uses: `runc` from $PATH for "system",
/// else the cached build of that version.
pub fn runc_binary() -> PathBuf {
    match current_runc_dir() {
        Some(dir) => dir.join("runc"),
        None => PathBuf::from("runc"),
    }
}

/// The bin dir of runc `version`, building it when missing (once per test
/// process).
pub fn runc_dir(version: &'static str) -> PathBuf {
    static FOUND: Mutex<BTreeMap<&'static str, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut found = FOUND.lock().unwrap_or_else(|p| p.into_inner());
    found
        .entry(version)
        .or_insert_with(|| {
            let dir = peers_build("runc", version);
            assert!(
                dir.join("runc").is_file(),
                "runc {version}: {} is missing",
                dir.join("runc").display()
            );
            dir
        })
        .clone()
}

/// `scripts/peers.sh PEER VERSION`: builds the peer when the cache lacks it;
/// returns its bin dir.
fn peers_build(peer: &str, version: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args([peer, version])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "building {peer} {version} with {} failed ({})",
        script.display(),
        out.status
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

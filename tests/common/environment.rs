//! The runtime under test (`TETHER_TEST_RUNTIME` or the tether shim built by
//! cargo) and the checks that everything the tests need is there.

use std::path::{Path, PathBuf};

/// The tether shim binary built by cargo for this test run.
pub const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-tether-v2");

/// Path of the tether shim binary built by cargo for this test run.
pub fn shim_path() -> PathBuf {
    PathBuf::from(SHIM)
}

/// The runtime passed to `ctr run --runtime`: `$TETHER_TEST_RUNTIME`, or the
/// absolute path of the tether shim.
pub fn runtime() -> String {
    match std::env::var("TETHER_TEST_RUNTIME") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => shim_path().display().to_string(),
    }
}

/// The executable containerd will start for `runtime()`: the path itself when
/// it is a path, else `containerd-shim-<name>-<version>` found in `$PATH`
/// (containerd's naming rule for `io.containerd.<name>.<version>`).
pub fn runtime_binary() -> PathBuf {
    let rt = runtime();
    if rt.contains('/') {
        return PathBuf::from(rt);
    }
    let parts: Vec<&str> = rt.split('.').collect();
    assert!(
        parts.len() >= 2,
        "TETHER_TEST_RUNTIME={rt:?} is neither an absolute path nor a runtime name like io.containerd.runc.v2"
    );
    let bin = format!(
        "containerd-shim-{}-{}",
        parts[parts.len() - 2],
        parts[parts.len() - 1]
    );
    let own = super::matrix::current_bins().dir.join(&bin);
    if own.is_file() {
        return own;
    }
    find_in_path(&bin)
        .unwrap_or_else(|| panic!("runtime {rt:?} needs {bin} in $PATH, which is missing"))
}

/// Looks an executable up in `$PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Panics with a clear message unless the tests can really run: root, a
/// containerd, ctr, runc, a static busybox and the runtime under test.
/// These tests are never skipped: a skipped test proves nothing.
pub fn require_environment() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the tether end-to-end tests need root (they run a real containerd and runc); \
         run them as root instead of skipping them"
    );
    for tool in ["containerd", "ctr", "runc"] {
        assert!(
            find_in_path(tool).is_some(),
            "the end-to-end tests need `{tool}` in $PATH, and it is missing"
        );
    }
    assert!(
        Path::new("/bin/busybox").is_file(),
        "the end-to-end tests build container root filesystems from /bin/busybox \
         (Debian package busybox-static), which is missing"
    );
    let bin = runtime_binary();
    assert!(
        bin.is_file(),
        "runtime binary {} (runtime {:?}) does not exist",
        bin.display(),
        runtime()
    );
}

/// Panics unless the tests that drive runc without containerd can run: root,
/// runc and a static busybox.
pub fn require_root_and_runc() {
    assert!(nix::unistd::geteuid().is_root(), "these tests need root");
    for bin in ["runc", "/bin/busybox"] {
        let found = if bin.starts_with('/') {
            Path::new(bin).is_file()
        } else {
            find_in_path(bin).is_some()
        };
        assert!(
            found,
            "{bin} is required (apt-get install runc busybox-static)"
        );
    }
}

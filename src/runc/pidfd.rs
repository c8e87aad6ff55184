//! Whether the runtime takes `--pidfd-socket` (runc 1.2 and newer, on
//! `create`, `run` and `exec`): with it, runc sends a pidfd for the process
//! it started, and the shim signals that process through it, never a pid
//! that may have been reused.
//!
//! The binary itself is asked, by what `create --help` and `exec --help`
//! list, not by its version string: a wrapper script, a distribution's
//! patched runc or another runtime is judged by what it accepts. The answer
//! is kept per binary file (path, device, inode, size, modification and
//! change times), so a runc replaced on disk is asked again: in the daemon,
//! and in a file under [`KNOWN_DIR`] that later shims read instead of
//! asking (each shim is a new process, and the two `--help` runs cost the
//! first Create of every pod and every `ctr run` about 10 ms). A binary
//! whose help cannot be read in time (missing, failing, hanging) is taken
//! not to, and that answer is not written down; so is any runtime when the
//! kernel has no pidfds (before 5.3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::log::Invocation;
use super::pidfd_store as store;
use super::Runc;

/// How long one `--help` may take.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// The flag looked for.
const FLAG: &[u8] = b"--pidfd-socket";

/// Where the answers are written down for the shims that come later: a
/// directory of root's own (0700, on /run's tmpfs, so gone at boot), one
/// file per binary file, named by the hash of its [`Identity`].
pub const KNOWN_DIR: &str = "/run/tether/runtime-flags";

/// One binary file, as found on disk: its path, and its device, inode,
/// size, mtime and ctime (seconds, nanoseconds). ctime cannot be set back
/// by hand, so a file rewritten with the same size and mtime differs too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Identity {
    pub(super) path: PathBuf,
    pub(super) file: Option<[i64; 7]>,
}

static KNOWN: Mutex<BTreeMap<Identity, bool>> = Mutex::new(BTreeMap::new());

impl Runc {
    /// Whether this runtime takes `--pidfd-socket` on `create` and `exec`.
    pub async fn takes_pidfd_socket(&self) -> bool {
        if !kernel_has_pidfds() {
            return false;
        }
        let binary = &self.record.binary;
        let id = identity(binary);
        if let Some(known) = lock().get(&id) {
            return *known;
        }
        let dir = Path::new(KNOWN_DIR);
        if let Some(known) = store::read(dir, &id) {
            lock().insert(id, known);
            return known;
        }
        // Not under the lock: two creates at once may both ask, harmlessly.
        let (create, exec) = tokio::join!(self.lists_flag("create"), self.lists_flag("exec"));
        let takes = create.unwrap_or(false) && exec.unwrap_or(false);
        tracing::info!(binary, path = %id.path.display(), takes, "whether the runtime takes --pidfd-socket");
        if create.is_some() && exec.is_some() {
            store::write(dir, &id, takes);
        }
        lock().insert(id, takes);
        takes
    }

    /// Whether `<binary> <sub> --help` lists the flag; None when the help
    /// could not be read.
    async fn lists_flag(&self, sub: &'static str) -> Option<bool> {
        let mut cmd = Command::new(&self.record.binary);
        cmd.args([sub, "--help"]).env_remove("NOTIFY_SOCKET");
        // No log file: `--help` writes none (and nothing is kept).
        let inv = Invocation {
            cmd,
            log: PathBuf::new(),
        };
        let op = if sub == "create" {
            "create --help"
        } else {
            "exec --help"
        };
        match self.run_within(op, inv, true, Some(PROBE_LIMIT)).await {
            Ok(out) => Some(out.stdout.windows(FLAG.len()).any(|w| w == FLAG)),
            Err(e) => {
                tracing::warn!(error = %e, "asking the runtime for its flags");
                None
            }
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<Identity, bool>> {
    KNOWN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether this kernel has pidfds (pidfd_open, Linux 5.3).
fn kernel_has_pidfds() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| crate::sys::pidfd_open(std::process::id()).is_ok())
}

/// The file `binary` runs (looked up in PATH as exec does when it has no
/// slash), and what tells one version of that file from another.
pub(super) fn identity(binary: &str) -> Identity {
    use std::os::unix::fs::MetadataExt;
    let path = if binary.contains('/') {
        PathBuf::from(binary)
    } else {
        in_path(binary).unwrap_or_else(|| PathBuf::from(binary))
    };
    let file = std::fs::metadata(&path).ok().map(|m| {
        [
            m.dev() as i64,
            m.ino() as i64,
            m.size() as i64,
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ]
    });
    Identity { path, file }
}

/// The first executable file named `name` in PATH.
fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_finds_the_file_in_path_and_tells_versions_apart() {
        let sh = identity("sh");
        assert!(sh.path.is_absolute(), "{sh:?}");
        assert!(sh.file.is_some());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("runc");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let before = identity(f.to_str().unwrap());
        std::fs::write(&f, "#!/bin/sh\necho a longer one\n").unwrap();
        assert_ne!(before, identity(f.to_str().unwrap()));
        assert_eq!(identity("/nonexistent/runc").file, None);
    }
}

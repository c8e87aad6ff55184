//! Container root filesystems built from /bin/busybox: `Rootfs`, in a
//! temporary directory removed (after killing its users) on drop, for the
//! containerd tests, and `make_rootfs`, in a directory the caller owns, for
//! the direct ones.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::environment::require_environment;
use super::mounts::unmount_all_under;
use super::procs::kill_processes_where;
use super::util::describe_output;

/// A container root filesystem made of /bin/busybox and a symlink per applet,
/// in its own temporary directory.
pub struct Rootfs {
    tmp: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Rootfs {
    /// Builds `<tmp>/rootfs` with /bin/busybox, every applet of
    /// `busybox --list` as a symlink in /bin, and /proc /dev /sys /tmp /etc.
    pub fn new() -> Rootfs {
        require_environment();
        let tmp = tempfile::Builder::new()
            .prefix("tether-e2e-rootfs-")
            .tempdir()
            .expect("creating a temporary directory for the rootfs");
        let base = fs::canonicalize(tmp.path()).expect("canonicalizing the temp dir");
        let path = base.join("rootfs");
        let list = Command::new("/bin/busybox")
            .arg("--list")
            .stdin(Stdio::null())
            .output()
            .expect("running busybox --list");
        assert!(
            list.status.success(),
            "busybox --list failed: {}",
            describe_output(&list)
        );
        let applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
            .map(str::to_string)
            .collect();
        for needed in [
            "sh",
            "echo",
            "cat",
            "sleep",
            "dd",
            "head",
            "sha256sum",
            "true",
            "false",
            "seq",
            "ls",
        ] {
            assert!(
                applets.iter().any(|a| a == needed),
                "/bin/busybox has no `{needed}` applet"
            );
        }
        install_busybox(
            &path,
            &["bin", "proc", "dev", "sys", "tmp", "etc"],
            &applets,
        );
        fs::write(path.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("etc/passwd");
        fs::write(path.join("etc/group"), "root:x:0:\n").expect("etc/group");
        Rootfs {
            tmp: Some(tmp),
            path,
        }
    }

    /// Absolute host path of the root filesystem.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Host path of `rel` (a path inside the container, without leading `/`).
    pub fn host_path(&self, rel: &str) -> PathBuf {
        self.path.join(rel.trim_start_matches('/'))
    }

    /// Writes a file into the root filesystem (visible to running containers,
    /// whose root is a bind mount of this directory).
    pub fn write_file(&self, rel: &str, data: &[u8]) {
        let p = self.host_path(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("creating parent directory in rootfs");
        }
        fs::write(&p, data).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }
}

/// A root filesystem at `rootfs` of busybox-static and the applets the
/// direct tests use (no /etc).
pub fn make_rootfs(rootfs: &Path) {
    install_busybox(
        rootfs,
        &["bin", "proc", "dev", "sys", "tmp"],
        &[
            "sh", "sleep", "echo", "cat", "true", "seq", "stty", "head", "ls", "tty",
        ],
    );
}

/// Creates `dirs` under `root`, copies /bin/busybox to `root/bin/busybox`
/// and links each of `applets` to it in `root/bin`.
fn install_busybox(root: &Path, dirs: &[&str], applets: &[impl AsRef<str>]) {
    for d in dirs {
        fs::create_dir_all(root.join(d)).expect("creating rootfs directories");
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copying /bin/busybox");
    for applet in applets {
        symlink("busybox", root.join("bin").join(applet.as_ref()))
            .expect("creating applet symlink");
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        let Some(tmp) = self.tmp.take() else { return };
        let base = tmp.path().to_path_buf();
        let killed = kill_processes_where(|p| p.is_rooted_under(&base));
        if !killed.is_empty() {
            eprintln!(
                "[harness] killed leftover processes using rootfs {}: {killed:?}",
                base.display()
            );
        }
        unmount_all_under(&base);
        if let Err(e) = tmp.close() {
            eprintln!("[harness] removing {}: {e}", base.display());
        }
    }
}

//! Running the OCI runtime (runc or a compatible binary).
//!
//! Every invocation goes through the [`Reaper`], which claims the runtime's
//! exit as it spawns it. Each invocation logs JSON to a file of its own in
//! the bundle: when it fails, the last error in that file becomes the error
//! message, whatever other invocations run at the same time. Afterwards the
//! file is appended to the bundle's `log.json`, the history, and removed.

mod log;
mod pidfd;
mod pidfd_store;
mod run;
mod timeouts;

use log::Invocation;
pub use timeouts::Timeouts;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::reaper::Reaper;
use crate::records::RuntimeRecord;

/// How the runtime is invoked for one container.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RuntimeOptions {
    /// Runtime binary; `runc` when empty.
    pub binary: String,
    /// `--root`; `/run/containerd/runc/<namespace>` when empty.
    pub root: String,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// `create --no-pivot`.
    pub no_pivot_root: bool,
    /// `create --no-new-keyring`.
    pub no_new_keyring: bool,
    /// cgroup `start` moves the shim daemon into.
    pub shim_cgroup: String,
    /// Owner of the container's stdio pipes (user-namespaced containers).
    pub io_uid: u32,
    /// Group of the container's stdio pipes.
    pub io_gid: u32,
    /// criu binary for checkpoint and restore (`--criu`).
    pub criu_path: String,
    /// Default checkpoint image directory.
    pub criu_image_path: String,
    /// Default criu work directory.
    pub criu_work_path: String,
    /// How long each runtime sub-command may run.
    pub timeouts: Timeouts,
    /// The most output each stream keeps while its reader is away
    /// (`OutputSpillMax`).
    pub output_spill_max: SpillMax,
}

/// How to checkpoint (containerd.runc.v1.CheckpointOptions, in our terms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointArgs {
    /// Where the image goes.
    pub image_path: PathBuf,
    /// criu's work directory (its logs land here).
    pub work_path: PathBuf,
    /// Stop the container after the checkpoint (else it keeps running).
    pub exit: bool,
    /// `--tcp-established`.
    pub open_tcp: bool,
    /// `--ext-unix-sk`.
    pub external_unix_sockets: bool,
    /// `--shell-job`.
    pub terminal: bool,
    /// `--file-locks`.
    pub file_locks: bool,
    /// `--empty-ns` (repeated).
    pub empty_namespaces: Vec<String>,
    /// `--manage-cgroups-mode`.
    pub cgroups_mode: String,
    /// `--parent-path`.
    pub parent_path: String,
}

/// The stdio a runtime invocation hands to the container process.
#[derive(Default)]
pub struct ProcessStdio {
    /// The container's stdin (None: /dev/null).
    pub stdin: Option<OwnedFd>,
    /// The container's stdout (None: /dev/null).
    pub stdout: Option<OwnedFd>,
    /// The container's stderr (None: /dev/null).
    pub stderr: Option<OwnedFd>,
}

/// The sockets `create` and `exec` give the runtime, to hand descriptors
/// back on.
#[derive(Debug, Default)]
pub struct Sockets {
    /// `--console-socket`: the pty master of a terminal.
    pub console: Option<PathBuf>,
    /// `--pidfd-socket`: a pidfd for the process started (only for a
    /// runtime that takes it, see [`Runc::takes_pidfd_socket`]).
    pub pidfd: Option<PathBuf>,
}

impl Sockets {
    fn add_to(&self, cmd: &mut Command) {
        if let Some(socket) = &self.console {
            cmd.arg("--console-socket").arg(socket);
        }
        if let Some(socket) = &self.pidfd {
            cmd.arg("--pidfd-socket").arg(socket);
        }
    }
}

/// A runtime bound to one container's bundle.
#[derive(Clone)]
pub struct Runc {
    record: RuntimeRecord,
    log: PathBuf,
    criu: String,
    timeouts: Timeouts,
    reaper: Reaper,
}

/// What a finished runtime invocation printed.
struct Output {
    stdout: Vec<u8>,
}

impl Runc {
    /// A runtime for the container whose bundle is `bundle`.
    pub fn new(opts: &RuntimeOptions, namespace: &str, bundle: &Path, reaper: Reaper) -> Runc {
        Runc {
            record: record_for(opts, namespace),
            log: bundle.join(crate::records::RUNC_LOG_FILE),
            criu: opts.criu_path.clone(),
            timeouts: opts.timeouts,
            reaper,
        }
    }

    /// What `delete` will need to find this runtime again.
    pub fn record(&self) -> &RuntimeRecord {
        &self.record
    }

    fn command(&self) -> Invocation {
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self
            .log
            .with_file_name(format!(".runc-{}-{n}.json", std::process::id()));
        let mut cmd = Command::new(&self.record.binary);
        // containerd run by systemd (Type=notify) has NOTIFY_SOCKET, and the
        // shim inherits it. Given it, runc hands the container a notify
        // socket of its own and `runc start` waits for the container to send
        // READY=1: forever for anything but a systemd service.
        cmd.env_remove("NOTIFY_SOCKET");
        cmd.arg("--root").arg(&self.record.root);
        cmd.arg("--log").arg(&log).args(["--log-format", "json"]);
        if self.record.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        Invocation { cmd, log }
    }

    /// `runc create`: the container exists afterwards, its init waiting to be
    /// started, with `stdio` as its stdio.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        opts: &RuntimeOptions,
        sockets: &Sockets,
        stdio: ProcessStdio,
    ) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("create").arg("--bundle").arg(bundle);
        cmd.arg("--pid-file").arg(pid_file);
        sockets.add_to(&mut cmd);
        if opts.no_pivot_root {
            cmd.arg("--no-pivot");
        }
        if opts.no_new_keyring {
            cmd.arg("--no-new-keyring");
        }
        cmd.arg(id);
        set_stdio(&mut cmd, stdio);
        self.run("create", cmd, false).await.map(drop)
    }

    /// `runc exec --detach`: starts a process in the container from the
    /// process spec in `spec_file` (a file, so arguments of any length work).
    pub async fn exec(
        &self,
        id: &str,
        spec_file: &Path,
        pid_file: &Path,
        sockets: &Sockets,
        stdio: ProcessStdio,
    ) -> Result<()> {
        let mut cmd = self.command();
        cmd.args(["exec", "--detach", "--process"]).arg(spec_file);
        cmd.arg("--pid-file").arg(pid_file);
        sockets.add_to(&mut cmd);
        cmd.arg(id);
        set_stdio(&mut cmd, stdio);
        self.run("exec", cmd, false).await.map(drop)
    }

    /// `runc start`.
    pub async fn start(&self, id: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.args(["start", id]);
        self.run("start", cmd, true).await.map(drop)
    }

    /// `runc kill [--all] id signal`.
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run("kill", cmd, true).await.map(drop)
    }

    /// `runc delete [--force] id`.
    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        self.run("delete", cmd, true).await.map(drop)
    }

    /// `runc pause id`.
    pub async fn pause(&self, id: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.args(["pause", id]);
        self.run("pause", cmd, true).await.map(drop)
    }

    /// `runc resume id`.
    pub async fn resume(&self, id: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.args(["resume", id]);
        self.run("resume", cmd, true).await.map(drop)
    }

    /// `runc update --resources <file> id`.
    pub async fn update(&self, id: &str, resources: &Path) -> Result<()> {
        let mut cmd = self.command();
        cmd.args(["update", "--resources"]).arg(resources).arg(id);
        self.run("update", cmd, true).await.map(drop)
    }

    /// `runc checkpoint`: dumps the container with criu.
    pub async fn checkpoint(&self, id: &str, a: &CheckpointArgs) -> Result<()> {
        let mut cmd = self.criu_command();
        cmd.arg("checkpoint");
        cmd.arg("--image-path").arg(&a.image_path);
        cmd.arg("--work-path").arg(&a.work_path);
        if !a.exit {
            cmd.arg("--leave-running");
        }
        for (on, flag) in [
            (a.open_tcp, "--tcp-established"),
            (a.external_unix_sockets, "--ext-unix-sk"),
            (a.terminal, "--shell-job"),
            (a.file_locks, "--file-locks"),
        ] {
            if on {
                cmd.arg(flag);
            }
        }
        for ns in &a.empty_namespaces {
            cmd.args(["--empty-ns", ns]);
        }
        if !a.cgroups_mode.is_empty() {
            cmd.args(["--manage-cgroups-mode", &a.cgroups_mode]);
        }
        if !a.parent_path.is_empty() {
            cmd.args(["--parent-path", &a.parent_path]);
        }
        cmd.arg(id);
        self.run("checkpoint", cmd, true).await.map(drop)
    }

    /// `runc restore --detach`: the container from a checkpoint image, with
    /// `stdio` as its stdio.
    #[allow(clippy::too_many_arguments)]
    pub async fn restore(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        a: &CheckpointArgs,
        opts: &RuntimeOptions,
        console_socket: Option<&Path>,
        stdio: ProcessStdio,
    ) -> Result<()> {
        let mut cmd = self.criu_command();
        cmd.args(["restore", "--detach", "--bundle"]).arg(bundle);
        cmd.arg("--pid-file").arg(pid_file);
        cmd.arg("--image-path").arg(&a.image_path);
        cmd.arg("--work-path").arg(&a.work_path);
        if let Some(socket) = console_socket {
            cmd.arg("--console-socket").arg(socket);
        }
        if opts.no_pivot_root {
            cmd.arg("--no-pivot");
        }
        if a.terminal {
            cmd.arg("--shell-job");
        }
        cmd.arg(id);
        set_stdio(&mut cmd, stdio);
        self.run("restore", cmd, false).await.map(drop)
    }

    fn criu_command(&self) -> Invocation {
        let mut cmd = self.command();
        if !self.criu.is_empty() {
            cmd.arg("--criu").arg(&self.criu);
        }
        cmd
    }

    /// `runc ps --format json id`: the pids in the container.
    pub async fn ps(&self, id: &str) -> Result<Vec<u32>> {
        let mut cmd = self.command();
        cmd.args(["ps", "--format", "json", id]);
        let out = self.run("ps", cmd, true).await?;
        serde_json::from_slice::<Option<Vec<u32>>>(&out.stdout)
            .map(Option::unwrap_or_default)
            .map_err(|e| Error::Runtime {
                binary: self.record.binary.clone(),
                op: "ps",
                message: format!("unreadable output: {e}"),
            })
    }
}

fn set_stdio(cmd: &mut Command, stdio: ProcessStdio) {
    cmd.stdin(stdio.stdin.map_or_else(Stdio::null, Stdio::from));
    cmd.stdout(stdio.stdout.map_or_else(Stdio::null, Stdio::from));
    cmd.stderr(stdio.stderr.map_or_else(Stdio::null, Stdio::from));
}

/// Fills in the defaults containerd's runc shim uses.
pub fn record_for(opts: &RuntimeOptions, namespace: &str) -> RuntimeRecord {
    RuntimeRecord {
        binary: if opts.binary.is_empty() {
            "runc".into()
        } else {
            opts.binary.clone()
        },
        root: if opts.root.is_empty() {
            Path::new("/run/containerd/runc").join(namespace)
        } else {
            Path::new(&opts.root).join(namespace)
        },
        systemd_cgroup: opts.systemd_cgroup,
        shim_pid: 0,
    }
}

/// The default cap on the bytes one output stream holds
/// (`OutputSpillMax`): 64 MiB.
pub const DEFAULT_SPILL_MAX: u64 = 64 << 20;

/// The cap of runtime option `OutputSpillMax`, in bytes per output stream;
/// 0 turns spilling off (output then waits for its reader, and so does the
/// container once the pipes are full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SpillMax(pub u64);

impl Default for SpillMax {
    fn default() -> SpillMax {
        SpillMax(DEFAULT_SPILL_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_gets_the_namespace_appended() {
        let r = record_for(&RuntimeOptions::default(), "k8s.io");
        assert_eq!(r.binary, "runc");
        assert_eq!(r.root, Path::new("/run/containerd/runc/k8s.io"));
        let r = record_for(
            &RuntimeOptions {
                binary: "/usr/bin/crun".into(),
                root: "/run/x".into(),
                ..Default::default()
            },
            "ns",
        );
        assert_eq!(
            (r.binary.as_str(), r.root.as_path()),
            ("/usr/bin/crun", Path::new("/run/x/ns"))
        );
    }
}

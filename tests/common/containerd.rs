//! `Containerd`: a private containerd daemon in a temporary directory
//! (start, SIGKILL, restart) and what belongs to it on the host (bundles,
//! shim sockets and processes, container processes). The leftover check
//! after a task and the cleanup its `Drop` does are in `containerd/cleanup.rs`,
//! `ctr` invocations in `ctr.rs`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::environment::{require_environment, runtime, runtime_binary};
use super::events::EventStream;
use super::matrix::{current_bins, current_runc_dir, current_runc_version, ContainerdBins};
use super::procs::{all_processes, kill_and_reap, ProcInfo};
use super::sockets::socket_path_of_address;
use super::util::{next_serial, poll_until, sha256_hex, unique_name};
use super::{RUNC_ROOT, SETTLE_TIMEOUT, SHIM_SOCKET_DIR};

mod cleanup;

const LOG_TAIL_LINES: usize = 200;

/// A private containerd: its config, root, state, socket, log and fifo dir all
/// live in one temporary directory, and it serves one unique namespace.
pub struct Containerd {
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    namespace: String,
    /// containerd's grpc socket (`ctr --address`).
    pub(super) address: PathBuf,
    config: PathBuf,
    state: PathBuf,
    log: PathBuf,
    /// `ctr run --fifo-dir`.
    pub fifo_dir: PathBuf,
    child: Option<Child>,
    /// Every shim socket seen, so `Drop` can remove it if the shim could not.
    known_sockets: Mutex<BTreeSet<PathBuf>>,
    /// Every id `unique_id` gave out: the sockets of this test's shims.
    issued_ids: Mutex<Vec<String>>,
    /// The containerd version under test and its binaries.
    pub bins: ContainerdBins,
    /// The directory of the runc under test, when it is not the one in
    /// $PATH.
    pub runc_dir: Option<PathBuf>,
    /// The socket of `NOTIFY_SOCKET`, which containerd gets as under
    /// systemd (its unit is `Type=notify`), and so its shims too.
    notify: Option<std::os::unix::net::UnixDatagram>,
}

impl Containerd {
    /// Writes a config and starts containerd; returns once it answers
    /// `ctr version`.
    pub fn start() -> Containerd {
        Containerd::start_configured(|_| {})
    }

    /// Like `start`, with `configure` changing the config's settings first
    /// (the config itself is written by `testenv::config`, for the version
    /// under test).
    pub fn start_configured(configure: impl FnOnce(&mut testenv::config::Settings)) -> Containerd {
        require_environment();
        let bins = current_bins();
        let tmp = tempfile::Builder::new()
            .prefix("tether-e2e-")
            .tempdir()
            .expect("creating a temporary directory for containerd");
        let dir = fs::canonicalize(tmp.path()).expect("canonicalizing the temp dir");
        let namespace = unique_name("tether-test");
        let fifo_dir = dir.join("fifo");
        let (major, minor) = bins.line();
        let version = testenv::config::Version { major, minor };
        let mut settings = testenv::config::Settings::in_dir(&dir);
        settings.log_level = Some("debug".into());
        settings.disable_cri(version);
        configure(&mut settings);
        let dirs = settings.dirs.clone().expect("a private containerd's dirs");
        for d in [&dirs.root, &dirs.state, &fifo_dir] {
            fs::create_dir_all(d).expect("creating containerd directories");
        }
        let config = testenv::config::write(&settings, version, &dir)
            .unwrap_or_else(|e| panic!("writing the config of containerd {major}.{minor}: {e}"));
        let (address, state, log) = (dirs.address, dirs.state, dir.join("containerd.log"));
        eprintln!(
            "[harness] containerd {} with runc {} in {} (namespace {namespace}); runtime under test: {} ({})",
            bins.version,
            current_runc_version(),
            dir.display(),
            runtime(),
            runtime_binary().display()
        );
        let mut c = Containerd {
            tmp: Some(tmp),
            dir,
            namespace,
            address,
            config,
            state,
            log,
            fifo_dir,
            child: None,
            known_sockets: Mutex::new(BTreeSet::new()),
            issued_ids: Mutex::new(Vec::new()),
            bins,
            runc_dir: current_runc_dir(),
            notify: None,
        };
        c.spawn_daemon();
        c
    }

    fn spawn_daemon(&mut self) {
        assert!(self.child.is_none(), "containerd is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening containerd log");
        let log2 = log.try_clone().expect("cloning log handle");
        let mut path = format!(
            "{}:{}",
            self.bins.dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // The runc under test first: Debian's containerd lives in /usr/bin,
        // next to Debian's runc.
        if let Some(runc) = &self.runc_dir {
            path = format!("{}:{path}", runc.display());
        }
        // Both shims run the first `runc` of this PATH: make sure it is the
        // one under test.
        // (Compared as files: Debian's /usr/bin/runc links to /usr/sbin/runc.)
        let first = std::env::split_paths(&path)
            .map(|d| d.join("runc"))
            .find(|p| p.is_file())
            .and_then(|p| fs::canonicalize(p).ok());
        let want = match &self.runc_dir {
            Some(dir) => Some(dir.join("runc")),
            None => super::find_in_path("runc"),
        }
        .and_then(|p| fs::canonicalize(p).ok());
        assert_eq!(first, want, "containerd's PATH would run another runc");
        // containerd as systemd runs it: with NOTIFY_SOCKET set, which its
        // shims inherit. (runc given that variable makes `start` wait for the
        // container's own READY=1, so a shim must not pass it on.)
        let notify_path = self.dir.join("notify.sock");
        if self.notify.is_none() {
            let _ = fs::remove_file(&notify_path);
            self.notify = Some(
                std::os::unix::net::UnixDatagram::bind(&notify_path)
                    .expect("binding the NOTIFY_SOCKET socket"),
            );
        }
        let child = Command::new(&self.bins.containerd)
            .env("PATH", path)
            .env("NOTIFY_SOCKET", &notify_path)
            .arg("--config")
            .arg(&self.config)
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawning containerd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let ready = poll_until(SETTLE_TIMEOUT, || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "containerd exited during startup ({status})\n{}",
                        self.log_tail()
                    );
                }
            }
            Command::new(&self.bins.ctr)
                .arg("--address")
                .arg(&self.address)
                .args(["--connect-timeout", "2s", "version"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
                .then_some(())
        });
        assert!(
            ready.is_some(),
            "containerd did not answer `ctr version` within {SETTLE_TIMEOUT:?}\n{}",
            self.log_tail()
        );
    }

    /// The namespace every `ctr` call of this instance uses.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The temporary directory holding everything of this instance.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A container id unique to this instance: `<tag>-<n>`.
    pub fn unique_id(&self, tag: &str) -> String {
        let id = format!("{tag}-{}", next_serial());
        self.issued_ids
            .lock()
            .expect("issued_ids lock")
            .push(id.clone());
        id
    }

    /// The socket paths of this instance's shims: the conventional path of
    /// every id it gave out, and every socket seen.
    fn own_sockets(&self) -> BTreeSet<PathBuf> {
        let ids = self.issued_ids.lock().expect("issued_ids lock").clone();
        let mut own: BTreeSet<PathBuf> = ids
            .iter()
            .map(|id| self.conventional_socket_path(id))
            .collect();
        own.extend(
            self.known_sockets
                .lock()
                .expect("known_sockets lock")
                .iter()
                .cloned(),
        );
        own
    }

    /// Where containerd keeps the bundle of task `id` (the shim's cwd).
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.tasks_state_dir().join(id)
    }

    /// `<state>/io.containerd.runtime.v2.task/<namespace>`.
    pub fn tasks_state_dir(&self) -> PathBuf {
        self.state
            .join("io.containerd.runtime.v2.task")
            .join(&self.namespace)
    }

    /// `/run/containerd/runc/<namespace>`.
    pub fn runc_root(&self) -> PathBuf {
        Path::new(RUNC_ROOT).join(&self.namespace)
    }

    /// The shim address containerd recorded in the bundle of `id` (e.g.
    /// `unix:///path`), if there is one.
    pub fn shim_address(&self, id: &str) -> Option<String> {
        let bundle = self.bundle_dir(id);
        if let Ok(s) = fs::read_to_string(bundle.join("address")) {
            return Some(s.trim().to_string());
        }
        // containerd 2.x's own record (shims need not write `address`).
        let json = fs::read_to_string(bundle.join("bootstrap.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&json).ok()?;
        Some(v.get("address")?.as_str()?.to_string())
    }

    /// The filesystem path of the shim socket of `id` (panics if the bundle
    /// has no `address` file or it is not a `unix://` path address), which
    /// is remembered so `Drop` can remove it if the shim does not.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        let addr = self.shim_address(id).unwrap_or_else(|| {
            panic!("bundle of {id} has no address file\n{}", self.diagnostics())
        });
        let path = socket_path_of_address(&addr)
            .unwrap_or_else(|| panic!("shim address {addr:?} of {id} is not a unix:// path"));
        self.known_sockets
            .lock()
            .expect("known_sockets lock")
            .insert(path.clone());
        path
    }

    /// The socket path containerd 1.6's own shims derive for `id`:
    /// `/run/containerd/s/<hex sha256 of "<address>/<namespace>/<id>">`.
    /// Other shims may name their socket differently.
    pub fn conventional_socket_path(&self, id: &str) -> PathBuf {
        let key = format!("{}/{}/{}", self.address.display(), self.namespace, id);
        Path::new(SHIM_SOCKET_DIR).join(sha256_hex(key.as_bytes()))
    }

    /// Starts `ctr events` in the background (output to a file in the temp
    /// dir) and returns once it provably receives events.
    pub fn events(&self) -> EventStream {
        EventStream::start(self)
    }

    /// SIGKILLs containerd by PID and reaps it.
    pub fn kill9(&mut self) {
        kill_and_reap(self.child.take().expect("containerd is not running"));
    }

    /// Stops containerd with SIGTERM (SIGKILL after 10 s) by PID and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let exited = poll_until(Duration::from_secs(10), || match child.try_wait() {
                Ok(None) => None,
                Ok(Some(_)) | Err(_) => Some(()),
            });
            if exited.is_none() {
                kill_and_reap(child);
            }
        }
    }

    /// Starts containerd again with the same config and directories.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart() while containerd still runs: call kill9() or stop() first"
        );
        self.spawn_daemon();
    }

    /// containerd's log file (shims' logs land in it too).
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!(
            "--- containerd log ({}, last {} lines) ---\n{}\n--- end of containerd log ---",
            self.log.display(),
            lines.len() - start,
            lines[start..].join("\n")
        )
    }

    /// Log tail plus the processes that belong to this test.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "namespace: {}, dir: {}",
            self.namespace,
            self.dir.display()
        );
        for p in self.related_processes() {
            let _ = writeln!(s, "related process: {}", p.describe());
        }
        s.push_str(&self.log_tail());
        s
    }

    /// Live processes of the shim under test that serve this namespace:
    /// the runtime binary with the namespace in its command line, or any
    /// process whose cwd is a bundle of this namespace (a shim's cwd is its
    /// bundle). Excludes container processes.
    pub fn shim_processes(&self) -> Vec<ProcInfo> {
        let bin = runtime_binary();
        let bin = fs::canonicalize(&bin).unwrap_or(bin);
        let tasks_dir = self.tasks_state_dir();
        let me = std::process::id() as i32;
        all_processes()
            .into_iter()
            .filter(|p| p.pid != me && !p.is_zombie())
            .filter(|p| !self.is_container_process(p))
            .filter(|p| {
                (p.exe.as_deref() == Some(bin.as_path()) && p.has_arg(&self.namespace))
                    || p.cwd.as_deref().is_some_and(|c| c.starts_with(&tasks_dir))
            })
            .collect()
    }

    /// Live container processes of this namespace: their cgroup path is
    /// `/<namespace>/<id>` (ctr's default cgroup path).
    pub fn container_processes(&self) -> Vec<ProcInfo> {
        all_processes()
            .into_iter()
            .filter(|p| !p.is_zombie() && self.is_container_process(p))
            .collect()
    }

    fn is_container_process(&self, p: &ProcInfo) -> bool {
        p.cgroup_paths()
            .iter()
            .any(|c| c.split('/').nth(1) == Some(self.namespace.as_str()))
    }

    /// True if `p` belongs to this test in any way: a shim or container
    /// process, a process rooted or working under the temp dir, or one
    /// mentioning the namespace or temp dir on its command line (including
    /// ctr clients).
    fn is_related(&self, p: &ProcInfo) -> bool {
        let dir = self.dir.to_string_lossy();
        p.has_arg(&self.namespace)
            || p.cmdline.iter().any(|a| mentions_dir(a, &dir))
            || p.is_rooted_under(&self.dir)
            || self.is_container_process(p)
    }

    /// Every live process that belongs to this test in any way (see
    /// `is_related`). Excludes this test process.
    pub fn related_processes(&self) -> Vec<ProcInfo> {
        let me = std::process::id() as i32;
        all_processes()
            .into_iter()
            .filter(|p| p.pid != me && !p.is_zombie() && self.is_related(p))
            .collect()
    }
}

/// True if `arg` contains the path `dir` followed by the end of the
/// argument, `/`, a quote or a space (so `/tmp/a` does not match `/tmp/ab`).
fn mentions_dir(arg: &str, dir: &str) -> bool {
    arg.match_indices(dir).any(|(i, _)| {
        matches!(
            arg[i + dir.len()..].chars().next(),
            None | Some('/') | Some('"') | Some('\'') | Some(' ')
        )
    })
}

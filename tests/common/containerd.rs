//! `Containerd`: a private containerd daemon in a testenv environment (its
//! own cgroup and mount, network, cgroup, IPC and UTS namespaces; start,
//! SIGKILL, restart inside) and what belongs to it (bundles, shim sockets
//! and processes, container processes), seen from the host: processes keep
//! their host PIDs, and what the environment has of its own (/run with the
//! shim sockets and runc's state, its cgroup tree under /sys/fs/cgroup, its
//! mounts) is reached through its init (`host_path`, `mounts_under`). The
//! leftover check after a task and the teardown its `Drop` does are in
//! `containerd/cleanup.rs`, `ctr` invocations in `ctr.rs`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::environment::{require_environment, runtime, runtime_binary, SHIM};
use super::events::EventStream;
use super::matrix::{current_bins, current_runc_dir, current_runc_version, ContainerdBins};
use super::procs::{all_processes, ProcInfo};
use super::sockets::socket_path_of_address;
use super::util::{next_serial, poll_until, sha256_hex, unique_name};
use super::{RUNC_ROOT, SETTLE_TIMEOUT, SHIM_SOCKET_DIR};

mod cleanup;

const LOG_TAIL_LINES: usize = 200;

/// A private containerd in an environment of its own: its config, root,
/// state, socket, log and fifo dir all live in the environment's directory,
/// and it serves one unique namespace.
pub struct Containerd {
    /// `None` once torn down.
    env: Option<testenv::Env>,
    dir: PathBuf,
    namespace: String,
    /// containerd's grpc socket (`ctr --address`).
    pub(super) address: PathBuf,
    config: PathBuf,
    state: PathBuf,
    log: PathBuf,
    /// `ctr run --fifo-dir`.
    pub fifo_dir: PathBuf,
    /// Whether containerd runs (`kill9`/`stop` end it, `restart` starts it).
    running: bool,
    /// Every shim socket seen, so `Drop` can remove it if the shim could not.
    known_sockets: Mutex<BTreeSet<PathBuf>>,
    /// Every id `unique_id` gave out: the sockets of this test's shims.
    issued_ids: Mutex<Vec<String>>,
    /// The containerd version under test and its binaries.
    pub bins: ContainerdBins,
    /// The directory of the runc under test, when it is not the one in
    /// $PATH.
    pub runc_dir: Option<PathBuf>,
    /// The socket of `NOTIFY_SOCKET` (a host path, which the environment
    /// shares), which containerd gets as under systemd (its unit is
    /// `Type=notify`), and so its shims too.
    notify: (PathBuf, std::os::unix::net::UnixDatagram),
}

/// The `testenv` binary: testenv is another crate of the workspace, so
/// cargo gives these tests no `CARGO_BIN_EXE_testenv`; the workspace's build
/// puts it next to the shim (`cargo test --test NAME` alone needs `cargo
/// build -p testenv` first).
pub fn testenv_binary() -> PathBuf {
    let bin = Path::new(SHIM).with_file_name("testenv");
    assert!(
        bin.is_file(),
        "no testenv at {}: build it with the workspace (`cargo build -p testenv`)",
        bin.display()
    );
    bin
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
        let runc_dir = current_runc_dir();
        let namespace = unique_name("tether-test");
        // containerd as systemd runs it: with NOTIFY_SOCKET set, which its
        // shims inherit. (runc given that variable makes `start` wait for the
        // container's own READY=1, so a shim must not pass it on.)
        let notify_path = std::env::temp_dir().join(format!("{namespace}.notify"));
        let _ = fs::remove_file(&notify_path);
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path)
            .expect("binding the NOTIFY_SOCKET socket");
        let o = testenv::Options {
            containerd: bins.containerd.display().to_string(),
            // The runc under test first in containerd's PATH: Debian's
            // containerd lives in /usr/bin, next to Debian's runc.
            runc: runc_dir.as_ref().map(|d| d.join("runc")),
            log_level: "debug".into(),
            containerd_env: vec![("NOTIFY_SOCKET".into(), notify_path.display().to_string())],
            ..testenv::Options::default()
        };
        let env = testenv::Env::start_configured(&o, &testenv_binary(), &[], configure)
            .unwrap_or_else(|e| {
                let _ = fs::remove_file(&notify_path);
                panic!(
                    "starting containerd {} in an environment: {e}",
                    bins.version
                )
            });
        let dir = env.dir().to_path_buf();
        let fifo_dir = dir.join("fifo");
        fs::create_dir_all(&fifo_dir).expect("creating the fifo dir");
        eprintln!(
            "[harness] containerd {} with runc {} in {} (namespace {namespace}); runtime under test: {} ({})",
            bins.version,
            current_runc_version(),
            dir.display(),
            runtime(),
            runtime_binary().display()
        );
        let mut c = Containerd {
            address: env.address.clone(),
            config: dir.join("config.toml"),
            state: dir.join("state"),
            log: dir.join("containerd.log"),
            env: Some(env),
            dir,
            namespace,
            fifo_dir,
            running: true,
            known_sockets: Mutex::new(BTreeSet::new()),
            issued_ids: Mutex::new(Vec::new()),
            bins,
            runc_dir,
            notify: (notify_path, notify),
        };
        c.check_runc_in_path();
        c.wait_ready();
        c
    }

    /// The environment (until the teardown).
    pub fn env(&self) -> &testenv::Env {
        self.env.as_ref().expect("the environment is torn down")
    }

    /// Where the host reaches `path` of the environment: through its init
    /// (`/proc/INIT/root/...`) under what the environment has of its own
    /// (/run, /sys, /dev/shm), as it is elsewhere (the environment's dir,
    /// the rootfs and other temporary dirs are the host's).
    pub fn host_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        let own = ["/run", "/sys", "/dev/shm", "/var/lib/cni"];
        if own.iter().any(|o| path.starts_with(o)) {
            self.env().inside_path(path)
        } else {
            path.to_path_buf()
        }
    }

    /// Both shims run the first `runc` of containerd's PATH: it must be the
    /// one under test. (Compared as files: Debian's /usr/bin/runc links to
    /// /usr/sbin/runc.)
    fn check_runc_in_path(&self) {
        let path = self
            .env()
            .vars
            .iter()
            .find(|(k, _)| k == "CONTAINERD_PATH")
            .map(|(_, v)| v.clone())
            .expect("the environment's CONTAINERD_PATH");
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
    }

    fn wait_ready(&mut self) {
        let ready = poll_until(SETTLE_TIMEOUT, || {
            let pid = self.env().containerd_pid();
            if !pid.is_some_and(|p| super::procs::alive(p as u32)) {
                panic!(
                    "containerd (pid {pid:?}) exited during startup\n{}",
                    self.log_tail()
                );
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

    /// The environment's directory, holding everything of this instance.
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

    /// `/run/containerd/runc/<namespace>` of the environment, as the host
    /// reaches it.
    pub fn runc_root(&self) -> PathBuf {
        self.host_path(Path::new(RUNC_ROOT).join(&self.namespace))
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

    /// The address the test process connects to the shim of `id` by:
    /// `unix://` and the `host_path` of its socket.
    pub fn shim_host_address(&self, id: &str) -> Option<String> {
        let path = socket_path_of_address(&self.shim_address(id)?)?;
        Some(format!("unix://{}", self.host_path(path).display()))
    }

    /// The filesystem path of the shim socket of `id` as containerd and the
    /// shim name it (inside the environment: `host_path` reaches it; panics
    /// if the bundle has no `address` file or it is not a `unix://` path
    /// address), which is remembered for the leftover checks.
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
    /// `/run/containerd/s/<hex sha256 of "<address>/<namespace>/<id>">`
    /// (inside the environment). Other shims may name their socket
    /// differently.
    pub fn conventional_socket_path(&self, id: &str) -> PathBuf {
        let key = format!("{}/{}/{}", self.address.display(), self.namespace, id);
        Path::new(SHIM_SOCKET_DIR).join(sha256_hex(key.as_bytes()))
    }

    /// Starts `ctr events` in the background (output to a file in the temp
    /// dir) and returns once it provably receives events.
    pub fn events(&self) -> EventStream {
        EventStream::start(self)
    }

    /// SIGKILLs containerd by PID (its shims live on).
    pub fn kill9(&mut self) {
        assert!(self.running, "containerd is not running");
        self.running = false;
        let e = self
            .env
            .as_mut()
            .expect("the environment")
            .kill_containerd();
        e.unwrap_or_else(|e| panic!("SIGKILL of containerd: {e}"));
    }

    /// Stops containerd with SIGTERM (SIGKILL after 10 s) by PID.
    pub fn stop(&mut self) {
        if std::mem::take(&mut self.running) {
            let env = self.env.as_mut().expect("the environment");
            let e = env.stop_containerd(Duration::from_secs(10));
            e.unwrap_or_else(|e| panic!("stopping containerd: {e}"));
        }
    }

    /// Starts containerd again, inside the environment, with the same
    /// config, directories, PATH and variables.
    pub fn restart(&mut self) {
        assert!(
            !self.running,
            "restart() while containerd still runs: call kill9() or stop() first"
        );
        let env = self.env.as_mut().expect("the environment");
        if let Err(e) = env.restart_containerd() {
            panic!("restarting containerd: {e}\n{}", self.log_tail());
        }
        self.running = true;
        self.wait_ready();
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
        self.cgroup_paths_inside(p)
            .iter()
            .any(|c| c.split('/').nth(1) == Some(self.namespace.as_str()))
    }

    /// The cgroup paths of `p` as the environment sees them (`/NS/ID` for a
    /// container of namespace NS): those below the environment's cgroup,
    /// relative to it.
    pub fn cgroup_paths_inside(&self, p: &ProcInfo) -> Vec<String> {
        let name = format!("/{}", self.env_name());
        p.cgroup_paths()
            .iter()
            .filter_map(|c| {
                let (_, rest) = c.split_once(&name)?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then(|| if rest.is_empty() { "/" } else { rest }.to_string())
            })
            .collect()
    }

    /// The environment's name (of its dir and its cgroup).
    fn env_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    }

    /// True if `p` belongs to this test in any way: a process of the
    /// environment's cgroup, a shim or container process, a process rooted
    /// or working under the environment's dir, or one mentioning the
    /// namespace or the dir on its command line (including ctr clients).
    fn is_related(&self, p: &ProcInfo) -> bool {
        let dir = self.dir.to_string_lossy();
        !self.cgroup_paths_inside(p).is_empty()
            || p.has_arg(&self.namespace)
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

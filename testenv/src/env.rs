//! An environment from the outside: [`Options`] say what it holds;
//! [`Env::start`] prepares its dir (config, CNI network, registry config),
//! makes its cgroup and starts its init (see `init`), which starts everything
//! else inside; [`Env::teardown`] (also on drop) kills the cgroup, removes it
//! and the dir. Nothing on the host is diffed or restored: what the
//! environment did to mounts, network, IPC and cgroups was inside its own
//! namespaces and cgroup.
//!
//! While it runs, the host sees inside through init:
//! [`Env::inside_path`] (`/proc/INIT/root/...`, the environment's mount
//! namespace), `/proc/INIT/mountinfo` and `/proc/INIT/net/unix`; processes
//! keep their host PIDs. [`Env::command`] runs a program inside (its
//! namespaces and cgroup, through `testenv enter`), which is how containerd
//! is started again after [`Env::kill_containerd`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cgroup::{Cgroup, Hierarchy};
use crate::config::{self, Cni, Cri, Dirs, Handler, Settings, Version};
use crate::enter::INIT_PID_FILE;
use crate::init::code;
use crate::plan::{Daemon, Plan, Registry};

mod containerd;

/// How long teardown waits for the cgroup to empty and go.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long start waits for init to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// The registry's port inside the environment's network namespace.
const REGISTRY_PORT: u16 = 5000;

/// What an environment holds.
#[derive(Clone, Debug)]
pub struct Options {
    /// `system` (Debian's, /usr/bin), a version built under `peers_dir`
    /// (`2.3.7`), or a path to a containerd binary.
    pub containerd: String,
    /// Where scripts/peers.sh caches its builds.
    pub peers_dir: PathBuf,
    /// The CRI plugin (off: disabled).
    pub cri: bool,
    /// A CNI bridge network for the CRI (10.88.0.0/24, bridge `testenv0`,
    /// plugins from /usr/lib/cni).
    pub cni: bool,
    /// The local registry, serving `mirrors` over plain http.
    pub registry: bool,
    /// Registries the local one stands in for.
    pub mirrors: Vec<String>,
    /// OCI layouts (with an images.txt) pushed to the registry, in order.
    pub images: Vec<PathBuf>,
    /// The sandbox image.
    pub sandbox_image: String,
    /// CRI runtime handlers.
    pub handlers: Vec<Handler>,
    /// The CRI's default handler (default: the first).
    pub default_handler: Option<String>,
    /// The runc every shim runs (`runc` first in containerd's PATH).
    pub runc: Option<PathBuf>,
    /// containerd's log level.
    pub log_level: String,
    /// containerd's log (default: `DIR/containerd.log`).
    pub log: Option<PathBuf>,
    /// containerd in a cgroup `/NAME` of its own (as seen inside).
    pub containerd_cgroup: Option<String>,
    /// More variables containerd runs with (and its shims inherit), e.g.
    /// `NOTIFY_SOCKET` as systemd would set it.
    pub containerd_env: Vec<(String, String)>,
    /// Keep the private dir.
    pub keep: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            containerd: "system".into(),
            peers_dir: "/var/cache/tether-peers".into(),
            cri: false,
            cni: false,
            registry: false,
            mirrors: vec!["registry.k8s.io".into(), "gcr.io".into()],
            images: Vec::new(),
            sandbox_image: "registry.k8s.io/pause:3.10".into(),
            handlers: Vec::new(),
            default_handler: None,
            runc: None,
            log_level: "info".into(),
            log: None,
            containerd_cgroup: None,
            containerd_env: Vec::new(),
            keep: false,
        }
    }
}

/// A running environment.
#[derive(Debug)]
pub struct Env {
    dir: PathBuf,
    cgroup: Option<Cgroup>,
    init: Option<Child>,
    init_pid: u32,
    /// The `testenv` binary (init, and `testenv enter`).
    init_bin: PathBuf,
    /// containerd as init started it, to start it again.
    daemon: Option<Daemon>,
    /// containerd when [`Env::restart_containerd`] started it.
    containerd: Option<Child>,
    keep: bool,
    /// The version of its containerd.
    pub version: Version,
    /// containerd's socket.
    pub address: PathBuf,
    /// The variables that describe it (`CONTAINERD_ADDRESS`, ...), which its
    /// command gets.
    pub vars: Vec<(String, String)>,
}

fn ctx(e: io::Error, what: impl AsRef<Path>) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", what.as_ref().display()))
}

/// A name no other environment of this host has now.
fn unique_name() -> String {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "testenv-{}-{}-{nanos:x}",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}

/// containerd's binary (`system`, a version under `peers_dir` or a path),
/// its config version and its full version (`v2.3.7`).
pub fn containerd_bins(o: &Options) -> io::Result<(PathBuf, Version, String)> {
    let bin = match o.containerd.as_str() {
        "system" => PathBuf::from("/usr/bin/containerd"),
        v if v.contains('/') => PathBuf::from(v),
        v => o.peers_dir.join(format!("containerd-{v}/bin/containerd")),
    };
    let out = Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ctx(e, &bin))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let version = Version::parse(&text)
        .ok_or_else(|| io::Error::other(format!("{}: version {text:?}", bin.display())))?;
    let full = text
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    Ok((bin, version, full))
}

impl Env {
    /// Prepares and starts an environment whose init runs `command` (empty:
    /// holds until teardown); returns once init reported ready (or, with a
    /// command, right after init started). `init_bin` is the `testenv`
    /// binary.
    pub fn start(o: &Options, init_bin: &Path, command: &[String]) -> io::Result<Env> {
        Env::start_configured(o, init_bin, command, |_| {})
    }

    /// Like [`Env::start`], with `configure` changing containerd's settings
    /// (made from `o`) before the config is written.
    pub fn start_configured(
        o: &Options,
        init_bin: &Path,
        command: &[String],
        configure: impl FnOnce(&mut Settings),
    ) -> io::Result<Env> {
        let name = unique_name();
        let dir = std::env::temp_dir().join(&name);
        fs::create_dir(&dir).map_err(|e| ctx(e, &dir))?;
        let mut env = Env {
            dir: dir.clone(),
            cgroup: None,
            init: None,
            init_pid: 0,
            init_bin: init_bin.to_path_buf(),
            daemon: None,
            containerd: None,
            keep: o.keep,
            version: Version { major: 0, minor: 0 },
            address: PathBuf::new(),
            vars: Vec::new(),
        };
        let (bin, version, full) = containerd_bins(o)?;
        env.version = version;
        let plan = env.prepare(o, &bin, &full, command, configure)?;
        env.daemon = plan.containerd.clone();
        let cgroup = Cgroup::create(&name)?;
        let plan = Plan {
            cgroup_procs: cgroup.procs_files(),
            member_procs: cgroup.member_procs_files(),
            ..plan
        };
        env.cgroup = Some(cgroup);
        let plan_file = dir.join("plan.toml");
        fs::write(
            &plan_file,
            toml::to_string(&plan).map_err(io::Error::other)?,
        )?;
        let child = Command::new(init_bin)
            .arg("__init")
            .arg(&plan_file)
            .spawn()
            .map_err(|e| ctx(e, init_bin))?;
        env.init_pid = child.id();
        env.init = Some(child);
        fs::write(dir.join(INIT_PID_FILE), env.init_pid.to_string())?;
        if command.is_empty() {
            env.wait_ready()?;
        }
        Ok(env)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let init = self.init.as_mut().expect("init was started");
        while !self.dir.join("ready").exists() {
            if let Some(status) = init.try_wait()? {
                return Err(io::Error::other(format!("testenv init exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "testenv init not ready within {START_TIMEOUT:?}"
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Writes the dir's files; returns init's plan (without the cgroup).
    fn prepare(
        &mut self,
        o: &Options,
        containerd: &Path,
        full_version: &str,
        command: &[String],
        configure: impl FnOnce(&mut Settings),
    ) -> io::Result<Plan> {
        let dir = self.dir.clone();
        let bin_dir = dir.join("bin");
        fs::create_dir_all(&bin_dir)?;
        if let Some(runc) = &o.runc {
            std::os::unix::fs::symlink(runc, bin_dir.join("runc"))?;
        }
        // containerd 1.x finds a shim in its PATH by the runtime type.
        for h in &o.handlers {
            let short = h.runtime_type.trim_start_matches("io.containerd.");
            let link = bin_dir.join(format!("containerd-shim-{}", short.replace('.', "-")));
            if let Some(shim) = &h.shim {
                if !link.exists() {
                    std::os::unix::fs::symlink(shim, &link)?;
                }
            }
        }
        let mut s = Settings::in_dir(&dir);
        s.log_level = Some(o.log_level.clone());
        let mut registry = None;
        if o.registry {
            registry = Some(self.registry(o)?);
        }
        if o.cri {
            let cni = o.cni.then(|| Cni {
                bin_dir: "/usr/lib/cni".into(),
                conf_dir: dir.join("cni/net.d"),
            });
            if o.cni {
                self.cni_network()?;
            }
            s.cri = Some(Cri {
                registry_hosts: o.registry.then(|| dir.join("certs.d")),
                cni,
                ..Cri::with_handlers(
                    &o.sandbox_image,
                    o.handlers.clone(),
                    o.default_handler.clone(),
                )
            });
        } else {
            s.disable_cri(self.version);
        }
        configure(&mut s);
        let dirs = s.dirs.clone().unwrap_or_else(|| Dirs::in_dir(&dir));
        for d in [&dirs.root, &dirs.state] {
            fs::create_dir_all(d)?;
        }
        let config = config::write(&s, self.version, &dir)?;
        let log = o.log.clone().unwrap_or_else(|| dir.join("containerd.log"));
        let cd_dir = containerd.parent().unwrap_or(Path::new("/usr/bin"));
        let path = format!(
            "{}:{}:{}",
            bin_dir.display(),
            cd_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let pid_file = dir.join("containerd.pid");
        self.address = dirs.address.clone();
        let sock = dirs.address.display().to_string();
        let var = |k: &str, v: &dyn std::fmt::Display| (k.to_string(), v.to_string());
        self.vars = vec![
            var("TESTENV_DIR", &dir.display()),
            var("CONTAINERD_ADDRESS", &sock),
            var("CONTAINERD_BIN", &containerd.display()),
            var("CONTAINERD_CONFIG", &config.display()),
            var("CONTAINERD_LOG", &log.display()),
            var("CONTAINERD_ROOT", &dirs.root.display()),
            var("CONTAINERD_STATE", &dirs.state.display()),
            var("CONTAINERD_VERSION", &full_version),
            var("CONTAINERD_PATH", &path),
            var("CONTAINERD_PID_FILE", &pid_file.display()),
        ];
        if o.cri {
            for k in [
                "CRI_ENDPOINT",
                "CONTAINER_RUNTIME_ENDPOINT",
                "IMAGE_SERVICE_ENDPOINT",
            ] {
                self.vars.push(var(k, &format!("unix://{sock}")));
            }
        }
        Ok(Plan {
            dir: dir.clone(),
            command: command.to_vec(),
            env: self.vars.clone(),
            cgroup_procs: Vec::new(),
            member_procs: Vec::new(),
            hierarchies: Hierarchy::parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo")?)
                .into_iter()
                .map(|(h, _)| h)
                .collect(),
            registry,
            containerd: Some(Daemon {
                binary: containerd.to_path_buf(),
                config,
                address: dirs.address,
                path,
                env: o.containerd_env.clone(),
                log,
                pid_file,
                cgroup: o.containerd_cgroup.clone(),
            }),
        })
    }

    /// The registry's config and the hosts.toml of each mirror.
    fn registry(&self, o: &Options) -> io::Result<Registry> {
        let rdir = self.dir.join("registry");
        fs::create_dir_all(rdir.join("storage"))?;
        let config = rdir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{REGISTRY_PORT}\n  secret: testenv\n",
                rdir.join("storage").display()
            ),
        )?;
        let server = format!("http://127.0.0.1:{REGISTRY_PORT}");
        for host in &o.mirrors {
            let d = self.dir.join("certs.d").join(host);
            fs::create_dir_all(&d)?;
            fs::write(
                d.join("hosts.toml"),
                format!(
                    "server = \"{server}\"\n\n[host.\"{server}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"
                ),
            )?;
        }
        Ok(Registry {
            binary: "/usr/bin/docker-registry".into(),
            config,
            port: REGISTRY_PORT,
            log: rdir.join("registry.log"),
            images: o.images.clone(),
        })
    }

    /// A bridge network private to the environment's network namespace.
    fn cni_network(&self) -> io::Result<()> {
        let net = self.dir.join("cni/net.d");
        fs::create_dir_all(&net)?;
        let ipam = self.dir.join("cni/ipam");
        fs::create_dir_all(&ipam)?;
        fs::write(
            net.join("10-testenv.conflist"),
            format!(
                r#"{{
  "cniVersion": "1.0.0",
  "name": "testenv",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "testenv0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "dataDir": "{}",
        "ranges": [[{{"subnet": "10.88.0.0/24"}}]]
      }}
    }},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
  ]
}}
"#,
                ipam.display()
            ),
        )
    }

    /// The private dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup (host paths).
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Init's PID (a host PID, as every PID of the environment).
    pub fn init_pid(&self) -> u32 {
        self.init_pid
    }

    /// Where the host finds `path` of the environment's mount namespace:
    /// `/proc/INIT/root/PATH` (e.g. a shim socket under /run/containerd/s,
    /// or a cgroup directory under /sys/fs/cgroup as containerd sees it).
    pub fn inside_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let rel = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        PathBuf::from(format!("/proc/{}/root", self.init_pid)).join(rel)
    }

    /// A command that runs `program` inside the environment: in its cgroup
    /// and init's namespaces (through `testenv enter`; see module `enter`),
    /// in the caller's working directory. Arguments and variables added to
    /// it go to `program`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(&self.init_bin);
        cmd.arg("enter").arg(&self.dir).arg("--").arg(program);
        cmd
    }

    /// Waits for init (its command) to end; returns its exit code.
    pub fn wait(&mut self) -> io::Result<i32> {
        let init = self.init.as_mut().expect("init was started");
        Ok(code(init.wait()?))
    }

    /// Kills every process of the environment, removes its cgroup and,
    /// unless kept, its dir.
    pub fn teardown(&mut self) -> io::Result<()> {
        if let Some(cg) = &self.cgroup {
            cg.kill_all(TEARDOWN_TIMEOUT)?;
        }
        if let Some(mut c) = self.containerd.take() {
            c.wait()?;
        }
        if let Some(mut init) = self.init.take() {
            init.wait()?;
        }
        if let Some(cg) = self.cgroup.take() {
            cg.remove(TEARDOWN_TIMEOUT)?;
        }
        if !self.keep && self.dir.exists() {
            fs::remove_dir_all(&self.dir).map_err(|e| ctx(e, &self.dir))?;
        }
        Ok(())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("testenv: teardown of {}: {e}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests;

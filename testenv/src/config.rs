//! containerd's configuration, written from typed structs: what an
//! environment wants ([`Settings`]) is independent of the version; each major
//! version has its own schema (`v2`: containerd 1.6 and 1.7, config version
//! 2; `v3`: containerd 2.x, config version 3) that [`render`] fills in and
//! serializes. This module is the only writer of a containerd config in the
//! repository.

use std::path::{Path, PathBuf};

mod v2;
mod v3;

/// A containerd release line, as far as its configuration is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// 1 or 2.
    pub major: u32,
    /// The minor release (6 for 1.6.20).
    pub minor: u32,
}

impl Version {
    /// Parses `1.6.20`, `v2.3.7` or the output of `containerd --version`
    /// (`containerd github.com/containerd/containerd/v2 v2.3.7 abc`).
    pub fn parse(text: &str) -> Option<Version> {
        let word = text
            .split_whitespace()
            .find(|w| {
                w.trim_start_matches('v')
                    .starts_with(|c: char| c.is_ascii_digit())
            })
            .unwrap_or(text);
        let mut parts = word.trim_start_matches('v').split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Version { major, minor })
    }
}

/// What a containerd is configured with, whatever its version.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A private containerd's dirs and socket; `None`: the system
    /// containerd's (containerd's defaults, which the config leaves out:
    /// `/var/lib/containerd`, `/run/containerd` and its `containerd.sock`,
    /// `/opt/containerd`). A private containerd's CRI also gets what keeps
    /// it off the host's: its netns mounts under its state dir, the
    /// streaming server on 127.0.0.1 and a free port, no NRI, a restricted
    /// oom_score_adj; the system's gets containerd's defaults there too.
    pub dirs: Option<Dirs>,
    /// `debug.level`; `None`: containerd's default.
    pub log_level: Option<String>,
    /// Plugins to disable; [`Settings::disable_cri`] fills in the CRI's.
    pub disabled_plugins: Vec<String>,
    /// The shim manager's `socket_dir` (containerd 2.3 and newer only).
    pub shim_socket_dir: Option<PathBuf>,
    /// The CRI plugin's settings, when it is on.
    pub cri: Option<Cri>,
}

/// Where a private containerd keeps its data and listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirs {
    /// containerd's persistent root (`root`).
    pub root: PathBuf,
    /// containerd's state dir (`state`).
    pub state: PathBuf,
    /// The gRPC socket (`grpc.address`).
    pub address: PathBuf,
    /// The opt plugin's dir.
    pub opt: PathBuf,
}

impl Dirs {
    /// `root`, `state`, `opt` and the socket `containerd.sock` under `dir`.
    pub fn in_dir(dir: &Path) -> Dirs {
        Dirs {
            root: dir.join("root"),
            state: dir.join("state"),
            address: dir.join("containerd.sock"),
            opt: dir.join("opt"),
        }
    }
}

/// The CRI plugin's settings.
#[derive(Clone, Debug)]
pub struct Cri {
    /// The sandbox (pause) image.
    pub sandbox_image: String,
    /// The registry hosts dir (`hosts.toml` per registry).
    pub registry_hosts: Option<PathBuf>,
    /// CNI plugin binaries and network configs.
    pub cni: Option<Cni>,
    /// The handler a pod without one gets.
    pub default_runtime: String,
    /// The runtime handlers, in order.
    pub handlers: Vec<Handler>,
}

/// Where the CRI plugin finds CNI.
#[derive(Clone, Debug)]
pub struct Cni {
    /// The plugin binaries.
    pub bin_dir: PathBuf,
    /// The network configs (only the first is used).
    pub conf_dir: PathBuf,
}

/// A CRI runtime handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    /// The handler's name (what `RuntimeHandler` of a pod names).
    pub name: String,
    /// containerd's runtime type, e.g. `io.containerd.runc.v2`.
    pub runtime_type: String,
    /// The shim binary. containerd 2.x takes it as `runtime_path`; 1.x
    /// looks the shim up in its PATH by the runtime type, so the
    /// environment links it there.
    pub shim: Option<PathBuf>,
    /// The OCI runtime the shim runs (`BinaryName`); `None`: runc from PATH.
    pub binary_name: Option<String>,
    /// The systemd cgroup driver (`SystemdCgroup`).
    pub systemd_cgroup: bool,
    /// The cgroup the shim moves itself into (`ShimCgroup`), e.g. a slice's
    /// `/tether-shims.slice`.
    pub shim_cgroup: Option<String>,
    /// The CRI's sandbox controller for the handler's pods (`sandboxer`):
    /// `shim` (the shim serves containerd's Sandbox API: no pause
    /// container) or `podsandbox` (containerd's own, the pause container);
    /// `None`: containerd's default, `podsandbox`. containerd 2.x only.
    pub sandboxer: Option<String>,
    /// CRI does not pull (or look for) the sandbox image before it starts
    /// one of the handler's pods (`disable_pause_image_pull`): for a
    /// sandboxer that needs no pause image. containerd 2.4 and newer only;
    /// older ones always do.
    pub disable_pause_image_pull: bool,
}

impl Handler {
    /// Parses `NAME=TYPE[:SHIM[:BINARY]][,OPTION=VALUE...]`, e.g.
    /// `runc=io.containerd.runc.v2`,
    /// `tether=io.containerd.tether.v2:/usr/bin/containerd-shim-tether-v2`
    /// or `tether=io.containerd.tether.v2::/usr/sbin/runc,SystemdCgroup=true,ShimCgroup=/tether-shims.slice`.
    /// The options are `SystemdCgroup` (`true` or `false`), `ShimCgroup`,
    /// `Sandboxer` (`shim` or `podsandbox`) and `DisablePauseImagePull`
    /// (`true` or `false`).
    pub fn parse(text: &str) -> Result<Handler, String> {
        const FORM: &str = "NAME=TYPE[:SHIM[:BINARY]][,OPTION=VALUE...]";
        let mut items = text.split(',');
        let (name, rest) = items
            .next()
            .unwrap_or_default()
            .split_once('=')
            .ok_or_else(|| format!("handler {text:?} is not {FORM}"))?;
        let mut parts = rest.splitn(3, ':');
        let runtime_type = parts.next().unwrap_or_default();
        if name.is_empty() || runtime_type.is_empty() {
            return Err(format!("handler {text:?} has no name or type"));
        }
        let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        let mut h = Handler {
            name: name.to_string(),
            runtime_type: runtime_type.to_string(),
            shim: nonempty(parts.next()).map(PathBuf::from),
            binary_name: nonempty(parts.next()),
            systemd_cgroup: false,
            shim_cgroup: None,
            sandboxer: None,
            disable_pause_image_pull: false,
        };
        let boolean = |key: &str, v: &str| {
            v.parse()
                .map_err(|_| format!("handler {name}: {key}={v:?} is not true or false"))
        };
        for item in items {
            match item.split_once('=') {
                Some(("SystemdCgroup", v)) => h.systemd_cgroup = boolean("SystemdCgroup", v)?,
                Some(("ShimCgroup", v)) if !v.is_empty() => h.shim_cgroup = Some(v.to_string()),
                Some(("Sandboxer", v @ ("shim" | "podsandbox"))) => {
                    h.sandboxer = Some(v.to_string());
                }
                Some(("DisablePauseImagePull", v)) => {
                    h.disable_pause_image_pull = boolean("DisablePauseImagePull", v)?;
                }
                _ => {
                    let want = "SystemdCgroup=true|false, ShimCgroup=PATH, \
                                Sandboxer=shim|podsandbox or DisablePauseImagePull=true|false";
                    return Err(format!("handler {name}: {item:?} is not {want}"));
                }
            }
        }
        Ok(h)
    }

    /// Whether CRI skips the sandbox image pull for the handler's pods on
    /// containerd `version`; refused where CRI cannot (before 2.4).
    fn pause_image_pull_off(&self, version: Version) -> Result<bool, ConfigError> {
        if self.disable_pause_image_pull && version < (Version { major: 2, minor: 4 }) {
            return Err(ConfigError::NoPausePullSwitch {
                handler: self.name.clone(),
                major: version.major,
                minor: version.minor,
            });
        }
        Ok(self.disable_pause_image_pull)
    }

    /// containerd's own runc shim types, whose options containerd reads as
    /// runc's.
    fn is_runc_type(&self) -> bool {
        self.runtime_type.starts_with("io.containerd.runc.")
    }

    /// Its options table (runc's keys), in the config or in a side file.
    fn options(&self) -> RuncOptions<'_> {
        RuncOptions {
            binary_name: self.binary_name.as_deref(),
            systemd_cgroup: self.systemd_cgroup,
            shim_cgroup: self.shim_cgroup.as_deref(),
        }
    }
}

impl Cri {
    /// The CRI with `handlers`, of which `default` (or else the first, or
    /// else `runc`) is the default; no registry hosts, no CNI.
    pub fn with_handlers(
        sandbox_image: &str,
        handlers: Vec<Handler>,
        default: Option<String>,
    ) -> Cri {
        Cri {
            sandbox_image: sandbox_image.to_string(),
            registry_hosts: None,
            cni: None,
            default_runtime: default
                .or_else(|| handlers.first().map(|h| h.name.clone()))
                .unwrap_or_else(|| "runc".into()),
            handlers,
        }
    }
}

impl Settings {
    /// A private containerd: everything under `dir` ([`Dirs::in_dir`]);
    /// log level `info`; no CRI.
    pub fn in_dir(dir: &Path) -> Settings {
        Settings {
            dirs: Some(Dirs::in_dir(dir)),
            log_level: Some("info".into()),
            ..Settings::system()
        }
    }

    /// The system containerd (a node's containerd.service): containerd's
    /// own dirs, socket and log level; no CRI.
    pub fn system() -> Settings {
        Settings {
            dirs: None,
            log_level: None,
            disabled_plugins: Vec::new(),
            shim_socket_dir: None,
            cri: None,
        }
    }

    /// Disables the CRI plugin (one plugin on 1.x, three on 2.x).
    pub fn disable_cri(&mut self, version: Version) {
        self.cri = None;
        let mut names = vec!["io.containerd.grpc.v1.cri"];
        if version.major >= 2 {
            names.extend([
                "io.containerd.cri.v1.runtime",
                "io.containerd.cri.v1.images",
            ]);
        }
        self.disabled_plugins
            .extend(names.into_iter().map(String::from));
    }
}

/// A rendered config: the TOML and the files it refers to.
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    /// `config.toml`.
    pub config: String,
    /// Side files (path, contents) the config names: on containerd 1.x the
    /// options of handlers whose type is not runc's, which 1.6 passes to the
    /// shim only through `ConfigPath`.
    pub files: Vec<(PathBuf, String)>,
}

/// Why a config cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No schema for this version.
    #[error("no config schema for containerd {0}.{1}")]
    Unsupported(u32, u32),
    /// A setting this version does not have.
    #[error("containerd {major}.{minor} has no {what}")]
    NotInVersion {
        /// The version's major.
        major: u32,
        /// The version's minor.
        minor: u32,
        /// The setting.
        what: &'static str,
    },
    /// A handler with a sandbox controller (`sandboxer`) on containerd 1.x,
    /// whose CRI has none to choose (1.7's experimental `sandbox_mode` is
    /// not written).
    #[error(
        "handler {handler}: Sandboxer={sandboxer} needs containerd 2.x (config version 3); \
         containerd {major}.{minor} has no sandboxer setting"
    )]
    NoSandboxer {
        /// The handler's name.
        handler: String,
        /// What it asked for.
        sandboxer: String,
        /// The version's major.
        major: u32,
        /// The version's minor.
        minor: u32,
    },
    /// A handler that turns off CRI's pull of the sandbox image on a
    /// containerd older than 2.4, whose CRI has no such switch and pulls it
    /// for every pod.
    #[error(
        "handler {handler}: DisablePauseImagePull=true needs containerd 2.4 or newer \
         (disable_pause_image_pull); containerd {major}.{minor} pulls the sandbox image \
         for every pod"
    )]
    NoPausePullSwitch {
        /// The handler's name.
        handler: String,
        /// The version's major.
        major: u32,
        /// The version's minor.
        minor: u32,
    },
    /// The structs did not serialize (a non-UTF-8 path).
    #[error("serializing the config: {0}")]
    Serialize(#[from] toml::ser::Error),
}

/// Renders `settings` for containerd `version`; side files go to
/// `files_dir`.
pub fn render(
    settings: &Settings,
    version: Version,
    files_dir: &Path,
) -> Result<Rendered, ConfigError> {
    match version.major {
        1 if version.minor >= 6 => v2::render(settings, version, files_dir),
        2 => v3::render(settings, version),
        _ => Err(ConfigError::Unsupported(version.major, version.minor)),
    }
}

/// Renders and writes `config.toml` and its side files into `dir`; returns
/// the config's path.
pub fn write(settings: &Settings, version: Version, dir: &Path) -> std::io::Result<PathBuf> {
    let rendered = render(settings, version, dir).map_err(std::io::Error::other)?;
    for (path, text) in &rendered.files {
        std::fs::write(path, text)?;
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, &rendered.config)?;
    Ok(path)
}

/// `plugins."io.containerd.internal.v1.opt"`, the same in every version.
#[derive(serde::Serialize)]
struct Opt<'a> {
    path: &'a Path,
}

/// `[grpc]`.
#[derive(serde::Serialize)]
struct Grpc<'a> {
    address: &'a Path,
}

/// `[debug]`.
#[derive(serde::Serialize)]
struct Debug<'a> {
    level: &'a str,
}

/// The options table of containerd's runc shim and of tether.
#[derive(serde::Serialize)]
struct RuncOptions<'a> {
    #[serde(rename = "BinaryName", skip_serializing_if = "Option::is_none")]
    binary_name: Option<&'a str>,
    #[serde(rename = "SystemdCgroup")]
    systemd_cgroup: bool,
    #[serde(rename = "ShimCgroup", skip_serializing_if = "Option::is_none")]
    shim_cgroup: Option<&'a str>,
}

#[cfg(test)]
mod tests;

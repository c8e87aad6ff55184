//! Config version 2: containerd 1.6 and 1.7. The CRI is one plugin,
//! `io.containerd.grpc.v1.cri`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{ConfigError, Debug, Grpc, Handler, Opt, Rendered, RuncOptions, Settings, Version};

#[derive(Serialize)]
struct Config<'a> {
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    root: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a Path>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    disabled_plugins: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc: Option<Grpc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    debug: Option<Debug<'a>>,
    plugins: Plugins<'a>,
}

#[derive(Serialize)]
struct Plugins<'a> {
    #[serde(
        rename = "io.containerd.internal.v1.opt",
        skip_serializing_if = "Option::is_none"
    )]
    opt: Option<Opt<'a>>,
    #[serde(
        rename = "io.containerd.grpc.v1.cri",
        skip_serializing_if = "Option::is_none"
    )]
    cri: Option<Cri<'a>>,
}

/// The keys after `sandbox_image` up to `containerd` only for a private
/// containerd (see [`Settings::dirs`]).
#[derive(Serialize)]
struct Cri<'a> {
    sandbox_image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    restrict_oom_score_adj: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_server_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_server_port: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns_mounts_under_state_dir: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_selinux: Option<bool>,
    containerd: Runtimes<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cni: Option<Cni<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry: Option<Registry<'a>>,
}

#[derive(Serialize)]
struct Runtimes<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshotter: Option<&'a str>,
    default_runtime_name: &'a str,
    runtimes: BTreeMap<&'a str, Runtime<'a>>,
}

#[derive(Serialize)]
struct Runtime<'a> {
    runtime_type: &'a str,
    options: Options<'a>,
}

/// containerd 1.6 hands a runtime type other than runc's its options as
/// `runtimeoptions.v1.Options`, of which only `ConfigPath` survives: those
/// handlers' options live in a TOML file of their own.
#[derive(Serialize)]
#[serde(untagged)]
enum Options<'a> {
    Runc(RuncOptions<'a>),
    File {
        #[serde(rename = "ConfigPath")]
        config_path: PathBuf,
    },
}

#[derive(Serialize)]
struct Cni<'a> {
    bin_dir: &'a Path,
    conf_dir: &'a Path,
    max_conf_num: u32,
}

#[derive(Serialize)]
struct Registry<'a> {
    config_path: &'a Path,
}

pub(super) fn render(
    s: &Settings,
    version: Version,
    files_dir: &Path,
) -> Result<Rendered, ConfigError> {
    if s.shim_socket_dir.is_some() {
        return Err(ConfigError::NotInVersion {
            major: version.major,
            minor: version.minor,
            what: "shim socket_dir",
        });
    }
    let mut files = Vec::new();
    let private = s.dirs.is_some();
    let only_private = |v| private.then_some(v);
    let cri = match &s.cri {
        None => None,
        Some(cri) => {
            let mut runtimes = BTreeMap::new();
            for h in &cri.handlers {
                runtimes.insert(h.name.as_str(), runtime(h, files_dir, &mut files, version)?);
            }
            Some(Cri {
                sandbox_image: &cri.sandbox_image,
                restrict_oom_score_adj: only_private(true),
                stream_server_address: private.then_some("127.0.0.1"),
                stream_server_port: private.then_some("0"),
                netns_mounts_under_state_dir: only_private(true),
                enable_selinux: only_private(false),
                containerd: Runtimes {
                    snapshotter: private.then_some("overlayfs"),
                    default_runtime_name: &cri.default_runtime,
                    runtimes,
                },
                cni: cri.cni.as_ref().map(|c| Cni {
                    bin_dir: &c.bin_dir,
                    conf_dir: &c.conf_dir,
                    max_conf_num: 1,
                }),
                registry: cri
                    .registry_hosts
                    .as_deref()
                    .map(|config_path| Registry { config_path }),
            })
        }
    };
    let dirs = s.dirs.as_ref();
    let config = Config {
        version: 2,
        root: dirs.map(|d| d.root.as_path()),
        state: dirs.map(|d| d.state.as_path()),
        disabled_plugins: &s.disabled_plugins,
        grpc: dirs.map(|d| Grpc {
            address: &d.address,
        }),
        debug: s.log_level.as_deref().map(|level| Debug { level }),
        plugins: Plugins {
            opt: dirs.map(|d| Opt { path: &d.opt }),
            cri,
        },
    };
    Ok(Rendered {
        config: toml::to_string(&config)?,
        files,
    })
}

fn runtime<'a>(
    h: &'a Handler,
    files_dir: &Path,
    files: &mut Vec<(PathBuf, String)>,
    version: Version,
) -> Result<Runtime<'a>, ConfigError> {
    if let Some(sandboxer) = &h.sandboxer {
        return Err(ConfigError::NoSandboxer {
            handler: h.name.clone(),
            sandboxer: sandboxer.clone(),
            major: version.major,
            minor: version.minor,
        });
    }
    h.pause_image_pull_off(version)?;
    let runc = h.options();
    let options = if h.is_runc_type() {
        Options::Runc(runc)
    } else {
        // (the file names runc even when it is the default, as it always did)
        let file = RuncOptions {
            binary_name: Some(runc.binary_name.unwrap_or("runc")),
            ..runc
        };
        let path = files_dir.join(format!("{}-options.toml", h.name));
        files.push((path.clone(), toml::to_string(&file)?));
        Options::File { config_path: path }
    };
    Ok(Runtime {
        runtime_type: &h.runtime_type,
        options,
    })
}

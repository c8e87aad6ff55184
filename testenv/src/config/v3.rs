//! Config version 3: containerd 2.x. The CRI is three plugins: the runtime
//! (`io.containerd.cri.v1.runtime`), the images (`io.containerd.cri.v1.images`)
//! and the gRPC service with the streaming server (`io.containerd.grpc.v1.cri`).

use std::collections::BTreeMap;
use std::path::Path;

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

/// With the CRI on, `nri` (off) and `grpc` (the streaming server on a free
/// port) are there for a private containerd only (see [`Settings::dirs`]),
/// as are the keys of [`Images`] and [`CriRuntime`] that are options.
#[derive(Serialize)]
struct Plugins<'a> {
    #[serde(
        rename = "io.containerd.internal.v1.opt",
        skip_serializing_if = "Option::is_none"
    )]
    opt: Option<Opt<'a>>,
    #[serde(
        rename = "io.containerd.nri.v1.nri",
        skip_serializing_if = "Option::is_none"
    )]
    nri: Option<Nri>,
    #[serde(
        rename = "io.containerd.cri.v1.images",
        skip_serializing_if = "Option::is_none"
    )]
    images: Option<Images<'a>>,
    #[serde(
        rename = "io.containerd.cri.v1.runtime",
        skip_serializing_if = "Option::is_none"
    )]
    runtime: Option<CriRuntime<'a>>,
    #[serde(
        rename = "io.containerd.grpc.v1.cri",
        skip_serializing_if = "Option::is_none"
    )]
    grpc: Option<CriGrpc<'a>>,
    #[serde(
        rename = "io.containerd.shim.v1.manager",
        skip_serializing_if = "Option::is_none"
    )]
    shim_manager: Option<ShimManager<'a>>,
}

#[derive(Serialize)]
struct Nri {
    disable: bool,
}

#[derive(Serialize)]
struct Images<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshotter: Option<&'a str>,
    pinned_images: Pinned<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    registry: Option<Registry<'a>>,
}

#[derive(Serialize)]
struct Pinned<'a> {
    sandbox: &'a str,
}

#[derive(Serialize)]
struct Registry<'a> {
    config_path: &'a Path,
}

#[derive(Serialize)]
struct CriRuntime<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    restrict_oom_score_adj: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns_mounts_under_state_dir: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_selinux: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_cdi: Option<bool>,
    containerd: Runtimes<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cni: Option<Cni<'a>>,
}

#[derive(Serialize)]
struct Runtimes<'a> {
    default_runtime_name: &'a str,
    runtimes: BTreeMap<&'a str, Runtime<'a>>,
}

/// No options table for a handler of another type with none of its own
/// (no `BinaryName`, `SystemdCgroup` or `ShimCgroup`):
/// containerd 2.x hands such a type its options as
/// `runtimeoptions.v1.Options`, which its client then fails to read as
/// runc's for a user-namespaced pod ("can't unmarshal type
/// runtimeoptions.v1.Options").
#[derive(Serialize)]
struct Runtime<'a> {
    runtime_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime_path: Option<&'a Path>,
    /// The CRI's sandbox controller for this handler's pods: `shim` (the
    /// shim's Sandbox API) or `podsandbox` (containerd's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    sandboxer: Option<&'a str>,
    /// CRI skips its pull of the sandbox image for this handler's pods
    /// (containerd 2.4 and newer).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_pause_image_pull: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<RuncOptions<'a>>,
}

#[derive(Serialize)]
struct Cni<'a> {
    bin_dirs: [&'a Path; 1],
    conf_dir: &'a Path,
    max_conf_num: u32,
}

#[derive(Serialize)]
struct CriGrpc<'a> {
    stream_server_address: &'a str,
    stream_server_port: &'a str,
}

#[derive(Serialize)]
struct ShimManager<'a> {
    socket_dir: &'a Path,
}

pub(super) fn render(s: &Settings, version: Version) -> Result<Rendered, ConfigError> {
    if s.shim_socket_dir.is_some() && version.minor < 3 {
        return Err(ConfigError::NotInVersion {
            major: version.major,
            minor: version.minor,
            what: "shim socket_dir",
        });
    }
    let dirs = s.dirs.as_ref();
    let private = dirs.is_some();
    let only_private = |v| private.then_some(v);
    let mut plugins = Plugins {
        opt: dirs.map(|d| Opt { path: &d.opt }),
        nri: None,
        images: None,
        runtime: None,
        grpc: None,
        shim_manager: s
            .shim_socket_dir
            .as_deref()
            .map(|socket_dir| ShimManager { socket_dir }),
    };
    if let Some(cri) = &s.cri {
        plugins.nri = private.then_some(Nri { disable: true });
        plugins.images = Some(Images {
            snapshotter: private.then_some("overlayfs"),
            pinned_images: Pinned {
                sandbox: &cri.sandbox_image,
            },
            registry: cri
                .registry_hosts
                .as_deref()
                .map(|config_path| Registry { config_path }),
        });
        plugins.runtime = Some(CriRuntime {
            restrict_oom_score_adj: only_private(true),
            netns_mounts_under_state_dir: only_private(true),
            enable_selinux: only_private(false),
            enable_cdi: only_private(false),
            containerd: Runtimes {
                default_runtime_name: &cri.default_runtime,
                runtimes: cri
                    .handlers
                    .iter()
                    .map(|h| Ok((h.name.as_str(), runtime(h, version)?)))
                    .collect::<Result<_, ConfigError>>()?,
            },
            cni: cri.cni.as_ref().map(|c| Cni {
                bin_dirs: [&c.bin_dir],
                conf_dir: &c.conf_dir,
                max_conf_num: 1,
            }),
        });
        plugins.grpc = private.then_some(CriGrpc {
            stream_server_address: "127.0.0.1",
            stream_server_port: "0",
        });
    }
    let config = Config {
        version: 3,
        root: dirs.map(|d| d.root.as_path()),
        state: dirs.map(|d| d.state.as_path()),
        disabled_plugins: &s.disabled_plugins,
        grpc: dirs.map(|d| Grpc {
            address: &d.address,
        }),
        debug: s.log_level.as_deref().map(|level| Debug { level }),
        plugins,
    };
    Ok(Rendered {
        config: toml::to_string(&config)?,
        files: Vec::new(),
    })
}

fn runtime(h: &Handler, version: Version) -> Result<Runtime<'_>, ConfigError> {
    let options = (h.is_runc_type()
        || h.binary_name.is_some()
        || h.systemd_cgroup
        || h.shim_cgroup.is_some())
    .then(|| h.options());
    Ok(Runtime {
        runtime_type: &h.runtime_type,
        runtime_path: h.shim.as_deref(),
        sandboxer: h.sandboxer.as_deref(),
        disable_pause_image_pull: h.pause_image_pull_off(version)?,
        options,
    })
}

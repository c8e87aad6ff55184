//! What a pod's holder must be, read from the pod's CRI config
//! (`runtime.v1.PodSandboxConfig`, which CRI sends as CreateSandbox's
//! options) and the netns path CRI made for it. Pure: no system call here.

use std::path::PathBuf;

use protobuf::Message;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::protos::cri_pod::{NamespaceMode, PodSandboxConfig};

/// The type URL CRI gives the pod config (typeurl's, with no prefix).
pub const POD_CONFIG_TYPE: &str = "runtime.v1.PodSandboxConfig";

/// The namespaces the holder sits in, and what it sets up in them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlan {
    /// The network namespace to join (CRI's netns file); `None`: the node's.
    pub netns: Option<PathBuf>,
    /// Join the user namespace that owns `netns` (a pod with its own user
    /// namespace: CRI made the netns inside it).
    pub netns_user: bool,
    /// Its own IPC namespace (not with the node's IPC).
    pub ipc: bool,
    /// Its own UTS namespace (not with the node's network).
    pub uts: bool,
    /// Its own PID namespace, where the holder is pid 1 (unless the pod uses
    /// the node's PIDs).
    pub pid: bool,
    /// The pod's hostname, set in its own UTS namespace.
    pub hostname: Option<String>,
    /// sysctls to write, in order, as `/proc/sys` paths relative to it.
    pub sysctls: Vec<(String, String)>,
    /// The pod's cgroup parent (cgroupfs path or systemd slice), if any.
    pub cgroup_parent: Option<String>,
    /// DNS settings for resolv.conf; `None`: the node's file.
    pub dns: Option<Dns>,
}

/// The pod's DNS configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// resolver options.
    pub options: Vec<String>,
}

impl Dns {
    /// resolv.conf's text: a line for each non-empty list.
    pub fn resolv_conf(&self) -> String {
        let mut text = String::new();
        if !self.searches.is_empty() {
            text += &format!("search {}\n", self.searches.join(" "));
        }
        for s in &self.servers {
            text += &format!("nameserver {s}\n");
        }
        if !self.options.is_empty() {
            text += &format!("options {}\n", self.options.join(" "));
        }
        text
    }
}

/// CRI's defaults for a pod on its own network (both on in containerd's
/// defaults, `enable_unprivileged_ports` and `enable_unprivileged_icmp`).
const UNPRIVILEGED_PORTS: (&str, &str) = ("net.ipv4.ip_unprivileged_port_start", "0");
const UNPRIVILEGED_ICMP: (&str, &str) = ("net.ipv4.ping_group_range", "0 2147483647");

impl PodPlan {
    /// The plan for a pod: `options` is CreateSandbox's (the pod config;
    /// absent from other clients than CRI), `netns` its netns path.
    pub fn new(options: Option<(&str, &[u8])>, netns: &str) -> Result<PodPlan> {
        let config = match options {
            Some((POD_CONFIG_TYPE, bytes)) => PodSandboxConfig::parse_from_bytes(bytes).map_err(
                Error::decode("the pod config (runtime.v1.PodSandboxConfig)"),
            )?,
            Some((other, _)) if !other.is_empty() => {
                return Err(Error::InvalidArgument(format!(
                    "sandbox options of type {other:?}: expected {POD_CONFIG_TYPE}"
                )))
            }
            _ => PodSandboxConfig::new(),
        };
        PodPlan::from_config(&config, netns)
    }

    fn from_config(config: &PodSandboxConfig, netns: &str) -> Result<PodPlan> {
        let linux = config.linux.as_ref();
        let security = linux.and_then(|l| l.security_context.as_ref());
        let ns = security.and_then(|s| s.namespace_options.as_ref());
        let mode = |m: Option<NamespaceMode>| m.unwrap_or(NamespaceMode::POD);
        let network = mode(ns.map(|n| n.network.enum_value_or_default()));
        let pid = mode(ns.map(|n| n.pid.enum_value_or_default()));
        let ipc = mode(ns.map(|n| n.ipc.enum_value_or_default()));
        let host_network = network == NamespaceMode::NODE;
        if !host_network && netns.is_empty() {
            return Err(Error::InvalidArgument(
                "the pod has its own network but CreateSandbox gave no netns path".into(),
            ));
        }
        let own_user = user_namespace(ns.and_then(|n| n.userns_options.as_ref()))?;
        if own_user && host_network {
            return Err(Error::InvalidArgument(
                "a pod in its own user namespace on the node's network: not supported by tether's sandbox (CRI makes the user namespace with the pod's netns)".into(),
            ));
        }
        let mut sysctls: Vec<(String, String)> = linux
            .map(|l| {
                let mut v: Vec<_> = l.sysctls.clone().into_iter().collect();
                v.sort();
                v
            })
            .unwrap_or_default();
        if !host_network {
            let mut defaults = vec![UNPRIVILEGED_PORTS];
            if !own_user {
                defaults.push(UNPRIVILEGED_ICMP);
            }
            for (k, v) in defaults {
                if !sysctls.iter().any(|(key, _)| key == k) {
                    sysctls.push((k.to_string(), v.to_string()));
                }
            }
        }
        let dns = config.dns_config.as_ref().map(|d| Dns {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        });
        let cgroup_parent = linux
            .map(|l| l.cgroup_parent.clone())
            .filter(|p| !p.is_empty());
        if let Some(p) = &cgroup_parent {
            check_cgroup_parent(p)?;
        }
        Ok(PodPlan {
            netns: (!host_network).then(|| PathBuf::from(netns)),
            netns_user: own_user,
            ipc: ipc != NamespaceMode::NODE,
            uts: !host_network,
            pid: pid != NamespaceMode::NODE,
            hostname: (!host_network && !config.hostname.is_empty())
                .then(|| config.hostname.clone()),
            sysctls: sysctls
                .into_iter()
                .map(|(k, v)| Ok((sysctl_path(&k)?, v)))
                .collect::<Result<_>>()?,
            cgroup_parent,
            dns,
        })
    }
}

/// Whether the pod has a user namespace of its own; refuses the settings
/// runc would refuse for the pause container.
fn user_namespace(u: Option<&crate::protos::cri_pod::UserNamespace>) -> Result<bool> {
    let Some(u) = u else {
        return Ok(false);
    };
    let bad = |why: &str| Err(Error::InvalidArgument(format!("user namespace: {why}")));
    match u.mode.enum_value_or_default() {
        NamespaceMode::NODE if u.uids.is_empty() && u.gids.is_empty() => Ok(false),
        NamespaceMode::NODE => bad("mode NODE takes no mappings"),
        NamespaceMode::POD => {
            if u.uids.is_empty() || u.gids.is_empty() {
                return bad("mode POD needs uid and gid mappings");
            }
            let maps_root = |m: &[crate::protos::cri_pod::IDMapping]| {
                m.iter().any(|m| m.container_id == 0 && m.length > 0)
            };
            if !maps_root(&u.uids) || !maps_root(&u.gids) {
                return bad("container id 0 is not mapped");
            }
            Ok(true)
        }
        other => bad(&format!("mode {other:?} is not supported for a pod")),
    }
}

/// A sysctl key (`net.ipv4.ip_forward`, or with slashes when a component
/// holds dots) as a path under /proc/sys.
fn sysctl_path(key: &str) -> Result<String> {
    let path = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    if path.is_empty()
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::InvalidArgument(format!("sysctl {key:?}")));
    }
    Ok(path)
}

fn check_cgroup_parent(p: &str) -> Result<()> {
    let systemd = p.ends_with(".slice") && !p.contains('/');
    let cgroupfs = p.starts_with('/') && !p.split('/').any(|c| c == "..");
    if systemd || cgroupfs {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("cgroup parent {p:?}")))
    }
}

#[cfg(test)]
mod tests;

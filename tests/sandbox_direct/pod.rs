//! The sandbox test's fixture: a sandbox bundle laid out as containerd
//! lays it out, a network namespace held by a process of the test, a cgroup
//! parent, and a shim started for the sandbox; all stopped and removed on
//! drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use protobuf::well_known_types::any::Any;
use protobuf::Message;
use tether::client::ShimSpawn;
use tether::protos::cri_pod::{DNSConfig, LinuxPodSandboxConfig, PodSandboxConfig};
use tether::protos::sandbox::*;
use tether::protos::sandbox_ttrpc::SandboxClient;

use crate::common::direct::*;

pub const CONTROLLER: &str = "io.containerd.sandbox.controller.v1.shim";
pub const CRI: &str = "io.containerd.grpc.v1.cri";

/// A sandbox bundle as containerd makes one, a netns, and a shim for it.
pub struct Pod {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub namespace: String,
    pub netns_holder: Child,
    pub client: SandboxClient,
    pub tasks: tether::protos::shim_ttrpc::TaskClient,
    pub shim_pid: u32,
    pub cgroup_parent: String,
}

impl Pod {
    pub async fn new() -> Pod {
        require_root_and_runc();
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let namespace = format!("tether-sandbox-{}-{n}", std::process::id());
        let id = format!("pod{n}");
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir
            .path()
            .join("state")
            .join(CONTROLLER)
            .join(&namespace)
            .join(&id);
        let work = dir
            .path()
            .join("root")
            .join(CONTROLLER)
            .join(&namespace)
            .join(&id);
        fs::create_dir_all(&bundle).unwrap();
        fs::create_dir_all(&work).unwrap();
        std::os::unix::fs::symlink(&work, bundle.join("work")).unwrap();
        // The daemon logs to `log` in its bundle if the file exists.
        fs::write(bundle.join("log"), "").unwrap();
        let netns_holder = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let cgroup_parent = format!("/tether-sandbox-test-{}-{n}", std::process::id());
        // No parent made: the holder makes it (as runc does for pause).
        let spawn = ShimSpawn {
            binary: &shim_binary(),
            bundle: &bundle,
            namespace: &namespace,
            id: &id,
            address: &dir.path().join("containerd.sock").display().to_string(),
            ttrpc_address: "",
            options: &[],
        };
        let address = spawn.start().expect("shim start");
        let ttrpc = ttrpc::r#async::Client::connect(&address).await.unwrap();
        let tasks = tether::protos::shim_ttrpc::TaskClient::new(ttrpc.clone());
        let connect = tether::protos::shim::ConnectRequest {
            id: id.clone(),
            ..Default::default()
        };
        // Connect with the sandbox id succeeds: containerd calls it when it
        // loads the shim again.
        let shim_pid = tasks.connect(ctx(), &connect).await.unwrap().shim_pid;
        Pod {
            dir,
            id,
            namespace,
            netns_holder,
            client: SandboxClient::new(ttrpc),
            tasks,
            shim_pid,
            cgroup_parent,
        }
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir
            .path()
            .join("state")
            .join(CONTROLLER)
            .join(&self.namespace)
            .join(&self.id)
    }

    /// The shim binary's `delete` in the sandbox bundle, as containerd runs
    /// it when the shim's connection closed.
    pub fn shim_delete(&self) -> std::io::Result<tether::protos::shim::DeleteResponse> {
        let bundle = self.bundle();
        ShimSpawn {
            binary: &shim_binary(),
            bundle: &bundle,
            namespace: &self.namespace,
            id: &self.id,
            address: "/run/containerd/containerd.sock",
            ttrpc_address: "",
            options: &[],
        }
        .delete()
    }

    /// How many times the daemon says it was upgraded in place.
    pub async fn upgrades(&self) -> u32 {
        let req = tether::protos::shim::ConnectRequest::default();
        let v = self.tasks.connect(ctx(), &req).await.unwrap().version;
        v.split("(upgraded ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no upgrade count in {v:?}"))
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.bundle().join("log")).unwrap_or_default()
    }

    pub fn cri_root(&self) -> PathBuf {
        self.dir
            .path()
            .join("root")
            .join(CRI)
            .join("sandboxes")
            .join(&self.id)
    }

    pub fn cri_state(&self) -> PathBuf {
        self.dir
            .path()
            .join("state")
            .join(CRI)
            .join("sandboxes")
            .join(&self.id)
    }

    pub fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.netns_holder.id())
    }

    pub fn config(&self) -> PodSandboxConfig {
        let mut c = PodSandboxConfig::new();
        c.hostname = "pod-host".into();
        let mut dns = DNSConfig::new();
        dns.servers = vec!["10.96.0.10".into()];
        dns.searches = vec!["default.svc".into()];
        c.dns_config = Some(dns).into();
        let mut linux = LinuxPodSandboxConfig::new();
        linux.cgroup_parent = self.cgroup_parent.clone();
        linux
            .sysctls
            .insert("kernel.shm_rmid_forced".into(), "1".into());
        c.linux = Some(linux).into();
        c
    }

    pub async fn create_and_start(&self) -> u32 {
        let mut options = Any::new();
        options.type_url = "runtime.v1.PodSandboxConfig".into();
        options.value = self.config().write_to_bytes().unwrap();
        let req = CreateSandboxRequest {
            sandbox_id: self.id.clone(),
            bundle_path: self.bundle().display().to_string(),
            options: Some(options).into(),
            netns_path: self.netns(),
            ..Default::default()
        };
        self.client
            .create_sandbox(ctx(), &req)
            .await
            .expect("CreateSandbox");
        let req = StartSandboxRequest {
            sandbox_id: self.id.clone(),
            ..Default::default()
        };
        let started = self
            .client
            .start_sandbox(ctx(), &req)
            .await
            .expect("StartSandbox");
        assert!(started.created_at.seconds > 0);
        started.pid
    }

    pub async fn status(&self) -> SandboxStatusResponse {
        let req = SandboxStatusRequest {
            sandbox_id: self.id.clone(),
            ..Default::default()
        };
        self.client
            .sandbox_status(ctx(), &req)
            .await
            .expect("SandboxStatus")
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if alive(self.shim_pid) {
            sigkill(self.shim_pid);
        }
        // What containerd does after a shim's death: its `delete`, which
        // kills a holder left running.
        let _ = self.shim_delete();
        let root = runc_root(&self.namespace);
        runc_delete_force(&root, &format!("{}-c1", self.id));
        let _ = fs::remove_dir_all(&root);
        let _ = self.netns_holder.kill();
        let _ = self.netns_holder.wait();
        for m in [self.cri_state().join("shm"), self.bundle().join("shm")] {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        for d in cgroup_dirs(&self.cgroup_parent).iter().rev() {
            for leaf in fs::read_dir(d).into_iter().flatten().flatten() {
                if leaf.path().is_dir() {
                    // Empty once the killed holder has exited.
                    let _ = poll_until(std::time::Duration::from_secs(5), || {
                        fs::remove_dir(leaf.path()).ok()
                    });
                }
            }
            let _ = fs::remove_dir(d);
        }
    }
}

/// The cgroup `path` in every v1 hierarchy this host has (or the unified
/// one).
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.join(path.trim_start_matches('/'))];
    }
    // Every v1 hierarchy (the links such as cpu -> cpu,cpuacct are left
    // out, and so is hybrid mode's unified v2 mount).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|r| r.starts_with("cgroup "))
        })
        .filter_map(|l| l.split(' ').nth(4))
        .map(|point| Path::new(point).join(path.trim_start_matches('/')))
        .collect()
}

pub fn ns(pid: impl std::fmt::Display, kind: &str) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

/// `cmd` run in the holder's namespaces (`flags` as nsenter takes them).
pub fn inside(pid: u32, flags: &[&str], cmd: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--target={pid}"))
        .args(flags)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether this process has CAP_SYS_RESOURCE (bit 24 of CapEff).
pub fn has_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(eff.trim(), 16).unwrap() & (1 << 24) != 0
}

pub fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(p), fs::metadata(p.parent().unwrap())) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

//! The files CRI bind-mounts into each container of a pod: `hostname`,
//! `hosts` and `resolv.conf` under CRI's root directory for the sandbox, and
//! `shm` under its state directory. In shim mode CRI only reads them (and
//! mounts each one that exists), so the sandbox makes them.
//!
//! The originals live in the sandbox's bundle (`etc/` and a tmpfs at
//! `shm`); CRI's paths get copies and a bind mount. A restarted containerd
//! removes CRI's directories of every sandbox it has no pause container for,
//! which is every shim sandbox: [`CriFiles::publish`] puts them back, the
//! same shm included, before the next container is created.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::plan::PodPlan;
use crate::error::{Error, Result};

/// The sandbox controller's directory component (`<containerd state>/<this>/<ns>/<id>`).
const CONTROLLER_DIR: &str = "io.containerd.sandbox.controller.v1.shim";
/// CRI's directory component, under containerd's root and state.
const CRI_DIR: &str = "io.containerd.grpc.v1.cri";
/// The three files, in the bundle's `etc/` and CRI's root directory.
const FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];
/// The size of the pod's /dev/shm (CRI's default).
const SHM_OPTIONS: &str = "mode=1777,size=67108864";

/// Where a sandbox's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriFiles {
    bundle: PathBuf,
    root_dir: PathBuf,
    state_dir: PathBuf,
    /// Whether the pod has a shm of its own (not with the node's IPC).
    shm: bool,
}

impl CriFiles {
    /// CRI's directories of sandbox `id`, found from its bundle:
    /// `<containerd state>/io.containerd.sandbox.controller.v1.shim/<ns>/<id>`,
    /// whose `work` link points to the same path under containerd's root.
    pub fn from_bundle(bundle: &Path, id: &str, shm: bool) -> Result<CriFiles> {
        let bad = |what: &str| {
            Error::InvalidArgument(format!(
                "sandbox bundle {}: {what} (expected <containerd state>/{CONTROLLER_DIR}/<namespace>/{id})",
                bundle.display()
            ))
        };
        let state = containerd_dir(bundle, id).ok_or_else(|| bad("not a sandbox bundle"))?;
        let work = fs::read_link(bundle.join("work")).map_err(|_| bad("no work link"))?;
        let root = containerd_dir(&work, id).ok_or_else(|| bad("its work link"))?;
        let sandboxes = |base: &Path| base.join(CRI_DIR).join("sandboxes").join(id);
        Ok(CriFiles {
            bundle: bundle.to_path_buf(),
            root_dir: sandboxes(&root),
            state_dir: sandboxes(&state),
            shm,
        })
    }

    /// CRI's directory for the three files.
    #[cfg(test)]
    pub fn root_dir(&self) -> &Path {
        &self.root_dir
    }

    /// CRI's directory for shm.
    #[cfg(test)]
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Writes the originals into the bundle (and mounts its shm), then
    /// publishes them at CRI's paths.
    pub fn prepare(&self, plan: &PodPlan) -> Result<()> {
        let etc = self.bundle.join("etc");
        mkdir(&etc, 0o755)?;
        let hostname = match &plan.hostname {
            Some(h) => h.clone(),
            None => nix::unistd::gethostname()
                .map_err(Error::sys("reading the node's hostname"))?
                .to_string_lossy()
                .into_owned(),
        };
        write(&etc.join("hostname"), format!("{hostname}\n").as_bytes())?;
        let hosts = fs::read("/etc/hosts").unwrap_or_default();
        write(&etc.join("hosts"), &hosts)?;
        let resolv = match &plan.dns {
            Some(d) => d.resolv_conf().into_bytes(),
            None => fs::read("/etc/resolv.conf").unwrap_or_default(),
        };
        write(&etc.join("resolv.conf"), &resolv)?;
        if self.shm {
            let shm = self.bundle.join("shm");
            mkdir(&shm, 0o700)?;
            if !is_mount_point(&shm) {
                let flags = MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                mount(Some("shm"), &shm, Some("tmpfs"), flags, Some(SHM_OPTIONS))
                    .map_err(|errno| mount_error("tmpfs", "shm", &shm, errno))?;
            }
        }
        self.publish()
    }

    /// Makes CRI's copies and shm mount where they are missing. Cheap when
    /// nothing is: a few stats.
    pub fn publish(&self) -> Result<()> {
        mkdir_all(&self.root_dir)?;
        for f in FILES {
            let at = self.root_dir.join(f);
            if !at.exists() {
                let text =
                    fs::read(self.bundle.join("etc").join(f)).map_err(Error::io("read", &at))?;
                write(&at, &text)?;
            }
        }
        if self.shm {
            mkdir_all(&self.state_dir)?;
            let at = self.state_dir.join("shm");
            mkdir(&at, 0o700)?;
            if !is_mount_point(&at) {
                let shm = self.bundle.join("shm");
                mount(
                    Some(&shm),
                    &at,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|errno| mount_error("bind", &shm.display().to_string(), &at, errno))?;
            }
        }
        Ok(())
    }

    /// Unmounts shm, CRI's bind and the bundle's tmpfs (the pod stopped).
    pub fn unmount(&self) {
        for at in [self.state_dir.join("shm"), self.bundle.join("shm")] {
            while is_mount_point(&at) {
                if let Err(e) = umount2(&at, MntFlags::MNT_DETACH) {
                    tracing::warn!(path = %at.display(), error = %e, "unmounting the pod's shm");
                    break;
                }
            }
        }
    }

    /// Unmounts, and removes CRI's two directories and the originals.
    pub fn remove(&self) {
        self.unmount();
        for dir in [&self.root_dir, &self.state_dir, &self.bundle.join("etc")] {
            if let Err(e) = fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %dir.display(), error = %e, "removing the pod's files");
                }
            }
        }
        let _ = fs::remove_dir(self.bundle.join("shm"));
    }
}

/// `<base>` for a path `<base>/io.containerd.sandbox.controller.v1.shim/<ns>/<id>`.
fn containerd_dir(path: &Path, id: &str) -> Option<PathBuf> {
    if path.file_name()? != id {
        return None;
    }
    let ns = path.parent()?;
    crate::ids::validate("namespace", ns.file_name()?.to_str()?).ok()?;
    let controller = ns.parent()?;
    (controller.file_name()? == CONTROLLER_DIR)
        .then(|| controller.parent().map(Path::to_path_buf))?
}

/// Whether `path` is the root of a mount (its device differs from its
/// parent's).
fn is_mount_point(path: &Path) -> bool {
    let (Ok(me), Some(Ok(parent))) = (fs::metadata(path), path.parent().map(fs::metadata)) else {
        return false;
    };
    me.dev() != parent.dev()
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(Error::io("mkdir", path)(e)),
        _ => Ok(()),
    }
}

fn mkdir_all(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o755)
        .recursive(true)
        .create(path)
        .map_err(Error::io("mkdir", path))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::records::write_atomic(path, bytes, 0o644)
}

fn mount_error(kind: &str, device: &str, target: &Path, errno: nix::Error) -> Error {
    Error::Mount {
        kind: kind.into(),
        device: device.into(),
        target: target.to_path_buf(),
        errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(root: &Path) -> PathBuf {
        let bundle = root.join("state").join(CONTROLLER_DIR).join("k8s.io/pod1");
        let work = root.join("root").join(CONTROLLER_DIR).join("k8s.io/pod1");
        fs::create_dir_all(&bundle).unwrap();
        fs::create_dir_all(&work).unwrap();
        std::os::unix::fs::symlink(&work, bundle.join("work")).unwrap();
        bundle
    }

    #[test]
    fn cri_dirs_come_from_the_bundle_and_its_work_link() {
        let t = tempfile::tempdir().unwrap();
        let bundle = layout(t.path());
        let f = CriFiles::from_bundle(&bundle, "pod1", true).unwrap();
        assert_eq!(
            f.root_dir(),
            t.path().join("root").join(CRI_DIR).join("sandboxes/pod1")
        );
        assert_eq!(
            f.state_dir(),
            t.path().join("state").join(CRI_DIR).join("sandboxes/pod1")
        );
        assert!(CriFiles::from_bundle(&bundle, "pod2", true).is_err());
        let other = t.path().join("elsewhere/k8s.io/pod1");
        fs::create_dir_all(&other).unwrap();
        assert!(CriFiles::from_bundle(&other, "pod1", true).is_err());
    }

    #[test]
    fn files_are_written_and_published_again_when_removed() {
        let t = tempfile::tempdir().unwrap();
        let bundle = layout(t.path());
        // No shm: that needs root and a mount; the e2e tests cover it.
        let f = CriFiles::from_bundle(&bundle, "pod1", false).unwrap();
        let plan = PodPlan {
            hostname: Some("web-0".into()),
            dns: Some(super::super::plan::Dns {
                servers: vec!["10.0.0.10".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        f.prepare(&plan).unwrap();
        let read = |n: &str| fs::read_to_string(f.root_dir().join(n)).unwrap();
        assert_eq!(read("hostname"), "web-0\n");
        assert_eq!(read("resolv.conf"), "nameserver 10.0.0.10\n");
        let mode = fs::metadata(f.root_dir().join("hosts")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o644);
        fs::remove_dir_all(t.path().join("root").join(CRI_DIR)).unwrap();
        f.publish().unwrap();
        assert_eq!(read("hostname"), "web-0\n");
        f.remove();
        assert!(!f.root_dir().exists());
        assert!(!bundle.join("etc").exists());
    }
}

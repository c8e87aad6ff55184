//! Mounting the rootfs containerd hands over in Create, and unmounting it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

pub(crate) mod idmap;

use crate::error::{Error, Result};
use crate::reaper::Reaper;

/// One mount from the Create request (domain copy of containerd.types.Mount).
#[derive(Clone, PartialEq, Eq)]
pub struct Mount {
    /// File system type ("overlay", "bind", ...).
    pub kind: String,
    /// Source device or directory.
    pub source: String,
    /// Mount options, as `mount -o` takes them.
    pub options: Vec<String>,
}

/// Shows the options' count only: they can carry credentials and layer
/// paths, and no log should hold them.
impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .field("options", &format_args!("<{} options>", self.options.len()))
            .finish()
    }
}

/// Splits `mount -o` style options into flags, propagation flags and data.
pub(crate) fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                propagation |= match o.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if o.starts_with('r') {
                    propagation |= MsFlags::MS_REC;
                }
                continue;
            }
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, propagation, data.join(","))
}

/// Mounts `mounts` on `target`, in order. On failure, whatever was mounted is
/// unmounted again. Mounts with `uidmap=`/`gidmap=` options are idmapped
/// through `userns`, a user namespace with those maps (`idmap`).
/// `reaper` claims the helper processes some mounts take (see `mount_one`).
pub fn mount_all(
    mounts: &[Mount],
    target: &Path,
    userns: Option<&OwnedFd>,
    reaper: &Reaper,
) -> Result<()> {
    let scratch = target.with_file_name("idmapped-layers");
    for (i, m) in mounts.iter().enumerate() {
        let mounted = match idmap::split_options(&m.options) {
            Ok((rest, Some(_))) => match userns {
                Some(ns) => idmap::mount_idmapped(m, rest, target, ns, &scratch, reaper),
                None => Err(Error::InvalidArgument(format!(
                    "the {} mount has uidmap/gidmap options but no user namespace was made",
                    m.kind
                ))),
            },
            Ok((_, None)) => mount_one(m, target, reaper),
            Err(e) => Err(e),
        };
        if let Err(e) = mounted {
            if i > 0 {
                unmount_all(target);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Mounts one mount on `target`, its options as the kernel takes them. An
/// overlay whose options pass what one page holds (many layers) names its
/// lower layers relative to their common directory, and is mounted from
/// there by a helper process (`sys::mount_from_dir`; the daemon itself never
/// changes directory), as containerd's own mount code does.
pub(crate) fn mount_one(m: &Mount, target: &Path, reaper: &Reaper) -> Result<()> {
    let (mut flags, propagation, data) = parse_options(&m.options);
    if m.kind == "bind" || m.kind == "rbind" {
        flags |= MsFlags::MS_BIND;
        if m.kind == "rbind" {
            flags |= MsFlags::MS_REC;
        }
    }
    if m.kind == "overlay" && data.len() >= COMPACT_AT {
        if let Some((dir, short)) = relative_lowerdirs(&data).filter(|(_, d)| d.len() < PAGE) {
            mount_overlay_from(m, &dir, target, flags, &short, reaper)?;
            return finish(m, target, flags, propagation);
        }
    }
    if data.len() >= PAGE {
        return Err(Error::InvalidArgument(format!(
            "mount options of the {} mount are {} bytes, over the kernel's limit of one page",
            m.kind,
            data.len()
        )));
    }
    let fstype =
        (!m.kind.is_empty() && !flags.contains(MsFlags::MS_BIND)).then_some(m.kind.as_str());
    let data_opt = (!data.is_empty()).then_some(data.as_str());
    mount(Some(m.source.as_str()), target, fstype, flags, data_opt)
        .map_err(|e| mount_error(m, target, e))?;
    finish(m, target, flags, propagation)
}

/// The kernel takes one page of mount data.
const PAGE: usize = 4096;
/// Overlay options from this size on get their layers made relative (with
/// room to spare below the page, as containerd does).
const COMPACT_AT: usize = PAGE - 512;

/// The read-only remount and propagation steps after the mount itself.
fn finish(m: &Mount, target: &Path, flags: MsFlags, propagation: MsFlags) -> Result<()> {
    // A read-only bind mount takes a second, remounting step.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        let ro = flags | MsFlags::MS_REMOUNT;
        mount(None::<&str>, target, None::<&str>, ro, None::<&str>)
            .map_err(|e| mount_error(m, target, e))?;
    }
    if !propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .map_err(|e| mount_error(m, target, e))?;
    }
    Ok(())
}

/// The overlay's data with its `lowerdir=` layers relative to the deepest
/// directory they share, and that directory.
fn relative_lowerdirs(data: &str) -> Option<(PathBuf, String)> {
    let opts: Vec<&str> = data.split(',').collect();
    let dir = common_parent(&lower_layers(opts.iter().copied()))?;
    let relative = |l: &str| {
        Path::new(l)
            .strip_prefix(&dir)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| l.to_string())
    };
    let short = map_lower_layers(opts.iter().copied(), relative).join(",");
    Some((dir, short))
}

/// The layers of the `lowerdir=` options among `options`, in order.
pub(crate) fn lower_layers<'a>(options: impl Iterator<Item = &'a str>) -> Vec<String> {
    options
        .filter_map(|o| o.strip_prefix("lowerdir="))
        .flat_map(|v| v.split(':').map(str::to_string))
        .collect()
}

/// `options` with each layer of `lowerdir=` replaced by `f(layer)`.
pub(crate) fn map_lower_layers<'a>(
    options: impl Iterator<Item = &'a str>,
    f: impl Fn(&str) -> String,
) -> Vec<String> {
    options
        .map(|o| match o.strip_prefix("lowerdir=") {
            Some(v) => format!(
                "lowerdir={}",
                v.split(':').map(&f).collect::<Vec<_>>().join(":")
            ),
            None => o.to_string(),
        })
        .collect()
}

/// Mounts the overlay `m` on `target` with `data` read from within `dir`, in
/// a helper process (this binary as a user-namespace holder, which exits at
/// once: its stdin is empty).
fn mount_overlay_from(
    m: &Mount,
    dir: &Path,
    target: &Path,
    flags: MsFlags,
    data: &str,
    reaper: &Reaper,
) -> Result<()> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(idmap::HOLDER_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let os_error = |e: std::io::Error| {
        mount_error(
            m,
            target,
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    };
    crate::sys::mount_from_dir(
        &mut cmd,
        dir,
        &m.source,
        target,
        "overlay",
        flags.bits(),
        data,
    )
    .map_err(os_error)?;
    // spawn returns once the child has exec'd, so the mount is done; the
    // reaper reaps the helper whenever it exits (nobody waits for it).
    reaper.spawn(&mut cmd).map(drop).map_err(os_error)
}

/// The deepest directory (not `/`) that holds every path in `paths`.
pub(crate) fn common_parent(paths: &[String]) -> Option<PathBuf> {
    let first = Path::new(paths.first()?);
    let mut common = first.parent()?.to_path_buf();
    for p in paths {
        while !Path::new(p).starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    (common.components().count() > 1).then_some(common)
}

fn mount_error(m: &Mount, target: &Path, errno: Errno) -> Error {
    Error::Mount {
        kind: m.kind.clone(),
        device: m.source.clone(),
        target: target.to_path_buf(),
        errno,
    }
}

/// Unmounts everything stacked on `target` (lazily, so a busy mount does not
/// fail the cleanup). Missing targets and non-mounts are fine.
pub fn unmount_all(target: &Path) {
    for _ in 0..64 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return,
            Err(e) => {
                tracing::warn!(path = %target.display(), error = %e, "unmount failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn debug_output_holds_no_option() {
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: opts(&["lowerdir=/secret/l", "upperdir=/u"]),
        };
        let shown = format!("{m:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<2 options>"), "{shown}");
    }

    #[test]
    fn splits_flags_from_data() {
        let (f, p, d) = parse_options(&opts(&[
            "ro",
            "nosuid",
            "lowerdir=/a:/b",
            "upperdir=/u",
            "rprivate",
        ]));
        assert_eq!(f, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(p, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(d, "lowerdir=/a:/b,upperdir=/u");
    }

    #[test]
    fn later_options_win() {
        let (f, _, _) = parse_options(&opts(&["ro", "rw", "rbind"]));
        assert_eq!(f, MsFlags::MS_BIND | MsFlags::MS_REC);
    }

    #[test]
    fn many_layers_become_relative_to_their_directory() {
        let layers: Vec<String> = (1..=81)
            .map(|i| {
                format!(
                    "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/{i}/fs"
                )
            })
            .collect();
        let data = format!(
            "index=off,lowerdir={},upperdir=/u/fs,workdir=/u/work",
            layers.join(":")
        );
        assert!(data.len() > PAGE);
        let (dir, short) = relative_lowerdirs(&data).unwrap();
        assert_eq!(
            dir,
            Path::new("/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots")
        );
        assert!(short.len() < COMPACT_AT, "{}", short.len());
        assert!(
            short.starts_with("index=off,lowerdir=1/fs:2/fs:"),
            "{short}"
        );
        assert!(
            short.ends_with(":81/fs,upperdir=/u/fs,workdir=/u/work"),
            "{short}"
        );
        assert_eq!(relative_lowerdirs("upperdir=/u"), None);
    }
}

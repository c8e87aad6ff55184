//! Idmapped rootfs mounts: containerd's `uidmap=` and `gidmap=` mount
//! options.
//!
//! For a pod with its own user namespace (`hostUsers: false`), containerd 2's
//! overlay snapshotter (with remapped ids) hands over the rootfs with the
//! pod's mappings as mount options instead of chowning the image. They are
//! not kernel options: the shim has to make the image's files appear owned
//! by the mapped ids. For an overlay, every lower layer is seen through one
//! idmapped, read-only copy of the directory that holds them all; any other
//! mount (the bind mount of a one-layer image) is mounted and then idmapped
//! in place.
//!
//! Idmapping takes a user namespace with the mappings, which only a process
//! can make: a short-lived holder (this binary, run with [`HOLDER_ARG`])
//! unshares into an empty user namespace before it execs, the shim writes
//! its maps and opens the namespace, and the holder is let go.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::reaper::Reaper;

/// The argument that makes this binary a user-namespace holder: it waits
/// for its stdin to close, then exits 0.
pub const HOLDER_ARG: &str = "--tether-userns-holder";

/// Runs the holder (from `main`): waits until stdin reaches its end.
pub fn run_holder() -> std::process::ExitCode {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    std::process::ExitCode::SUCCESS
}

/// One `container-id:host-id:size` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    inside: u32,
    outside: u32,
    size: u32,
}

/// The uid and gid mappings of an idmapped mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdMaps {
    uids: Vec<Range>,
    gids: Vec<Range>,
}

impl IdMaps {
    /// The maps in `/proc/PID/{uid,gid}_map` form.
    fn proc_map(ranges: &[Range]) -> String {
        ranges
            .iter()
            .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.size))
            .collect()
    }
}

fn parse_ranges(what: &str, value: &str) -> Result<Vec<Range>> {
    let bad = |why: &str| Error::InvalidArgument(format!("mount option {what}={value:?}: {why}"));
    let mut out = Vec::new();
    for part in value.split(',') {
        let nums: Vec<&str> = part.split(':').collect();
        let [inside, outside, size] = nums[..] else {
            return Err(bad("each mapping is container-id:host-id:size"));
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| bad("ids and sizes are numbers"))
        };
        let r = Range {
            inside: num(inside)?,
            outside: num(outside)?,
            size: num(size)?,
        };
        if r.size == 0 {
            return Err(bad("a mapping's size is not 0"));
        }
        out.push(r);
    }
    Ok(out)
}

/// Splits the `uidmap=`/`gidmap=` options off `options`: the rest, and the
/// maps when both are there. One without the other is an error, as
/// containerd's own mount code has it.
pub(crate) fn split_options(options: &[String]) -> Result<(Vec<String>, Option<IdMaps>)> {
    let (mut uid, mut gid, mut rest) = (None, None, Vec::new());
    for o in options {
        if let Some(v) = o.strip_prefix("uidmap=") {
            uid = Some(parse_ranges("uidmap", v)?);
        } else if let Some(v) = o.strip_prefix("gidmap=") {
            gid = Some(parse_ranges("gidmap", v)?);
        } else {
            rest.push(o.clone());
        }
    }
    match (uid, gid) {
        (Some(uids), Some(gids)) => Ok((rest, Some(IdMaps { uids, gids }))),
        (None, None) => Ok((rest, None)),
        _ => Err(Error::InvalidArgument(
            "mount options give uidmap= without gidmap= or the other way round".into(),
        )),
    }
}

/// The maps the rootfs `mounts` ask for: none, or one set shared by all the
/// mounts that have any.
pub(crate) fn needed(mounts: &[super::Mount]) -> Result<Option<IdMaps>> {
    let mut found: Option<IdMaps> = None;
    for m in mounts {
        if let (_, Some(maps)) = split_options(&m.options)? {
            match &found {
                Some(f) if *f != maps => {
                    return Err(Error::InvalidArgument(
                        "rootfs mounts with different uidmap/gidmap options".into(),
                    ))
                }
                _ => found = Some(maps),
            }
        }
    }
    Ok(found)
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A user namespace with `maps`, as a descriptor of /proc/PID/ns/user.
pub(crate) async fn user_namespace(maps: &IdMaps, reaper: &Reaper) -> Result<OwnedFd> {
    let exe = PathBuf::from("/proc/self/exe");
    let mut cmd = Command::new(&exe);
    cmd.arg(HOLDER_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::sys::in_new_user_namespace(&mut cmd);
    // spawn returns once the child has exec'd, so it has unshared already.
    let (mut child, exit) = reaper
        .spawn(&mut cmd)
        .map_err(|e| io_error("starting a user-namespace holder", &exe, e))?;
    let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
    let opened = (|| {
        for (file, ranges) in [("uid_map", &maps.uids), ("gid_map", &maps.gids)] {
            let path = proc_dir.join(file);
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(IdMaps::proc_map(ranges).as_bytes()))
                .map_err(|e| io_error("writing", &path, e))?;
        }
        let ns = proc_dir.join("ns/user");
        fs::File::open(&ns)
            .map(OwnedFd::from)
            .map_err(|e| io_error("opening", &ns, e))
    })();
    // Closing its stdin lets the holder go; the descriptor keeps the
    // namespace.
    drop(child.stdin.take());
    exit.wait().await;
    opened
}

/// Mounts the rootfs mount `m` (whose options are `options`, the maps taken
/// off) on `target`, idmapped through `userns`. `scratch` is a directory
/// name free for the time of the call (for the overlay's idmapped layers).
pub(crate) fn mount_idmapped(
    m: &super::Mount,
    options: Vec<String>,
    target: &Path,
    userns: &OwnedFd,
    scratch: &Path,
    reaper: &Reaper,
) -> Result<()> {
    let plain = super::Mount {
        options,
        ..m.clone()
    };
    if m.kind != "overlay" {
        super::mount_one(&plain, target, reaper)?;
        let tree = crate::sys::idmapped_clone(target, userns.as_fd(), false)
            .map_err(|e| io_error("idmapping (open_tree, mount_setattr)", target, e));
        let attached = tree.and_then(|t| {
            crate::sys::attach_mount(t.as_fd(), target)
                .map_err(|e| io_error("idmapping (move_mount)", target, e))
        });
        if attached.is_err() {
            super::unmount_all(target);
        }
        return attached;
    }
    // Every lowerdir through one idmapped, read-only copy of their common
    // parent directory.
    let lowers = super::lower_layers(plain.options.iter().map(String::as_str));
    let common = super::common_parent(&lowers).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "idmapped overlay: the lower layers {lowers:?} share no directory below /"
        ))
    })?;
    // What a shim killed mid-mount may have left.
    if scratch.exists() {
        super::unmount_all(scratch);
        let _ = fs::remove_dir(scratch);
    }
    fs::create_dir(scratch).map_err(|e| io_error("creating", scratch, e))?;
    let result = (|| {
        let tree = crate::sys::idmapped_clone(&common, userns.as_fd(), true)
            .map_err(|e| io_error("idmapping (open_tree, mount_setattr)", &common, e))?;
        crate::sys::attach_mount(tree.as_fd(), scratch)
            .map_err(|e| io_error("idmapping (move_mount)", scratch, e))?;
        let through = |l: &str| {
            let rel = Path::new(l).strip_prefix(&common).unwrap_or(Path::new(l));
            scratch.join(rel).display().to_string()
        };
        let options = super::map_lower_layers(plain.options.iter().map(String::as_str), through);
        let remapped = super::Mount {
            options,
            ..plain.clone()
        };
        super::mount_one(&remapped, target, reaper)
    })();
    // The overlay holds its layers; the idmapped copy can go.
    super::unmount_all(scratch);
    let _ = fs::remove_dir(scratch);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn maps_are_split_off_and_parsed() {
        let (rest, maps) = split_options(&opts(&[
            "index=off",
            "uidmap=0:65536:65536",
            "lowerdir=/a/1/fs:/a/2/fs",
            "gidmap=0:65536:65536,70000:1:5",
        ]))
        .unwrap();
        assert_eq!(rest, opts(&["index=off", "lowerdir=/a/1/fs:/a/2/fs"]));
        let maps = maps.unwrap();
        assert_eq!(IdMaps::proc_map(&maps.uids), "0 65536 65536\n");
        assert_eq!(IdMaps::proc_map(&maps.gids), "0 65536 65536\n70000 1 5\n");
    }

    #[test]
    fn half_or_malformed_maps_are_refused() {
        assert!(split_options(&opts(&["uidmap=0:1:2"])).is_err());
        assert!(split_options(&opts(&["uidmap=0:1", "gidmap=0:1:2"])).is_err());
        assert!(split_options(&opts(&["uidmap=0:x:2", "gidmap=0:1:2"])).is_err());
        assert!(split_options(&opts(&["uidmap=0:1:0", "gidmap=0:1:2"])).is_err());
        assert_eq!(
            split_options(&opts(&["ro"])).unwrap(),
            (opts(&["ro"]), None)
        );
    }

    #[test]
    fn common_parent_of_layers() {
        let p = |s: &[&str]| super::super::common_parent(&opts(s));
        assert_eq!(
            p(&["/var/lib/s/snapshots/1/fs", "/var/lib/s/snapshots/22/fs"]),
            Some(PathBuf::from("/var/lib/s/snapshots"))
        );
        assert_eq!(
            p(&["/var/lib/s/snapshots/1/fs"]),
            Some(PathBuf::from("/var/lib/s/snapshots/1"))
        );
        assert_eq!(p(&["/a/fs", "/b/fs"]), None);
        assert_eq!(p(&[]), None);
    }
}

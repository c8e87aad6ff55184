//! The holder's cgroup: a leaf under the pod's cgroup parent, where a pause
//! container would be (`<parent>/<sandbox id>` for a cgroupfs parent; for a
//! systemd slice, a plain directory `tether-sandbox-<id>` in the slice's
//! cgroup, as the shim has no systemd unit to offer). The pod's statistics
//! come from the parent.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::cgroup::{hierarchy_dirs, Cgroup};
use crate::error::{Error, Result};

/// The cgroup path of a parent in either form: `/kubepods/pod1`, or
/// `kubepods-besteffort-pod1.slice` (each dash a level, as systemd nests
/// slices: `/kubepods.slice/kubepods-besteffort.slice/...`).
pub fn parent_path(parent: &str) -> String {
    let Some(name) = parent
        .strip_suffix(".slice")
        .filter(|_| !parent.contains('/'))
    else {
        return parent.to_string();
    };
    let mut path = String::new();
    let mut prefix = String::new();
    for part in name.split('-').filter(|p| !p.is_empty()) {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    path
}

/// The holder's leaf for sandbox `id` under `parent`.
pub fn leaf_path(parent: &str, id: &str) -> String {
    let base = parent_path(parent);
    let systemd = base != parent;
    let base = base.trim_end_matches('/');
    if systemd {
        format!("{base}/tether-sandbox-{id}")
    } else {
        format!("{base}/{id}")
    }
}

/// Makes the leaf, and the parent if it is missing (as runc does for a
/// pause container), in every hierarchy, and moves `pid` into it.
pub fn place(leaf: &str, pid: u32) -> Result<()> {
    for l in hierarchy_dirs(leaf)? {
        fs::DirBuilder::new()
            .mode(0o755)
            .recursive(true)
            .create(&l)
            .map_err(Error::io("mkdir", &l))?;
        fill_cpuset(&l)?;
    }
    crate::cgroup::add_pid(leaf, pid).map(drop)
}

/// A new v1 cpuset cgroup has no CPUs and no memory nodes, and takes no
/// process until it has: each empty one from the hierarchy's root down to
/// `leaf` gets its parent's.
fn fill_cpuset(leaf: &Path) -> Result<()> {
    let mut chain: Vec<&Path> = leaf
        .ancestors()
        .take_while(|d| d.join("cpuset.cpus").exists())
        .collect();
    chain.reverse();
    for pair in chain.windows(2) {
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let own = fs::read_to_string(pair[1].join(f)).unwrap_or_default();
            if own.trim().is_empty() {
                let parent = fs::read_to_string(pair[0].join(f)).unwrap_or_default();
                fs::write(pair[1].join(f), parent.trim())
                    .map_err(Error::io("write", pair[1].join(f)))?;
            }
        }
    }
    Ok(())
}

/// Removes the leaf (its holder gone), in every hierarchy.
pub fn remove(leaf: &str) {
    let Ok(dirs) = hierarchy_dirs(leaf) else {
        return;
    };
    for d in dirs.iter().filter(|d| d.is_dir()) {
        if let Err(e) = fs::remove_dir(d) {
            tracing::warn!(path = %d.display(), error = %e, "removing the holder's cgroup");
        }
    }
}

/// The pod's statistics: its cgroup parent's.
pub fn stats(parent: &str) -> Result<protobuf::well_known_types::any::Any> {
    let path = parent_path(parent);
    if !hierarchy_dirs(&path)?.iter().any(|d| Path::new(d).is_dir()) {
        return Err(Error::NotFound(format!(
            "the pod's cgroup {parent:?} no longer exists"
        )));
    }
    Cgroup::at(&path)?.stats()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_in_either_form() {
        assert_eq!(parent_path("/kubepods/pod1"), "/kubepods/pod1");
        assert_eq!(
            parent_path("kubepods-besteffort-pod1.slice"),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
        );
        assert_eq!(leaf_path("/kubepods/pod1", "abc"), "/kubepods/pod1/abc");
        assert_eq!(
            leaf_path("kubepods.slice", "abc"),
            "/kubepods.slice/tether-sandbox-abc"
        );
    }
}

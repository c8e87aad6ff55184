//! runc's state as containerd's shims keep it: one root per namespace under
//! /run/containerd/runc, asked and cleaned with the runc under test (`runc_binary()`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::matrix::runc_binary;
use super::RUNC_ROOT;

/// runc's state root for the containers of `namespace`
/// (`/run/containerd/runc/<namespace>`).
pub fn runc_root(namespace: &str) -> PathBuf {
    Path::new(RUNC_ROOT).join(namespace)
}

/// Whether runc still knows container `id` under `root` (`runc state`
/// succeeds).
pub fn runc_knows(root: &Path, id: &str) -> bool {
    Command::new(runc_binary())
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .output()
        .unwrap()
        .status
        .success()
}

/// `runc delete --force` of container `id` under `root`, whatever state it
/// is in; errors (it is gone already) are ignored.
pub fn runc_delete_force(root: &Path, id: &str) {
    let _ = Command::new(runc_binary())
        .arg("--root")
        .arg(root)
        .args(["delete", "--force", id])
        .output();
}

//! Containers from images, through containerd's snapshotter, rather than
//! from a plain rootfs directory: the rootfs mounts reach the shim as
//! containerd's overlay snapshotter makes them.
//!
//! - An image of 81 layers: its overlay options (the lower layers' absolute
//!   paths) pass the kernel's one-page limit on mount data. The shim mounts
//!   it with the layers relative to their common directory, from a helper
//!   process in that directory, as containerd's own mount code does (the
//!   shim failed with "mount options of the overlay mount are 6502 bytes,
//!   over the kernel's limit of one page" before).
//!
//! The image is made by tests/images/layers.py (static busybox, one file a
//! layer) and imported with `ctr images import`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{describe_output, Containerd, Rootfs};

/// Writes an image archive with `layers` layers named `name`.
fn image_archive(dir: &Path, layers: usize, name: &str) -> std::path::PathBuf {
    let out = dir.join(format!("layers-{layers}.tar"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/layers.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg("--out")
        .arg(&out)
        .args(["--layers", &layers.to_string(), "--name", name])
        .output()
        .expect("running tests/images/layers.py (python3)");
    assert!(status.status.success(), "{}", describe_output(&status));
    out
}

fn image_with_81_layers_runs() {
    let cd = Containerd::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let name = "docker.io/tether/layers:81";
    let archive = image_archive(tmp.path(), 81, name);
    cd.ctr_ok(&["images", "import", &archive.display().to_string()]);
    let id = cd.unique_id("layers81");
    let fifo = cd.fifo_dir.display().to_string();
    let runtime = common::runtime();
    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        &runtime,
        "--fifo-dir",
        &fifo,
        name,
        &id,
        "/bin/sh",
        "-c",
        "ls /layers | wc -l; cat /layers/81",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        describe_output(&out),
        cd.log_tail()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(lines, ["80", "81"], "{}", describe_output(&out));
    // No rootfs directory of our own: the snapshot is containerd's.
    cd.assert_no_leftovers(&id, &Rootfs::new(), None, None);
}

crate::containerd_matrix!(image_with_81_layers_runs,);

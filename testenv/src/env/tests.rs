use std::path::{Path, PathBuf};

use super::Env;
use crate::config::Version;

fn env(init_pid: u32) -> Env {
    Env {
        dir: PathBuf::from("/tmp/testenv-1-0-0"),
        cgroup: None,
        init: None,
        init_pid,
        init_bin: PathBuf::from("/target/debug/testenv"),
        daemon: None,
        containerd: None,
        keep: true,
        version: Version { major: 2, minor: 3 },
        address: PathBuf::new(),
        vars: Vec::new(),
    }
}

#[test]
fn inside_paths_go_through_init_root() {
    let e = env(4_194_304);
    let socket = format!("/run/containerd/s/{}", "a".repeat(64));
    let host = e.inside_path(&socket);
    assert_eq!(
        host,
        Path::new("/proc/4194304/root/run/containerd/s").join("a".repeat(64))
    );
    // A shim socket reached this way still fits a sockaddr_un (108 bytes
    // with the NUL) for the largest PID.
    assert!(host.as_os_str().len() < 108, "{}", host.display());
    assert_eq!(
        e.inside_path("sys/fs/cgroup"),
        Path::new("/proc/4194304/root/sys/fs/cgroup")
    );
}

#[test]
fn commands_inside_enter_through_the_env_dir() {
    let e = env(7);
    let mut cmd = e.command("runc");
    cmd.args(["--root", "/run/containerd/runc/ns", "list"]);
    assert_eq!(cmd.get_program(), "/target/debug/testenv");
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    assert_eq!(
        args,
        [
            "enter",
            "/tmp/testenv-1-0-0",
            "--",
            "runc",
            "--root",
            "/run/containerd/runc/ns",
            "list"
        ]
    );
}

#[test]
fn no_containerd_means_no_pid_and_nothing_to_kill() {
    let mut e = env(7);
    assert_eq!(e.containerd_pid(), None);
    e.kill_containerd().expect("nothing to kill");
    assert!(e.restart_containerd().is_err());
}

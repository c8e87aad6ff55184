//! An environment's teardown leaves nothing: containerd, its shims (which
//! double-fork away from it), a running and a paused container, a process
//! that setsid-daemonized itself, the cgroups containerd and runc made, the
//! mounts, and the private dir, are all gone afterwards, with nothing but
//! the environment's own cgroup killed. Needs root, containerd, runc and
//! /bin/busybox (static).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use testenv::{Env, Options};

fn root_and_tools() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the teardown test needs root"
    );
    for tool in ["/usr/bin/containerd", "/usr/bin/ctr", "/bin/busybox"] {
        assert!(Path::new(tool).exists(), "the teardown test needs {tool}");
    }
}

/// A rootfs of /bin/busybox with `sh` and `sleep`.
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("bin")).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    root
}

fn ctr(env: &Env, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/ctr")
        .arg("--address")
        .arg(&env.address)
        .args(["--namespace", "teardown"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running ctr");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn alive(pid: i32) -> bool {
    // (a zombie is gone for this purpose: nothing runs)
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

#[test]
fn teardown_kills_everything_and_leaves_nothing() {
    root_and_tools();
    let work = tempfile::tempdir().unwrap();
    let rootfs = rootfs(work.path());
    let o = Options {
        handlers: Vec::new(),
        ..Options::default()
    };
    let mut env = Env::start(&o, Path::new(env!("CARGO_BIN_EXE_testenv")), &[]).expect("start");
    let dir = env.dir().to_path_buf();
    let cgroup = env.cgroup().expect("a cgroup").clone();

    let root = rootfs.display().to_string();
    for id in ["running", "paused"] {
        ctr(
            &env,
            &[
                "run",
                "-d",
                "--null-io",
                "--rootfs",
                &root,
                id,
                "/bin/sh",
                "-c",
                "setsid sleep 1000 & exec sleep 1000",
            ],
        );
    }
    ctr(&env, &["task", "pause", "paused"]);

    // Every process of the environment is in its cgroup: containerd, both
    // shims, both containers and their daemonized children.
    let pids = cgroup.pids();
    let comm = |p: &i32| fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    let names: Vec<String> = pids.iter().map(|p| comm(p).trim().to_string()).collect();
    assert!(names.iter().any(|n| n == "containerd"), "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("containerd-shim"))
            .count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "sleep").count(),
        4,
        "{names:?}"
    );
    // containerd made the containers' cgroups (/teardown/ID as it sees it)
    // inside the environment's.
    for (_, d) in &cgroup.dirs {
        if d.starts_with("/sys/fs/cgroup/memory") || d.starts_with("/sys/fs/cgroup/pids") {
            assert!(d.join("teardown/running").is_dir(), "{}", d.display());
        }
    }
    // The overlay mounts of the containers are not in the host's namespace.
    let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host_mounts.contains(&dir.display().to_string()));

    env.teardown().expect("teardown");

    let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
    for (_, d) in &cgroup.dirs {
        assert!(!d.exists(), "cgroup left: {}", d.display());
    }
    assert!(!dir.exists(), "private dir left: {}", dir.display());
    // runc's state and the shims' sockets were on the environment's own
    // /run.
    assert!(!Path::new("/run/containerd/runc/teardown").exists());
}

//! Everything tetherctl and its shims create lives under --state-dir.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{common, tetherctl, Ctl};

/// Every path below `root` (nothing if it does not exist).
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut all = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            all.insert(p);
        }
    }
    all
}

/// Bound unix socket paths by inode, from /proc/net/unix.
fn unix_socket_paths() -> HashMap<u64, String> {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(6)?.parse().ok()?, f.get(7)?.to_string()))
        })
        .collect()
}

/// What the processes working in the state dir (shims, log drivers) hold
/// open outside it, the rootfs and the kernel's files.
fn held_outside(c: &Ctl) -> Vec<String> {
    let state = c.state();
    let sockets = unix_socket_paths();
    let mut outside = Vec::new();
    for pid in c.shims() {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.display().to_string();
            let path = match t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                Some(ino) => match ino.parse().ok().and_then(|i: u64| sockets.get(&i)) {
                    Some(p) if !p.starts_with('@') => p.clone(),
                    _ => continue,
                },
                None if t.starts_with('/') => t,
                None => continue,
            };
            let ok = Path::new(&path).starts_with(&state)
                || Path::new(&path).starts_with(c.rootfs())
                || [
                    "/dev/null",
                    "/dev/pts/",
                    "/dev/ptmx",
                    "/proc/",
                    "/sys/fs/cgroup/",
                ]
                .iter()
                .any(|p| path.starts_with(p));
            if !ok {
                outside.push(format!("pid {pid}: {path}"));
            }
        }
    }
    outside
}

/// create/start/exec/attach/logs/stop/rm with a private state dir: the
/// shims and log drivers hold nothing outside it (files and bound
/// sockets), and nothing appears under /run/containerd or /run/tether.
#[test]
fn everything_lives_under_the_state_dir() {
    let c = Ctl::new();
    let rootfs = c.rootfs();
    let tag = format!("sd{}", std::process::id());
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    let watched = [Path::new("/run/containerd"), Path::new("/run/tether")];
    let before: Vec<_> = watched.iter().map(|d| tree(d)).collect();

    c.ok(&[
        "run",
        "-d",
        "-i",
        "--rootfs",
        &rootfs,
        &a,
        "sh",
        "-c",
        "while read l; do echo $l; done",
    ]);
    c.ok(&["run", "-d", "-t", "--rootfs", &rootfs, &b, "sleep", "1000"]);
    assert_eq!(c.ok(&["exec", &a, "echo", "in-exec"]), "in-exec\n");
    let mut attach = c
        .cmd(&["attach", &a])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    attach
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello\n")
        .unwrap();
    let seen = common::poll_until(std::time::Duration::from_secs(10), || {
        c.ok(&["logs", &a]).contains("hello").then_some(())
    });
    assert!(seen.is_some());
    let outside = held_outside(&c);
    attach
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"\x10\x11")
        .unwrap();
    assert_eq!(attach.wait().unwrap().code(), Some(0));
    assert_eq!(outside, Vec::<String>::new(), "held outside the state dir");
    c.ok(&["stop", "--time", "1", &a, &b]);
    c.ok(&["rm", &a, &b]);
    let out = c.run(&["run", "--rm", "--rootfs", &rootfs, &a, "true"]);
    assert_eq!(out.status.code(), Some(0));

    for (dir, before) in watched.iter().zip(before) {
        let new: Vec<_> = tree(dir)
            .difference(&before)
            .filter(|p| {
                let p = p.display().to_string();
                dir.ends_with("tether") || p.contains(&tag) || p.contains("/runc/tether")
            })
            .cloned()
            .collect();
        assert_eq!(
            new,
            Vec::<PathBuf>::new(),
            "created under {}",
            dir.display()
        );
    }
    c.assert_nothing_left();
}

/// Without --state-dir, a user other than root who has XDG_RUNTIME_DIR
/// gets `$XDG_RUNTIME_DIR/tether` (0700, theirs), not /run/tether.
#[test]
fn non_root_state_dir_defaults_to_xdg_runtime_dir() {
    let c = Ctl::new();
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let xdg = c.dir.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&xdg, Some(65534), Some(65534)).unwrap();
    let out = Command::new(tetherctl())
        .arg("ps")
        .env_remove("TETHER_STATE_DIR")
        .env("XDG_RUNTIME_DIR", &xdg)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let state = xdg.join("tether");
    let meta = std::fs::metadata(state.join("containers")).unwrap();
    assert_eq!(meta.uid(), 65534);
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

use std::os::unix::process::CommandExt;

//! Live upgrade of the shim binary under a real containerd: the shim's file
//! is replaced and the shim gets SIGUSR2, while its containers run.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{describe_output, poll_until, pseudo_random_bytes, Containerd, Rootfs};
use sha2::{Digest, Sha256};

/// A private copy of the shim binary, which the tests replace.
struct ShimCopy {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl ShimCopy {
    fn new() -> ShimCopy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containerd-shim-tether-v2");
        std::fs::copy(common::shim_path(), &path).unwrap();
        ShimCopy { _dir: dir, path }
    }

    /// Puts new content at the path, as a package upgrade does (a new file
    /// renamed over the old one).
    fn replace_with(&self, source: &Path) {
        let tmp = self.path.with_extension("new");
        std::fs::copy(source, &tmp).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    fn replace_with_script(&self, script: &str) {
        let tmp = self.path.with_extension("new");
        std::fs::write(&tmp, script).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    fn run_args<'a>(&'a self, rootfs: &'a Rootfs) -> Vec<String> {
        vec![
            "--runtime".into(),
            self.path.display().to_string(),
            "--rootfs".into(),
            rootfs.path().display().to_string(),
        ]
    }
}

/// The shim daemon of `id`: its flags name the task, and it has no action
/// (the short-lived `start` and `delete` processes do).
fn is_daemon_of(p: &common::ProcInfo, id: &str) -> bool {
    p.cmdline.iter().any(|a| a == id)
        && p.cmdline.iter().any(|a| a == "-namespace")
        && !p.cmdline.iter().any(|a| a == "start" || a == "delete")
}

fn shim_pid(cd: &Containerd, id: &str) -> i32 {
    let shims: Vec<_> = cd
        .related_processes()
        .into_iter()
        .filter(|p| is_daemon_of(p, id))
        .collect();
    assert_eq!(shims.len(), 1, "the shim of {id}: {shims:?}");
    shims[0].pid
}

fn usr2(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
}

fn exe_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap()
        .display()
        .to_string()
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The version string Connect reports, through `ctr`? ctr does not show it;
/// the shim's log does: count "took over in place" lines.
fn takeovers(cd: &Containerd) -> usize {
    std::fs::read_to_string(cd.log_file())
        .unwrap_or_default()
        .matches("took over in place")
        .count()
}

fn wait_takeovers(cd: &Containerd, n: usize) {
    let ok = poll_until(Duration::from_secs(30), || {
        (takeovers(cd) >= n).then_some(())
    });
    assert!(
        ok.is_some(),
        "only {} takeovers, expected {n}\n{}",
        takeovers(cd),
        cd.log_tail()
    );
}

fn a_256_mib_stream_survives_upgrades_mid_stream() {
    let rootfs = Rootfs::new();
    let data = pseudo_random_bytes(256 << 20, 3);
    let expected = Sha256::digest(&data);
    rootfs.write_file("blob", &data);
    drop(data);
    let cd = Containerd::start();
    let shim = ShimCopy::new();
    let id = cd.unique_id("stream");
    // The container waits for a go before streaming, so the shim's pid can
    // be read first; it then streams slowly enough to be upgraded mid-way.
    let script = "while [ ! -e /tmp/go ]; do sleep 0.05; done; cat /blob; sleep 1";
    let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
    args.extend(shim.run_args(&rootfs));
    args.extend([id.clone(), "/bin/sh".into(), "-c".into(), script.into()]);
    let mut ctr = cd.ctr_command();
    ctr.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ctr.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let pid = poll_until(Duration::from_secs(30), || {
        cd.related_processes()
            .into_iter()
            .find(|p| is_daemon_of(p, &id))
            .map(|p| p.pid)
    })
    .expect("the shim started");
    rootfs.write_file("tmp/go", b"");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let mut upgrades = 0;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n;
        // Upgrade at 32, 96 and 160 MiB.
        if upgrades < 3 && total >= (32 + 64 * upgrades) << 20 {
            shim.replace_with(&common::shim_path());
            usr2(pid);
            upgrades += 1;
            wait_takeovers(&cd, upgrades);
            assert_eq!(shim_pid(&cd, &id), pid, "the shim's pid changed");
            assert_eq!(
                exe_of(pid),
                shim.path.display().to_string(),
                "not the new file"
            );
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(upgrades, 3, "the stream ended before three upgrades");
    assert!(status.success(), "ctr run: {status:?}\n{}", cd.log_tail());
    assert_eq!(total, 256 << 20);
    assert!(
        hasher.finalize() == expected,
        "the stream changed across upgrades"
    );
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

fn twenty_upgrades_under_a_running_container_and_exec() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let shim = ShimCopy::new();
    let id = cd.unique_id("many");
    let mut args: Vec<&str> = vec!["-d"];
    let run_args = shim.run_args(&rootfs);
    args.extend(run_args.iter().map(String::as_str));
    args.extend([id.as_str(), "/bin/sleep", "1000"]);
    let out = cd.ctr(&["run"].into_iter().chain(args).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", describe_output(&out));
    let before = cd.wait_task(&id, Duration::from_secs(30), |t| t.status == "RUNNING");
    let pid = shim_pid(&cd, &id);
    let mut exec = cd.ctr_command();
    exec.args([
        "task",
        "exec",
        "--exec-id",
        "long",
        &id,
        "/bin/sleep",
        "1000",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let mut exec = exec.spawn().unwrap();
    let exec_running = poll_until(Duration::from_secs(30), || {
        let out = cd.ctr(&["task", "ps", &id]);
        (String::from_utf8_lossy(&out.stdout).lines().count() >= 3).then_some(())
    });
    assert!(exec_running.is_some());
    let fds = fd_count(pid);

    for i in 1..=20 {
        shim.replace_with(&common::shim_path());
        usr2(pid);
        wait_takeovers(&cd, i);
    }
    assert_eq!(shim_pid(&cd, &id), pid, "the shim's pid changed");
    assert_eq!(exe_of(pid), shim.path.display().to_string());
    let after = cd.wait_task(&id, Duration::from_secs(10), |t| t.status == "RUNNING");
    assert_eq!(before.pid, after.pid);
    assert!(exec.try_wait().unwrap().is_none(), "the exec's ctr ended");
    let out = cd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "later",
        &id,
        "/bin/sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", describe_output(&out));
    // Same descriptors as before the upgrades (the later exec is deleted).
    let settled = poll_until(Duration::from_secs(10), || {
        (fd_count(pid) == fds).then_some(())
    });
    assert!(settled.is_some(), "fds {} -> {}", fds, fd_count(pid));
    // The long exec is still the shim's: its kill is reported as such.
    cd.ctr_ok(&["task", "kill", "--exec-id", "long", "-s", "KILL", &id]);
    assert_eq!(exec.wait().unwrap().code(), Some(137));
    let zombies: Vec<_> = cd
        .related_processes()
        .into_iter()
        .filter(|p| p.ppid == pid && p.is_zombie())
        .collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");
    cd.kill_and_remove(&id, &rootfs);
}

fn an_upgrade_to_a_broken_binary_leaves_the_shim_on_its_old_code() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let shim = ShimCopy::new();
    let id = cd.unique_id("broken");
    let run_args = shim.run_args(&rootfs);
    let mut args: Vec<&str> = vec!["run", "-d"];
    args.extend(run_args.iter().map(String::as_str));
    args.extend([id.as_str(), "/bin/sleep", "1000"]);
    let out = cd.ctr(&args);
    assert!(out.status.success(), "{}", describe_output(&out));
    let before = cd.wait_task(&id, Duration::from_secs(30), |t| t.status == "RUNNING");
    let pid = shim_pid(&cd, &id);

    shim.replace_with_script("#!/bin/sh\nexit 1\n");
    usr2(pid);
    let refused = poll_until(Duration::from_secs(30), || {
        let log = std::fs::read_to_string(cd.log_file()).unwrap_or_default();
        log.contains("live upgrade called off").then_some(())
    });
    assert!(refused.is_some(), "{}", cd.log_tail());
    assert_eq!(takeovers(&cd), 0);
    assert_eq!(shim_pid(&cd, &id), pid);
    let after = cd.wait_task(&id, Duration::from_secs(10), |t| t.status == "RUNNING");
    assert_eq!(before.pid, after.pid);
    let out = cd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "x",
        &id,
        "/bin/sh",
        "-c",
        "exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", describe_output(&out));
    // A missing binary too.
    std::fs::remove_file(&shim.path).unwrap();
    usr2(pid);
    let again = poll_until(Duration::from_secs(30), || {
        let log = std::fs::read_to_string(cd.log_file()).unwrap_or_default();
        (log.matches("live upgrade called off").count() >= 2).then_some(())
    });
    assert!(again.is_some(), "{}", cd.log_tail());
    let out = cd.ctr(&["task", "exec", "--exec-id", "y", &id, "/bin/true"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    shim.replace_with(&common::shim_path());
    cd.kill_and_remove(&id, &rootfs);
}

crate::containerd_matrix!(
    a_256_mib_stream_survives_upgrades_mid_stream,
    twenty_upgrades_under_a_running_container_and_exec,
    an_upgrade_to_a_broken_binary_leaves_the_shim_on_its_old_code,
);

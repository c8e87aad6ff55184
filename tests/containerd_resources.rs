//! Metrics, OOM events, pause and resume through a real containerd and ctr.

mod common;

use std::time::Duration;

use common::{describe_output, Containerd, Rootfs};

/// The value of one metric in `ctr task metrics` output.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == name).then(|| f.next()?.parse().ok())?
    })
}

fn metrics_show_memory_held_by_the_container() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("metrics");
    // dd's 60 MiB buffer stays allocated while it waits to write to sleep.
    let hold = "/bin/dd if=/dev/zero bs=60M count=1 | /bin/sleep 1000";
    cd.run_detached(&rootfs, &id, &["/bin/sh", "-c", hold]);
    let usage = common::poll_until(Duration::from_secs(30), || {
        let out = cd.ctr_ok(&["task", "metrics", &id]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        metric(&text, "memory.usage_in_bytes").filter(|u| *u >= 60 << 20)
    });
    assert!(usage.is_some(), "memory usage never reached 60 MiB");
    cd.kill_and_remove(&id, &rootfs);
    // Gone with the task: containerd answers not found.
    let out = cd.ctr(&["task", "metrics", &id]);
    assert!(!out.status.success());
}

fn oom_is_reported_once_and_before_the_exit_20_of_20() {
    common::oom_reported_once_before_exit(20, 100);
}

/// Runs `script` (sh) detached in a container limited to 16 MiB.
fn run_in_16_mib(cd: &Containerd, rootfs: &Rootfs, id: &str, script: &str) {
    let limit = ["-d", "--memory-limit", "16777216"];
    let out = cd.run(&limit, rootfs, id, &["/bin/sh", "-c", script]);
    assert!(out.status.success(), "{}", describe_output(&out));
}

fn oom_of_a_child_is_reported_while_the_container_runs() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let events = cd.events();
    let id = cd.unique_id("oomchild");
    let script = "/bin/dd if=/dev/zero of=/dev/null bs=64M count=1; /bin/sleep 1000";
    run_in_16_mib(&cd, &rootfs, &id, script);
    events.wait_for("/tasks/oom", &id, Duration::from_secs(30));
    let t = cd.wait_task(&id, Duration::from_secs(5), |t| t.status == "RUNNING");
    assert!(t.pid > 0);
    assert_eq!(events.find("/tasks/oom", &id).len(), 1);
    cd.kill_and_remove(&id, &rootfs);
    assert_eq!(
        events.find("/tasks/oom", &id).len(),
        1,
        "an OOM reported at removal"
    );
}

/// Under the systemd cgroup driver, systemd removes an emptied scope the
/// moment the cgroup empties, the same moment the shim hears of it, and can
/// win: the kill counter is gone before the shim reads it. Played here for
/// certain: the shim is stopped (SIGSTOP) before the kill, and the
/// container's cgroups are removed while it is stopped, after the init died.
/// `/tasks/oom` must still come, once, before `/tasks/exit`.
fn oom_is_reported_when_the_cgroup_went_before_the_shim_looked() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let events = cd.events();
    let id = cd.unique_id("oomgone");
    let script = "/bin/sleep 4; exec /bin/dd if=/dev/zero of=/dev/null bs=64M count=1";
    run_in_16_mib(&cd, &rootfs, &id, script);
    let init = cd.wait_task(&id, Duration::from_secs(10), |t| t.status == "RUNNING");
    let shims = cd.shim_processes();
    assert_eq!(shims.len(), 1, "one shim: {shims:?}");
    let dirs = container_cgroup_dirs(init.pid);
    assert!(!dirs.is_empty(), "no cgroup dirs for {}", init.pid);
    let stopped = Stopped::new(shims[0].pid as u32);
    assert!(
        common::ProcInfo::read(init.pid as i32).is_some_and(|p| !p.is_zombie()),
        "the init died before the shim was stopped: the case was not played"
    );
    // The kill; the init stays a zombie, as its reaper is stopped.
    let dead = common::poll_until(Duration::from_secs(60), || {
        common::ProcInfo::read(init.pid as i32)
            .map_or(true, |p| p.is_zombie())
            .then_some(())
    });
    assert!(dead.is_some(), "the init was not OOM-killed");
    for d in &dirs {
        std::fs::remove_dir(d).unwrap_or_else(|e| panic!("rmdir {}: {e}", d.display()));
    }
    drop(stopped);
    let exit = events.wait_for("/tasks/exit", &id, Duration::from_secs(30));
    assert_eq!(exit.exit_status(), 137);
    let all = events.events();
    let topics: Vec<_> = all
        .iter()
        .filter(|e| e.line.contains(&format!("\"{id}\"")))
        .map(|e| e.topic.as_str())
        .filter(|t| matches!(*t, "/tasks/oom" | "/tasks/exit"))
        .collect();
    assert_eq!(topics, ["/tasks/oom", "/tasks/exit"]);
    cd.ctr_ok(&["task", "rm", &id]);
    cd.ctr_ok(&["container", "rm", &id]);
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

/// The directories of the cgroups `pid` is in, in every hierarchy.
fn container_cgroup_dirs(pid: u32) -> Vec<std::path::PathBuf> {
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut dirs = Vec::new();
    for line in membership.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let root = std::path::Path::new("/sys/fs/cgroup");
        let mount = match controllers {
            "" if root.join("cgroup.controllers").exists() => root.to_path_buf(),
            "" => root.join("unified"),
            c => root.join(c.trim_start_matches("name=")),
        };
        let dir = mount.join(path.trim_start_matches('/'));
        if path != "/" && dir.is_dir() && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// A process stopped with SIGSTOP until dropped.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        let pid_t = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(pid_t, nix::sys::signal::Signal::SIGSTOP).unwrap();
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0 as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    }
}

fn pause_freezes_and_resume_thaws() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let events = cd.events();
    let id = cd.unique_id("pause");
    cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);
    cd.ctr_ok(&["task", "pause", &id]);
    let t = cd.wait_task(&id, Duration::from_secs(10), |t| t.status == "PAUSED");
    // The container's cgroup as containerd's environment sees it.
    let freezer = cd.host_path(format!(
        "/sys/fs/cgroup/freezer/{}/{id}/freezer.state",
        cd.namespace()
    ));
    let state = std::fs::read_to_string(&freezer)
        .or_else(|_| {
            std::fs::read_to_string(cd.host_path(format!(
                "/sys/fs/cgroup/{}/{id}/cgroup.freeze",
                cd.namespace()
            )))
        })
        .unwrap();
    assert!(
        matches!(state.trim(), "FROZEN" | "1"),
        "freezer says {state:?}"
    );
    cd.ctr_ok(&["task", "resume", &id]);
    let t2 = cd.wait_task(&id, Duration::from_secs(10), |t| t.status == "RUNNING");
    assert_eq!(t.pid, t2.pid);
    events.wait_for("/tasks/paused", &id, Duration::from_secs(10));
    events.wait_for("/tasks/resumed", &id, Duration::from_secs(10));
    cd.kill_and_remove(&id, &rootfs);
}

crate::containerd_matrix!(
    metrics_show_memory_held_by_the_container,
    oom_is_reported_once_and_before_the_exit_20_of_20,
    oom_of_a_child_is_reported_while_the_container_runs,
    pause_freezes_and_resume_thaws,
);

#[test]
fn oom_is_reported_when_the_cgroup_went_before_the_shim_looked_v2_3() {
    common::run_on(
        "v2_3",
        oom_is_reported_when_the_cgroup_went_before_the_shim_looked,
    );
}

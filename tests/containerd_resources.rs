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

fn oom_of_a_child_is_reported_while_the_container_runs() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let events = cd.events();
    let id = cd.unique_id("oomchild");
    let script = "/bin/dd if=/dev/zero of=/dev/null bs=64M count=1; /bin/sleep 1000";
    let out = cd.run(
        &["-d", "--memory-limit", "16777216"],
        &rootfs,
        &id,
        &["/bin/sh", "-c", script],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
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

fn pause_freezes_and_resume_thaws() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let events = cd.events();
    let id = cd.unique_id("pause");
    cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);
    cd.ctr_ok(&["task", "pause", &id]);
    let t = cd.wait_task(&id, Duration::from_secs(10), |t| t.status == "PAUSED");
    let freezer = format!(
        "/sys/fs/cgroup/freezer/{}/{id}/freezer.state",
        cd.namespace()
    );
    let state = std::fs::read_to_string(&freezer)
        .or_else(|_| {
            std::fs::read_to_string(format!(
                "/sys/fs/cgroup/{}/{id}/cgroup.freeze",
                cd.namespace()
            ))
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

//! Scenarios that more than one test binary runs: the OOM count runs in
//! tests/containerd_resources.rs on this host's hierarchy and in
//! tests/cgroup_v2.rs on the unified one.

use std::time::Duration;

use super::{describe_output, runtime, shim_path, Containerd, Rootfs};

/// `kills` containers over their memory limit each get exactly one
/// `/tasks/oom`, published before their `/tasks/exit`, and exit 137; then
/// `normal` containers that exit 0 get none.
///
/// Each run is judged once containerd has published `/containers/delete`
/// (its own event, after the task's). tether must have published exactly one
/// `/tasks/exit` and one `/tasks/delete`, with the status. For another
/// runtime under test (the Go shim, to compare) a missing exit or delete
/// event is counted and reported, not failed, and the OOM-before-exit order
/// is checked where the exit event came: containerd 2.3.7's Go shim was seen
/// to lose both in the cgroup v2 guest (the shim exits before its event
/// queue is flushed).
pub fn oom_reported_once_before_exit(kills: usize, normal: usize) {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let events = cd.events();
    let ours = runtime() == shim_path().display().to_string();
    let mut lost = Vec::new();
    // The one event of `topic` for `id`, with `status`; None when another
    // runtime lost it.
    let mut one = |topic: &str, id: &str, status: i64| {
        let got = events.find(topic, id);
        if ours || !got.is_empty() {
            assert_eq!(got.len(), 1, "{id}: {topic}: {got:?}");
            assert_eq!(got[0].exit_status(), status, "{id}: {topic}");
            Some(())
        } else {
            lost.push(format!("{topic} {id}"));
            None
        }
    };
    for i in 0..kills {
        let id = cd.unique_id(&format!("oom{i}"));
        let args = [
            "/bin/dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=64M",
            "count=1",
        ];
        let out = cd.run(&["--rm", "--memory-limit", "16777216"], &rootfs, &id, &args);
        assert_eq!(
            out.status.code(),
            Some(137),
            "run {i}: {}",
            describe_output(&out)
        );
        events.wait_for("/containers/delete", &id, Duration::from_secs(30));
        let exited = one("/tasks/exit", &id, 137);
        one("/tasks/delete", &id, 137);
        let ooms = events.find("/tasks/oom", &id);
        assert_eq!(ooms.len(), 1, "run {i}: {ooms:?}");
        if exited.is_some() {
            let all = events.events();
            let at = |topic: &str| {
                all.iter()
                    .position(|e| e.topic == topic && e.line.contains(&format!("\"{id}\"")))
                    .unwrap_or_else(|| panic!("run {i}: no {topic}"))
            };
            assert!(
                at("/tasks/oom") < at("/tasks/exit"),
                "run {i}: OOM after exit"
            );
        }
        cd.assert_no_leftovers(&id, &rootfs, None, None);
    }
    // Normal exits report no OOM.
    for i in 0..normal {
        let id = cd.unique_id(&format!("ok{i}"));
        let out = cd.run(&["--rm"], &rootfs, &id, &["/bin/true"]);
        assert!(out.status.success(), "{}", describe_output(&out));
        events.wait_for("/containers/delete", &id, Duration::from_secs(30));
        one("/tasks/exit", &id, 0);
        one("/tasks/delete", &id, 0);
        assert!(
            events.find("/tasks/oom", &id).is_empty(),
            "OOM reported for {id}"
        );
    }
    if !lost.is_empty() {
        eprintln!(
            "[scenario] runtime {}: {} events lost over {} containers: {lost:?}",
            runtime(),
            lost.len(),
            kills + normal
        );
    }
}

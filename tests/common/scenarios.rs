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
/// (its own event, after the task's). tether must also have published
/// `/tasks/delete` with the status; for another runtime under test (the Go
/// shim, to compare) a missing `/tasks/delete` is counted and reported, not
/// failed: containerd 2.3.7's Go shim was seen to lose one in a guest run.
pub fn oom_reported_once_before_exit(kills: usize, normal: usize) {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let events = cd.events();
    let ours = runtime() == shim_path().display().to_string();
    let mut no_task_delete = Vec::new();
    let mut task_deleted = |id: &str, status: i64| {
        let deleted = events.find("/tasks/delete", id);
        if ours || !deleted.is_empty() {
            assert_eq!(deleted.len(), 1, "{id}: {deleted:?}");
            assert_eq!(deleted[0].exit_status(), status, "{id}");
        } else {
            no_task_delete.push(id.to_string());
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
        let exit = events.find("/tasks/exit", &id);
        assert_eq!(exit.len(), 1, "run {i}: {exit:?}");
        assert_eq!(exit[0].exit_status(), 137, "run {i}");
        task_deleted(&id, 137);
        let ooms = events.find("/tasks/oom", &id);
        assert_eq!(ooms.len(), 1, "run {i}: {ooms:?}");
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
        cd.assert_no_leftovers(&id, &rootfs, None, None);
    }
    // Normal exits report no OOM.
    for i in 0..normal {
        let id = cd.unique_id(&format!("ok{i}"));
        let out = cd.run(&["--rm"], &rootfs, &id, &["/bin/true"]);
        assert!(out.status.success(), "{}", describe_output(&out));
        events.wait_for("/containers/delete", &id, Duration::from_secs(30));
        task_deleted(&id, 0);
        assert!(
            events.find("/tasks/oom", &id).is_empty(),
            "OOM reported for {id}"
        );
    }
    if !no_task_delete.is_empty() {
        eprintln!(
            "[scenario] runtime {}: no /tasks/delete for {} of {} containers: {no_task_delete:?}",
            runtime(),
            no_task_delete.len(),
            kills + normal
        );
    }
}

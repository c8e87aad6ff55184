//! A shim that dies after its container exited, before containerd deleted
//! the task: containerd's clean-up (the shim's `delete`) must report the
//! container's real exit status, not a made-up 137.

mod common;

use std::time::Duration;

use common::{Containerd, Rootfs};

fn exit_status_survives_a_shim_killed_before_delete_100_of_100() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let events = cd.events();
    for i in 0..100 {
        let id = cd.unique_id(&format!("crash{i}"));
        let out = cd.run(&["-d"], &rootfs, &id, &["/bin/sh", "-c", "exit 42"]);
        assert!(
            out.status.success(),
            "run {i}: {}",
            common::describe_output(&out)
        );
        cd.wait_task(&id, Duration::from_secs(30), |t| t.status == "STOPPED");
        let shims: Vec<_> = cd
            .shim_processes()
            .into_iter()
            .filter(|p| p.cmdline.iter().any(|a| a == &id))
            .collect();
        assert_eq!(shims.len(), 1, "run {i}: shim of {id}: {shims:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shims[0].pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deleted = events.wait_for("/tasks/delete", &id, Duration::from_secs(30));
        assert_eq!(
            deleted.exit_status(),
            42,
            "run {i}: containerd's clean-up reported {}",
            deleted.line
        );
        cd.ctr_ok(&["container", "rm", &id]);
        cd.assert_no_leftovers(&id, &rootfs, None, None);
    }
}

crate::containerd_matrix!(exit_status_survives_a_shim_killed_before_delete_100_of_100,);

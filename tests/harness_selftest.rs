//! Self-test of the end-to-end harness: a test that panics while its
//! container runs must still leave nothing behind (shim, container process,
//! shim socket, runc state, cgroups, temp dir), whether containerd is still
//! running or was SIGKILLed. Uses the same runtime as the other tests.

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use common::{process_alive, runc_root, Containerd, ProcInfo, Rootfs};

/// What the panicking test saw before it panicked.
struct Seen {
    pid: i32,
    starttime: u64,
    shims: Vec<i32>,
    socket: PathBuf,
    dir: PathBuf,
    namespace: String,
}

fn panic_with_running_container(kill_containerd: bool) {
    let seen: Mutex<Option<Seen>> = Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let rootfs = Rootfs::new();
        let mut cd = Containerd::start();
        let id = cd.unique_id("abandoned");
        let task = cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);
        let proc0 = ProcInfo::read(task.pid as i32).expect("container process exists");
        let shims: Vec<i32> = cd.shim_processes().iter().map(|p| p.pid).collect();
        assert!(!shims.is_empty(), "no shim process found");
        *seen.lock().expect("lock") = Some(Seen {
            pid: task.pid as i32,
            starttime: proc0.starttime,
            shims,
            socket: cd.shim_socket(&id),
            dir: cd.dir().to_path_buf(),
            namespace: cd.namespace().to_string(),
        });
        if kill_containerd {
            cd.kill9();
        }
        panic!("deliberate panic with a running container (harness self-test)");
    }));
    assert!(result.is_err(), "the inner test was expected to panic");
    let seen = seen
        .lock()
        .expect("lock")
        .take()
        .expect("the inner test got as far as running its container");

    assert!(
        !process_alive(seen.pid, seen.starttime),
        "container process {} survived the guards",
        seen.pid
    );
    for shim in &seen.shims {
        assert!(
            !ProcInfo::read(*shim).is_some_and(|p| !p.is_zombie()),
            "shim process {shim} survived the guards"
        );
    }
    assert!(
        !seen.socket.exists(),
        "shim socket {} left",
        seen.socket.display()
    );
    assert!(!seen.dir.exists(), "temp dir {} left", seen.dir.display());
    let runc_root = runc_root(&seen.namespace);
    assert!(
        !runc_root.exists(),
        "runc state {} left",
        runc_root.display()
    );
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .expect("reading /sys/fs/cgroup")
        .flatten()
    {
        let cg = h.path().join(&seen.namespace);
        assert!(!cg.exists(), "cgroup {} left", cg.display());
    }
}

#[test]
fn guards_clean_up_after_a_panic() {
    panic_with_running_container(false);
}

#[test]
fn guards_clean_up_after_a_panic_with_containerd_killed() {
    panic_with_running_container(true);
}

/// The harness's matrix and the one scripts/peers.sh builds are the same
/// list, in the same order.
#[test]
fn containerd_matrix_matches_the_peers_file() {
    let file = include_str!("peers/containerd-matrix");
    let listed: Vec<&str> = file
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    let harness: Vec<&str> = common::MATRIX.iter().map(|(_, v)| *v).collect();
    assert_eq!(
        listed, harness,
        "tests/peers/containerd-matrix and tests/common/matrix.rs differ"
    );
}

/// The harness's newest runc is the first line of tests/peers/runc-matrix,
/// and Debian's ("system") is in that matrix too.
#[test]
fn newest_runc_is_the_runc_matrix_head() {
    let file = include_str!("peers/runc-matrix");
    let listed: Vec<&str> = file
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(listed.first(), Some(&common::NEWEST_RUNC));
    assert!(listed.contains(&"system"), "{listed:?}");
}

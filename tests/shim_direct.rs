//! The shim driven straight over ttrpc, the way containerd drives it, with
//! real runc underneath and an in-test receiver standing where containerd's
//! events socket would be. Covers what is awkward to reach through `ctr`:
//! malformed requests, error codes, event order and fields, shutdown.
//!
//! Needs root, runc and busybox-static (see .ci/run).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use protobuf::MessageField;
use tether::protos::events::{TaskCreate, TaskDelete, TaskExit, TaskStart};
use tether::protos::mount::Mount;
use tether::protos::runc_options::Options;
use tether::protos::shim::*;
use tether::protos::status::Status;

mod common;

use common::direct::*;
use common::{unix_sockets, ProcInfo};

#[tokio::test(flavor = "current_thread")]
async fn invalid_ids_are_rejected_and_nothing_is_left() {
    let f = Fixture::new(&["/bin/true"]).await;
    let long = "x".repeat(77);
    for bad in ["..", "../etc", "a/b", "a\0b", long.as_str(), ""] {
        let mut req = f.create_request();
        req.id = bad.to_string();
        let (code, msg) = code_of(f.client.create(ctx(), &req).await);
        assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "Create {bad:?}: {msg}");
        assert!(msg.contains("invalid container id"), "{msg}");

        let state = StateRequest {
            id: bad.to_string(),
            ..Default::default()
        };
        let (code, _) = code_of(f.client.state(ctx(), &state).await);
        assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "State {bad:?}");
        let kill = KillRequest {
            id: bad.to_string(),
            signal: 9,
            ..Default::default()
        };
        let (code, _) = code_of(f.client.kill(ctx(), &kill).await);
        assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "Kill {bad:?}");
    }
    // A valid but unknown id is NotFound, which containerd treats as gone.
    let state = StateRequest {
        id: "unknown".into(),
        ..Default::default()
    };
    let (code, _) = code_of(f.client.state(ctx(), &state).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND);
    let pids = PidsRequest {
        id: "unknown".into(),
        ..Default::default()
    };
    let (code, _) = code_of(f.client.pids(ctx(), &pids).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND);

    assert!(f.topics().is_empty(), "events for rejected requests");
    assert!(!mounted_under(&f.bundle()));
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn missing_runtime_binary_is_a_clear_error_and_cleans_up() {
    let f = Fixture::new(&["/bin/true"]).await;
    // Hand the rootfs over as a bind mount, so there is a mount to undo.
    let staged = f.dir.path().join("staged-rootfs");
    std::fs::rename(f.bundle().join("rootfs"), &staged).unwrap();
    std::fs::create_dir(f.bundle().join("rootfs")).unwrap();
    let mut req = f.create_request();
    req.rootfs.push(Mount {
        type_: "bind".into(),
        source: staged.display().to_string(),
        options: vec!["rbind".into(), "rw".into()],
        ..Default::default()
    });
    let opts = Options {
        binary_name: "/nonexistent/runc-missing".into(),
        ..Default::default()
    };
    req.options = MessageField::some(runc_options(opts));
    let (_, msg) = code_of(f.client.create(ctx(), &req).await);
    assert!(msg.contains("/nonexistent/runc-missing"), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
    assert!(!mounted_under(&f.bundle()), "rootfs left mounted");

    // Nothing was registered, and the shim still answers.
    let state = StateRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let (code, _) = code_of(f.client.state(ctx(), &state).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND);
    // A retry with the right runtime works: the failed Create lost nothing.
    req.options = MessageField::none();
    let created = f.client.create(ctx(), &req).await.unwrap();
    assert!(created.pid > 0);
    f.delete().await;
    assert!(
        !mounted_under(&f.bundle()),
        "rootfs left mounted after Delete"
    );
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn lifecycle_reports_exit_and_publishes_each_event_once_in_order() {
    let f = Fixture::new(&["/bin/sh", "-c", "exit 3"]).await;
    let created = f.create().await;
    let s = f.state().await;
    assert_eq!(s.status.enum_value(), Ok(Status::CREATED));
    assert_eq!(s.pid, created);
    assert_eq!(
        s.exited_at.seconds, -62_135_596_800,
        "not exited: Go zero time"
    );

    // A second Create of the same id is refused.
    let (code, _) = code_of(f.client.create(ctx(), &f.create_request()).await);
    assert_eq!(code, ttrpc::Code::ALREADY_EXISTS);

    let start = StartRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let started = f.client.start(ctx(), &start).await.unwrap();
    assert_eq!(started.pid, created);
    let wait = WaitRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let waited = f.client.wait(ctx(), &wait).await.unwrap();
    assert_eq!(waited.exit_status, 3);
    let s = f.state().await;
    assert_eq!(s.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(s.exit_status, 3);
    assert_eq!(s.exited_at.seconds, waited.exited_at.seconds);

    // Signalling a finished process is NotFound (containerd ignores it).
    let kill = KillRequest {
        id: f.id.clone(),
        signal: 9,
        ..Default::default()
    };
    let (code, _) = code_of(f.client.kill(ctx(), &kill).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND);

    let del = DeleteRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let deleted = f.client.delete(ctx(), &del).await.unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (created, 3));
    let (code, _) = code_of(f.client.delete(ctx(), &del).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "second Delete");

    f.wait_for_events(4).await;
    assert_eq!(
        f.topics(),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    let c: TaskCreate = f.event("/tasks/create");
    assert_eq!((c.container_id.as_str(), c.pid), (f.id.as_str(), created));
    assert_eq!(c.bundle, f.bundle().display().to_string());
    let s: TaskStart = f.event("/tasks/start");
    assert_eq!((s.container_id.as_str(), s.pid), (f.id.as_str(), created));
    let e: TaskExit = f.event("/tasks/exit");
    assert_eq!(e.container_id, f.id);
    assert_eq!(e.id, f.id, "TaskExit.id of init is the container id");
    assert_eq!((e.pid, e.exit_status), (created, 3));
    assert_eq!(e.exited_at.seconds, waited.exited_at.seconds);
    let d: TaskDelete = f.event("/tasks/delete");
    assert_eq!((d.pid, d.exit_status), (created, 3));
    assert_eq!(d.id, "", "TaskDelete.id is empty for init");

    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn running_container_kill_all_delete_rules_and_shutdown() {
    let f = Fixture::new(&["/bin/sh", "-c", "sleep 1000 & sleep 1000"]).await;
    f.create().await;
    let start = StartRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let pid = f.client.start(ctx(), &start).await.unwrap().pid;

    // Shutdown with a live container keeps the shim running.
    let shutdown = ShutdownRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    f.client.shutdown(ctx(), &shutdown).await.unwrap();
    assert!(alive(f.shim_pid));

    let del = DeleteRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let (code, msg) = code_of(f.client.delete(ctx(), &del).await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");

    let pids = PidsRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let listed: Vec<u32> = f
        .client
        .pids(ctx(), &pids)
        .await
        .unwrap()
        .processes
        .iter()
        .map(|p| p.pid)
        .collect();
    assert!(listed.contains(&pid) && listed.len() >= 2, "{listed:?}");

    let kill = KillRequest {
        id: f.id.clone(),
        signal: 9,
        all: true,
        ..Default::default()
    };
    f.client.kill(ctx(), &kill).await.unwrap();
    let wait = WaitRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    assert_eq!(f.client.wait(ctx(), &wait).await.unwrap().exit_status, 137);
    for p in listed {
        assert!(!alive(p), "process {p} survived kill --all");
    }
    f.client.delete(ctx(), &del).await.unwrap();

    // Every method on a deleted container is NotFound, never a hang.
    let pause = PauseRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let (code, _) = code_of(f.client.pause(ctx(), &pause).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND);
    let update = UpdateTaskRequest {
        id: f.id.clone(),
        resources: linux_resources(serde_json::json!({"pids": {"limit": 10}})),
        ..Default::default()
    };
    let (code, _) = code_of(f.client.update(ctx(), &update).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND);
    let stats = StatsRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let (code, _) = code_of(f.client.stats(ctx(), &stats).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND);
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn socket_is_private_and_never_abstract() {
    let f = Fixture::new(&["/bin/true"]).await;
    let sock = f.socket();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let dir_mode = std::fs::metadata(sock.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "socket dir mode {dir_mode:o}");

    // Every socket the shim holds, by inode; none of them abstract.
    let inodes = ProcInfo::read(f.shim_pid as i32).unwrap().socket_inodes();
    assert!(!inodes.is_empty());
    for s in unix_sockets().iter().filter(|s| inodes.contains(&s.inode)) {
        let path = s.path.as_deref().unwrap_or("");
        assert!(!path.starts_with('@'), "abstract socket {path}");
    }
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn delete_subcommand_cleans_up_after_a_dead_shim() {
    let f = Fixture::new(&["/bin/sleep", "1000"]).await;
    let pid = f.create().await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(f.shim_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let resp = delete_after_death(&f);
    assert_eq!(resp.pid, pid);
    assert_eq!(resp.exit_status, 137);
    assert!(resp.exited_at.seconds > 0);
    assert!(
        !runc_knows(&f.runc_root(), &f.id),
        "container still known to runc"
    );
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "container init survived delete"
    );
    // Twice is fine: missing state is tolerated.
    delete_after_death(&f);
}

#[tokio::test(flavor = "current_thread")]
async fn connections_from_another_group_are_refused() {
    let f = Fixture::new(&["/bin/true"]).await;
    // Root passes the socket's mode bits; the peer check still refuses a
    // process that is not running as containerd's user and group.
    assert!(
        refused_for_gid(&f.socket(), 65534),
        "foreign group accepted"
    );
    assert!(!refused_for_gid(&f.socket(), 0), "same user refused");
    // The shim is unaffected.
    f.client
        .connect(ctx(), &ConnectRequest::default())
        .await
        .unwrap();
    f.shutdown_and_wait_exit().await;
}

/// Kill of an exec takes realtime signals, as Kill of the init does (runc
/// kill): SIGRTMIN+6 (40) ends a `sleep` exec with status 128 + 40, and
/// that exit is reaped and reported (nix's waitpid lost it: it returns
/// EINVAL for a realtime signal after the kernel has reaped the child).
#[tokio::test(flavor = "current_thread")]
async fn exec_kill_takes_realtime_signals() {
    let f = Fixture::new(&["/bin/sleep", "1000"]).await;
    f.create().await;
    f.start().await;
    let e = Exec::add(&f, "rt", &["/bin/sleep", "100"], ("", "")).await;
    let pid = e.start().await.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    eprintln!(
        "{}",
        status
            .lines()
            .filter(|l| l.starts_with("Sig"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    e.kill(40).await.unwrap();
    assert_eq!(e.wait().await, 168);
    e.delete().await.unwrap();
    // Past SIGRTMAX (64) is no signal.
    let late = Exec::add(&f, "late", &["/bin/sleep", "100"], ("", "")).await;
    late.start().await.unwrap();
    let (code, _) = code_of(late.kill(65).await);
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
    late.kill(9).await.unwrap();
    assert_eq!(late.wait().await, 137);
    late.delete().await.unwrap();
    assert_eq!(f.stop_and_delete().await, 137);
}

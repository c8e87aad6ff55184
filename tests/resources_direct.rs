//! Update and Stats over ttrpc, with real runc.

mod common;

use common::direct::*;
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};
use tether::protos::cgroup1_metrics::Metrics;
use tether::protos::shim::*;
use tether::protos::status::Status;

/// The container's memory cgroup directory, from its init's membership.
fn memory_dir(pid: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        .expect("a v1 memory cgroup");
    std::path::Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'))
}

#[tokio::test(flavor = "current_thread")]
async fn update_changes_the_cgroup_and_stats_follow_the_task() {
    let f = Fixture::new(&["/bin/sleep", "1000"]).await;
    let pid = f.create().await;
    f.start().await;

    let limit = 48u64 << 20;
    let update = UpdateTaskRequest {
        id: f.id.clone(),
        resources: linux_resources(serde_json::json!({"memory": {"limit": limit}})),
        ..Default::default()
    };
    f.client.update(ctx(), &update).await.unwrap();
    let file = memory_dir(pid).join("memory.limit_in_bytes");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        limit.to_string()
    );

    let stats = StatsRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let any = f.client.stats(ctx(), &stats).await.unwrap().stats.unwrap();
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    let m = Metrics::parse_from_bytes(&any.value).unwrap();
    assert_eq!(m.memory.usage.limit, limit);
    assert!(m.pids.current >= 1);

    f.pause().await;
    let s = f.state().await;
    assert_eq!(s.status.enum_value(), Ok(Status::PAUSED));
    let pause = PauseRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let (code, _) = code_of(f.client.pause(ctx(), &pause).await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "pausing twice");
    f.resume().await;
    let s = f.state().await;
    assert_eq!(s.status.enum_value(), Ok(Status::RUNNING));

    f.stop_and_delete().await;
    let (code, _) = code_of(f.client.stats(ctx(), &stats).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "Stats of a deleted task");
    f.wait_for_topic("/tasks/resumed", 1).await;
    let topics = f.topics();
    let p = topics.iter().position(|t| t == "/tasks/paused").unwrap();
    let r = topics.iter().position(|t| t == "/tasks/resumed").unwrap();
    assert!(p < r);
    f.shutdown_and_wait_exit().await;
}

/// The owner of the container's stdout pipe, seen through its init.
async fn stdout_owner(io_owner: Option<u32>) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new(&["/bin/sleep", "1000"]).await;
    let mut req = f.create_request();
    req.stdout = f.dir.path().join("out").display().to_string();
    if let Some(id) = io_owner {
        let o = tether::protos::runc_options::Options {
            io_uid: id,
            io_gid: id,
            ..Default::default()
        };
        req.options = MessageField::some(runc_options(o));
    }
    let pid = f.client.create(ctx(), &req).await.unwrap().pid;
    let meta = std::fs::metadata(format!("/proc/{pid}/fd/1")).unwrap();
    f.stop_and_delete().await;
    f.shutdown_and_wait_exit().await;
    (meta.uid(), meta.gid())
}

#[tokio::test(flavor = "current_thread")]
async fn io_uid_and_gid_own_the_stdio_pipes() {
    // runc re-owns stdio to the process's user (root here) where it can, but
    // keeps the group: a user-namespaced container, where runc cannot, keeps
    // both as the shim set them.
    let (_, gid) = stdout_owner(Some(1234)).await;
    assert_eq!(gid, 1234);
    let (_, gid) = stdout_owner(None).await;
    assert_eq!(gid, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn shim_cgroup_takes_the_shim() {
    let name = format!("tether-shimcg-{}", std::process::id());
    let dir = std::path::Path::new("/sys/fs/cgroup/memory").join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let o = tether::protos::runc_options::Options {
        shim_cgroup: format!("/{name}"),
        ..Default::default()
    };
    let bytes = runc_options(o).write_to_bytes().unwrap();
    let f = Fixture::build(&["/bin/true"], |_| {}, &bytes).await;
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    let member = procs.lines().any(|l| l == f.shim_pid.to_string());
    f.shutdown_and_wait_exit().await;
    let _ = std::fs::remove_dir(&dir);
    assert!(
        member,
        "shim {} not in {}: {procs:?}",
        f.shim_pid,
        dir.display()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn checkpoint_and_restore_work_or_name_criu_s_reason() {
    let f = Fixture::new(&["/bin/sleep", "1000"]).await;
    f.create().await;
    f.start().await;
    let image = f.dir.path().join("image");
    let req = CheckpointTaskRequest {
        id: f.id.clone(),
        path: image.display().to_string(),
        ..Default::default()
    };
    match f.client.checkpoint(ctx(), &req).await {
        Ok(_) => {
            // criu works here: the container keeps running, the event came.
            f.wait_for_topic("/tasks/checkpointed", 1).await;
            assert!(image.join("inventory.img").exists());
        }
        Err(e) => {
            let (_, msg) = code_of::<()>(Err(e));
            assert!(msg.contains("criu: "), "criu's reason missing: {msg}");
            assert!(f.topics().iter().all(|t| t != "/tasks/checkpointed"));
        }
    }
    let s = f.state().await;
    assert_eq!(
        s.status.enum_value(),
        Ok(Status::RUNNING),
        "checkpoint stopped it"
    );
    f.stop_and_delete().await;

    // Restore from an image that is not one: Create takes it, Start fails
    // with the runtime's reason, Delete cleans up.
    std::fs::create_dir_all(&image).unwrap();
    let mut create = f.create_request();
    create.checkpoint = image.display().to_string();
    assert_eq!(f.client.create(ctx(), &create).await.unwrap().pid, 0);
    let start = StartRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let (_, msg) = code_of(f.client.start(ctx(), &start).await);
    assert!(msg.contains("restore"), "{msg}");
    f.delete().await;
    f.shutdown_and_wait_exit().await;
}

/// A runc stand-in for `checkpoint` (real runc for everything else): it
/// records its arguments, writes a criu-style dump.log with an error into
/// the work path, and fails as runc does when criu fails.
fn recording_checkpoint_runc(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("runc-recording-checkpoint");
    let script = format!(
        r#"#!/bin/sh
for a in "$@"; do [ "$a" = checkpoint ] && cp=1; done
[ -n "$cp" ] || exec runc "$@"
printf '%s\n' "$@" > {args}
work=""
prev=""
for a in "$@"; do [ "$prev" = --work-path ] && work="$a"; prev="$a"; done
mkdir -p "$work"
printf '(00.001) Warn: something harmless\n(00.002) Error (criu/vdso.c:42): vdso: test reason\n' > "$work/dump.log"
echo 'criu failed: type NOTIFY errno 0' >&2
exit 1
"#,
        args = dir.join("args").display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "current_thread")]
async fn checkpoint_passes_criu_s_options_and_names_its_reason() {
    let tools = tempfile::tempdir().unwrap();
    let runc = recording_checkpoint_runc(tools.path());
    let o = tether::protos::runc_options::Options {
        binary_name: runc.display().to_string(),
        ..Default::default()
    };
    let options = runc_options(o);
    let f = Fixture::build(
        &["/bin/sleep", "1000"],
        |_| {},
        &options.write_to_bytes().unwrap(),
    )
    .await;
    let mut create = f.create_request();
    create.options = MessageField::some(options);
    f.client.create(ctx(), &create).await.unwrap();
    f.start().await;

    let image = f.dir.path().join("image");
    let work = f.dir.path().join("work");
    let co = tether::protos::runc_options::CheckpointOptions {
        open_tcp: true,
        file_locks: true,
        terminal: true,
        empty_namespaces: vec!["network".into()],
        cgroups_mode: "soft".into(),
        work_path: work.display().to_string(),
        parent_path: "../parent".into(),
        ..Default::default()
    };
    let req = CheckpointTaskRequest {
        id: f.id.clone(),
        path: image.display().to_string(),
        options: MessageField::some(Any {
            type_url: "containerd.runc.v1.CheckpointOptions".into(),
            value: co.write_to_bytes().unwrap(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (code, msg) = code_of(f.client.checkpoint(ctx(), &req).await);
    assert_ne!(code, ttrpc::Code::OK);
    // The error names criu's own reason from its log, not the warning.
    assert!(
        msg.contains("criu: (00.002) Error (criu/vdso.c:42): vdso: test reason"),
        "{msg}"
    );
    assert!(!msg.contains("harmless"), "{msg}");
    // runc got exactly what the options asked for, in runc's own syntax.
    let args = std::fs::read_to_string(tools.path().join("args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let at = args.iter().position(|a| *a == "checkpoint").unwrap();
    assert_eq!(
        &args[at..],
        [
            "checkpoint",
            "--image-path",
            &image.display().to_string(),
            "--work-path",
            &work.display().to_string(),
            "--leave-running",
            "--tcp-established",
            "--shell-job",
            "--file-locks",
            "--empty-ns",
            "network",
            "--manage-cgroups-mode",
            "soft",
            "--parent-path",
            "../parent",
            &f.id,
        ]
    );
    // Before it, runc's global flags, the container's runc root among them.
    assert!(args[..at].contains(&"--root"), "{args:?}");
    // Nothing was published, and the container runs on.
    assert!(f.topics().iter().all(|t| t != "/tasks/checkpointed"));
    let s = f.state().await;
    assert_eq!(s.status.enum_value(), Ok(Status::RUNNING));
    // Unknown checkpoint option types are refused before runc runs.
    std::fs::remove_file(tools.path().join("args")).unwrap();
    let mut bad = req.clone();
    bad.options = MessageField::some(Any {
        type_url: "example.com/Nope".into(),
        ..Default::default()
    });
    let (code, _) = code_of(f.client.checkpoint(ctx(), &bad).await);
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
    assert!(!tools.path().join("args").exists(), "runc ran anyway");
    f.stop_and_delete().await;
    f.shutdown_and_wait_exit().await;
}

//! Update and Stats over ttrpc, with real runc.

mod direct;

use direct::*;
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
    let pid = f
        .client
        .create(ctx(), &f.create_request())
        .await
        .unwrap()
        .pid;
    let start = StartRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    f.client.start(ctx(), &start).await.unwrap();

    let limit = 48u64 << 20;
    let update = UpdateTaskRequest {
        id: f.id.clone(),
        resources: MessageField::some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: serde_json::to_vec(&serde_json::json!({"memory": {"limit": limit}})).unwrap(),
            ..Default::default()
        }),
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

    let pause = PauseRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    f.client.pause(ctx(), &pause).await.unwrap();
    let state = StateRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let s = f.client.state(ctx(), &state).await.unwrap();
    assert_eq!(s.status.enum_value(), Ok(Status::PAUSED));
    let (code, _) = code_of(f.client.pause(ctx(), &pause).await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "pausing twice");
    let resume = ResumeRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    f.client.resume(ctx(), &resume).await.unwrap();
    let s = f.client.state(ctx(), &state).await.unwrap();
    assert_eq!(s.status.enum_value(), Ok(Status::RUNNING));

    let kill = KillRequest {
        id: f.id.clone(),
        signal: 9,
        ..Default::default()
    };
    f.client.kill(ctx(), &kill).await.unwrap();
    let wait = WaitRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    f.client.wait(ctx(), &wait).await.unwrap();
    let del = DeleteRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    f.client.delete(ctx(), &del).await.unwrap();
    let (code, _) = code_of(f.client.stats(ctx(), &stats).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "Stats of a deleted task");
    f.wait_for_topic("/tasks/resumed", 1).await;
    let topics = f.topics();
    let p = topics.iter().position(|t| t == "/tasks/paused").unwrap();
    let r = topics.iter().position(|t| t == "/tasks/resumed").unwrap();
    assert!(p < r);
    f.shutdown_and_wait_exit().await;
}

//! containerd away while the containers of one shim exit: every exit is
//! delivered, once and with its true status, when it comes back.
//!
//! The size is `TETHER_AWAY_CONTAINERS` containers (default 100) and
//! `TETHER_AWAY_SECONDS` seconds away (default 60): the shim's retries back
//! off to their ceiling several times over. docs/reliability.md records a run
//! at 1,000 containers and 10 minutes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::direct::*;
use common::{all_processes, SETTLE_TIMEOUT};
use protobuf::Message;
use tether::protos::events::TaskExit;
use tether::protos::shim::*;

/// Each container exits with its own status when it gets SIGTERM.
fn script(status: u64) -> String {
    format!("trap 'exit {status}' TERM; sleep 1000 & wait")
}

/// Removes containers 1..n of the shim (the fixture removes its own) with
/// `runc delete --force`, whatever state the test left them in.
struct ExtraContainers(String, String, usize);

impl Drop for ExtraContainers {
    fn drop(&mut self) {
        let root = runc_root(&self.0);
        for i in 1..self.2 {
            runc_delete_force(&root, &format!("{}-{i}", self.1));
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_exit_is_delivered_after_containerd_was_away() {
    let n = env_or("TETHER_AWAY_CONTAINERS", 100).max(1) as usize;
    let away = Duration::from_secs(env_or("TETHER_AWAY_SECONDS", 60));
    let status_of = |i: usize| (i % 250 + 1) as u64;
    let mut f = Fixture::new(&["/bin/sh", "-c", &script(status_of(0))]).await;
    // The other containers, in the same shim (one shim serves a group);
    // removed through runc should the test fail half-way.
    let _extra = ExtraContainers(f.namespace.clone(), f.id.clone(), n);
    let mut ids = vec![f.id.clone()];
    let mut pids = vec![f.create().await];
    f.start().await;
    for i in 1..n {
        let id = format!("{}-{i}", f.id);
        let bundle = f.dir.path().join(format!("bundle-{i}"));
        make_bundle(&bundle, &["/bin/sh", "-c", &script(status_of(i))], |_| {});
        let req = CreateTaskRequest {
            id: id.clone(),
            bundle: bundle.display().to_string(),
            ..Default::default()
        };
        pids.push(f.client.create(ctx(), &req).await.unwrap().pid);
        let start = StartRequest {
            id: id.clone(),
            ..Default::default()
        };
        f.client.start(ctx(), &start).await.unwrap();
        ids.push(id);
    }
    f.wait_for_topic("/tasks/start", n).await;
    // Each shell has set its trap once it has started its `sleep`.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let parents: std::collections::BTreeSet<u32> =
            all_processes().iter().map(|p| p.ppid as u32).collect();
        let bare: Vec<&u32> = pids.iter().filter(|p| !parents.contains(p)).collect();
        if bare.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} containers never started their sleep (pids {bare:?})",
            bare.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    f.events_down().await;
    let t0 = Instant::now();
    for id in &ids {
        let kill = KillRequest {
            id: id.clone(),
            signal: 15,
            ..Default::default()
        };
        f.client.kill(ctx(), &kill).await.unwrap();
    }
    // The exits happen while nobody listens; the shim keeps answering.
    for (i, id) in ids.iter().enumerate() {
        let wait = WaitRequest {
            id: id.clone(),
            ..Default::default()
        };
        let got = f.client.wait(ctx(), &wait).await.unwrap().exit_status;
        assert_eq!(got as u64, status_of(i), "{id}");
    }
    assert_eq!(f.count("/tasks/exit"), 0, "delivered while away");
    // Letting the time pass is the point: the shim's retries back off to
    // their ceiling while nobody listens.
    tokio::time::sleep(away.saturating_sub(t0.elapsed())).await;

    let back = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    f.events_up().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while f.count("/tasks/exit") < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} exits delivered within 120 s of containerd's return",
            f.count("/tasks/exit")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The shim publishes from one ordered queue, resending only its head:
    // a duplicate exit would come before the delete events that follow, so
    // once those are in, every exit event that will ever come is here.
    for id in &ids {
        let del = DeleteRequest {
            id: id.clone(),
            ..Default::default()
        };
        f.client.delete(ctx(), &del).await.unwrap();
    }
    f.wait_for_topic("/tasks/delete", n).await;
    let got = f.sink.got.lock().unwrap().clone();
    let mut exits: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (topic, any) in &got {
        if topic == "/tasks/exit" {
            let e = TaskExit::parse_from_bytes(&any.value).unwrap();
            // The time of the exit, not of the delivery.
            let at = e.exited_at.seconds;
            assert!(
                at > 0 && at <= back,
                "{}: exited_at {at}, back at {back}",
                e.container_id
            );
            exits.entry(e.container_id).or_default().push(e.exit_status);
        }
    }
    eprintln!(
        "{} of {n} exits delivered after {} s away",
        exits.len(),
        away.as_secs()
    );
    for (i, id) in ids.iter().enumerate() {
        let statuses = exits.get(id).cloned().unwrap_or_default();
        assert_eq!(
            statuses,
            vec![status_of(i) as u32],
            "{id}: exit events after containerd came back"
        );
    }
    f.shutdown_and_wait_exit().await;
}

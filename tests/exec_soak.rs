//! 10,000 execs through one shim, eight at a time, some with a terminal and
//! some writing to files: afterwards no zombie is left under the shim and its
//! descriptor count is back where it started. `TETHER_EXEC_CYCLES` changes
//! the count.

mod direct;

use std::time::{Duration, Instant};

use direct::*;
use futures_util::stream::{self, StreamExt};
use protobuf::well_known_types::any::Any;
use protobuf::MessageField;
use tether::protos::shim::*;

fn spec(args: &[&str]) -> Any {
    let spec = serde_json::json!({
        "args": args, "cwd": "/", "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0}, "terminal": false,
    });
    Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(&spec).unwrap(),
        ..Default::default()
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Children of `pid` that are zombies.
fn zombie_children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let mut f = stat.rsplit(')').next().unwrap_or("").split_whitespace();
            let state = f.next();
            let ppid = f.next().and_then(|v| v.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .collect()
}

async fn one(f: &Fixture, i: usize) {
    let exec_id = format!("x{i}");
    let stdout = match i % 3 {
        0 => String::new(),
        n => f.dir.path().join(format!("out{n}")).display().to_string(),
    };
    let req = ExecProcessRequest {
        id: f.id.clone(),
        exec_id: exec_id.clone(),
        stdout,
        terminal: i % 10 == 0,
        spec: MessageField::some(spec(&["/bin/true"])),
        ..Default::default()
    };
    f.client.exec(ctx(), &req).await.unwrap();
    let start = StartRequest {
        id: f.id.clone(),
        exec_id: exec_id.clone(),
        ..Default::default()
    };
    f.client.start(ctx(), &start).await.unwrap();
    let wait = WaitRequest {
        id: f.id.clone(),
        exec_id: exec_id.clone(),
        ..Default::default()
    };
    assert_eq!(f.client.wait(ctx(), &wait).await.unwrap().exit_status, 0);
    let del = DeleteRequest {
        id: f.id.clone(),
        exec_id,
        ..Default::default()
    };
    f.client.delete(ctx(), &del).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_execs_leave_no_zombie_and_no_descriptor() {
    let n: usize = std::env::var("TETHER_EXEC_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let f = Fixture::new(&["/bin/sleep", "100000"]).await;
    f.create().await;
    f.start().await;
    // A warm-up of every kind, eight at a time as below, so that lazily
    // made descriptors are in the baseline.
    stream::iter(0..40)
        .for_each_concurrent(8, |i| one(&f, i))
        .await;
    let baseline = fd_count(f.shim_pid);
    let t0 = Instant::now();
    stream::iter(40..40 + n)
        .for_each_concurrent(8, |i| one(&f, i))
        .await;
    eprintln!(
        "{n} execs in {:.1} s ({:.1} ms each, 8 at a time)",
        t0.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while (fd_count(f.shim_pid) > baseline || !zombie_children(f.shim_pid).is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(zombie_children(f.shim_pid), Vec::<u32>::new(), "zombies");
    assert!(
        fd_count(f.shim_pid) <= baseline,
        "{} descriptors after {n} execs, {baseline} before",
        fd_count(f.shim_pid)
    );
    assert_eq!(f.stop_and_delete().await, 137);
    f.shutdown_and_wait_exit().await;
}

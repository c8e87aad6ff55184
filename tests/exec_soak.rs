//! 2,000 execs through one shim, eight at a time, some with a terminal and
//! some writing to files: afterwards no zombie is left under the shim and its
//! descriptor count is back where it started. `TETHER_EXEC_CYCLES` changes
//! the count (`scripts/soak.sh` runs 10,000).

mod common;

use std::time::{Duration, Instant};

use common::direct::*;
use futures_util::stream::{self, StreamExt};

async fn one(f: &Fixture, i: usize) {
    let exec_id = format!("x{i}");
    let stdout = match i % 3 {
        0 => String::new(),
        n => f.dir.path().join(format!("out{n}")).display().to_string(),
    };
    let e = Exec::add_with(f, &exec_id, &["/bin/true"], ("", &stdout), i % 10 == 0).await;
    e.start().await.unwrap();
    assert_eq!(e.wait().await, 0);
    e.delete().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn thousands_of_execs_leave_no_zombie_and_no_descriptor() {
    let n = env_or("TETHER_EXEC_CYCLES", 2_000) as usize;
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

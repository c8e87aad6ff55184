//! Exec, terminals, stdin and log URIs, driven over ttrpc with real runc.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::direct::*;
use common::SETTLE_TIMEOUT;
use protobuf::{Message, MessageField};
use tether::protos::events::{TaskExecStarted, TaskExit};
use tether::protos::shim::*;

#[path = "exec_direct/logs.rs"]
mod logs;
#[path = "exec_direct/terminal.rs"]
mod terminal;

/// A fixture whose container is running `sleep`.
async fn running(edit: impl FnOnce(&mut serde_json::Value)) -> Fixture {
    let f = Fixture::with_spec(&["/bin/sleep", "1000"], edit).await;
    f.create().await;
    f.start().await;
    f
}

async fn stop_init(f: &Fixture) {
    assert_eq!(f.stop_and_delete().await, 137);
}

fn out_path(f: &Fixture, name: &str) -> PathBuf {
    f.dir.path().join(name)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "current_thread")]
async fn exec_statuses_errors_and_events() {
    let f = running(|_| {}).await;
    assert_eq!(
        Exec::add(&f, "ok", &["/bin/true"], ("", ""))
            .await
            .run()
            .await,
        0
    );
    assert_eq!(
        Exec::add(&f, "seven", &["/bin/sh", "-c", "exit 7"], ("", ""))
            .await
            .run()
            .await,
        7
    );
    let sleeper = Exec::add(&f, "sleeper", &["/bin/sleep", "100"], ("", "")).await;
    // Not started yet: cannot be signalled.
    let (code, _) = code_of(sleeper.kill(9).await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION);
    sleeper.start().await.unwrap();
    // Running: cannot be deleted.
    let (code, _) = code_of(sleeper.delete().await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION);
    sleeper.kill(9).await.unwrap();
    assert_eq!(sleeper.wait().await, 137);
    let (code, _) = code_of(sleeper.kill(9).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "signalling a finished exec");
    sleeper.delete().await.unwrap();

    // Duplicate exec ids are refused.
    let dup = ExecProcessRequest {
        id: f.id.clone(),
        exec_id: "again".into(),
        spec: MessageField::some(process_spec(&["/bin/true"])),
        ..Default::default()
    };
    f.client.exec(ctx(), &dup).await.unwrap();
    let (code, _) = code_of(f.client.exec(ctx(), &dup).await);
    assert_eq!(code, ttrpc::Code::ALREADY_EXISTS);
    // Created and never started: deletes with status 0.
    let never = Exec {
        client: &f.client,
        id: f.id.clone(),
        exec_id: "again".into(),
    };
    assert_eq!(never.delete().await.unwrap().exit_status, 0);

    // A binary that does not exist: runc's message, no exit event.
    let missing = Exec::add(&f, "missing", &["/no/such/binary"], ("", "")).await;
    let (_, msg) = code_of(missing.start().await);
    assert!(msg.contains("/no/such/binary"), "{msg}");
    assert_eq!(missing.delete().await.unwrap().exit_status, 0);

    stop_init(&f).await;
    // Start after init exited is refused... but the container is gone now;
    // the ordering check is in `concurrent_execs_...`.
    f.wait_for_topic("/tasks/exit", 4).await;
    let topics = f.topics();
    let exits: Vec<TaskExit> = {
        let got = f.sink.got.lock().unwrap();
        got.iter()
            .filter(|(t, _)| t == "/tasks/exit")
            .map(|(_, a)| TaskExit::parse_from_bytes(&a.value).unwrap())
            .collect()
    };
    let ids: Vec<_> = exits
        .iter()
        .map(|e| (e.id.as_str(), e.exit_status))
        .collect();
    assert_eq!(
        ids,
        [
            ("ok", 0),
            ("seven", 7),
            ("sleeper", 137),
            (f.id.as_str(), 137)
        ],
        "one exit per started process, init last; none for the failed start"
    );
    let started = topics
        .iter()
        .filter(|t| *t == "/tasks/exec-started")
        .count();
    let added = topics.iter().filter(|t| *t == "/tasks/exec-added").count();
    assert_eq!((added, started), (5, 3), "{topics:?}");
    let es: TaskExecStarted = f.event("/tasks/exec-started");
    assert_eq!(
        (es.container_id.as_str(), es.exec_id.as_str()),
        (f.id.as_str(), "ok")
    );
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn stdin_through_a_fifo_comes_back_exactly_and_closeio_ends_it() {
    let f = running(|_| {}).await;
    let fifo = out_path(&f, "stdin");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = out_path(&f, "stdout");
    let cat = Exec::add(&f, "cat", &["/bin/cat"], (&s(&fifo), &s(&out))).await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    // The client side of the FIFO, as ctr does it: write, close, CloseIO.
    let writer = {
        let (fifo, data) = (fifo.clone(), data.clone());
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            w.write_all(&data).unwrap();
        })
    };
    cat.start().await.unwrap();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !writer.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the exec's stdin FIFO took no 1 MB within {SETTLE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.join().unwrap();
    let close = CloseIORequest {
        id: f.id.clone(),
        exec_id: "cat".into(),
        stdin: true,
        ..Default::default()
    };
    f.client.close_io(ctx(), &close).await.unwrap();
    assert_eq!(cat.wait().await, 0, "cat saw end of input and exited");
    assert!(
        std::fs::read(&out).unwrap() == data,
        "stdin came back altered"
    );
    cat.delete().await.unwrap();
    stop_init(&f).await;
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_20000_character_argument_arrives_intact() {
    let f = running(|_| {}).await;
    let arg: String = (0..20_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let out = out_path(&f, "echo");
    let echo = Exec::add(&f, "long", &["/bin/echo", "-n", &arg], ("", &s(&out))).await;
    assert_eq!(echo.run().await, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), arg);
    stop_init(&f).await;
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn fifty_concurrent_execs_then_init_exit_last() {
    let f = running(|_| {}).await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let client = f.client.clone();
        let id = f.id.clone();
        tasks.spawn(async move {
            let exec_id = format!("x{i}");
            let args = ["/bin/sh", "-c", &format!("exit {}", i % 5)];
            let req = ExecProcessRequest {
                id: id.clone(),
                exec_id: exec_id.clone(),
                spec: MessageField::some(process_spec(&args)),
                ..Default::default()
            };
            client.exec(ctx(), &req).await.unwrap();
            let e = Exec {
                client: &client,
                id,
                exec_id,
            };
            (i, e.run().await)
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (i, status) = r.unwrap();
        assert_eq!(status, i % 5, "exec x{i}");
    }
    eprintln!("50 concurrent execs took {:?}", started.elapsed());

    // Registered now, started after init is gone.
    let late = Exec::add(&f, "late", &["/bin/true"], ("", "")).await;
    // Execs still running when init dies: their exits come first.
    for i in 0..3 {
        let e = Exec::add(&f, &format!("bg{i}"), &["/bin/sleep", "100"], ("", "")).await;
        e.start().await.unwrap();
    }
    // One whose exit is slow to report: its output is stuck in a FIFO nobody
    // reads, so draining it gives up only after the stall limit.
    let stuck = out_path(&f, "stuck");
    nix::unistd::mkfifo(&stuck, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = Exec::add(&f, "bg3", &["/bin/seq", "1000000000"], ("", &s(&stuck))).await;
    e.start().await.unwrap();
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
    // Too late to start an exec.
    let (code, _) = code_of(late.start().await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION);

    f.wait_for_topic("/tasks/exit", 55).await;
    let exits: Vec<String> = {
        let got = f.sink.got.lock().unwrap();
        got.iter()
            .filter(|(t, _)| t == "/tasks/exit")
            .map(|(_, a)| TaskExit::parse_from_bytes(&a.value).unwrap().id)
            .collect()
    };
    let mut hist = std::collections::BTreeMap::new();
    for t in f.topics() {
        *hist.entry(t).or_insert(0) += 1;
    }
    assert_eq!(exits.len(), 55, "{exits:?} {hist:?}");
    let mut unique = exits.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 55, "duplicate exit events");
    assert_eq!(
        exits.last().unwrap(),
        &f.id,
        "init's exit is published last"
    );
    f.delete().await;
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn two_hundred_exec_cycles_leak_no_descriptor() {
    let f = running(|_| {}).await;
    // Warm up once so lazily created descriptors exist in the baseline.
    let out = out_path(&f, "warm");
    Exec::add(&f, "warm", &["/bin/true"], ("", &s(&out)))
        .await
        .run()
        .await;
    let baseline = fd_targets(f.shim_pid).len();
    for i in 0..200 {
        let out = out_path(&f, &format!("o{}", i % 3));
        let terminal = i % 4 == 0;
        let e = Exec::add_with(
            &f,
            &format!("c{i}"),
            &["/bin/true"],
            ("", &s(&out)),
            terminal,
        )
        .await;
        assert_eq!(e.run().await, 0);
    }
    eventually("the fd count is back at its baseline", || {
        fd_targets(f.shim_pid).len() <= baseline
    });
    stop_init(&f).await;
    f.shutdown_and_wait_exit().await;
}

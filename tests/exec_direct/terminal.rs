//! Exec and init with a terminal: the size set before Start, resizes, and
//! one pty master per live terminal.

use super::*;

fn ptmx_count(pid: u32) -> usize {
    fd_targets(pid)
        .iter()
        .filter(|t| t.ends_with("ptmx"))
        .count()
}

fn terminal(spec: &mut serde_json::Value) {
    spec["process"]["terminal"] = true.into();
}

#[tokio::test(flavor = "current_thread")]
async fn terminal_size_set_before_start_reaches_stty() {
    let f = Fixture::with_spec(&["/bin/stty", "size"], terminal).await;
    let out = out_path(&f, "tty");
    let mut req = f.create_request();
    req.terminal = true;
    req.stdout = s(&out);
    f.client.create(ctx(), &req).await.unwrap();
    let resize = ResizePtyRequest {
        id: f.id.clone(),
        width: 123,
        height: 45,
        ..Default::default()
    };
    f.client.resize_pty(ctx(), &resize).await.unwrap();
    f.start().await;
    let wait = WaitRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    assert_eq!(f.client.wait(ctx(), &wait).await.unwrap().exit_status, 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim(), "45 123", "terminal output {text:?}");
    f.delete().await;
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn terminal_exec_resize_and_one_ptmx_per_live_terminal() {
    let f = running(|_| {}).await;
    let shim = f.shim_pid;
    assert_eq!(ptmx_count(shim), 0);

    // Resize before and after Start, on an exec.
    let out = out_path(&f, "size");
    let sized = Exec::add_with(&f, "sized", &["/bin/stty", "size"], ("", &s(&out)), true).await;
    sized.resize(80, 24).await;
    assert_eq!(sized.run().await, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "24 80");

    let a = Exec::add_with(&f, "a", &["/bin/sleep", "100"], ("", ""), true).await;
    let b = Exec::add_with(&f, "b", &["/bin/sleep", "100"], ("", ""), true).await;
    a.start().await.unwrap();
    assert_eq!(ptmx_count(shim), 1);
    b.start().await.unwrap();
    assert_eq!(ptmx_count(shim), 2);
    b.resize(100, 30).await;
    for e in [&a, &b] {
        e.kill(9).await.unwrap();
        assert_eq!(e.wait().await, 137);
        e.delete().await.unwrap();
    }
    eventually("no pty master is left", || ptmx_count(shim) == 0);

    // Output through a terminal is drained before the exit is reported.
    let out = out_path(&f, "seq");
    let seq = Exec::add_with(
        &f,
        "seq",
        &["/bin/seq", "-s", " ", "1000000"],
        ("", &s(&out)),
        true,
    )
    .await;
    assert_eq!(seq.run().await, 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.trim_end().ends_with("999999 1000000"),
        "tail {:?}",
        &text[text.len() - 40..]
    );
    stop_init(&f).await;
    f.shutdown_and_wait_exit().await;
}

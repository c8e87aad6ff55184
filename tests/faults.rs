//! Faults at each step, with real runc: the shim SIGKILLed during Start and
//! during an exec (containerd's clean-up, the shim's `delete`, must leave
//! nothing), runc SIGKILLed in the middle of create, a full disk under the
//! bundle when `start` writes the address and when the exit is recorded, a
//! stdout FIFO nobody reads, and a connection from a user that is not root.

mod common;

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use common::direct::*;
use protobuf::{Message, MessageField};
use tether::client::ShimSpawn;
use tether::protos::shim::*;
use tether::protos::status::Status;

/// runc no longer knows the container, and its state dir is gone.
fn runc_forgot(f: &Fixture) {
    let root = f.runc_root();
    assert!(!runc_knows(&root, &f.id), "runc still knows {}", f.id);
    assert!(
        !root.join(&f.id).exists(),
        "runc state dir {}/{} left",
        root.display(),
        f.id
    );
}

/// Live processes whose `/proc/PID/<link>` points at `target`.
fn processes_with(link: &str, target: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/{link}")).is_ok_and(|t| t == target)
                && alive(*pid)
        })
        .collect()
}

/// The pid namespace of a container's process (`pid:[N]`): every process
/// of the container is in it, whatever its root looks like from here.
fn pid_ns(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap()
}

/// Live processes still in the container's pid namespace.
fn in_container(ns: &Path) -> Vec<u32> {
    processes_with("ns/pid", ns)
}

/// Live children of `pid` (a subreaper inherits the orphans of its tree).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|c| {
                    c.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .filter(|p| alive(*p))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "current_thread")]
async fn shim_killed_during_start_leaves_nothing_after_delete() {
    // Kill points spread over Start: before runc start, during, after.
    for delay_ms in [0u64, 2, 5, 10, 20, 40] {
        let f = Fixture::new(&["/bin/sleep", "1000"]).await;
        let pid = f.create().await;
        let ns = pid_ns(pid);
        let req = StartRequest {
            id: f.id.clone(),
            ..Default::default()
        };
        let client = f.client.clone();
        let start = tokio::spawn(async move { client.start(ctx(), &req).await });
        // The delay is the point: it picks where in Start the kill lands.
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        sigkill(f.shim_pid);
        let _ = start.await;
        assert!(gone_within(f.shim_pid, Duration::from_secs(5)));
        let resp = delete_after_death(&f);
        assert_eq!(resp.pid, pid, "kill after {delay_ms} ms");
        assert_eq!(resp.exit_status, 137, "kill after {delay_ms} ms");
        assert!(
            gone_within(pid, Duration::from_secs(5)),
            "init survived (kill after {delay_ms} ms)"
        );
        assert_eq!(in_container(&ns), Vec::<u32>::new());
        runc_forgot(&f);
        assert!(!f.socket().exists(), "socket left");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn shim_killed_during_an_exec_leaves_nothing_after_delete() {
    let f = Fixture::new(&["/bin/sleep", "1000"]).await;
    let pid = f.create().await;
    f.start().await;
    let ns = pid_ns(pid);
    let spec =
        serde_json::json!({"args": ["/bin/sleep", "1000"], "cwd": "/", "env": ["PATH=/bin"]});
    let exec = ExecProcessRequest {
        id: f.id.clone(),
        exec_id: "e1".into(),
        spec: MessageField::some(oci_process(&spec)),
        ..Default::default()
    };
    f.client.exec(ctx(), &exec).await.unwrap();
    let start = StartRequest {
        id: f.id.clone(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    let exec_pid = f.client.start(ctx(), &start).await.unwrap().pid;
    assert!(alive(exec_pid));
    sigkill(f.shim_pid);
    assert!(gone_within(f.shim_pid, Duration::from_secs(5)));
    let resp = delete_after_death(&f);
    assert_eq!((resp.pid, resp.exit_status), (pid, 137));
    assert!(gone_within(pid, Duration::from_secs(5)), "init survived");
    assert!(
        gone_within(exec_pid, Duration::from_secs(5)),
        "exec survived"
    );
    assert_eq!(in_container(&ns), Vec::<u32>::new());
    runc_forgot(&f);
}

/// A runc wrapper that SIGKILLs runc once `runc init` exists during create.
fn killing_wrapper(dir: &Path) -> PathBuf {
    let path = dir.join("runc-killed-mid-create");
    let script = r#"#!/bin/sh
for a in "$@"; do [ "$a" = create ] && is_create=1; done
[ -n "$is_create" ] || exec runc "$@"
runc "$@" &
pid=$!
i=0
while [ $i -lt 500 ]; do
    kids=$(cat /proc/$pid/task/$pid/children 2>/dev/null)
    [ -n "$kids" ] && break
    i=$((i + 1))
    sleep 0.01
done
kill -9 $pid
wait $pid
exit 137
"#;
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn binary_option(binary: &Path) -> Vec<u8> {
    let o = tether::protos::runc_options::Options {
        binary_name: binary.display().to_string(),
        ..Default::default()
    };
    runc_options(o).write_to_bytes().unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn runc_killed_mid_create_is_a_clear_error_and_leaves_no_half_container() {
    let tools = tempfile::tempdir().unwrap();
    let wrapper = killing_wrapper(tools.path());
    for round in 0..5 {
        let options = binary_option(&wrapper);
        let f = Fixture::build(&["/bin/sleep", "1000"], |_| {}, &options).await;
        let mut req = f.create_request();
        req.options = MessageField::some(protobuf::Message::parse_from_bytes(&options).unwrap());
        let (code, msg) = code_of(f.client.create(ctx(), &req).await);
        assert_ne!(code, ttrpc::Code::OK);
        eprintln!("round {round}: {code:?}: {msg}");
        assert!(
            msg.contains("OCI runtime create failed"),
            "round {round}: unclear error: {msg}"
        );
        // Nothing half-made: the shim (the subreaper, which inherits an
        // orphaned `runc init`) has no child left, runc has no state, and
        // this shim still serves.
        let _ = poll_until(Duration::from_secs(5), || {
            children_of(f.shim_pid).is_empty().then_some(())
        });
        assert_eq!(children_of(f.shim_pid), Vec::<u32>::new(), "round {round}");
        runc_forgot(&f);
        let state = StateRequest {
            id: f.id.clone(),
            ..Default::default()
        };
        let (code, _) = code_of(f.client.state(ctx(), &state).await);
        assert_eq!(code, ttrpc::Code::NOT_FOUND, "round {round}");
        f.shutdown_and_wait_exit().await;
    }
}

/// Unmounts the tmpfs under a bundle when the test ends, failing or not.
struct TmpfsGuard(Rc<RefCell<Option<PathBuf>>>);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.borrow().as_ref() {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn mount_tmpfs(path: &Path, size: &str) {
    nix::mount::mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some(format!("size={size},mode=0700").as_str()),
    )
    .unwrap();
}

/// Fills the filesystem under `dir` to the last byte.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let mut one = [0u8; 1];
    while f.write_all(&one).is_ok() {
        one[0] = 1;
    }
    let _ = f.sync_all();
}

#[tokio::test(flavor = "current_thread")]
async fn full_disk_when_the_exit_is_recorded_still_reports_the_true_status() {
    let cell = Rc::new(RefCell::new(None));
    let f = Fixture::build_on(
        &["/bin/sleep", "1000"],
        |_| {},
        &[],
        |bundle| {
            mount_tmpfs(bundle, "16m");
            *cell.borrow_mut() = Some(bundle.to_path_buf());
        },
    )
    .await;
    // Dropped before `f`: the tmpfs goes before the temp dir is removed.
    let _guard = TmpfsGuard(cell.clone());
    let pid = f.create().await;
    f.start().await;
    fill(&f.bundle());
    sigkill(pid);
    // Wait, State, the exit event and Delete all say 137, although the
    // exit record could not be written.
    assert_eq!(f.wait().await, 137);
    let s = f.state().await;
    assert_eq!(s.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(s.exit_status, 137);
    f.wait_for_topic("/tasks/exit", 1).await;
    let exit: tether::protos::events::TaskExit = f.event("/tasks/exit");
    assert_eq!(exit.exit_status, 137);
    assert_eq!(f.delete().await.exit_status, 137);
    assert!(alive(f.shim_pid), "the shim died of a full disk");
    f.shutdown_and_wait_exit().await;
}

#[test]
fn full_disk_when_start_writes_the_address_is_a_clear_error_and_leaves_nothing() {
    require_root_and_runc();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let _guard = TmpfsGuard(Rc::new(RefCell::new(Some(bundle.clone()))));
    mount_tmpfs(&bundle, "16m");
    make_bundle(&bundle, &["/bin/true"], |_| {});
    fill(&bundle);
    let namespace = format!("tether-faults-{}", std::process::id());
    let spawn = ShimSpawn {
        binary: Path::new(SHIM),
        bundle: &bundle,
        namespace: &namespace,
        id: "full",
        address: &dir.path().join("containerd.sock").display().to_string(),
        ttrpc_address: "",
        options: &[],
    };
    let err = spawn.start().expect_err("start on a full disk").to_string();
    assert!(
        err.to_lowercase().contains("no space left"),
        "unclear error: {err}"
    );
    assert!(!bundle.join("address").exists(), "address file left");
    // No daemon left: nothing runs in the bundle (the one start spawned is
    // SIGKILLed; give the kill a moment to land).
    let in_bundle = || processes_with("cwd", &bundle);
    let _ = poll_until(Duration::from_secs(5), || {
        in_bundle().is_empty().then_some(())
    });
    assert_eq!(
        in_bundle(),
        Vec::<u32>::new(),
        "a shim daemon was left running"
    );
    let socket = tether::cli::start::socket_path(
        &dir.path().join("containerd.sock").display().to_string(),
        &namespace,
        "full",
    );
    assert!(!socket.exists(), "socket {} left", socket.display());
}

#[tokio::test(flavor = "current_thread")]
async fn stdout_fifo_with_no_reader_neither_hangs_nor_loses_the_exit() {
    let f = Fixture::new(&["/bin/sh", "-c", "echo lost; exit 3"]).await;
    let fifo = f.dir.path().join("stdout-nobody-reads");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut req = f.create_request();
    req.stdout = fifo.display().to_string();
    let create = tokio::time::timeout(Duration::from_secs(20), f.client.create(ctx(), &req)).await;
    let create = create.expect("Create hung on a FIFO with no reader");
    match create {
        Ok(_) => {
            f.start().await;
            assert_eq!(f.wait().await, 3);
            assert_eq!(f.delete().await.exit_status, 3);
        }
        Err(e) => {
            // Refusing is fine too, if it says why and leaves nothing.
            let msg = format!("{e:?}");
            assert!(msg.contains("stdout") || msg.contains("fifo"), "{msg}");
            runc_forgot(&f);
        }
    }
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn connections_from_a_user_that_is_not_root_are_refused() {
    let f = Fixture::new(&["/bin/true"]).await;
    // The socket's mode (0600, in a 0700 directory) keeps other users out.
    assert_eq!(probe_connect(&f.socket(), 65534, 65534, false), "denied");
    // Past the mode bits (CAP_DAC_OVERRIDE), the shim's own peer check
    // closes the connection of a user that is not containerd's.
    assert_eq!(probe_connect(&f.socket(), 1000, 1000, true), "closed");
    assert_eq!(probe_connect(&f.socket(), 0, 0, false), "open");
    f.client
        .connect(ctx(), &ConnectRequest::default())
        .await
        .unwrap();
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn shim_killed_during_a_live_upgrade_loses_no_exit_status() {
    // SIGUSR2 starts a live upgrade (quiesce, snapshot, check, exec); the
    // SIGKILL lands at a spread of points through it. A container that had
    // exited keeps its status; a running one is cleaned up.
    let mut stages = std::collections::BTreeSet::new();
    for delay_ms in [0u64, 1, 3, 10, 30, 100, 300, 1000] {
        let exited = Fixture::new(&["/bin/sh", "-c", "exit 42"]).await;
        let pid = exited.create().await;
        exited.start().await;
        assert_eq!(exited.wait().await, 42);
        let running = Fixture::new(&["/bin/sleep", "1000"]).await;
        let running_pid = running.create().await;
        running.start().await;
        let ns = pid_ns(running_pid);
        for f in [&exited, &running] {
            let shim = nix::unistd::Pid::from_raw(f.shim_pid as i32);
            nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGUSR2).unwrap();
        }
        // The delay is the point: it picks where in the upgrade the kill
        // lands.
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        // How far the upgrade got, as the kill lands: the new binary runs
        // with the state in its environment; before that, the old one
        // writes the state file into the bundle.
        for f in [&exited, &running] {
            assert!(
                alive(f.shim_pid),
                "the shim died of SIGUSR2 ({delay_ms} ms)"
            );
        }
        let environ = std::fs::read(format!("/proc/{}/environ", running.shim_pid)).unwrap();
        let stage = if String::from_utf8_lossy(&environ).contains("TETHER_UPGRADE_STATE=") {
            "new binary running"
        } else if running.bundle().join(".tether-upgrade.json").exists() {
            "state written"
        } else {
            "before the state"
        };
        stages.insert(stage);
        sigkill(exited.shim_pid);
        sigkill(running.shim_pid);
        assert!(gone_within(exited.shim_pid, Duration::from_secs(5)));
        assert!(gone_within(running.shim_pid, Duration::from_secs(5)));

        let resp = delete_after_death(&exited);
        assert_eq!(
            (resp.pid, resp.exit_status),
            (pid, 42),
            "exited container, kill {delay_ms} ms into an upgrade ({stage})"
        );
        runc_forgot(&exited);
        let resp = delete_after_death(&running);
        assert_eq!(
            (resp.pid, resp.exit_status),
            (running_pid, 137),
            "running container, kill {delay_ms} ms into an upgrade ({stage})"
        );
        assert!(gone_within(running_pid, Duration::from_secs(5)));
        assert_eq!(in_container(&ns), Vec::<u32>::new());
        runc_forgot(&running);
    }
    eprintln!("kill points reached: {stages:?}");
    assert!(
        stages.len() >= 2,
        "every kill landed at the same point of the upgrade: {stages:?}"
    );
}

/// A runc wrapper whose `exec` starts a second late: a Pause sent meanwhile
/// lands between the shim's "not paused" check and the exec.
fn slow_exec_wrapper(dir: &Path) -> PathBuf {
    let path = dir.join("runc-slow-exec");
    let mark = dir.join("exec-started");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = exec ] && {{ : > '{}'; sleep 1; }}; done\nexec runc \"$@\"\n",
        mark.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Pause cannot slip in while an exec starts: it waits for the Start (the
/// two take the container's operation lock), so the exec starts and the
/// Pause then succeeds, rather than runc exec meeting a frozen container.
#[tokio::test(flavor = "current_thread")]
async fn pause_waits_for_an_exec_that_is_starting() {
    let tools = tempfile::tempdir().unwrap();
    let options = binary_option(&slow_exec_wrapper(tools.path()));
    let f = Fixture::build(&["/bin/sleep", "1000"], |_| {}, &options).await;
    let mut req = f.create_request();
    req.options = MessageField::some(protobuf::Message::parse_from_bytes(&options).unwrap());
    f.client.create(ctx(), &req).await.unwrap();
    f.start().await;
    let e = Exec::add(&f, "slow", &["/bin/sleep", "100"], ("", "")).await;
    let pause = async {
        // The Pause goes once `runc exec` is under way (the wrapper holds
        // it for a second after leaving its mark).
        let mark = tools.path().join("exec-started");
        let deadline = std::time::Instant::now() + common::SETTLE_TIMEOUT;
        while !mark.exists() {
            assert!(std::time::Instant::now() < deadline, "runc exec never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let req = PauseRequest {
            id: f.id.clone(),
            ..Default::default()
        };
        f.client.pause(ctx(), &req).await
    };
    let (started, paused) = tokio::join!(e.start(), pause);
    assert!(started.is_ok(), "exec start: {started:?}");
    assert!(paused.is_ok(), "pause: {paused:?}");
    f.resume().await;
    e.kill(9).await.unwrap();
    assert_eq!(e.wait().await, 137);
    e.delete().await.unwrap();
    assert_eq!(f.stop_and_delete().await, 137);
}

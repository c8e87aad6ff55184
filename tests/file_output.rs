//! `file://` logs, whose copy loops run off the runtime thread.
//!
//! A container whose `file://` log sits on a filesystem that stops taking
//! writes (an ext4 image frozen with FIFREEZE, as fsfreeze(8) does) must not
//! hold up the rest of its shim: State, the Create, Start and Wait of another
//! container in the same shim, the reaping of its exit, its event and its
//! output all go on. Once the filesystem thaws, the log gets every byte, in
//! order.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::direct::*;
use tether::protos::shim::*;

/// How long anything the stalled log must not hold up may take.
const PROMPT: Duration = Duration::from_secs(10);
/// Lines the stalled container writes, after a pause in which the test
/// freezes the filesystem.
const LINES: u32 = 200_000;
const BEFORE_FREEZE: u32 = 50_000;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small ext4 filesystem on a loop device, unmounted when dropped.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir.path().join("mnt")));
        Scratch { dir }
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Freezes the filesystem until the guard is dropped.
    fn freeze(&self) -> Frozen {
        run(Command::new("fsfreeze").arg("-f").arg(self.mnt()));
        Frozen(self.mnt())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The loop device goes with the mount (mount -o loop sets autoclear).
        let _ = Command::new("umount").arg(self.mnt()).status();
    }
}

/// A frozen filesystem; thawed when dropped, before anything else is torn
/// down (a process stuck writing to it cannot even die until then).
struct Frozen(PathBuf);

impl Frozen {
    fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).status();
    }
}

fn lines_in(path: &Path) -> usize {
    std::fs::read(path)
        .map(|d| d.iter().filter(|b| **b == b'\n').count())
        .unwrap_or(0)
}

/// How many threads of `pid` are in uninterruptible sleep (state D), as a
/// write to a frozen filesystem leaves its writer.
fn stuck_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .is_ok_and(|st| st.rsplit(") ").next().is_some_and(|r| r.starts_with('D')))
        })
        .count()
}

async fn prompt<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PROMPT, f).await.unwrap_or_else(|_| {
        panic!("{what} took over {PROMPT:?} while another container's log was stalled")
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_log_file_holds_up_nothing_else() {
    let scratch = Scratch::new();
    let log = scratch.mnt().join("logs/a.log");
    let script = format!(
        "seq 0 {}; sleep 3; seq {BEFORE_FREEZE} {}; exec sleep 1000",
        BEFORE_FREEZE - 1,
        LINES - 1
    );
    let f = Fixture::new(&["/bin/sh", "-c", &script]).await;
    let req = CreateTaskRequest {
        stdout: format!("file://{}", log.display()),
        ..f.create_request()
    };
    f.client.create(ctx(), &req).await.unwrap();
    f.start().await;

    // The first part lands; the rest comes while the filesystem is frozen.
    let deadline = Instant::now() + PROMPT;
    while lines_in(&log) < BEFORE_FREEZE as usize {
        assert!(
            Instant::now() < deadline,
            "the log never got its first part"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frozen = scratch.freeze();
    // The rest comes after the container's pause; the log's copy loop is
    // stalled once one of the shim's threads is stuck writing to the frozen
    // filesystem (uninterruptible sleep).
    let deadline = Instant::now() + Duration::from_secs(30);
    while stuck_threads(f.shim_pid) == 0 {
        assert!(
            Instant::now() < deadline,
            "no thread of the shim got stuck writing to the frozen filesystem ({} lines logged)",
            lines_in(&log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stuck_at = lines_in(&log);
    assert!(
        stuck_at < LINES as usize,
        "the log was complete before the freeze: the test proves nothing"
    );

    // The stalled container's own State answers.
    let state = StateRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    let s = prompt("State", f.client.state(ctx(), &state))
        .await
        .unwrap();
    assert_eq!(
        s.status.enum_value(),
        Ok(tether::protos::status::Status::RUNNING)
    );

    // Another container of the same shim is created, runs, writes to its
    // FIFO, exits, is reaped and reported, all while the log is stalled.
    let bundle = f.dir.path().join("bundle-b");
    make_bundle(
        &bundle,
        &["/bin/sh", "-c", "echo hello from b; exit 5"],
        |_| {},
    );
    let fifo = f.dir.path().join("b-stdout");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let id_b = format!("{}-b", f.id);
    let create_b = CreateTaskRequest {
        id: id_b.clone(),
        bundle: bundle.display().to_string(),
        stdout: fifo.display().to_string(),
        ..Default::default()
    };
    prompt(
        "Create of another container",
        f.client.create(ctx(), &create_b),
    )
    .await
    .unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let start_b = StartRequest {
        id: id_b.clone(),
        ..Default::default()
    };
    prompt(
        "Start of another container",
        f.client.start(ctx(), &start_b),
    )
    .await
    .unwrap();
    let wait_b = WaitRequest {
        id: id_b.clone(),
        ..Default::default()
    };
    let waited = prompt("Wait for another container", f.client.wait(ctx(), &wait_b))
        .await
        .unwrap();
    assert_eq!(waited.exit_status, 5);
    let delete_b = DeleteRequest {
        id: id_b.clone(),
        ..Default::default()
    };
    prompt(
        "Delete of another container",
        f.client.delete(ctx(), &delete_b),
    )
    .await
    .unwrap();
    assert_eq!(reader.join().unwrap(), "hello from b\n");
    let exits = f.topics().iter().filter(|t| *t == "/tasks/exit").count();
    assert_eq!(exits, 1, "the other container's exit event");
    assert_eq!(lines_in(&log), stuck_at, "the log moved while frozen");

    // Thawed, the log gets everything, in order.
    frozen.thaw();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines_in(&log) < LINES as usize {
        assert!(
            Instant::now() < deadline,
            "{} of {LINES} lines logged 60 s after the thaw",
            lines_in(&log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let expected: String = (0..LINES).map(|i| format!("{i}\n")).collect();
    assert!(
        text == expected,
        "the log lost or reordered bytes ({} lines)",
        lines_in(&log)
    );
    assert_eq!(f.stop_and_delete().await, 137);
    f.shutdown_and_wait_exit().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_file_log_keeps_every_byte_across_live_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/c.log");
    let f = Fixture::new(&[
        "/bin/sh",
        "-c",
        "i=0; while :; do echo $i; i=$((i+1)); done",
    ])
    .await;
    let req = CreateTaskRequest {
        stdout: format!("file://{}", log.display()),
        ..f.create_request()
    };
    f.client.create(ctx(), &req).await.unwrap();
    f.start().await;
    let shim = nix::unistd::Pid::from_raw(f.shim_pid as i32);
    for n in 1..=5 {
        // Each upgrade stops the copy loop mid-stream and the next binary
        // resumes it from the same descriptors.
        let before = lines_in(&log);
        nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGUSR2).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while f.upgrades().await < n {
            assert!(Instant::now() < deadline, "upgrade {n} did not complete");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let deadline = Instant::now() + PROMPT;
        while lines_in(&log) <= before {
            assert!(Instant::now() < deadline, "no output after upgrade {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(f.stop_and_delete().await, 137);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut count = 0usize;
    for (i, line) in text.lines().enumerate() {
        assert_eq!(
            line,
            i.to_string(),
            "line {i} of the log: a byte lost, repeated or reordered"
        );
        count += 1;
    }
    assert!(text.ends_with('\n'), "the log ends mid-line");
    assert!(count > 1000, "only {count} lines were written");
    f.shutdown_and_wait_exit().await;
}

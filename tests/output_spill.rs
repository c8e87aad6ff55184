//! The output spill, against the shim directly (no containerd): a FIFO
//! nobody reads, a live upgrade with output spilled to the spill's file, the
//! `OutputSpillMax` cap, and a log file on a full disk. See
//! tests/output_away.rs for the same through containerd.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::direct::*;
use protobuf::{Message, MessageField};
use tether::protos::runtimeoptions::Options as CriOptions;
use tether::protos::shim::*;

/// How long a container may take to write its lines with nobody reading: a
/// guard against one that never finishes (unhindered, about a second).
const FINISH: Duration = Duration::from_secs(60);

/// A FIFO nobody reads yet, the container's stdout.
fn fifo(dir: &Path) -> PathBuf {
    let p = dir.join("stdout");
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    p
}

/// The container writes `1..=n` and then leaves a mark in its root.
fn writer(n: u32) -> String {
    format!("seq 1 {n}; touch /finished; exec sleep 1000")
}

async fn finished(f: &Fixture) -> bool {
    let mark = f.bundle().join("rootfs/finished");
    let deadline = Instant::now() + FINISH;
    while !mark.exists() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Opens `path` for reading (the shim holds a writer, so this does not
/// wait) and reads until `want` bytes came or none came for 3 s.
async fn read_for_a_while(path: PathBuf, want: u64) -> Vec<u8> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        use std::os::fd::AsFd;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .unwrap();
        let mut data = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while (data.len() as u64) < want {
            let mut fds = [nix::poll::PollFd::new(
                f.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(3000u16)) {
                Ok(1..) => {}
                _ => break,
            }
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading {}: {e}", path.display()),
            }
        }
        data
    })
    .await
    .unwrap()
}

/// How many complete lines of `data` are `1, 2, ...` in order, and the
/// first that is not (None: all were).
fn in_order(data: &[u8]) -> (u32, Option<String>) {
    let text = String::from_utf8_lossy(data);
    let complete = text.rsplit_once('\n').map_or("", |(c, _)| c);
    let mut got = 0u32;
    for line in complete.lines() {
        if line != (got + 1).to_string() {
            return (got, Some(line.to_string()));
        }
        got += 1;
    }
    (got, None)
}

/// Bytes of `seq 1 n`.
fn seq_bytes(n: u32) -> u64 {
    (1..=n).map(|i| i.to_string().len() as u64 + 1).sum()
}

/// 300,000 lines (about 2 MB: the spill's memory and its file) written to a
/// FIFO nobody reads; the shim is upgraded live; a reader then gets every
/// line, in order: the next binary took the spill over (its file as a
/// descriptor).
#[tokio::test(flavor = "current_thread")]
async fn spilled_output_survives_a_live_upgrade_in_order() {
    const LINES: u32 = 300_000;
    let f = Fixture::new(&["/bin/sh", "-c", &writer(LINES)]).await;
    let out = fifo(f.dir.path());
    let req = CreateTaskRequest {
        stdout: out.display().to_string(),
        ..f.create_request()
    };
    f.client.create(ctx(), &req).await.unwrap();
    f.start().await;
    assert!(
        finished(&f).await,
        "the container did not finish writing {LINES} lines to a FIFO nobody reads within {FINISH:?}"
    );
    let shim = nix::unistd::Pid::from_raw(f.shim_pid as i32);
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGUSR2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.upgrades().await < 1 {
        assert!(Instant::now() < deadline, "the upgrade did not complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let data = read_for_a_while(out, seq_bytes(LINES)).await;
    assert_eq!(
        in_order(&data),
        (LINES, None),
        "lines read after the upgrade, in order ({} bytes)",
        data.len()
    );
    assert_eq!(f.stop_and_delete().await, 137);
    f.shutdown_and_wait_exit().await;
}

/// With `OutputSpillMax = 65536` and nobody reading, the container still
/// finishes its 300,000 lines; the reader then gets an unbroken first
/// stretch (the FIFO's 64 KiB and the spill's 64 KiB): what was dropped is
/// the newest output.
#[tokio::test(flavor = "current_thread")]
async fn past_the_cap_the_newest_output_is_dropped() {
    const LINES: u32 = 300_000;
    let f = Fixture::new(&["/bin/sh", "-c", &writer(LINES)]).await;
    let out = fifo(f.dir.path());
    let cri = CriOptions {
        config_body: b"OutputSpillMax = 65536\n".to_vec(),
        ..Default::default()
    };
    let req = CreateTaskRequest {
        stdout: out.display().to_string(),
        options: MessageField::some(protobuf::well_known_types::any::Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: cri.write_to_bytes().unwrap(),
            ..Default::default()
        }),
        ..f.create_request()
    };
    f.client.create(ctx(), &req).await.unwrap();
    f.start().await;
    assert!(
        finished(&f).await,
        "the container did not finish writing {LINES} lines within {FINISH:?}"
    );
    let data = read_for_a_while(out, seq_bytes(LINES)).await;
    let (got, bad) = in_order(&data);
    // The FIFO's buffer (up to 64 KiB: spliced pages may be part full) and
    // the spill's 64 KiB, then nothing: everything after was dropped.
    assert!(
        (64 << 10) <= data.len() && data.len() <= 3 * (64 << 10) && bad.is_none(),
        "{} bytes read, {got} lines in order, then {bad:?}: want one unbroken first \
         stretch of 64 to 192 KiB",
        data.len()
    );
    assert!(got < LINES, "nothing was dropped past the cap");
    assert_eq!(f.stop_and_delete().await, 137);
    f.shutdown_and_wait_exit().await;
}

/// A `file://` log on a filesystem that fills up (a 128 KiB tmpfs): the
/// container writes 200,000 lines (1.3 MB) and exits 0; the log holds an
/// unbroken first part. Before, the copy stopped at the first failed write
/// and closed the container's pipe: `seq`'s next write failed (EPIPE) and
/// it exited 255.
#[tokio::test(flavor = "current_thread")]
async fn a_full_log_disk_loses_output_not_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128k,mode=0755", "tether-full"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount a 128 KiB tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let log = mnt.join("logs/a.log");
    let f = Fixture::new(&["/bin/sh", "-c", "seq 1 200000"]).await;
    let req = CreateTaskRequest {
        stdout: format!("file://{}", log.display()),
        ..f.create_request()
    };
    f.client.create(ctx(), &req).await.unwrap();
    f.start().await;
    let status = tokio::time::timeout(FINISH, f.wait())
        .await
        .expect("the container did not exit");
    assert_eq!(
        status, 0,
        "exit status of `seq` writing to a full log (255 or 141: its pipe was closed)"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let complete = text.rsplit_once('\n').map_or("", |(c, _)| c);
    let mut n = 0;
    for (i, line) in complete.lines().enumerate() {
        assert_eq!(line, (i + 1).to_string(), "line {i} of the log");
        n += 1;
    }
    assert!(n > 1000, "only {n} lines in the log");
    f.delete().await;
    f.shutdown_and_wait_exit().await;
}

//! `delete`: containerd's clean-up without RPC. It runs after every task and
//! whenever a shim died, so it must work with the daemon gone: it finds the
//! runtime from the bundle, force-deletes the container, unmounts the rootfs
//! and prints a DeleteResponse: with the exit the daemon recorded, if it did.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use std::time::SystemTime;

use anyhow::{Context, Result};
use protobuf::{Message, MessageField};

use super::Flags;
use crate::events::timestamp;
use crate::ids::validate;
use crate::protos::shim::DeleteResponse;
use crate::records::{read_pid, ExitRecord, RuntimeRecord, INIT_PID_FILE};
use crate::runc::{record_for, RuntimeOptions, Timeouts};
use crate::sandbox::files::CriFiles;
use crate::sandbox::record::{SandboxRecord, SANDBOX_FILE};

/// The exit status reported for a task whose shim is gone: killed.
const KILLED: u32 = 128 + libc::SIGKILL as u32;

/// Removes the shim's socket file if its daemon is gone (killed before it
/// could). A live daemon, which may serve other containers of the same group,
/// keeps its socket: it is listening, so a connection goes through (even
/// across a live upgrade, whose listener survives the exec). A socket that
/// refuses connections has no listener left, whatever /proc still says of
/// the daemon: a SIGKILLed daemon closes its descriptors (and containerd sees
/// the disconnect and runs this) before it turns zombie, so "not a zombie"
/// is no proof of a listener (and PF_EXITING counts as dead). A killed daemon's listener can also still take
/// a connection for a moment while the kernel tears the process down, so for
/// a daemon known dead the probe is repeated until connections are refused;
/// one that keeps accepting belongs to a new daemon that took the path over,
/// and stays.
fn remove_dead_socket(bundle: &Path, shim_pid: u32) {
    let Ok(address) = std::fs::read_to_string(bundle.join(crate::records::ADDRESS_FILE)) else {
        return;
    };
    let Some(path) = address.trim().strip_prefix("unix://") else {
        return;
    };
    // Unknown or running daemon: whether anything listens decides, at once.
    let tries = if shim_pid == 0 || process_running(shim_pid) {
        1
    } else {
        DEAD_SOCKET_TRIES
    };
    for attempt in 1..=tries {
        match UnixStream::connect(path) {
            Ok(_) if attempt < tries => std::thread::sleep(Duration::from_millis(10)),
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(path);
                return;
            }
            Err(_) => return,
        }
    }
}

/// How often `delete` probes a dead daemon's socket, 10 ms apart.
const DEAD_SOCKET_TRIES: usize = 100;

/// The kernel's PF_EXITING task flag: the process has begun to exit (a
/// SIGKILLed daemon shows it before its descriptors are closed).
const PF_EXITING: u64 = 0x4;

/// True if `pid` exists, is not a zombie and has not begun to exit.
fn process_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The fields after the command (in parentheses): state, ppid, pgrp,
    // session, tty_nr, tpgid, flags, ...
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state_alive = fields.first().is_some_and(|s| *s != "Z" && *s != "X");
    let exiting = fields
        .get(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_EXITING != 0);
    state_alive && !exiting
}

/// Runs `cmd` in a process group of its own, with stdin from /dev/null and
/// stderr captured; SIGKILLs the group if it is still running after `limit`
/// (a hung runtime), and says so. This process is not the daemon: it may
/// wait for its own child.
fn output_within(cmd: &mut Command, limit: Duration) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let until = std::time::Instant::now() + limit;
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() >= until {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("delete timed out after {}s", limit.as_secs_f64()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output()
}

/// A sandbox's bundle (its daemon gone, or done): SIGKILLs its holder if it
/// still runs, and removes the pod's files and the holder's cgroup. Returns
/// the holder's pid.
fn clean_sandbox(bundle: &Path, r: SandboxRecord) -> u32 {
    if r.holder_alive() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(r.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        // Gone once reaped by whoever is its parent now (a subreaper, or
        // init); a moment, a bounded one.
        for _ in 0..DEAD_SOCKET_TRIES {
            if !r.holder_alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Its containers: with the pod's PID namespace they died with the
    // holder; without, they would run on with no shim. (Their bundles may
    // be gone already: containerd removes one when the dead shim's Task
    // Delete fails.)
    for m in &r.members {
        if let Some(rec) = m.runtime() {
            let mut cmd = Command::new(&rec.binary);
            cmd.arg("--root")
                .arg(&rec.root)
                .args(["delete", "--force", &m.id]);
            match output_within(&mut cmd, Timeouts::default().delete) {
                Ok(o) if !o.status.success() => eprintln!(
                    "{} delete --force {}: {}",
                    rec.binary,
                    m.id,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Ok(_) => {}
                Err(e) => eprintln!("running {}: {e}", rec.binary),
            }
        }
        crate::mount::unmount_all(&m.bundle.join("rootfs"));
    }
    match CriFiles::from_bundle(bundle, &r.id, r.shm) {
        Ok(files) => files.remove(),
        Err(e) => eprintln!("the pod's files: {e}"),
    }
    if let Some(leaf) = &r.cgroup_leaf {
        crate::sandbox::cgroup::remove(leaf);
    }
    let _ = std::fs::remove_file(bundle.join(SANDBOX_FILE));
    r.pid
}

/// Runs `delete`.
pub fn run(flags: &Flags) -> Result<()> {
    validate("namespace", &flags.namespace)?;
    validate("container id", &flags.id)?;
    let bundle = match &flags.bundle {
        Some(b) => PathBuf::from(b),
        None => std::env::current_dir().context("reading the bundle (cwd)")?,
    };
    let holder = SandboxRecord::load(&bundle).map(|r| clean_sandbox(&bundle, r));
    let record = RuntimeRecord::load(&bundle)
        .unwrap_or_else(|| record_for(&RuntimeOptions::default(), &flags.namespace));

    // After a normal Delete the runtime has no state for the container left:
    // then there is nothing to force, and no runtime to start (containerd
    // runs this after every task, so it is on every container's path).
    let known = record.root.join(&flags.id).exists();
    // This process is not the daemon: it may wait for its own child.
    let out = known.then(|| {
        let mut cmd = Command::new(&record.binary);
        cmd.arg("--root")
            .arg(&record.root)
            .args(["delete", "--force", &flags.id]);
        output_within(&mut cmd, Timeouts::default().delete)
    });
    match out {
        None => {}
        Some(Ok(o)) if !o.status.success() => {
            let text = String::from_utf8_lossy(&o.stderr);
            // Usually "container does not exist": the daemon deleted it.
            eprintln!(
                "{} delete --force {}: {}",
                record.binary,
                flags.id,
                text.trim()
            );
        }
        Some(Ok(_)) => {}
        Some(Err(e)) => eprintln!("running {}: {e}", record.binary),
    }
    crate::mount::unmount_all(&bundle.join("rootfs"));
    remove_dead_socket(&bundle, record.shim_pid);

    // The real exit, if the daemon recorded one before it went away;
    // otherwise what the container got from `delete --force`: SIGKILL, now.
    let resp = match ExitRecord::load(&bundle) {
        Some(exit) => DeleteResponse {
            pid: exit.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(Some(exit.at()))),
            ..Default::default()
        },
        None => DeleteResponse {
            pid: holder
                .or_else(|| read_pid(&bundle.join(INIT_PID_FILE)))
                .unwrap_or(0),
            exit_status: KILLED,
            exited_at: MessageField::some(timestamp(Some(SystemTime::now()))),
            ..Default::default()
        },
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&resp.write_to_bytes()?)?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn bundle_with_socket() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        std::fs::write(
            dir.path().join(crate::records::ADDRESS_FILE),
            format!("unix://{}", sock.display()),
        )
        .unwrap();
        (dir, sock)
    }

    /// A daemon that /proc still shows running (as a SIGKILLed one is, for a
    /// moment after its descriptors are closed) but whose listener is gone:
    /// the socket goes.
    #[test]
    fn socket_without_listener_goes_even_if_the_daemon_looks_alive() {
        let (dir, sock) = bundle_with_socket();
        drop(UnixListener::bind(&sock).unwrap());
        assert!(sock.exists());
        remove_dead_socket(dir.path(), std::process::id());
        assert!(!sock.exists(), "a socket nobody listens on was kept");
    }

    #[test]
    fn this_process_is_running() {
        assert!(process_running(std::process::id()));
        assert!(!process_running(u32::MAX));
    }

    /// A live daemon's socket, which takes connections, stays.
    #[test]
    fn listening_socket_of_a_live_daemon_stays() {
        let (dir, sock) = bundle_with_socket();
        let _listener = UnixListener::bind(&sock).unwrap();
        remove_dead_socket(dir.path(), std::process::id());
        assert!(sock.exists(), "a live daemon's socket was removed");
    }
}

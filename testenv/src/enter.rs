//! Joining a running environment (`testenv enter DIR -- COMMAND...`): the
//! process writes itself to the environment's cgroup, takes init's cgroup,
//! IPC, UTS, network and mount namespaces (in that order: the cgroup files
//! are host paths, which the mount namespace inside hides), goes back to the
//! directory it was started in, and execs the command. What it runs sees
//! what containerd sees (its /run, its mounts, its network, its cgroup
//! tree), keeps its host PID, and dies with the environment's cgroup.
//!
//! A multithreaded process cannot take another mount namespace, so a test
//! (which has threads) runs things inside through this, as the separate
//! process `Env::command` builds; a script runs `testenv enter
//! "$TESTENV_DIR" -- ...`.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use crate::plan::Plan;

/// The file in the environment's dir that holds init's PID.
pub const INIT_PID_FILE: &str = "init.pid";

/// The namespaces a process inside shares with init, in the order they are
/// joined (`mnt` last: after it, host paths may not resolve).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn ctx(e: io::Error, what: impl AsRef<Path>) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", what.as_ref().display()))
}

/// Init's PID, from the environment's dir.
pub fn init_pid(dir: &Path) -> io::Result<u32> {
    let file = dir.join(INIT_PID_FILE);
    let text = fs::read_to_string(&file).map_err(|e| ctx(e, &file))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("{}: {text:?} is no PID", file.display())))
}

/// Joins the environment of `dir` (its cgroup and init's namespaces) and
/// execs `command`; returns only on an error.
pub fn enter(dir: &Path, command: &[String]) -> io::Error {
    match join(dir) {
        Ok(()) => {
            let Some((program, args)) = command.split_first() else {
                return io::Error::other("enter: no command");
            };
            let e = Command::new(program).args(args).exec();
            ctx(e, program)
        }
        Err(e) => e,
    }
}

/// Makes the calling (single-threaded) process a member of the
/// environment of `dir`.
pub fn join(dir: &Path) -> io::Result<()> {
    let plan_file = dir.join("plan.toml");
    let text = fs::read_to_string(&plan_file).map_err(|e| ctx(e, &plan_file))?;
    let plan: Plan = toml::from_str(&text).map_err(io::Error::other)?;
    let pid = init_pid(dir)?;
    // Opened before any is joined: /proc stays the host's, but better not
    // rely on it once the mount namespace changed.
    let mut fds = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let fd = fs::File::open(&path).map_err(|e| ctx(e, &path))?;
        fds.push((fd, *flag, path));
    }
    let cwd = std::env::current_dir().ok();
    let me = std::process::id().to_string();
    for f in &plan.member_procs {
        fs::write(f, &me).map_err(|e| ctx(e, f))?;
    }
    for (fd, flag, path) in fds {
        setns(fd, flag).map_err(|e| ctx(e.into(), &path))?;
    }
    // Joining a mount namespace moves to its root.
    if let Some(cwd) = cwd {
        let _ = std::env::set_current_dir(cwd);
    }
    Ok(())
}

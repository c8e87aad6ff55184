//! The pod's holder: a tiny process the shim starts for each sandbox, which
//! sits in the pod's namespaces so that the pod's containers can join them
//! (`/proc/<holder>/ns/*`), as a pause container would, with no image and no
//! OCI runtime.
//!
//! The shim runs its own binary with [`HOLDER_ARG`]. That fresh,
//! single-threaded process reads the plan (one JSON line on stdin), joins
//! the pod's network namespace (and the user namespace that owns it), makes
//! its own IPC, UTS and PID namespaces as planned, sets the hostname and
//! the sysctls, and forks. The child is the holder (pid 1 of the pod's PID
//! namespace, if it has one); the parent writes `pid <N>` (or `error
//! <why>`) on stdout and exits. The holder, reparented to the shim (its
//! subreaper), closes the pipes, blocks every signal and waits: it reaps
//! whatever dies under it, ends on SIGTERM or SIGINT (as pause does), and
//! otherwise only by SIGKILL.

use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::plan::PodPlan;
use crate::error::{Error, Result};
use crate::reaper::Reaper;

/// The first argument that makes the shim's binary a pod holder.
pub const HOLDER_ARG: &str = "--tether-pod-holder";
/// How long the holder may take to report its pid.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// The OOM score of a pod's holder (CRI's for a pause container).
const OOM_SCORE_ADJ: &str = "-998";

/// A running holder.
#[derive(Debug)]
pub struct Holder {
    /// Its pid, in the shim's PID namespace.
    pub pid: u32,
    /// A pidfd for it: signals reach it and never a successor of its pid.
    pub pidfd: OwnedFd,
}

/// Starts a holder for `plan`, in the cgroup `leaf` if given. Its pid is
/// returned once the holder is in place; the caller registers it for its
/// exit.
///
/// The first half goes into `leaf` before it reads its plan, so the holder
/// it forks is born there. Joining a v1 cgroup can wait about 10 ms for the
/// kernel (an RCU grace period); the first half's exec and start-up run in
/// that time.
pub async fn spawn(plan: &PodPlan, leaf: Option<&str>, reaper: &Reaper) -> Result<Holder> {
    let exe = std::env::current_exe().map_err(Error::io("finding", "/proc/self/exe"))?;
    let helper = |source| Error::Helper {
        what: "starting the pod holder",
        binary: exe.clone(),
        source,
    };
    let mut cmd = Command::new(&exe);
    cmd.arg(HOLDER_ARG)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let (mut child, exited) = reaper.spawn(&mut cmd).map_err(helper)?;
    let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
    let group = child.id();
    if let Some(leaf) = leaf {
        if let Err(e) = super::cgroup::place(leaf, group) {
            reaper.kill_group(group);
            return Err(e);
        }
    }
    let talk = async {
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(std::io::Error::other("no pipes"));
        };
        let mut to = tokio::net::unix::pipe::Sender::from_owned_fd(OwnedFd::from(stdin))?;
        let from = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))?;
        let mut line = serde_json::to_vec(plan).map_err(std::io::Error::other)?;
        line.push(b'\n');
        to.write_all(&line).await?;
        drop(to);
        let mut answer = String::new();
        tokio::io::BufReader::new(from)
            .read_line(&mut answer)
            .await?;
        Ok(answer)
    };
    let answer = match tokio::time::timeout(HANDSHAKE, talk).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            reaper.kill_group(group);
            return Err(helper(e));
        }
        Err(_) => {
            reaper.kill_group(group);
            return Err(helper(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {}s", HANDSHAKE.as_secs()),
            )));
        }
    };
    let answer = answer.trim_end();
    let pid: u32 = match answer.strip_prefix("pid ").map(str::parse) {
        Some(Ok(pid)) => pid,
        _ => {
            reaper.kill_group(group);
            let why = answer.strip_prefix("error ").unwrap_or(answer);
            return Err(helper(std::io::Error::other(format!(
                "the holder said {why:?}"
            ))));
        }
    };
    let pidfd = crate::sys::pidfd_open(pid).map_err(helper)?;
    // The parent half is done once it has written the pid.
    let _ = tokio::time::timeout(HANDSHAKE, exited.wait()).await;
    match std::fs::write(format!("/proc/{pid}/oom_score_adj"), OOM_SCORE_ADJ) {
        // Lowering a score takes CAP_SYS_RESOURCE, which the shim may lack
        // (as runc then does, the holder keeps the score it inherited).
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            tracing::debug!(
                pid,
                "no CAP_SYS_RESOURCE: the holder keeps the shim's oom_score_adj"
            )
        }
        Err(e) => tracing::warn!(pid, error = %e, "setting the pod holder's oom_score_adj"),
        Ok(()) => {}
    }
    Ok(Holder { pid, pidfd })
}

/// SIGKILLs the holder (nothing if it is gone already).
pub fn kill(h: &Holder) {
    let _ = crate::sys::pidfd_send_signal(h.pidfd.as_fd(), libc::SIGKILL);
}

/// The holder process: what the shim's binary runs with [`HOLDER_ARG`].
pub fn run() -> ExitCode {
    // Blocked from the start, in both halves: the holder takes its signals
    // with sigwait, and nothing may end it between the fork and then.
    let all = SigSet::all();
    if all.thread_block().is_err() {
        return ExitCode::FAILURE;
    }
    let mut line = String::new();
    let plan = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str::<PodPlan>(&line).map_err(|e| e.to_string()));
    let forked = plan
        .and_then(|p| enter(&p))
        .and_then(|()| crate::sys::fork_single_threaded().map_err(|e| format!("fork: {e}")));
    let mut out = std::io::stdout().lock();
    match forked {
        Ok(crate::sys::Forked::Parent(child)) => {
            let _ = writeln!(out, "pid {child}");
            ExitCode::SUCCESS
        }
        Ok(crate::sys::Forked::Child) => {
            drop(out);
            hold(&all)
        }
        Err(e) => {
            let _ = writeln!(out, "error {e}");
            ExitCode::FAILURE
        }
    }
}

/// Enters the pod's namespaces and sets them up, in the order the kernel
/// needs: the network (and its owner, the pod's user namespace) is joined
/// first; the namespaces made next are owned by that user namespace.
fn enter(plan: &PodPlan) -> std::result::Result<(), String> {
    let at = |what: &str| {
        let what = what.to_string();
        move |e: nix::Error| format!("{what}: {e}")
    };
    if let Some(path) = &plan.netns {
        let net = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        setns(net.as_fd(), CloneFlags::CLONE_NEWNET).map_err(at("joining the pod's network"))?;
        if plan.netns_user {
            let user = crate::sys::owning_user_namespace(net.as_fd())
                .map_err(|e| format!("the netns's user namespace: {e}"))?;
            setns(user.as_fd(), CloneFlags::CLONE_NEWUSER)
                .map_err(at("joining the pod's user namespace"))?;
            let root = nix::unistd::Gid::from_raw(0);
            // Refused where setgroups is denied in that namespace: then the
            // holder keeps no supplementary group anyway.
            let _ = nix::unistd::setgroups(&[]);
            nix::unistd::setresgid(root, root, root).map_err(at("setresgid 0"))?;
            let root = nix::unistd::Uid::from_raw(0);
            nix::unistd::setresuid(root, root, root).map_err(at("setresuid 0"))?;
        }
    }
    let mut flags = CloneFlags::empty();
    flags.set(CloneFlags::CLONE_NEWIPC, plan.ipc);
    flags.set(CloneFlags::CLONE_NEWUTS, plan.uts);
    flags.set(CloneFlags::CLONE_NEWPID, plan.pid);
    if !flags.is_empty() {
        unshare(flags).map_err(at("unshare"))?;
    }
    if let (true, Some(name)) = (plan.uts, &plan.hostname) {
        nix::unistd::sethostname(name).map_err(at("sethostname"))?;
    }
    for (key, value) in &plan.sysctls {
        let path = format!("/proc/sys/{key}");
        std::fs::write(&path, value).map_err(|e| format!("sysctl {key}={value:?}: {e}"))?;
    }
    Ok(())
}

/// The holder's life: no descriptor of the shim's, signals by sigwait.
fn hold(all: &SigSet) -> ExitCode {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
        }
    }
    loop {
        match all.wait() {
            Ok(Signal::SIGTERM | Signal::SIGINT) => return ExitCode::SUCCESS,
            Ok(Signal::SIGCHLD) => {
                // Orphans of the pod's PID namespace end here.
                while let Ok(crate::sys::Reaped::Exited(..)) = crate::sys::reap_one() {}
            }
            _ => {}
        }
    }
}

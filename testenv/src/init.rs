//! The environment's init (`testenv __init PLAN`), the first process inside:
//! it joins the environment's cgroup, takes new mount, network, cgroup, IPC
//! and UTS namespaces, makes the mounts private to them, starts the registry
//! and containerd, then runs the command (or waits to be killed when there is
//! none). It never cleans anything up: the supervisor outside kills the
//! cgroup, and the namespaces and their mounts go with their last process.
//!
//! The mounts, all in the environment's own mount namespace (the host's are
//! its slaves: a host mount shows inside, nothing made inside shows outside;
//! inside they are shared again, for containerd's mount propagation):
//! - a new sysfs on /sys (the network namespace's view), a tmpfs on
//!   /sys/fs/cgroup and every cgroup hierarchy mounted afresh there, rooted
//!   at the environment's cgroup (its cgroup namespace);
//! - a tmpfs on /run: shim sockets (/run/containerd/s), runc's state
//!   (/run/containerd/runc), network namespaces, xtables' lock, tether's
//!   records;
//! - a tmpfs on /dev/shm and on /var/lib/cni (libcni's cache, a fixed path;
//!   the directory is made on the host when missing, as libcni would).

use std::fs;
use std::io;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::plan::{Daemon, Plan, Registry};

/// How long containerd and the registry get to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the plan; returns the command's exit code.
pub fn run(plan: &Plan) -> io::Result<i32> {
    let me = std::process::id().to_string();
    for f in &plan.cgroup_procs {
        fs::write(f, &me).map_err(|e| ctx(e, f))?;
    }
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWCGROUP
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS,
    )?;
    mounts(plan)?;
    join_cgroup(plan, None)?;
    run_quiet(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    uplink()?;
    if let Some(r) = &plan.registry {
        registry(r)?;
    }
    if let Some(d) = &plan.containerd {
        containerd(d, plan)?;
    }
    fs::write(plan.dir.join("ready"), "")?;
    if plan.command.is_empty() {
        // Held until the supervisor kills the cgroup, reaping its children
        // meanwhile (a containerd the supervisor SIGKILLs is gone, not a
        // zombie).
        loop {
            if let Err(nix::errno::Errno::ECHILD) = nix::sys::wait::wait() {
                thread::park();
            }
        }
    }
    let mut cmd = Command::new(&plan.command[0]);
    cmd.args(&plan.command[1..])
        .envs(plan.env.iter().map(|(k, v)| (k, v)));
    let status = cmd.status().map_err(|e| ctx(e, &plan.command[0]))?;
    Ok(code(status))
}

/// The namespace's stand-in for a host uplink: one end of a veth pair (the
/// kernel here has no dummy driver) with an address and the default route. Programs that look for "the node's address" (the
/// API server of the node e2e suite, the kubelet) find one; nothing leaves.
const UPLINK: &str = "uplink0";
/// Its address (TEST-NET-2, never routed).
const UPLINK_ADDR: &str = "198.51.100.1/24";

fn uplink() -> io::Result<()> {
    let peer = format!("{UPLINK}p");
    run_quiet(
        Command::new("ip").args(["link", "add", UPLINK, "type", "veth", "peer", "name", &peer]),
    )?;
    run_quiet(Command::new("ip").args(["addr", "add", UPLINK_ADDR, "dev", UPLINK]))?;
    run_quiet(Command::new("ip").args(["link", "set", &peer, "up"]))?;
    run_quiet(Command::new("ip").args(["link", "set", UPLINK, "up"]))?;
    run_quiet(Command::new("ip").args(["route", "add", "default", "dev", UPLINK]))
}

fn ctx(e: io::Error, what: impl AsRef<Path>) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", what.as_ref().display()))
}

/// The exit code a shell would report.
pub fn code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn tmpfs(target: &str, mode: &str) -> io::Result<()> {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(mode),
    )
    .map_err(|e| ctx(e.into(), target))
}

fn mounts(plan: &Plan) -> io::Result<()> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none)?;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SHARED, none)?;
    umount2("/sys", MntFlags::MNT_DETACH)?;
    let ro = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("sysfs"), "/sys", Some("sysfs"), ro, none).map_err(|e| ctx(e.into(), "/sys"))?;
    tmpfs("/sys/fs/cgroup", "mode=755")?;
    for h in &plan.hierarchies {
        fs::create_dir_all(&h.mountpoint)?;
        let data = (!h.data.is_empty()).then_some(h.data.as_str());
        mount(
            Some(h.fstype.as_str()),
            &h.mountpoint,
            Some(h.fstype.as_str()),
            ro,
            data,
        )
        .map_err(|e| ctx(e.into(), &h.mountpoint))?;
    }
    tmpfs("/run", "mode=755")?;
    fs::create_dir_all("/run/lock")?;
    tmpfs("/dev/shm", "mode=1777")?;
    fs::create_dir_all("/var/lib/cni")?;
    tmpfs("/var/lib/cni", "mode=755")
}

fn run_quiet(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn log_file(path: &Path) -> io::Result<(fs::File, fs::File)> {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok((f.try_clone()?, f))
}

/// Waits until `ready` holds or `child` exits (an error with its log).
fn wait_for(
    child: &mut Child,
    what: &str,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if ready() {
            return Ok(());
        }
        let tail = || {
            let text = fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "{what} exited ({status}):\n{}",
                tail()
            )));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "{what} did not answer within {READY_TIMEOUT:?}:\n{}",
                tail()
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn registry(r: &Registry) -> io::Result<()> {
    let (out, err) = log_file(&r.log)?;
    let mut child = Command::new(&r.binary)
        .arg("serve")
        .arg(&r.config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| ctx(e, &r.binary))?;
    wait_for(&mut child, "the registry", &r.log, || {
        TcpStream::connect(("127.0.0.1", r.port)).is_ok()
    })?;
    let policy = r.config.with_file_name("policy.json");
    fs::write(
        &policy,
        r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    )?;
    for dir in &r.images {
        let list = fs::read_to_string(dir.join("images.txt")).map_err(|e| ctx(e, dir))?;
        for line in list.lines().filter(|l| !l.trim().is_empty()) {
            let (reference, name) = line
                .split_once(' ')
                .ok_or_else(|| io::Error::other(format!("images.txt line {line:?}")))?;
            run_quiet(
                Command::new("skopeo")
                    .arg("--policy")
                    .arg(&policy)
                    .args(["copy", "-q", "--dest-tls-verify=false"])
                    .arg(format!("oci:{}:{reference}", dir.display()))
                    .arg(format!("docker://127.0.0.1:{}/{}", r.port, name.trim())),
            )?;
        }
    }
    Ok(())
}

/// Moves this process into cgroup `/NAME` (as seen inside), or with `None`
/// to its home: the environment's cgroup in a v1 hierarchy, its leaf
/// `V2_LEAF` in a v2 one (see `cgroup`).
fn join_cgroup(plan: &Plan, name: Option<&str>) -> io::Result<()> {
    for h in &plan.hierarchies {
        let dir = match name {
            Some(n) => h.mountpoint.join(n.trim_start_matches('/')),
            None if h.fstype == "cgroup2" => h.mountpoint.join(crate::cgroup::V2_LEAF),
            None => h.mountpoint.clone(),
        };
        fs::create_dir_all(&dir)?;
        crate::cgroup::inherit_cpuset(&dir, &h.mountpoint)?;
        fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| ctx(e, &dir))?;
    }
    Ok(())
}

fn containerd(d: &Daemon, plan: &Plan) -> io::Result<()> {
    // containerd in a cgroup of its own (`/NAME` as it sees it), when asked:
    // this process moves there for the spawn and back.
    if let Some(name) = &d.cgroup {
        join_cgroup(plan, Some(name))?;
    }
    let spawned = spawn_daemon(Command::new(&d.binary), d);
    if d.cgroup.is_some() {
        join_cgroup(plan, None)?;
    }
    spawned.map(drop)
}

/// Starts containerd `d` with `cmd` (its binary, or something that execs
/// it: `testenv enter`), writes its PID file and waits until its socket
/// answers. Its log is appended to.
pub(crate) fn spawn_daemon(mut cmd: Command, d: &Daemon) -> io::Result<Child> {
    let (out, err) = log_file(&d.log)?;
    cmd.arg("--config")
        .arg(&d.config)
        .env("PATH", &d.path)
        .envs(d.env.iter().map(|(k, v)| (k, v)))
        .env_remove("CONTAINERD_ADDRESS")
        .env_remove("CONTAINERD_NAMESPACE")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut child = cmd.spawn().map_err(|e| ctx(e, &d.binary))?;
    fs::write(&d.pid_file, child.id().to_string())?;
    wait_for(&mut child, "containerd", &d.log, || {
        UnixStream::connect(&d.address).is_ok()
    })?;
    Ok(child)
}

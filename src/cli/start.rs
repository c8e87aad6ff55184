//! `start`: what containerd runs to get a shim for a new task.
//!
//! Binds the task's socket, hands it to a freshly exec'd daemon in its own
//! session, writes the address to the bundle and prints it. The daemon serves
//! on the socket that is already listening, so containerd can connect as soon
//! as this process exits; nothing here waits for the daemon.

use std::fs::{self, DirBuilder, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::bootstrap::{self, Reply, StartInput};
use super::Flags;
use crate::ids::validate;
use crate::records::{write_atomic, SpecRecord, ADDRESS_FILE};

/// Where shim sockets live; containerd's convention, whatever its state dir.
pub const SOCKET_DIR: &str = "/run/containerd/s";
/// The longest socket path a `sockaddr_un` holds (with its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The most stdin `start` reads (runtime options or bootstrap params).
const MAX_STDIN: u64 = 10 << 20;
/// Annotations that put several containers in one shim, in order of precedence.
const GROUP_ANNOTATIONS: &[&str] = &[
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// Runs `start`.
pub fn run(flags: &Flags) -> Result<()> {
    validate("namespace", &flags.namespace)?;
    validate("container id", &flags.id)?;
    // containerd writes the runtime options (1.6 to 2.2) or its bootstrap
    // params (2.3+) and waits for the write, so read all of it first.
    let mut stdin = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN)
        .read_to_end(&mut stdin)
        .context("reading stdin")?;
    let input = bootstrap::parse(&stdin, &flags.id, &flags.namespace)?;

    let bundle = std::env::current_dir().context("reading the bundle (cwd)")?;
    let group = grouping_id(&bundle).unwrap_or_else(|| flags.id.clone());
    validate("grouping id", &group)?;
    let dir = input.socket_dir.as_deref().unwrap_or(Path::new(SOCKET_DIR));
    let socket = socket_path_in(dir, &flags.address, &flags.namespace, &group);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "socket path {} is longer than {MAX_SOCKET_PATH} bytes",
            socket.display()
        );
    }
    let address = format!("unix://{}", socket.display());

    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;

    let listener = match bind(&socket)? {
        Some(l) => l,
        None => {
            // A live shim already serves this group: containerd talks to it.
            write_address(&bundle, &address)?;
            return print_reply(input.reply, &address);
        }
    };
    let spawned = spawn_daemon(flags, &input, &listener);
    drop(listener);
    let pid = match spawned {
        Ok(pid) => pid,
        Err(e) => {
            let _ = fs::remove_file(&socket);
            return Err(e);
        }
    };
    set_oom_score(pid);
    let placed = join_shim_cgroup(&input.options.shim_cgroup, pid)
        .and_then(|()| write_address(&bundle, &address));
    if let Err(e) = placed {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = fs::remove_file(&socket);
        return Err(e);
    }
    print_reply(input.reply, &address)
}

/// The socket path for a group in the default directory.
pub fn socket_path(address: &str, namespace: &str, group: &str) -> PathBuf {
    socket_path_in(Path::new(SOCKET_DIR), address, namespace, group)
}

/// The socket path for a group in `dir`: sha256 of containerd's address,
/// namespace and grouping id joined as a path, as containerd's own shims name
/// theirs.
pub fn socket_path_in(dir: &Path, address: &str, namespace: &str, group: &str) -> PathBuf {
    let joined = Path::new(address).join(namespace).join(group);
    let digest = Sha256::digest(joined.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(hex)
}

/// The grouping id from the bundle's spec annotations, if any.
fn grouping_id(bundle: &Path) -> Option<String> {
    let spec = SpecRecord::load(bundle)?;
    GROUP_ANNOTATIONS
        .iter()
        .find_map(|k| spec.annotations.get(*k).filter(|v| !v.is_empty()).cloned())
}

/// Binds the socket (0600). None when a live shim already listens there; a
/// stale socket file is replaced.
fn bind(socket: &Path) -> Result<Option<UnixListener>> {
    let listener = match UnixListener::bind(socket) {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            if UnixStream::connect(socket).is_ok() {
                return Ok(None);
            }
            fs::remove_file(socket)
                .with_context(|| format!("removing stale socket {}", socket.display()))?;
            UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?
        }
        Err(e) => return Err(e).with_context(|| format!("binding {}", socket.display())),
    };
    fs::set_permissions(socket, Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", socket.display()))?;
    Ok(Some(listener))
}

/// Re-executes this binary as the daemon with the listener on fd 3.
fn spawn_daemon(flags: &Flags, input: &StartInput, listener: &UnixListener) -> Result<u32> {
    let exe = std::env::current_exe().context("finding the shim's own binary")?;
    let mut cmd = Command::new(&exe);
    cmd.args(["-namespace", &flags.namespace, "-id", &flags.id]);
    cmd.args(["-address", &flags.address]);
    if flags.debug || input.debug {
        cmd.arg("-debug");
    }
    if let Some(ttrpc) = &input.ttrpc_address {
        cmd.env("TTRPC_ADDRESS", ttrpc);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::sys::daemon_child(&mut cmd, listener.as_raw_fd());
    // The daemon is not waited for: it outlives this process, which exits at
    // once, and is reparented to the nearest subreaper.
    let child = cmd
        .spawn()
        .with_context(|| format!("starting the shim daemon {}", exe.display()))?;
    Ok(child.id())
}

/// Writes the address containerd 1.6/1.7 read back from the bundle.
fn write_address(bundle: &Path, address: &str) -> Result<()> {
    write_atomic(&bundle.join(ADDRESS_FILE), address.as_bytes(), 0o600)?;
    Ok(())
}

/// Moves the daemon into the runtime options' ShimCgroup, if they name one.
fn join_shim_cgroup(cgroup: &str, pid: u32) -> Result<()> {
    if cgroup.is_empty() {
        return Ok(());
    }
    crate::cgroup::add_pid(cgroup, pid)
        .with_context(|| format!("moving the shim into its cgroup {cgroup:?}"))?;
    Ok(())
}

/// Makes the daemon a likelier OOM victim than containerd (its parent's score
/// plus one), so containerd outlives it under memory pressure.
fn set_oom_score(pid: u32) {
    let parent = nix::unistd::getppid();
    let score = fs::read_to_string(format!("/proc/{parent}/oom_score_adj"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let target = (score + 1).min(1000);
    let _ = fs::write(format!("/proc/{pid}/oom_score_adj"), target.to_string());
}

fn print_reply(kind: Reply, address: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(&bootstrap::reply(kind, address))?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_name_is_sha256_of_the_joined_path() {
        let p = socket_path("/run/containerd/containerd.sock", "default", "c1");
        let expected = Sha256::digest(b"/run/containerd/containerd.sock/default/c1");
        let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(p, Path::new(SOCKET_DIR).join(hex));
        assert!(p.as_os_str().len() <= 106);
    }

    #[test]
    fn grouping_annotations_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spec = r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sb","io.containerd.runc.v2.group":"g"}}"#;
        fs::write(dir.path().join("config.json"), spec).unwrap();
        assert_eq!(grouping_id(dir.path()).as_deref(), Some("g"));
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert_eq!(grouping_id(dir.path()), None);
    }
}

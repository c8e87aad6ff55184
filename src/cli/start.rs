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

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::Flags;
use crate::ids::validate;
use crate::state::{write_atomic, ADDRESS_FILE};

/// Where shim sockets live; containerd's convention, whatever its state dir.
pub const SOCKET_DIR: &str = "/run/containerd/s";
/// The most stdin `start` reads (runtime options).
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
    // Runtime options arrive on stdin; read them so containerd never blocks
    // writing. (ShimCgroup is their only use at start.)
    let mut options = Vec::new();
    let _ = std::io::stdin().take(MAX_STDIN).read_to_end(&mut options);

    let bundle = std::env::current_dir().context("reading the bundle (cwd)")?;
    let group = grouping_id(&bundle).unwrap_or_else(|| flags.id.clone());
    validate("grouping id", &group)?;
    let socket = socket_path(&flags.address, &flags.namespace, &group);
    let address = format!("unix://{}", socket.display());

    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(SOCKET_DIR)
        .with_context(|| format!("creating {SOCKET_DIR}"))?;
    fs::set_permissions(SOCKET_DIR, Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {SOCKET_DIR}"))?;

    let listener = match bind(&socket)? {
        Some(l) => l,
        None => {
            // A live shim already serves this group: containerd talks to it.
            write_atomic(&bundle.join(ADDRESS_FILE), address.as_bytes(), 0o600)?;
            print_address(&address)?;
            return Ok(());
        }
    };
    let spawned = spawn_daemon(flags, &listener);
    drop(listener);
    let pid = match spawned {
        Ok(pid) => pid,
        Err(e) => {
            let _ = fs::remove_file(&socket);
            return Err(e);
        }
    };
    set_oom_score(pid);
    if let Err(e) = join_shim_cgroup(&options, pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = fs::remove_file(&socket);
        return Err(e);
    }
    write_atomic(&bundle.join(ADDRESS_FILE), address.as_bytes(), 0o600)?;
    print_address(&address)
}

/// The socket path for a group: sha256 of containerd's address, namespace and
/// grouping id joined as a path, as containerd's own shims name theirs.
pub fn socket_path(address: &str, namespace: &str, group: &str) -> PathBuf {
    let joined = Path::new(address).join(namespace).join(group);
    let digest = Sha256::digest(joined.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SOCKET_DIR).join(hex)
}

/// The grouping id from the bundle's spec annotations, if any.
fn grouping_id(bundle: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: std::collections::HashMap<String, String>,
    }
    let data = fs::read(bundle.join("config.json")).ok()?;
    let spec: Spec = serde_json::from_slice(&data).ok()?;
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
fn spawn_daemon(flags: &Flags, listener: &UnixListener) -> Result<u32> {
    let exe = std::env::current_exe().context("finding the shim's own binary")?;
    let mut cmd = Command::new(&exe);
    cmd.args(["-namespace", &flags.namespace, "-id", &flags.id]);
    cmd.args(["-address", &flags.address]);
    if flags.debug {
        cmd.arg("-debug");
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

/// Moves the daemon into the ShimCgroup of the runtime options on stdin, if
/// they name one (a protobuf Any, as containerd sends it).
fn join_shim_cgroup(stdin: &[u8], pid: u32) -> Result<()> {
    use protobuf::Message;
    if stdin.is_empty() {
        return Ok(());
    }
    let Ok(any) = protobuf::well_known_types::any::Any::parse_from_bytes(stdin) else {
        return Ok(());
    };
    // Options that do not parse are refused at Create, with the reason.
    let Ok(opts) = crate::service::runtime_options(Some(&any)) else {
        return Ok(());
    };
    if opts.shim_cgroup.is_empty() {
        return Ok(());
    }
    crate::cgroup::add_pid(&opts.shim_cgroup, pid)
        .with_context(|| format!("moving the shim into its cgroup {:?}", opts.shim_cgroup))?;
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

fn print_address(address: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())?;
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

//! The shim protocol as each containerd of the matrix speaks it: task API v3
//! negotiated through containerd 2.3's bootstrap params, `-info`, runtime
//! options on every delivery path (ShimCgroup, io uid/gid), the socket gone
//! before Shutdown returns (so an id can be reused at once), and exec refused
//! in a paused container. Plus `start` and `-info` run by hand.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{describe_output, poll_until, Containerd, ProcInfo, Rootfs, SETTLE_TIMEOUT};
use protobuf::Message;
use tether::protos::introspection::RuntimeInfo;

fn is_tether() -> bool {
    common::runtime() == common::shim_path().display().to_string()
}

/// containerd 2.3+ connects with task API v3 (its bootstrap protocol), every
/// other version with v2; 2.2+ load the shim's `-info` and never fail to.
fn negotiates_the_native_protocol() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("proto");
    let out = cd.run(
        &["--rm"],
        &rootfs,
        &id,
        &["/bin/sh", "-c", "echo v; exit 4"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", describe_output(&out));
    let log = fs::read_to_string(cd.log_file()).unwrap_or_default();
    let (major, minor) = cd.bins.line();
    let connect = log
        .lines()
        .find(|l| l.contains(&format!("msg=\"connecting to shim {id}\"")));
    if (major, minor) >= (2, 3) {
        let line = connect.unwrap_or_else(|| panic!("no connect line\n{}", cd.log_tail()));
        assert!(
            line.contains("version=3"),
            "containerd {}: {line}",
            cd.bins.version
        );
    } else if let Some(line) = connect {
        assert!(
            line.contains("version=2"),
            "containerd {}: {line}",
            cd.bins.version
        );
    }
    assert!(
        !log.contains("failed to load runtime info"),
        "containerd could not load the shim's -info\n{}",
        cd.log_tail()
    );
    // 2.2 and 2.3 ask every non-default runtime's -info at its first create
    // (2.4 only where a spec needs runtime features).
    if [(2, 2), (2, 3)].contains(&(major, minor)) && is_tether() {
        assert!(
            log.contains("msg=\"loaded shim info\""),
            "containerd {} never loaded the shim's -info\n{}",
            cd.bins.version,
            cd.log_tail()
        );
    }
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

/// ShimCgroup from the runtime options (`ctr --runtime-config-path`, CRI's
/// TOML form) puts the shim daemon into that cgroup, on every containerd
/// (2.3+ deliver it inside the bootstrap params).
fn shim_cgroup_from_runtime_options() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("shimcg");
    let cgroup = format!("/{}-shims", cd.namespace());
    let dirs = make_cgroup(&cd, &cgroup);
    let config = cd.dir().join("runtime-options.toml");
    fs::write(&config, format!("ShimCgroup = \"{cgroup}\"\n")).expect("writing options");
    let config = config.display().to_string();
    let out = cd.run(
        &["-d", "--runtime-config-path", &config],
        &rootfs,
        &id,
        &["/bin/sleep", "1000"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        describe_output(&out),
        cd.log_tail()
    );
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "RUNNING");
    let shims = cd.shim_processes();
    assert!(!shims.is_empty(), "no shim\n{}", cd.diagnostics());
    for shim in &shims {
        let paths = cd.cgroup_paths_inside(shim);
        assert!(
            paths.contains(&cgroup),
            "shim pid {} is not in {cgroup}: {paths:?}",
            shim.pid
        );
    }
    cd.kill_and_remove(&id, &rootfs);
    for d in dirs {
        let _ = fs::remove_dir(d);
    }
}

/// Creates `cgroup` (as containerd's environment sees it) in every cgroup
/// v1 hierarchy (or the unified one).
fn make_cgroup(cd: &Containerd, cgroup: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let base = cd.host_path("/sys/fs/cgroup");
    let unified = base.join("cgroup.controllers").exists();
    let roots: Vec<PathBuf> = if unified {
        vec![base]
    } else {
        fs::read_dir(&base)
            .expect("reading the environment's /sys/fs/cgroup")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("cgroup.procs").exists() && !p.is_symlink())
            .collect()
    };
    for root in roots {
        let d = root.join(cgroup.trim_start_matches('/'));
        if fs::create_dir_all(&d).is_ok() {
            // A new v1 cpuset cgroup takes no task until it has cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = fs::read_to_string(root.join(f)) {
                    let _ = fs::write(d.join(f), v.trim());
                }
            }
            dirs.push(d);
        }
    }
    assert!(!dirs.is_empty(), "could not create cgroup {cgroup}");
    dirs
}

/// A task id used again right after `ctr run --rm` returned gets a new, live
/// shim, 20 times; the old shim's socket is gone when `ctr` returns.
fn same_id_reused_at_once() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("again");
    let socket = cd.conventional_socket_path(&id);
    let host_socket = cd.host_path(&socket);
    for round in 0..20 {
        let text = format!("round {round}");
        let out = cd.run(&["--rm"], &rootfs, &id, &["/bin/echo", &text]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == text,
            "round {round}: {}\n{}",
            describe_output(&out),
            cd.log_tail()
        );
        if is_tether() {
            assert!(
                fs::symlink_metadata(&host_socket).is_err(),
                "round {round}: the shim socket {} still exists after `ctr run --rm` returned",
                socket.display()
            );
        }
    }
    cd.assert_no_leftovers(&id, &rootfs, Some(&socket), None);
}

/// Exec into a paused container is refused before anything runs: an error
/// naming the pause, and no exec event. After Resume, exec works again.
fn exec_in_a_paused_container_is_refused() {
    let rootfs = Rootfs::new();
    let cd = Containerd::start();
    let id = cd.unique_id("paused");
    cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);
    let events = cd.events();
    cd.ctr_ok(&["task", "pause", &id]);
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "PAUSED");
    let out = cd.ctr(&["task", "exec", "--exec-id", "e1", &id, "/bin/true"]);
    assert!(
        !out.status.success(),
        "exec in a paused container ran\n{}",
        describe_output(&out)
    );
    if is_tether() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("paused"), "the error must say why: {err}");
        assert!(
            events.find("/tasks/exec-added", &id).is_empty(),
            "an exec-added event was published: {}",
            events.contents()
        );
    }
    cd.ctr_ok(&["task", "resume", &id]);
    cd.wait_task(&id, SETTLE_TIMEOUT, |t| t.status == "RUNNING");
    let out = cd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        &id,
        "/bin/sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe_output(&out));
    cd.kill_and_remove(&id, &rootfs);
}

/// A user-namespaced container (ctr --uidmap/--gidmap): the client adds the
/// io uid/gid to the task options (containerd 1.6/1.7 as the legacy
/// CreateOptions, for a runtime not named io.containerd.runc*), and the
/// container can write its stdio.
fn user_namespaced_container_writes_its_stdio() {
    let rootfs = Rootfs::new();
    chown_tree(rootfs.path(), 100_000, 100_000);
    let cd = Containerd::start();
    let id = cd.unique_id("userns");
    let out = cd.run(
        &[
            "--rm",
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:100000:65536",
        ],
        &rootfs,
        &id,
        &["/bin/sh", "-c", "echo uid=$(id -u); echo err >&2"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        describe_output(&out),
        cd.log_tail()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "uid=0",
        "{}",
        describe_output(&out)
    );
    // (ctr 2.2+ adds its own warnings on cgroup v1 hosts.)
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .any(|l| l == "err"),
        "{}",
        describe_output(&out)
    );
    cd.assert_no_leftovers(&id, &rootfs, None, None);
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    let out = Command::new("chown")
        .args(["-R", "-h", &format!("{uid}:{gid}")])
        .arg(dir)
        .output()
        .expect("running chown");
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(fs::metadata(dir).expect("stat").uid(), uid);
}

/// containerd 2.3+'s `socket_dir` (shim manager config, sent in the
/// bootstrap params) is where the shim binds its socket: 0600 in a 0700
/// directory. Older containerd have no such setting; their shims use
/// /run/containerd/s.
fn socket_in_containerd_socket_dir() {
    let rootfs = Rootfs::new();
    let probe = tempfile::Builder::new()
        .prefix("tether-sd-")
        .tempdir()
        .expect("tempdir");
    let dir = probe.path().join("s");
    let (major, minor) = common::current_bins().line();
    let configured = (major, minor) >= (2, 3);
    let cd = if configured {
        Containerd::start_configured(|c| c.shim_socket_dir = Some(dir.clone()))
    } else {
        Containerd::start()
    };
    let id = cd.unique_id("sockdir");
    cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);
    let socket = cd.shim_socket(&id);
    let want = if configured {
        dir.clone()
    } else {
        PathBuf::from("/run/containerd/s")
    };
    assert_eq!(
        socket.parent(),
        Some(want.as_path()),
        "shim socket {}",
        socket.display()
    );
    // (In the environment's /run, the host reaches it through its init.)
    let mode = |p: &Path| fs::metadata(cd.host_path(p)).expect("stat").mode() & 0o7777;
    assert_eq!(mode(&socket), 0o600, "socket mode");
    assert_eq!(mode(&want), 0o700, "socket directory mode");
    cd.kill_and_remove(&id, &rootfs);
    assert!(
        !cd.host_path(&socket).exists(),
        "socket {} left",
        socket.display()
    );
}

crate::containerd_matrix!(
    socket_in_containerd_socket_dir,
    negotiates_the_native_protocol,
    shim_cgroup_from_runtime_options,
    same_id_reused_at_once,
    exec_in_a_paused_container_is_refused,
    user_namespaced_container_writes_its_stdio,
);

/// Runs the shim's `-info` with the runtime options `any` on stdin.
fn info_with(any: &protobuf::well_known_types::any::Any) -> std::process::Output {
    let mut child = Command::new(common::shim_path())
        .arg("-info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running -info");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&any.write_to_bytes().unwrap())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `-info` answers with a RuntimeInfo naming tether, its version, and runc's
/// own `features` document.
#[test]
fn info_reports_the_runtime_and_runc_features() {
    let out = Command::new(common::shim_path())
        .arg("-info")
        .stdin(Stdio::null())
        .output()
        .expect("running -info");
    assert!(out.status.success(), "{}", describe_output(&out));
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).expect("a RuntimeInfo on stdout");
    assert_eq!(info.name, "io.containerd.tether.v2");
    assert_eq!(info.version.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        info.features.type_url,
        "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
    );
    let features: serde_json::Value =
        serde_json::from_slice(&info.features.value).expect("features are JSON");
    let runc: serde_json::Value = serde_json::from_slice(
        &Command::new(common::runc_binary())
            .arg("features")
            .output()
            .expect("runc features")
            .stdout,
    )
    .expect("runc features JSON");
    assert_eq!(features, runc, "the features must be runc's own");

    // A runtime binary that does not exist is a clear error.
    let mut opts = tether::protos::runc_options::Options::new();
    opts.binary_name = "/nonexistent/runtime".into();
    let any = common::runc_options(opts);
    let out = info_with(&any);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/runtime"),
        "{}",
        describe_output(&out)
    );
}

/// With the newest runc as the handler's BinaryName, `-info` advertises what
/// that runc supports: its own features document, with idmapped mounts and
/// user namespaces, which containerd's CRI (2.3.4+) reads to let
/// `hostUsers: false` pods through.
#[test]
fn info_advertises_the_newest_runc_features() {
    let runc = common::runc_dir(common::NEWEST_RUNC).join("runc");
    let mut opts = tether::protos::runc_options::Options::new();
    opts.binary_name = runc.display().to_string();
    let any = common::runc_options(opts);
    let out = info_with(&any);
    assert!(out.status.success(), "{}", describe_output(&out));
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).expect("a RuntimeInfo on stdout");
    let features: serde_json::Value =
        serde_json::from_slice(&info.features.value).expect("features are JSON");
    let own: serde_json::Value = serde_json::from_slice(
        &Command::new(&runc)
            .arg("features")
            .output()
            .expect("runc features")
            .stdout,
    )
    .expect("runc features JSON");
    assert_eq!(
        features,
        own,
        "the features must be runc {}'s own",
        common::NEWEST_RUNC
    );
    assert_eq!(
        features["annotations"]["org.opencontainers.runc.version"],
        common::NEWEST_RUNC
    );
    assert_eq!(
        features["linux"]["mountExtensions"]["idmap"]["enabled"],
        true
    );
    let namespaces = features["linux"]["namespaces"]
        .as_array()
        .expect("namespaces");
    assert!(namespaces.iter().any(|n| n == "user"), "{namespaces:?}");
    // The options given are echoed, so containerd can tell whose answer it is.
    assert_eq!(info.options.type_url, any.type_url);
}

/// `start` with stdin that is neither bootstrap params nor options fails
/// with a clear error and leaves no socket and no daemon.
#[test]
fn start_with_undecodable_params_leaves_nothing() {
    let bundle = tempfile::tempdir().expect("tempdir");
    fs::write(bundle.path().join("config.json"), "{}").unwrap();
    let ns = common::unique_name("tether-badparams");
    let address = bundle.path().join("containerd.sock");
    let address = address.display().to_string();
    let mut child = Command::new(common::shim_path())
        .args([
            "-namespace",
            &ns,
            "-address",
            &address,
            "-id",
            "bad1",
            "start",
        ])
        .current_dir(bundle.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running start");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\xff\xfe garbage")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", describe_output(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bootstrap params"), "unclear error: {err}");
    let socket = tether::cli::start::socket_path(&address, &ns, "bad1");
    assert!(!socket.exists(), "socket {} left", socket.display());
    assert!(
        !bundle.path().join("address").exists(),
        "address file written"
    );
    let daemons = poll_until(std::time::Duration::from_millis(300), || {
        let found: Vec<ProcInfo> = common::all_processes()
            .into_iter()
            .filter(|p| !p.is_zombie() && p.has_arg(&ns))
            .collect();
        (!found.is_empty()).then_some(found)
    });
    assert!(daemons.is_none(), "a daemon was left: {daemons:?}");
}

//! Reaching into a running environment: a command run through
//! `Env::command` is in the environment's namespaces and cgroup and sees its
//! /run; the host sees the same files through `Env::inside_path`; the
//! settings a caller changes reach containerd's config, its variables reach
//! containerd; and containerd, SIGKILLed, starts again inside with the same
//! config. Needs root and Debian's containerd.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use testenv::{Env, Options};

fn ns(pid: impl std::fmt::Display, name: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .unwrap()
        .display()
        .to_string()
}

fn ctr_version(env: &Env) -> bool {
    Command::new("/usr/bin/ctr")
        .arg("--address")
        .arg(&env.address)
        .arg("version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn commands_run_inside_and_containerd_restarts_inside() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let o = Options {
        containerd_env: vec![("TESTENV_PROBE".into(), "42".into())],
        ..Options::default()
    };
    let mut env = Env::start_configured(&o, Path::new(env!("CARGO_BIN_EXE_testenv")), &[], |s| {
        s.log_level = Some("debug".into())
    })
    .expect("start");
    let init = env.init_pid();
    let config = fs::read_to_string(env.dir().join("config.toml")).unwrap();
    assert!(config.contains("level = \"debug\""), "{config}");

    // A command inside: init's namespaces, the environment's cgroup, its own
    // /run (a file made there is not on the host's), the caller's cwd.
    let marker = format!("/run/testenv-inside-{}", std::process::id());
    let out = env
        .command("/bin/sh")
        .args(["-c", &format!("echo > {marker}; pwd; readlink /proc/self/ns/net /proc/self/ns/mnt /proc/self/ns/cgroup; cat /proc/self/cgroup")])
        .current_dir(env.dir())
        .output()
        .expect("running sh inside");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], env.dir().display().to_string());
    assert_eq!(
        lines[1..4],
        [ns(init, "net"), ns(init, "mnt"), ns(init, "cgroup")]
    );
    assert_ne!(ns(init, "mnt"), ns("self", "mnt"));
    // Inside its cgroup namespace, the environment's cgroup is the root; in
    // a v2 hierarchy it is in the root's leaf.
    assert!(
        lines[4..].iter().all(|l| match l.strip_prefix("0::") {
            Some(path) => path == "/init",
            None => l.ends_with(":/"),
        }),
        "{text}"
    );
    assert!(env.inside_path(&marker).is_file());
    assert!(!Path::new(&marker).exists());

    // containerd got the variables, is SIGKILLed and comes back inside.
    let first = env.containerd_pid().expect("containerd's PID");
    let environ = fs::read(format!("/proc/{first}/environ")).unwrap();
    assert!(environ.split(|b| *b == 0).any(|v| v == b"TESTENV_PROBE=42"));
    env.kill_containerd().expect("kill");
    assert!(!Path::new(&format!("/proc/{first}")).exists(), "not reaped");
    assert!(!ctr_version(&env));
    env.restart_containerd().expect("restart");
    let second = env.containerd_pid().expect("containerd's PID");
    assert_ne!(first, second);
    assert!(ctr_version(&env));
    assert_eq!(ns(second, "mnt"), ns(init, "mnt"));
    assert_eq!(ns(second, "net"), ns(init, "net"));
    let environ = fs::read(format!("/proc/{second}/environ")).unwrap();
    assert!(environ.split(|b| *b == 0).any(|v| v == b"TESTENV_PROBE=42"));
    let cgroup = env.cgroup().expect("a cgroup").clone();
    assert!(cgroup.pids().contains(&second), "{:?}", cgroup.pids());

    let dir = env.dir().to_path_buf();
    env.teardown().expect("teardown");
    assert!(!Path::new(&format!("/proc/{second}")).exists());
    assert!(!dir.exists());
    for (_, d) in &cgroup.dirs {
        assert!(!d.exists(), "cgroup left: {}", d.display());
    }
}

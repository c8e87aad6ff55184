//! `run --bundle`: a bundle's own config.json runs with what the command
//! line says put over it (root made absolute, terminal, command) and
//! everything else kept, in the container and in its execs.

use std::process::Command;

use super::{code, common, stderr, Ctl};

#[test]
fn a_bundle_runs_with_its_own_spec() {
    let c = Ctl::new();
    let bundle = c.dir.path().join("bundle");
    common::make_rootfs(&bundle.join("rootfs"));
    let out = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "runc spec: {out:?}");
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("FROM_SPEC=kept".into());
    spec["hostname"] = "bundled".into();
    spec["process"]["args"] = serde_json::json!(["sh", "-c", "exit 5"]);
    std::fs::write(&path, spec.to_string()).unwrap();
    let b = bundle.display().to_string();

    // The command line's command over the spec's; its env and hostname kept.
    let line = "echo $FROM_SPEC $(cat /proc/sys/kernel/hostname); exit 4";
    let out = c.run(&["run", "--rm", "--bundle", &b, "bun1", "sh", "-c", line]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept bundled\n");
    // Without a command the spec's own runs.
    let out = c.run(&["run", "--rm", "--bundle", &b, "bun2"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    // An exec gets the container's process as the spec had it.
    c.ok(&["run", "-d", "--bundle", &b, "bun3", "sleep", "1000"]);
    let out = c.run(&["exec", "bun3", "sh", "-c", "echo $FROM_SPEC; exit 6"]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");
    c.ok(&["rm", "-f", "bun3"]);
    c.assert_nothing_left();
}

//! The production node: systemd as PID 1, cgroup v2 only, containerd 2.3.7
//! as a real containerd.service with our drop-in installed the way the
//! README says, and SystemdCgroup = true for tether and for containerd's Go
//! shim side by side, with the newest runc of tests/peers/runc-matrix and
//! with Debian's.
//!
//! This machine's PID 1 is not systemd, so the checks run in the test guest
//! booted with `scripts/guest-test.sh --init systemd` (scripts/guest/
//! systemd-boot.sh hands PID 1 to systemd), through
//! scripts/guest/systemd-suite.sh: run, exit codes, exec, a terminal, kill,
//! metrics against the scope's files, Update, pause, OOM, a CRI pod under a
//! kubepods slice with its shim in a ShimCgroup slice, and containerd
//! restarted, SIGKILLed and stopped with containers running.
//!
//! The Go shim's side of the per-runc checks is recorded, not run again each
//! time (it is half the guest's time): tests/systemd/go-baseline.txt, whose
//! README says when and how. The restart and drop-in checks still run both
//! shims live, side by side under the same containerd.
//!
//! Fails when a check fails with tether that passes with the Go shim (live or
//! recorded), when a recorded check did not run with tether, when a check of
//! the node itself fails (the drop-in in effect, the restarts), or when too
//! few checks ran. Never skipped: where no guest can boot, it fails saying
//! why.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

/// Checks per shim the suite runs at the least (per runc: 20 ctr and CRI
/// checks; 2 runc versions; plus the restart checks).
const MIN_PER_SHIM: usize = 40;

#[test]
fn systemd_node_checks_pass_with_tether_wherever_they_pass_with_the_go_shim() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe().expect("this test binary");
    // testenv, whose `config --system` writes the node's containerd config:
    // the workspace's build puts it next to the shim (testenv's own tests
    // use the binary, so a plain `cargo test` or `cargo build --tests`
    // builds it first).
    let testenv = Path::new(common::SHIM).with_file_name("testenv");
    assert!(
        testenv.is_file(),
        "no testenv at {}: build it with the workspace (`cargo build --tests` or `cargo build -p testenv`)",
        testenv.display()
    );
    let out = std::process::Command::new("bash")
        .arg(repo.join("scripts/guest-test.sh"))
        .args(["--init", "systemd"])
        // The binaries stay visible where they are, even under /tmp.
        .arg("--expose")
        .arg(exe.parent().expect("its dir"))
        .arg("--expose")
        .arg(Path::new(common::SHIM).parent().expect("its dir"))
        // The Go shim's per-runc checks come from the baseline.
        .args(["--env", "SYSTEMD_SUITE_SHIMS=tether"])
        .arg("--")
        .arg("bash")
        .arg(repo.join("scripts/guest/systemd-suite.sh"))
        .arg(common::SHIM)
        // This binary: its update_through_the_task_api is the suite's tool
        // for Update.
        .arg(&exe)
        .arg(&testenv)
        .current_dir(repo)
        // The guest's console streams to stderr as it comes; stdout is the
        // checks' lines.
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run scripts/guest-test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.ends_with(" failed") && last.contains(" passed, "),
        "no `N passed, M failed` line last (status {}):\n{stdout}",
        out.status
    );

    let mut results = Results::new();
    add_results(&mut results, &stdout);
    let baseline_path = repo.join(GO_BASELINE);
    let baseline = std::fs::read_to_string(&baseline_path)
        .unwrap_or_else(|e| panic!("{}: {e}", baseline_path.display()));
    let mut recorded = Results::new();
    add_results(&mut recorded, &baseline);
    assert!(
        recorded
            .values()
            .all(|by_shim| by_shim.keys().all(|k| k == "go")),
        "{GO_BASELINE} holds lines of another shim than go"
    );
    // A recorded result stands for the Go shim where it did not run live.
    for (key, by_shim) in &recorded {
        for (shim, passed) in by_shim {
            results
                .entry(key.clone())
                .or_default()
                .entry(shim.clone())
                .or_insert(*passed);
        }
    }
    let count = |shim: &str| {
        results
            .values()
            .filter(|by_shim| by_shim.contains_key(shim))
            .count()
    };
    for shim in ["tether", "go"] {
        assert!(
            count(shim) >= MIN_PER_SHIM,
            "only {} checks ran for {shim} (at least {MIN_PER_SHIM} expected):\n{stdout}",
            count(shim)
        );
    }
    let mut losses = Vec::new();
    for ((runc, name), by_shim) in &results {
        let node = by_shim.get("-");
        let tether = by_shim.get("tether");
        let go = by_shim.get("go");
        if node == Some(&false) {
            losses.push(format!("the node: {name}"));
        }
        if go == Some(&true) && tether != Some(&true) {
            let what = if tether.is_none() {
                " (did not run)"
            } else {
                ""
            };
            losses.push(format!("tether, runc {runc}: {name}{what}"));
        }
    }
    assert!(
        losses.is_empty(),
        "{} check(s) failed that must pass:\n{}\n\nall results:\n{stdout}",
        losses.len(),
        losses.join("\n")
    );
}

/// The Go shim's recorded per-runc results (the suite's own lines).
const GO_BASELINE: &str = "tests/systemd/go-baseline.txt";

/// (runc, check name) -> shim -> passed.
type Results = BTreeMap<(String, String), BTreeMap<String, bool>>;

/// Adds the suite's result lines, `ok|FAIL SHIM RUNC NAME [(detail)]`.
fn add_results(results: &mut Results, text: &str) {
    for line in text.lines() {
        let Some((state, rest)) = line.split_once(' ') else {
            continue;
        };
        let passed = match state {
            "ok" => true,
            "FAIL" => false,
            _ => continue,
        };
        let mut f = rest.splitn(3, ' ');
        let (Some(shim), Some(runc), Some(name)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let name = name.split(" (").next().unwrap_or(name).to_string();
        results
            .entry((runc.to_string(), name))
            .or_default()
            .insert(shim.to_string(), passed);
    }
}

/// A tool of scripts/guest/systemd-suite.sh, not a check of its own: the
/// Task API's Update straight to a shim (ctr 2.x has no `task update`, and
/// CRI cannot set pids.max), for tether and for the Go shim alike. Run as
/// `systemd_node-* --ignored --exact update_through_the_task_api` with
/// TETHER_UPDATE_ADDRESS (the shim's ttrpc address), TETHER_UPDATE_ID and
/// TETHER_UPDATE_RESOURCES (an OCI LinuxResources, JSON). The request goes
/// to `containerd.task.v3.Task` (what containerd 2.x speaks, and the only
/// service of its Go shim), then `containerd.task.v2.Task` if that one is
/// unimplemented.
#[tokio::test]
#[ignore = "a tool of scripts/guest/systemd-suite.sh"]
async fn update_through_the_task_api() {
    use protobuf::Message;
    use tether::protos::shim::UpdateTaskRequest;
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let resources: serde_json::Value =
        serde_json::from_str(&var("TETHER_UPDATE_RESOURCES")).expect("TETHER_UPDATE_RESOURCES");
    let client = ttrpc::r#async::Client::connect(&var("TETHER_UPDATE_ADDRESS"))
        .await
        .expect("connect to the shim");
    let payload = UpdateTaskRequest {
        id: var("TETHER_UPDATE_ID"),
        resources: common::linux_resources(resources),
        ..Default::default()
    }
    .write_to_bytes()
    .expect("encode UpdateTaskRequest");
    let mut last = None;
    for service in ["containerd.task.v3.Task", "containerd.task.v2.Task"] {
        let req = ttrpc::Request {
            service: service.into(),
            method: "Update".into(),
            payload: payload.clone(),
            timeout_nano: 20_000_000_000,
            ..Default::default()
        };
        let res = client.request(req).await.expect("Update: the request");
        let status = res.status.into_option().unwrap_or_default();
        if status.code.enum_value_or_default() == ttrpc::Code::OK {
            return;
        }
        let unimplemented = status.code.enum_value_or_default() == ttrpc::Code::UNIMPLEMENTED;
        last = Some(format!("{service}: {:?} {}", status.code, status.message));
        if !unimplemented {
            break;
        }
    }
    panic!("Update failed: {}", last.unwrap_or_default());
}

//! Self-test of the end-to-end harness: a test that panics while its
//! container runs must still leave nothing behind (shim, container process,
//! any process of containerd's environment, the environment's cgroups, its
//! /run with the shim socket and runc's state, its dir), whether containerd
//! is still running or was SIGKILLed. Uses the same runtime as the other
//! tests.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::specs::{assert_tether_passes_where_runc_does, compare, SpecResults};
use common::{alive, process_alive, Containerd, ProcInfo, Rootfs};

/// What the panicking test saw before it panicked.
struct Seen {
    pid: i32,
    starttime: u64,
    shims: Vec<i32>,
    socket: PathBuf,
    dir: PathBuf,
    /// Every process of the environment.
    pids: Vec<i32>,
    /// The environment's cgroup, in every hierarchy (host paths).
    cgroups: Vec<PathBuf>,
}

fn panic_with_running_container(kill_containerd: bool) {
    let seen: Mutex<Option<Seen>> = Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let rootfs = Rootfs::new();
        let mut cd = Containerd::start();
        let id = cd.unique_id("abandoned");
        let task = cd.run_detached(&rootfs, &id, &["/bin/sleep", "1000"]);
        let proc0 = ProcInfo::read(task.pid as i32).expect("container process exists");
        let shims: Vec<i32> = cd.shim_processes().iter().map(|p| p.pid).collect();
        assert!(!shims.is_empty(), "no shim process found");
        // What the checks read is the environment's: its own /run (a
        // mount of its namespace) holds the shim socket, the host's not.
        let socket = cd.shim_socket(&id);
        assert!(cd
            .mounts_under(Path::new("/run"))
            .contains(&"/run".to_string()));
        assert!(cd.host_path(&socket).exists(), "{}", socket.display());
        assert!(!socket.exists(), "{} on the host", socket.display());
        *seen.lock().expect("lock") = Some(Seen {
            pid: task.pid as i32,
            starttime: proc0.starttime,
            shims,
            socket: cd.host_path(&socket),
            dir: cd.dir().to_path_buf(),
            pids: cd.env().cgroup().expect("a cgroup").pids(),
            cgroups: (cd.env().cgroup().expect("a cgroup").dirs.iter())
                .map(|(_, d)| d.clone())
                .collect(),
        });
        if kill_containerd {
            cd.kill9();
        }
        panic!("deliberate panic with a running container (harness self-test)");
    }));
    assert!(result.is_err(), "the inner test was expected to panic");
    let seen = seen
        .lock()
        .expect("lock")
        .take()
        .expect("the inner test got as far as running its container");

    assert!(
        !process_alive(seen.pid, seen.starttime),
        "container process {} survived the guards",
        seen.pid
    );
    for shim in &seen.shims {
        assert!(
            !ProcInfo::read(*shim).is_some_and(|p| !p.is_zombie()),
            "shim process {shim} survived the guards"
        );
    }
    assert!(
        !seen.socket.exists(),
        "shim socket {} left",
        seen.socket.display()
    );
    assert!(!seen.dir.exists(), "temp dir {} left", seen.dir.display());
    assert!(seen.pids.contains(&seen.pid), "{:?}", seen.pids);
    let left: Vec<&i32> = seen.pids.iter().filter(|p| alive(**p as u32)).collect();
    assert!(
        left.is_empty(),
        "processes of the environment left: {left:?}"
    );
    // The containers' cgroups were below the environment's, runc's state
    // and the shim sockets on its own /run.
    assert!(!seen.cgroups.is_empty());
    for cg in &seen.cgroups {
        assert!(!cg.exists(), "cgroup {} left", cg.display());
    }
}

#[test]
fn guards_clean_up_after_a_panic() {
    panic_with_running_container(false);
}

#[test]
fn guards_clean_up_after_a_panic_with_containerd_killed() {
    panic_with_running_container(true);
}

/// The harness's matrix and the one scripts/peers.sh builds are the same
/// list, in the same order.
#[test]
fn containerd_matrix_matches_the_peers_file() {
    let file = include_str!("peers/containerd-matrix");
    let listed: Vec<&str> = file
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    let harness: Vec<&str> = common::MATRIX.iter().map(|(_, v)| *v).collect();
    assert_eq!(
        listed, harness,
        "tests/peers/containerd-matrix and tests/common/matrix.rs differ"
    );
}

/// The harness's newest runc is the first line of tests/peers/runc-matrix,
/// and Debian's ("system") is in that matrix too.
#[test]
fn newest_runc_is_the_runc_matrix_head() {
    let file = include_str!("peers/runc-matrix");
    let listed: Vec<&str> = file
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(listed.first(), Some(&common::NEWEST_RUNC));
    assert!(listed.contains(&"system"), "{listed:?}");
}

/// critest's results.tsv (with seconds) and node conformance's (without)
/// parse alike; failure states are failures, skips are not runs.
#[test]
fn spec_results_parse_both_report_formats() {
    let critest = SpecResults::parse(
        "passed\t1.5\t[sig-node] a spec\nfailed\t0.2\t[sig-node] b spec\n\
         skipped\t0.0\t[sig-node] c spec\ntimedout\t60.0\t[sig-node] d spec\n",
    );
    let node = SpecResults::parse(
        "passed\t[sig-node] a spec\nfailed\t[sig-node] b spec\n\
         skipped\t[sig-node] c spec\ntimedout\t[sig-node] d spec\n",
    );
    assert_eq!(critest, node);
    assert_eq!((node.passed(), node.failed(), node.ran()), (1, 2, 3));
    // A name with a tab-free number in it is still a name.
    let odd = SpecResults::parse("passed\t2 containers\n");
    assert_eq!(odd.matching("2 containers").len(), 1);
}

/// Spec by spec: what passes with runc must pass with tether (failed,
/// skipped and missing alike are regressions); what fails with both is
/// listed; a name reported twice must pass as often.
#[test]
fn spec_comparison_finds_every_regression() {
    let runc = SpecResults::parse(
        "passed\tkept\npassed\tnow fails\npassed\tnow skipped\npassed\tgone\n\
         failed\tboth fail\nfailed\tfixed\nskipped\tskipped both\n\
         passed\ttwice\npassed\ttwice\n",
    );
    let tether = SpecResults::parse(
        "passed\tkept\npanicked\tnow fails\nskipped\tnow skipped\n\
         timedout\tboth fail\npassed\tfixed\nskipped\tskipped both\n\
         passed\ttwice\nfailed\ttwice\n",
    );
    let c = compare(&runc, &tether);
    assert_eq!(
        c.regressions,
        [
            "gone: not run",
            "now fails: panicked",
            "now skipped: skipped",
            "twice: failed, passed"
        ]
    );
    assert_eq!(c.both_failed, ["both fail"]);
    assert!(compare(&runc, &runc).regressions.is_empty());
}

/// The verdict: a regression fails, and so does a run that ran too few
/// specs, with either handler.
#[test]
fn spec_verdict_fails_regressions_and_empty_runs() {
    let full = SpecResults::parse("passed\ta\npassed\tb\nfailed\tc\n");
    assert_tether_passes_where_runc_does("same", &full, &full, 3, "");
    let verdict = |runc: &SpecResults, tether: &SpecResults| {
        let (runc, tether) = (runc.clone(), tether.clone());
        std::panic::catch_unwind(move || {
            assert_tether_passes_where_runc_does("t", &runc, &tether, 3, "")
        })
        .is_err()
    };
    let worse = SpecResults::parse("passed\ta\nfailed\tb\nfailed\tc\n");
    assert!(verdict(&full, &worse), "a regression passed");
    let empty = SpecResults::parse("skipped\ta\nskipped\tb\nskipped\tc\n");
    assert!(verdict(&empty, &empty), "a run of nothing passed");
    assert!(verdict(&full, &empty), "an empty tether run passed");
}

/// scripts/cri/report.py and scripts/node/report.py turn a ginkgo JSON
/// report into the results.tsv the comparison reads: Its as specs, a failed
/// suite node as a failure, and (node) focus-filtered specs left out.
#[test]
fn report_scripts_write_what_the_comparison_reads() {
    let report = serde_json::json!([{ "SpecReports": [
        { "LeafNodeType": "It", "State": "passed", "RunTime": 1_500_000_000u64,
          "ContainerHierarchyTexts": ["[sig-node] Pods"], "LeafNodeText": "run" },
        { "LeafNodeType": "It", "State": "failed", "RunTime": 0,
          "ContainerHierarchyTexts": ["[sig-node] Pods"], "LeafNodeText": "fail",
          "Failure": { "Message": "boom", "Location": { "FileName": "x.go", "LineNumber": 3 } } },
        { "LeafNodeType": "It", "State": "skipped",
          "ContainerHierarchyTexts": ["[sig-node] Pods"], "LeafNodeText": "skip",
          "Failure": { "Message": "no AppArmor" } },
        { "LeafNodeType": "It", "State": "skipped",
          "ContainerHierarchyTexts": ["[sig-node] Other"], "LeafNodeText": "filtered" },
        { "LeafNodeType": "BeforeSuite", "State": "panicked",
          "Failure": { "Message": "setup" } },
        { "LeafNodeType": "AfterEach", "State": "passed" }
    ]}]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    std::fs::write(&json, report.to_string()).unwrap();
    let run = |script: &str, out: &str| {
        let out = dir.path().join(out);
        std::fs::create_dir(&out).unwrap();
        let o = std::process::Command::new("python3")
            .arg(common::script_checks::repo_path(script))
            .arg(&json)
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {o:?}");
        (
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            SpecResults::read(&out),
        )
    };
    let (cri_line, cri) = run("scripts/cri/report.py", "cri");
    assert_eq!(cri_line, "1 2 2");
    assert_eq!((cri.passed(), cri.failed(), cri.ran()), (1, 2, 3));
    assert_eq!(cri.matching("[BeforeSuite]").len(), 1);
    let (node_line, node) = run("scripts/node/report.py", "node");
    assert_eq!(node_line, "1 2 1");
    assert!(node.matching("filtered").is_empty());
    let c = compare(&cri, &node);
    assert!(c.regressions.is_empty(), "{c:?}");
    assert_eq!(c.both_failed, ["[BeforeSuite]", "[sig-node] Pods fail"]);
}

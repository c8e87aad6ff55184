//! The Sandbox service (`containerd.runtime.sandbox.v1.Sandbox`) driven
//! straight over ttrpc, the way containerd's shim sandboxer drives it, with
//! a bundle laid out as containerd lays it out and a network namespace held
//! by a process of the test. Checks the holder's namespaces, hostname,
//! sysctls, OOM score, cgroup and reaping, the files CRI mounts, the
//! phases, and the clean-up by Stop, Shutdown and `delete`.
//!
//! Needs root (see .ci/run).

use std::fs;
use std::time::Duration;

use tether::protos::sandbox::*;

mod common;
#[path = "sandbox_direct/pod.rs"]
mod pod;

use common::direct::*;
use pod::*;

#[tokio::test(flavor = "current_thread")]
async fn a_pod_lives_in_its_holder_and_goes_with_stop_and_shutdown() {
    let pod = Pod::new().await;
    let pid = pod.create_and_start().await;
    assert_ne!(pid, 0);

    // Namespaces: the netns CRI gave; ipc, uts and pid of its own, where it
    // is pid 1.
    assert_eq!(ns(pid, "net"), ns(pod.netns_holder.id(), "net"));
    for kind in ["ipc", "uts", "pid"] {
        assert_ne!(ns(pid, kind), ns("self", kind), "{kind}");
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.ends_with("\t1"), "{nspid}");
    assert_eq!(inside(pid, &["--uts"], &["hostname"]), "pod-host");
    let shm = inside(
        pid,
        &["--ipc"],
        &["cat", "/proc/sys/kernel/shm_rmid_forced"],
    );
    assert_eq!(shm, "1");
    let port = inside(
        pid,
        &["--net"],
        &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
    );
    assert_eq!(port, "0");
    let adj = fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    // Lowering a score needs CAP_SYS_RESOURCE, which some machines'
    // root lacks (this VM's does): then the holder keeps the shim's.
    let want = if has_sys_resource() {
        "-998".to_string()
    } else {
        fs::read_to_string(format!("/proc/{}/oom_score_adj", pod.shim_pid)).unwrap()
    };
    assert_eq!(adj.trim(), want.trim(), "{}", pod.log());
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let leaf = format!("{}/{}", pod.cgroup_parent, pod.id);
    assert!(cgroups.lines().any(|l| l.ends_with(&leaf)), "{cgroups}");
    assert!(
        cgroup_dirs(&leaf).iter().all(|d| d.is_dir()),
        "a hierarchy without the leaf"
    );

    // The files CRI mounts into every container.
    let root = pod.cri_root();
    assert_eq!(
        fs::read_to_string(root.join("hostname")).unwrap(),
        "pod-host\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("resolv.conf")).unwrap(),
        "search default.svc\nnameserver 10.96.0.10\n"
    );
    assert!(root.join("hosts").is_file());
    assert!(is_mount_point(&pod.cri_state().join("shm")));

    // Status and Platform as CRI reads them; a restarted containerd's
    // clean-up is undone on the next Status.
    let st = pod.status().await;
    assert!(st.info.is_empty(), "info without verbose: {:?}", st.info);
    assert_eq!(
        (st.sandbox_id.as_str(), st.pid, st.state.as_str()),
        (pod.id.as_str(), pid, "SANDBOX_READY")
    );
    // Metrics: the pod's cgroup parent's, as the cgroups Metrics Any.
    let req = SandboxMetricsRequest {
        sandbox_id: pod.id.clone(),
        ..Default::default()
    };
    let m = pod
        .client
        .sandbox_metrics(ctx(), &req)
        .await
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(m.id, pod.id);
    let data = m.data.as_ref().unwrap();
    assert!(
        data.type_url.starts_with("io.containerd.cgroups.v"),
        "{}",
        data.type_url
    );
    if data.type_url == "io.containerd.cgroups.v1.Metrics" {
        // The parent counts the holder, in its leaf.
        use protobuf::Message;
        let v1 = tether::protos::cgroup1_metrics::Metrics::parse_from_bytes(&data.value).unwrap();
        assert_eq!(v1.pids.current, 1, "{v1:?}");
    }
    // Verbose: the JSON CRI decodes into its sandbox info.
    let req = SandboxStatusRequest {
        sandbox_id: pod.id.clone(),
        verbose: true,
        ..Default::default()
    };
    let verbose = pod.client.sandbox_status(ctx(), &req).await.unwrap();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert_eq!(info["pid"], pid);
    assert_eq!(info["processStatus"], "running");
    fs::write(pod.cri_state().join("shm").join("marker"), "x").unwrap();
    nix::mount::umount2(
        &pod.cri_state().join("shm"),
        nix::mount::MntFlags::MNT_DETACH,
    )
    .unwrap();
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(pod.cri_state()).unwrap();
    let req = PlatformRequest {
        sandbox_id: pod.id.clone(),
        ..Default::default()
    };
    let platform = pod
        .client
        .platform(ctx(), &req)
        .await
        .unwrap()
        .platform
        .unwrap();
    assert_eq!(
        (platform.os.as_str(), platform.architecture.as_str()),
        ("linux", "amd64")
    );
    assert_eq!(
        fs::read_to_string(root.join("hostname")).unwrap(),
        "pod-host\n"
    );
    assert!(
        pod.cri_state().join("shm").join("marker").exists(),
        "the same shm, back"
    );

    // The holder reaps what is orphaned in its PID namespace.
    inside(pid, &["--pid"], &["/bin/sh", "-c", "sleep 0.2 & exit 0"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(zombie_children(pid).is_empty(), "the holder left zombies");

    // Wait, then Stop: 137, NOTREADY, the holder and its leaf gone, shm
    // unmounted. Stop again is no error.
    let wait = {
        let client = pod.client.clone();
        let req = WaitSandboxRequest {
            sandbox_id: pod.id.clone(),
            ..Default::default()
        };
        tokio::spawn(async move { client.wait_sandbox(ctx(), &req).await })
    };
    let stop = StopSandboxRequest {
        sandbox_id: pod.id.clone(),
        ..Default::default()
    };
    pod.client
        .stop_sandbox(ctx(), &stop)
        .await
        .expect("StopSandbox");
    assert!(!alive(pid), "holder still running after StopSandbox");
    let waited = wait.await.unwrap().expect("WaitSandbox");
    assert_eq!(waited.exit_status, 137);
    let st = pod.status().await;
    assert_eq!(st.state, "SANDBOX_NOTREADY");
    assert!(st.exited_at.seconds > 0);
    assert!(!is_mount_point(&pod.cri_state().join("shm")));
    assert!(!is_mount_point(&pod.bundle().join("shm")));
    assert!(
        cgroup_dirs(&leaf).iter().all(|d| !d.exists()),
        "the holder's cgroup is left"
    );
    pod.client
        .stop_sandbox(ctx(), &stop)
        .await
        .expect("a second StopSandbox");

    // Shutdown: the pod's files go, and the daemon with them.
    let req = ShutdownSandboxRequest {
        sandbox_id: pod.id.clone(),
        ..Default::default()
    };
    let _ = pod.client.shutdown_sandbox(ctx(), &req).await;
    assert!(
        gone_within(pod.shim_pid, Duration::from_secs(10)),
        "shim still running"
    );
    assert!(!pod.cri_root().exists() && !pod.cri_state().exists());
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_ids_bad_requests_and_update_get_clear_codes() {
    let pod = Pod::new().await;
    let other = "someone-else".to_string();
    let (code, _) = code_of(
        pod.client
            .sandbox_status(
                ctx(),
                &SandboxStatusRequest {
                    sandbox_id: other.clone(),
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(code, ttrpc::Code::NOT_FOUND);
    let (code, _) = code_of(
        pod.client
            .ping_sandbox(
                ctx(),
                &PingRequest {
                    sandbox_id: other.clone(),
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(code, ttrpc::Code::NOT_FOUND);
    // A bundle outside containerd's sandbox directory, and a bad id.
    for (id, bundle) in [
        (pod.id.clone(), "/tmp".to_string()),
        ("../x".into(), pod.bundle().display().to_string()),
    ] {
        let req = CreateSandboxRequest {
            sandbox_id: id,
            bundle_path: bundle,
            netns_path: pod.netns(),
            ..Default::default()
        };
        let (code, msg) = code_of(pod.client.create_sandbox(ctx(), &req).await);
        assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    }
    pod.create_and_start().await;
    let (code, _) = code_of(
        pod.client
            .update_sandbox(
                ctx(),
                &UpdateSandboxRequest {
                    sandbox_id: pod.id.clone(),
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(code, ttrpc::Code::UNIMPLEMENTED);
    let (code, _) = code_of(
        pod.client
            .start_sandbox(
                ctx(),
                &StartSandboxRequest {
                    sandbox_id: pod.id.clone(),
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION);
    // A second CreateSandbox in the same daemon.
    let req = CreateSandboxRequest {
        sandbox_id: pod.id.clone(),
        bundle_path: pod.bundle().display().to_string(),
        netns_path: pod.netns(),
        ..Default::default()
    };
    let (code, _) = code_of(pod.client.create_sandbox(ctx(), &req).await);
    assert_eq!(code, ttrpc::Code::ALREADY_EXISTS);
}

/// The shim SIGKILLed: containerd runs `delete` in the sandbox bundle. The
/// holder goes, and so do the pod's files and mounts, and a container of
/// the pod with a PID namespace of its own, which would otherwise outlive
/// its shim (containerd 2.3 runs no `delete` for it), even with its bundle
/// gone: containerd 2.3's CRI removes that bundle when the dead shim's Task
/// Delete fails, often before it runs the sandbox's `delete`.
#[tokio::test(flavor = "current_thread")]
async fn delete_after_the_shim_died_kills_the_holder_and_the_pod() {
    let pod = Pod::new().await;
    let pid = pod.create_and_start().await;
    let member = format!("{}-c1", pod.id);
    let bundle = pod.dir.path().join(&member);
    fs::create_dir(&bundle).unwrap();
    make_bundle(&bundle, &["sleep", "600"], |_| {});
    let create = tether::protos::shim::CreateTaskRequest {
        id: member.clone(),
        bundle: bundle.display().to_string(),
        ..Default::default()
    };
    let init = pod.tasks.create(ctx(), &create).await.expect("Create").pid;
    let start = tether::protos::shim::StartRequest {
        id: member.clone(),
        ..Default::default()
    };
    pod.tasks.start(ctx(), &start).await.expect("Start");
    sigkill(pod.shim_pid);
    assert!(gone_within(pod.shim_pid, Duration::from_secs(10)));
    fs::remove_dir_all(&bundle).unwrap();
    let resp = pod.shim_delete().expect("delete");
    assert_eq!((resp.pid, resp.exit_status), (pid, 137));
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "the holder outlived delete"
    );
    assert!(
        gone_within(init, Duration::from_secs(5)),
        "the pod's container outlived delete"
    );
    assert!(!runc_knows(&runc_root(&pod.namespace), &member));
    assert!(!pod.cri_root().exists() && !pod.cri_state().exists());
    assert!(!mounted_under(pod.dir.path()), "mounts left under the pod");
    // Idempotent: a second delete finds nothing to do.
    pod.shim_delete().expect("a second delete");
}

/// A live upgrade with CRI's WaitSandbox pending: the new binary serves the
/// same sandbox (same holder, READY), and answers that Wait when the pod
/// stops.
#[tokio::test(flavor = "current_thread")]
async fn a_live_upgrade_carries_the_sandbox_and_its_pending_wait() {
    let pod = Pod::new().await;
    let pid = pod.create_and_start().await;
    let wait = {
        let client = pod.client.clone();
        let req = WaitSandboxRequest {
            sandbox_id: pod.id.clone(),
            ..Default::default()
        };
        tokio::spawn(async move { client.wait_sandbox(ctx(), &req).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shim = nix::unistd::Pid::from_raw(pod.shim_pid as i32);
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGUSR2).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pod.upgrades().await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upgrade did not complete: {}",
            pod.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = pod.status().await;
    assert_eq!(
        (st.pid, st.state.as_str()),
        (pid, "SANDBOX_READY"),
        "{}",
        pod.log()
    );
    assert!(!wait.is_finished(), "WaitSandbox answered by the upgrade");
    let stop = StopSandboxRequest {
        sandbox_id: pod.id.clone(),
        ..Default::default()
    };
    pod.client
        .stop_sandbox(ctx(), &stop)
        .await
        .expect("StopSandbox");
    let waited = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("WaitSandbox answered after the upgrade")
        .unwrap()
        .expect("WaitSandbox");
    assert_eq!(waited.exit_status, 137);
}

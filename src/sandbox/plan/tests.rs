use protobuf::Message;

use super::*;
use crate::protos::cri_pod::{
    DNSConfig, IDMapping, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
    UserNamespace,
};

fn config(ns: NamespaceOption) -> PodSandboxConfig {
    let mut security = LinuxSandboxSecurityContext::new();
    security.namespace_options = Some(ns).into();
    let mut linux = LinuxPodSandboxConfig::new();
    linux.security_context = Some(security).into();
    linux.cgroup_parent = "/kubepods/pod1".into();
    linux
        .sysctls
        .insert("kernel.shm_rmid_forced".into(), "1".into());
    let mut c = PodSandboxConfig::new();
    c.hostname = "web-0".into();
    c.linux = Some(linux).into();
    c
}

fn plan(c: &PodSandboxConfig, netns: &str) -> Result<PodPlan> {
    PodPlan::new(Some((POD_CONFIG_TYPE, &c.write_to_bytes().unwrap())), netns)
}

fn map(container: u32, host: u32, length: u32) -> IDMapping {
    let mut m = IDMapping::new();
    m.container_id = container;
    m.host_id = host;
    m.length = length;
    m
}

#[test]
fn a_plain_pod_gets_its_own_namespaces_and_cri_defaults() {
    let p = plan(&config(NamespaceOption::new()), "/var/run/netns/cni-1").unwrap();
    assert_eq!(p.netns.as_deref(), Some("/var/run/netns/cni-1".as_ref()));
    assert!(p.ipc && p.uts && p.pid && !p.netns_user);
    assert_eq!(p.hostname.as_deref(), Some("web-0"));
    assert_eq!(
        p.sysctls,
        [
            ("kernel/shm_rmid_forced".to_string(), "1".to_string()),
            ("net/ipv4/ip_unprivileged_port_start".into(), "0".into()),
            ("net/ipv4/ping_group_range".into(), "0 2147483647".into()),
        ]
    );
    assert_eq!(p.cgroup_parent.as_deref(), Some("/kubepods/pod1"));
}

#[test]
fn node_namespaces_are_not_made() {
    let mut ns = NamespaceOption::new();
    ns.network = NamespaceMode::NODE.into();
    ns.pid = NamespaceMode::NODE.into();
    ns.ipc = NamespaceMode::NODE.into();
    let p = plan(&config(ns), "").unwrap();
    assert_eq!(p.netns, None);
    assert!(!p.ipc && !p.uts && !p.pid);
    // The node's hostname, and no network defaults on the node's network.
    assert_eq!(p.hostname, None);
    assert_eq!(p.sysctls.len(), 1);
}

#[test]
fn a_pod_that_shares_no_pids_still_gets_a_pid_namespace() {
    let mut ns = NamespaceOption::new();
    ns.pid = NamespaceMode::CONTAINER.into();
    assert!(plan(&config(ns), "/n").unwrap().pid);
}

#[test]
fn user_namespaces_are_validated() {
    let with = |mode: NamespaceMode, uids: Vec<IDMapping>, gids: Vec<IDMapping>| {
        let mut u = UserNamespace::new();
        u.mode = mode.into();
        u.uids = uids;
        u.gids = gids;
        let mut ns = NamespaceOption::new();
        ns.userns_options = Some(u).into();
        plan(&config(ns), "/n")
    };
    let ok = with(
        NamespaceMode::POD,
        vec![map(0, 100000, 65536)],
        vec![map(0, 100000, 65536)],
    )
    .unwrap();
    assert!(ok.netns_user);
    // No ping range inside a user namespace.
    assert!(!ok.sysctls.iter().any(|(k, _)| k.contains("ping_group")));
    assert!(
        !with(NamespaceMode::NODE, vec![], vec![])
            .unwrap()
            .netns_user
    );
    for (mode, uids, gids) in [
        (NamespaceMode::NODE, vec![map(0, 1, 1)], vec![]),
        (NamespaceMode::POD, vec![], vec![]),
        (
            NamespaceMode::POD,
            vec![map(1, 100000, 10)],
            vec![map(0, 1, 1)],
        ),
        (NamespaceMode::CONTAINER, vec![], vec![]),
        (NamespaceMode::TARGET, vec![], vec![]),
    ] {
        let e = with(mode, uids, gids).unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::INVALID_ARGUMENT, "{e}");
    }
}

#[test]
fn bad_input_is_refused() {
    assert!(
        plan(&config(NamespaceOption::new()), "").is_err(),
        "no netns"
    );
    let mut c = config(NamespaceOption::new());
    c.linux
        .mut_or_insert_default()
        .sysctls
        .insert("net/../../x".into(), "1".into());
    assert!(plan(&c, "/n").is_err());
    let mut c = config(NamespaceOption::new());
    c.linux.mut_or_insert_default().cgroup_parent = "kubepods/../../x".into();
    assert!(plan(&c, "/n").is_err());
    assert!(PodPlan::new(Some(("x.Other", b"")), "/n").is_err());
    assert!(PodPlan::new(Some((POD_CONFIG_TYPE, b"\xff\xff")), "/n").is_err());
    // No options at all (a client other than CRI): a plain pod.
    assert!(PodPlan::new(None, "/n").unwrap().pid);
}

#[test]
fn resolv_conf_has_a_line_per_setting() {
    let mut d = DNSConfig::new();
    d.servers = vec!["10.0.0.10".into(), "10.0.0.11".into()];
    d.searches = vec!["ns.svc".into(), "svc".into()];
    d.options = vec!["ndots:5".into()];
    let mut c = config(NamespaceOption::new());
    c.dns_config = Some(d).into();
    let p = plan(&c, "/n").unwrap();
    assert_eq!(
        p.dns.unwrap().resolv_conf(),
        "search ns.svc svc\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"
    );
    assert_eq!(Dns::default().resolv_conf(), "");
}

//! The Sandbox service as containerd's `shim` sandboxer addresses it: the
//! ttrpc service name, its ten methods, and field numbers on the wire.

use std::collections::BTreeSet;
use std::sync::Arc;

use protobuf::{Message, MessageFull};
use tether_proto::sandbox::{CreateSandboxRequest, SandboxStatusResponse, StartSandboxResponse};
use tether_proto::sandbox_ttrpc::{create_sandbox, Sandbox};

/// A service that keeps every generated default (Unimplemented).
struct Defaults;
impl Sandbox for Defaults {}

#[test]
fn the_service_is_registered_under_containerds_name_with_ten_methods() {
    let services = create_sandbox(Arc::new(Defaults));
    let names: Vec<&String> = services.keys().collect();
    assert_eq!(names, ["containerd.runtime.sandbox.v1.Sandbox"]);
    let methods: BTreeSet<&str> = services["containerd.runtime.sandbox.v1.Sandbox"]
        .methods
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = [
        "CreateSandbox",
        "StartSandbox",
        "Platform",
        "StopSandbox",
        "WaitSandbox",
        "SandboxStatus",
        "PingSandbox",
        "ShutdownSandbox",
        "SandboxMetrics",
        "UpdateSandbox",
    ]
    .into_iter()
    .collect();
    assert_eq!(methods, want);
}

#[test]
fn messages_carry_containerds_full_names() {
    assert_eq!(
        CreateSandboxRequest::descriptor().full_name(),
        "containerd.runtime.sandbox.v1.CreateSandboxRequest"
    );
    assert_eq!(
        tether_proto::platform::Platform::descriptor().full_name(),
        "containerd.types.Platform"
    );
    assert_eq!(
        tether_proto::platform::Metric::descriptor().full_name(),
        "containerd.types.Metric"
    );
}

#[test]
fn status_fields_are_numbered_as_containerd_reads_them() {
    let status = SandboxStatusResponse {
        sandbox_id: "p".into(),
        pid: 7,
        state: "SANDBOX_READY".into(),
        ..Default::default()
    };
    let mut want = vec![0x0a, 1, b'p', 0x10, 7, 0x1a, 13];
    want.extend_from_slice(b"SANDBOX_READY");
    assert_eq!(status.write_to_bytes().unwrap(), want);

    // CreateSandboxRequest: netns_path is field 5 (tag 0x2a).
    let create = CreateSandboxRequest {
        netns_path: "/n".into(),
        ..Default::default()
    };
    assert_eq!(create.write_to_bytes().unwrap(), [0x2a, 2, b'/', b'n']);

    // StartSandboxResponse: pid is field 1, created_at field 2.
    let mut start = StartSandboxResponse {
        pid: 300,
        ..Default::default()
    };
    start.created_at.mut_or_insert_default().seconds = 1;
    assert_eq!(
        start.write_to_bytes().unwrap(),
        [0x08, 0xac, 0x02, 0x12, 2, 0x08, 1]
    );
}

#[test]
fn a_pod_config_decodes_with_cris_numbers_and_keeps_what_it_does_not_name() {
    use tether_proto::cri_pod::{NamespaceMode, PodSandboxConfig};
    assert_eq!(
        PodSandboxConfig::descriptor().full_name(),
        "runtime.v1.PodSandboxConfig"
    );
    // hostname (2) "h"; a port mapping (5) with container_port 80, which
    // this trimmed schema does not name; linux (8) { security_context (2) {
    // namespace_options (1) { pid (2) = NODE (2), userns_options (5) {
    // uids (2) { host_id 1000, container_id 0, length 65536 } } } },
    // sysctls (3) { "a" = "b" } }.
    let uid_map = [0x08, 0xe8, 0x07, 0x10, 0x00, 0x18, 0x80, 0x80, 0x04];
    let mut userns = vec![0x12, uid_map.len() as u8];
    userns.extend_from_slice(&uid_map);
    let mut ns = vec![0x10, 0x02, 0x2a, userns.len() as u8];
    ns.extend_from_slice(&userns);
    let mut sc = vec![0x0a, ns.len() as u8];
    sc.extend_from_slice(&ns);
    let sysctl = [0x0a, 1, b'a', 0x12, 1, b'b'];
    let mut linux = vec![0x12, sc.len() as u8];
    linux.extend_from_slice(&sc);
    linux.extend_from_slice(&[0x1a, sysctl.len() as u8]);
    linux.extend_from_slice(&sysctl);
    let mut bytes = vec![0x12, 1, b'h', 0x2a, 2, 0x10, 80, 0x42, linux.len() as u8];
    bytes.extend_from_slice(&linux);

    let c = PodSandboxConfig::parse_from_bytes(&bytes).unwrap();
    assert_eq!(c.hostname, "h");
    let ns = &c.linux.security_context.namespace_options;
    assert_eq!(ns.pid.enum_value(), Ok(NamespaceMode::NODE));
    assert_eq!(ns.network.enum_value(), Ok(NamespaceMode::POD));
    let m = &ns.userns_options.uids[0];
    assert_eq!((m.host_id, m.container_id, m.length), (1000, 0, 65536));
    assert_eq!(c.linux.sysctls["a"], "b");
    // The port mapping survives a round trip as an unknown field.
    let again = c.write_to_bytes().unwrap();
    assert_eq!(
        PodSandboxConfig::parse_from_bytes(&again).unwrap(),
        c,
        "decoding what was encoded gives the same config"
    );
    assert!(again.windows(4).any(|w| w == [0x2a, 2, 0x10, 80]));
}

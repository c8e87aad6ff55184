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

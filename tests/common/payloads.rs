//! The `Any` payloads containerd sends a shim: runc options, an OCI
//! LinuxResources (Update) and an OCI Process (Exec).

use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};
use tether::protos::runc_options::Options;

/// runc options as containerd sends them (Create, `start`'s stdin, `-info`).
pub fn runc_options(o: Options) -> Any {
    Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: o.write_to_bytes().unwrap(),
        ..Default::default()
    }
}

/// The resources of an UpdateTaskRequest: an OCI LinuxResources, as JSON.
pub fn linux_resources(json: serde_json::Value) -> MessageField<Any> {
    MessageField::some(Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
        value: serde_json::to_vec(&json).unwrap(),
        ..Default::default()
    })
}

/// An OCI process spec (JSON) as containerd sends it with Exec.
pub fn oci_process(spec: &serde_json::Value) -> Any {
    Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(spec).unwrap(),
        ..Default::default()
    }
}

/// The process spec of an exec running `args` as root in `/`, without a
/// terminal.
pub fn process_spec(args: &[&str]) -> Any {
    oci_process(&serde_json::json!({
        "args": args,
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "terminal": false,
    }))
}

//! Generates the protobuf messages and ttrpc services tether speaks from proto/.
//!
//! ttrpc-codegen runs the pure-Rust protobuf parser, so no protoc is needed.
//! The generated files carry inner attributes (`#![allow(..)]`), which are not
//! allowed inside `include!`; they are stripped here and the allowances are set
//! once on the module that includes them (src/lib.rs).

use std::fs;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/mount.proto",
    "proto/status.proto",
    "proto/shim.proto",
    "proto/events.proto",
    "proto/forward.proto",
    "proto/runc_options.proto",
    "proto/runtimeoptions.proto",
    "proto/runctypes.proto",
    "proto/bootstrap.proto",
    "proto/introspection.proto",
    "proto/cgroup1_metrics.proto",
    "proto/cgroup2_metrics.proto",
    "proto/platform.proto",
    "proto/sandbox.proto",
    "proto/cri_pod.proto",
];

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    ttrpc_codegen::Codegen::new()
        .out_dir(&out)
        .inputs(PROTOS)
        .include("proto")
        .rust_protobuf()
        .customize(ttrpc_codegen::Customize {
            async_all: true,
            ..Default::default()
        })
        .run()
        .expect("generating protobuf and ttrpc code from proto/");

    for entry in fs::read_dir(&out).expect("reading OUT_DIR") {
        let path = entry.expect("OUT_DIR entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).expect("reading generated file");
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("#![") && !l.starts_with("//!"))
                .collect();
            fs::write(&path, kept.join("\n")).expect("writing generated file");
        }
    }
}

//! tether's wire types: the protobuf messages and ttrpc services of
//! containerd's runtime v2 shim API that tether speaks, generated from
//! proto/ by build.rs.
//!
//! A crate of its own so that the shim (`tether`) and its clients
//! (`tetherctl`, the tests) share the wire and nothing else. Inside the shim,
//! nothing outside `service`, `events` and the command-line entry points
//! should need these.

#![allow(warnings, clippy::all, clippy::pedantic)]

macro_rules! generated {
    ($($name:ident),* $(,)?) => {
        $(pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
        })*
    };
}

generated!(
    mount,
    status,
    shim,
    shim_ttrpc,
    events,
    forward,
    forward_ttrpc,
    runc_options,
    runtimeoptions,
    runctypes,
    bootstrap,
    introspection,
    cgroup1_metrics,
    cgroup2_metrics,
    platform,
    sandbox,
    sandbox_ttrpc,
    cri_pod,
);

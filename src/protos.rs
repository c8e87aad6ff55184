//! Wire types generated from proto/ by build.rs. Nothing outside `service`,
//! `events` and the command-line entry points should need these.

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
);

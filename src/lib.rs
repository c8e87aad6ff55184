//! tether: a containerd shim (runtime v2, `io.containerd.tether.v2`).
//!
//! One daemon per container (or per group of containers) supervises the OCI
//! runtime's containers as their subreaper, serves containerd's Task API over
//! ttrpc, and publishes task events. See README.md for the big picture.

pub mod cgroup;
pub mod cgroup_stats;
pub mod checkpoint;
pub mod cli;
pub mod client;
pub mod console;
pub mod container;
pub mod copy;
pub mod ctl;
pub mod error;
pub mod events;
pub mod exec;
pub mod file_copy;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod io;
pub mod logger;
pub mod logging;
pub mod mount;
pub mod oom;
pub mod options;
pub mod process;
pub mod protos;
pub mod reaper;
pub mod relay;
pub mod resources;
pub mod router;
pub mod runc;
pub mod service;
pub mod shim;
pub mod state;
pub mod sys;
pub mod upgrade;

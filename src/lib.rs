//! tether: a containerd shim (runtime v2, `io.containerd.tether.v2`).
//!
//! One daemon per container (or per group of containers) supervises the OCI
//! runtime's containers as their subreaper, serves containerd's Task API over
//! ttrpc, and publishes task events. See README.md for the big picture.
//!
//! The library is the shim binary's body. Its public surface for other
//! programs is small on purpose: [`client`] (driving a shim as containerd
//! does) and [`protos`] (the wire types, from the tether-proto crate).
//! [`cli`] is the binary's entry points, and `fuzzing` (behind the
//! `fuzzing` feature) the fuzz targets' bodies.

#![deny(missing_docs)]

pub(crate) mod cgroup;
pub mod cli;
pub mod client;
pub(crate) mod container;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod fdsocket;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod ids;
pub(crate) mod io;
pub(crate) mod logging;
pub(crate) mod mount;
pub(crate) mod options;
pub(crate) mod process;
/// The wire types: containerd's shim API as tether speaks it.
pub use tether_proto as protos;
pub(crate) mod reaper;
pub(crate) mod records;
pub(crate) mod router;
pub(crate) mod runc;
pub(crate) mod sandbox;
pub(crate) mod sandbox_service;
pub(crate) mod service;
pub(crate) mod shim;
pub(crate) mod sys;
pub(crate) mod tasks;
pub(crate) mod transport;
pub(crate) mod upgrade;

/// `-upgrade-check FILE`: whether this binary can take over a live-upgrade
/// state (the previous binary runs it before it execs this one).
pub use upgrade::check as check_upgrade_state;

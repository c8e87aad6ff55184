//! tether's test environment: a private containerd of a chosen version,
//! optionally with its CRI plugin, a local registry and CNI, with the
//! runtime handlers a test asks for, in a cgroup, a mount namespace and a
//! network namespace of its own.
//!
//! - [`config`] writes containerd's config from typed structs, one schema
//!   per major version (the only writer of a containerd config in the
//!   repository);
//! - [`Env`] starts an environment from [`Options`] and tears it down by
//!   killing its cgroup (module `env`);
//! - `cgroup`: the environment's cgroup, and what it catches;
//! - `init`: the first process inside, which makes the namespaces and their
//!   mounts and starts the registry, containerd and the command;
//! - `plan`: what the supervisor hands init;
//! - [`enter`]: a process joining a running environment (`testenv enter`).
//!
//! The `testenv` binary is the command form:
//! `testenv exec --containerd 2.3.7 --cri -- critest ...`.

#![deny(missing_docs)]

pub mod cgroup;
pub mod config;
pub mod enter;
mod env;
pub mod init;
pub mod plan;

pub use env::{containerd_bins, Env, Options};
